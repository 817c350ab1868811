import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { RampartError } from '../errors.ts';
import type { MeshWorkload } from '../resources/mesh-file.ts';

/**
 * `rampart up`'s hosts: each workload in a network namespace of its own (named for it: `ip netns exec sleep …`), a
 * veth pair joining it to one bridge in this namespace, an address of one /24 and a default route through the
 * bridge, and a hosts file of its own (/etc/netns/<name>/hosts, which `ip netns exec` shows its processes as
 * /etc/hosts). What runs there is started through `exec`. Linux, as root, with iproute2 and nftables.
 */

const run = promisify(execFile);

export class MeshHostsError extends RampartError {}

export interface MeshHost {
  readonly workload: MeshWorkload;
  readonly netns: string;
  readonly address: string;
  readonly hostsFile: string;
}

/**
 * Which rampart up made a namespace: /run/rampart-up/<name> holds its pid. Not in /etc/netns/<name>/, where every
 * file is bind-mounted over /etc by ip netns exec.
 */
const MARKERS = '/run/rampart-up';

async function sh(cmd: string, args: readonly string[]): Promise<string> {
  try {
    return (await run(cmd, [...args])).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string; code?: string };
    if (e.code === 'ENOENT') throw new MeshHostsError('ERR_HOSTS_TOOL', `${cmd} is not installed`);
    throw new MeshHostsError('ERR_HOSTS_COMMAND', `${cmd} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

/** Why network namespaces cannot be used here, or undefined when they can. */
export async function meshHostsUnavailable(): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'network namespaces are Linux only';
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  for (const [cmd, args, pkg] of [['ip', ['-V'], 'iproute2'], ['nft', ['--version'], 'nftables']] as const) {
    try {
      await run(cmd, [...args]);
    } catch {
      return `${cmd} is not installed (Debian: apt-get install ${pkg})`;
    }
  }
  return undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class MeshHosts {
  readonly bridge: string;
  /** The bridge's address: the hosts' gateway, and where this namespace's servers are reached from them. */
  readonly gateway: string;
  readonly hosts: readonly MeshHost[];
  readonly #links: string[];

  private constructor(bridge: string, gateway: string, hosts: MeshHost[], links: string[]) {
    this.bridge = bridge;
    this.gateway = gateway;
    this.hosts = hosts;
    this.#links = links;
  }

  /**
   * Makes the namespaces (`prefix` + workload name; `-<namespace>` added where two workloads share a name) on a free
   * 10.250.N.0/24. A namespace of that name left by a rampart up that is gone is removed first; one that rampart up
   * did not make is an error (nothing of the user's is touched). On any failure, what was made is removed.
   */
  static async create(workloads: readonly MeshWorkload[], prefix = ''): Promise<MeshHosts> {
    if (workloads.length > 250) throw new MeshHostsError('ERR_HOSTS_COUNT', `${workloads.length} workloads: at most 250 fit one /24`);
    const names = workloads.map((w) => (workloads.filter((o) => o.name === w.name).length > 1 ? `${prefix}${w.name}-${w.namespace}` : `${prefix}${w.name}`));
    const existing = new Set((await sh('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0]!).filter((n) => n !== ''));
    for (const n of names) {
      if (!existing.has(n)) continue;
      const marker = `${MARKERS}/${n}`;
      const pid = existsSync(marker) ? Number((await readFile(marker, 'utf8')).trim()) : NaN;
      if (Number.isNaN(pid) || alive(pid)) {
        throw new MeshHostsError('ERR_HOSTS_EXISTS', `a network namespace named ${n} exists${Number.isNaN(pid) ? ' (not made by rampart up)' : ` (rampart up ${pid} is using it)`}`);
      }
      await sh('ip', ['netns', 'del', n]);
      await rm(`/etc/netns/${n}`, { recursive: true, force: true });
      await rm(marker, { force: true });
    }
    // The bridge of a rampart up killed outright (SIGKILL: no cleanup ran) is named for its pid: gone with it.
    for (const m of (await sh('ip', ['-o', 'link', 'show', 'type', 'bridge'])).matchAll(/^\d+: rup([0-9a-z]{1,6})[:@]/gm)) {
      const pid = parseInt(m[1]!, 36);
      if (pid !== process.pid && !alive(pid)) await sh('ip', ['link', 'del', `rup${m[1]!}`]).catch(() => undefined);
    }
    const used = await sh('ip', ['-o', '-4', 'addr']);
    let third = -1;
    for (let i = 0; i < 256 && third === -1; i++) if (!used.includes(` 10.250.${i}.`)) third = i;
    if (third === -1) throw new MeshHostsError('ERR_HOSTS_SUBNET', 'no free subnet in 10.250.0.0/16');
    const subnet = `10.250.${third}`;
    const tag = `${process.pid.toString(36)}`.slice(-6);
    const bridge = `rup${tag}`;
    const links: string[] = [bridge];
    const hosts: MeshHost[] = [];
    const made = new MeshHosts(bridge, `${subnet}.1`, hosts, links);
    try {
      await sh('ip', ['link', 'add', bridge, 'type', 'bridge']);
      await sh('ip', ['addr', 'add', `${subnet}.1/24`, 'dev', bridge]);
      await sh('ip', ['link', 'set', bridge, 'up']);
      for (const [i, w] of workloads.entries()) {
        const netns = names[i]!;
        const address = `${subnet}.${i + 2}`;
        const veth = `rup${tag}v${i}`;
        await mkdir(`/etc/netns/${netns}`, { recursive: true });
        await writeFile(`/etc/netns/${netns}/hosts`, '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n');
        await mkdir(MARKERS, { recursive: true });
        await writeFile(`${MARKERS}/${netns}`, `${process.pid}\n`);
        // The namespaces reach nothing beyond the bridge: a name the hosts file lacks fails at once, not after the
        // resolver's timeouts against a server it cannot reach.
        await writeFile(`/etc/netns/${netns}/resolv.conf`, 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
        await sh('ip', ['netns', 'add', netns]);
        hosts.push({ workload: w, netns, address, hostsFile: `/etc/netns/${netns}/hosts` });
        await sh('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
        await sh('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
        links.push(veth);
        await sh('ip', ['link', 'set', veth, 'master', bridge, 'up']);
        await sh('ip', ['-n', netns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
        await sh('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
        await sh('ip', ['-n', netns, 'route', 'add', 'default', 'via', `${subnet}.1`]);
      }
    } catch (err) {
      await made.remove();
      throw err;
    }
    return made;
  }

  host(workload: MeshWorkload): MeshHost {
    const h = this.hosts.find((x) => x.workload === workload || (x.workload.namespace === workload.namespace && x.workload.name === workload.name));
    if (h === undefined) throw new MeshHostsError('ERR_HOSTS_WORKLOAD', `no host for ${workload.namespace}/${workload.name}`);
    return h;
  }

  /** The command line that runs `cmd` inside the workload's namespace. */
  exec(host: MeshHost, cmd: string, args: readonly string[]): { command: string; args: string[] } {
    return { command: 'ip', args: ['netns', 'exec', host.netns, cmd, ...args] };
  }

  /**
   * Makes this namespace's loopback servers on `ports` (the demo's JWT issuer: policies name it at 127.0.0.1)
   * reachable at 127.0.0.1 inside each host too: DNAT to the gateway, with route_localnet so that the kernel routes
   * a loopback source out, and masquerade to give it the host's address. Own table, removed with the namespace.
   */
  async forwardLoopback(ports: readonly number[]): Promise<void> {
    if (ports.length === 0) return;
    const rules = `table ip rampart_up {
  chain output { type nat hook output priority -110; ip daddr 127.0.0.1 tcp dport { ${ports.join(', ')} } dnat to ${this.gateway}; }
  chain postrouting { type nat hook postrouting priority 100; oifname "eth0" ip saddr 127.0.0.0/8 masquerade; }
}
`;
    for (const h of this.hosts) {
      await sh('ip', ['netns', 'exec', h.netns, 'sysctl', '-qw', 'net.ipv4.conf.eth0.route_localnet=1']);
      await nftIn(h.netns, rules);
    }
  }

  /** Removes the links, the namespaces and their /etc/netns directories (errors ignored: best effort, all of it). */
  async remove(): Promise<void> {
    for (const l of this.#links.slice(1)) await sh('ip', ['link', 'del', l]).catch(() => undefined);
    for (const h of this.hosts) {
      await sh('ip', ['netns', 'del', h.netns]).catch(() => undefined);
      await rm(`/etc/netns/${h.netns}`, { recursive: true, force: true });
      await rm(`${MARKERS}/${h.netns}`, { force: true });
    }
    await sh('ip', ['link', 'del', this.#links[0]!]).catch(() => undefined);
  }
}

function nftIn(netns: string, rules: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile('ip', ['netns', 'exec', netns, 'nft', '-f', '-'], (err, _out, stderr) => {
      if (err === null) resolve();
      else reject(new MeshHostsError('ERR_HOSTS_COMMAND', `nft -f in ${netns}: ${stderr.trim() || err.message}`));
    });
    child.stdin!.end(rules);
  });
}
