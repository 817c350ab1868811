import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';

/**
 * The project's own test hosts: network namespaces joined by veth pairs to a bridge in the test's namespace,
 * created by the test and removed by it (also when it fails: `remove()` in an `after` hook, and names carry a
 * random suffix so a run never meets another's leftovers).
 */

const exec = promisify(execFile);

/** Why the netns tests cannot run here, or undefined when they can (root, with ip and nft or iptables). */
export const NETNS_SKIP: string | undefined = await (async () => {
  if (process.platform !== 'linux') return 'network namespaces are Linux only';
  if (process.getuid?.() !== 0) return 'network namespaces need root (CI runs as root)';
  try {
    await exec('ip', ['-V']);
  } catch {
    return 'iproute2 (ip) is not installed';
  }
  return undefined;
})();

export async function sh(cmd: string, args: readonly string[]): Promise<string> {
  try {
    return (await exec(cmd, [...args], { maxBuffer: 16 * 1024 * 1024 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

export interface Host {
  /** The namespace's name (`ip netns exec <netns>`). */
  readonly netns: string;
  readonly address: string;
  /** Runs a command inside the namespace; resolves with its stdout. */
  run(cmd: string, args: readonly string[]): Promise<string>;
  /** The namespace's hosts file (its processes see it as /etc/hosts). */
  readonly hostsFile: string;
  /** Starts a long-running command inside the namespace (killed by `TestNet.remove`). */
  spawn(cmd: string, args: readonly string[], options?: SpawnOptions): ChildProcess;
}

export class TestNet {
  readonly id: string;
  readonly bridge: string;
  /** The bridge's address: the hosts' gateway and the test's own address on their network. */
  readonly gateway: string;
  readonly #subnet: string;
  readonly #hosts: Host[] = [];
  readonly #veths: string[] = [];
  readonly #children = new Set<ChildProcess>();

  private constructor(id: string, subnet: string) {
    this.id = id;
    this.bridge = `rb${id}`;
    this.#subnet = subnet;
    this.gateway = `${subnet}.1`;
  }

  /** A bridge with an address of a random 10.x.y.0/24 subnet. */
  static async create(): Promise<TestNet> {
    const id = randomBytes(3).toString('hex');
    const b = randomBytes(2);
    const net = new TestNet(id, `10.${100 + (b[0]! % 100)}.${b[1]!}`);
    await sh('ip', ['link', 'add', net.bridge, 'type', 'bridge']);
    await sh('ip', ['addr', 'add', `${net.gateway}/24`, 'dev', net.bridge]);
    await sh('ip', ['link', 'set', net.bridge, 'up']);
    return net;
  }

  /** A host: a namespace with lo up and eth0 at `<subnet>.<n>` (n from 2), default route via the bridge. */
  async addHost(name: string): Promise<Host> {
    const n = this.#hosts.length + 2;
    const netns = `r${this.id}-${name}`;
    const address = `${this.#subnet}.${n}`;
    const veth = `rv${this.id}${n}`;
    await sh('ip', ['netns', 'add', netns]);
    await sh('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    await sh('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    this.#veths.push(veth);
    await sh('ip', ['link', 'set', veth, 'master', this.bridge, 'up']);
    await sh('ip', ['-n', netns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    await sh('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
    await sh('ip', ['-n', netns, 'route', 'add', 'default', 'via', this.gateway]);
    // ip netns exec bind-mounts /etc/netns/<name>/hosts over /etc/hosts for what it runs; it must exist first.
    await mkdir(`/etc/netns/${netns}`, { recursive: true });
    await writeFile(`/etc/netns/${netns}/hosts`, '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n');
    // No DNS server is reachable from a test host: a name not in the hosts file fails at once instead of after the
    // resolver's timeouts.
    await writeFile(`/etc/netns/${netns}/resolv.conf`, 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
    const children = this.#children;
    const host: Host = {
      netns, address, hostsFile: `/etc/netns/${netns}/hosts`,
      run: (cmd, args) => sh('ip', ['netns', 'exec', netns, cmd, ...args]),
      spawn: (cmd, args, options = {}) => {
        const child = spawn('ip', ['netns', 'exec', netns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
        children.add(child);
        child.once('exit', () => children.delete(child));
        return child;
      },
    };
    this.#hosts.push(host);
    return host;
  }

  /** Kills what the hosts run, deletes the namespaces (their veth ends go with them) and the bridge. */
  async remove(): Promise<void> {
    await Promise.all([...this.#children].map((c) => new Promise<void>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) return resolve();
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    })));
    // The veths first: a deleted namespace takes its end of a pair with it, but only later (the kernel cleans up
    // namespaces asynchronously), and a check for leftovers must not see them.
    for (const v of this.#veths) await sh('ip', ['link', 'del', v]).catch(() => undefined);
    for (const h of this.#hosts) {
      await sh('ip', ['netns', 'del', h.netns]).catch(() => undefined);
      await rm(`/etc/netns/${h.netns}`, { recursive: true, force: true });
    }
    await sh('ip', ['link', 'del', this.bridge]).catch(() => undefined);
  }
}

/** Namespaces and links a run left behind, by the prefixes TestNet uses (for tests that check nothing is left). */
export async function leftovers(id: string): Promise<string[]> {
  const ns = (await sh('ip', ['netns', 'list'])).split('\n').filter((l) => l.startsWith(`r${id}-`));
  const links = (await sh('ip', ['-o', 'link'])).split('\n').filter((l) => l.includes(`rb${id}`) || l.includes(`rv${id}`));
  return [...ns, ...links];
}
