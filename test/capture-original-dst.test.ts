import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { NETNS_SKIP, TestNet, sh, type Host } from './support/netns.ts';
import { originalDestination, originalDstSupport } from '../src/capture/original-dst.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE = 'test/fixtures/original-dst-server.ts';

type Line = Record<string, unknown>;

/** A fixture process in a namespace and the JSON lines it printed, awaited with a deadline (never a sleep). */
class Fixture {
  readonly #child: ChildProcess;
  readonly #lines: Line[] = [];
  readonly #wake = new Set<() => void>();
  #stderr = '';
  #exited = false;

  constructor(host: Host, listen: readonly string[]) {
    this.#child = host.spawn('node', ['--import', 'tsx', FIXTURE, ...listen], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.#child.stdout! }).on('line', (l) => {
      try {
        this.#lines.push(JSON.parse(l) as Line);
      } catch {
        this.#stderr += `(stdout) ${l}\n`;
      }
      for (const w of this.#wake) w();
    });
    this.#child.stderr!.on('data', (d: Buffer) => { if (this.#stderr.length < 16_384) this.#stderr += d.toString(); });
    this.#child.once('exit', () => { this.#exited = true; for (const w of this.#wake) w(); });
  }

  async wait(match: (l: Line) => boolean, what: string, ms = 10_000): Promise<Line> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.#lines.find(match);
      if (found !== undefined) return found;
      if (this.#exited) throw new Error(`fixture exited before ${what}; stderr: ${this.#stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}; stderr: ${this.#stderr}`);
      await new Promise<void>((resolve) => {
        const done = (): void => { clearTimeout(timer); this.#wake.delete(done); resolve(); };
        const timer = setTimeout(done, left);
        this.#wake.add(done);
      });
    }
  }

  /** The fixture's listening ports, by host, once it is ready. */
  async ports(): Promise<Map<string, number>> {
    const l = await this.wait((x) => 'listening' in x, 'the listening line', 30_000);
    return new Map((l.listening as { host: string; port: number }[]).map((s) => [s.host, s.port]));
  }

  async connect(id: string, host: string, port: number): Promise<void> {
    this.#child.stdin!.write(`connect ${id} ${host} ${port}\n`);
    const l = await this.wait((x) => x.id === id && ('connected' in x || 'connectError' in x), `connect ${id} to ${host}:${port}`);
    if ('connectError' in l) throw new Error(`connect ${id} to ${host}:${port}: ${String(l.connectError)}`);
  }

  report(id: string): Promise<Line> {
    return this.wait((x) => x.id === id && ('od' in x || 'error' in x), `the server's report of ${id}`);
  }
}

const nft = (host: Host, ...commands: string[]): Promise<unknown> =>
  commands.reduce<Promise<unknown>>((p, c) => p.then(() => host.run('nft', [c])), Promise.resolve());

describe('originalDestination: SO_ORIGINAL_DST of redirected connections, in network namespaces', { skip: NETNS_SKIP }, () => {
  let testNet: TestNet | undefined;
  let a: Host;
  let b: Host;
  let inA: Fixture;
  let inB: Fixture;
  /** B's listeners: `::` (dual stack, IPv4 clients get IPv4-mapped addresses) and `0.0.0.0`. */
  let dual: number;
  let v4: number;
  let aPort: number;

  before(async () => {
    testNet = await TestNet.create();
    a = await testNet.addHost('a');
    b = await testNet.addHost('b');
    inA = new Fixture(a, ['::']);
    inB = new Fixture(b, ['::', '0.0.0.0']);
    const pb = await inB.ports();
    dual = pb.get('::')!;
    v4 = pb.get('0.0.0.0')!;
    aPort = (await inA.ports()).get('::')!;
    // B only: A has no nat table, so its conntrack tracks nothing.
    await nft(b,
      'add table ip t',
      'add chain ip t out { type nat hook output priority -100; }',
      `add rule ip t out tcp dport 7777 redirect to :${dual}`,
      `add rule ip t out tcp dport 7778 redirect to :${v4}`,
      'add chain ip t pre { type nat hook prerouting priority -100; }',
      `add rule ip t pre tcp dport 8080 redirect to :${dual}`,
      `add rule ip t pre tcp dport 8081 redirect to :${v4}`,
      'add table ip6 t6',
      'add chain ip6 t6 out { type nat hook output priority -100; }',
      `add rule ip6 t6 out tcp dport 7777 redirect to :${dual}`,
    );
  });

  after(async () => {
    await testNet?.remove();
  });

  interface Row {
    name: string;
    /** The fixture that connects, and the one that accepts (in the namespace the connection arrives in). */
    from: () => Fixture;
    at: () => Fixture;
    to: () => [host: string, port: number];
    /** The port the connection must have arrived on (that the rule redirected it, or that it was not redirected). */
    arrivedOn: () => number;
    expect: () => { address: string; port: number; family: 4 | 6 } | { error: string; errno: string };
  }
  const rows: Row[] = [
    // (a) nat output hook: connections the namespace makes itself, to loopback and to its own eth0 address.
    { name: 'output redirect, 127.0.0.1:7777 to the dual-stack listener (IPv4-mapped socket, answered by SOL_IP)',
      from: () => inB, at: () => inB, to: () => ['127.0.0.1', 7777], arrivedOn: () => dual,
      expect: () => ({ address: '127.0.0.1', port: 7777, family: 4 }) },
    { name: 'output redirect, 127.0.0.1:7778 to the 0.0.0.0 listener',
      from: () => inB, at: () => inB, to: () => ['127.0.0.1', 7778], arrivedOn: () => v4,
      expect: () => ({ address: '127.0.0.1', port: 7778, family: 4 }) },
    { name: 'output redirect, own eth0 address:7777 to the dual-stack listener',
      from: () => inB, at: () => inB, to: () => [b.address, 7777], arrivedOn: () => dual,
      expect: () => ({ address: b.address, port: 7777, family: 4 }) },
    { name: 'output redirect, own eth0 address:7778 to the 0.0.0.0 listener',
      from: () => inB, at: () => inB, to: () => [b.address, 7778], arrivedOn: () => v4,
      expect: () => ({ address: b.address, port: 7778, family: 4 }) },
    // (b) not redirected, but the nat table makes conntrack track it: the destination is the listener itself.
    { name: 'not redirected (straight to the dual-stack port, IPv4): its own local address and port',
      from: () => inB, at: () => inB, to: () => ['127.0.0.1', dual], arrivedOn: () => dual,
      expect: () => ({ address: '127.0.0.1', port: dual, family: 4 }) },
    { name: 'not redirected (straight to the 0.0.0.0 port, eth0 address)',
      from: () => inB, at: () => inB, to: () => [b.address, v4], arrivedOn: () => v4,
      expect: () => ({ address: b.address, port: v4, family: 4 }) },
    { name: 'not redirected (straight to the dual-stack port, IPv6)',
      from: () => inB, at: () => inB, to: () => ['::1', dual], arrivedOn: () => dual,
      expect: () => ({ address: '::1', port: dual, family: 6 }) },
    // (c) ip6 nat output hook.
    { name: 'IPv6 output redirect, [::1]:7777 (SOL_IPV6, IP6T_SO_ORIGINAL_DST)',
      from: () => inB, at: () => inB, to: () => ['::1', 7777], arrivedOn: () => dual,
      expect: () => ({ address: '::1', port: 7777, family: 6 }) },
    // (d) nat prerouting hook: traffic from another namespace, redirected where it arrives.
    { name: 'prerouting redirect of A\'s connection to B:8080, to the dual-stack listener',
      from: () => inA, at: () => inB, to: () => [b.address, 8080], arrivedOn: () => dual,
      expect: () => ({ address: b.address, port: 8080, family: 4 }) },
    { name: 'prerouting redirect of A\'s connection to B:8081, to the 0.0.0.0 listener',
      from: () => inA, at: () => inB, to: () => [b.address, 8081], arrivedOn: () => v4,
      expect: () => ({ address: b.address, port: 8081, family: 4 }) },
    // No nat rule in A: conntrack has no entry, getsockopt fails with ENOENT.
    { name: 'no conntrack entry (a namespace without nat rules): ERR_ORIGINAL_DST, ENOENT',
      from: () => inA, at: () => inA, to: () => ['127.0.0.1', aPort], arrivedOn: () => aPort,
      expect: () => ({ error: 'ERR_ORIGINAL_DST', errno: 'ENOENT' }) },
  ];

  rows.forEach((row, i) => {
    test(row.name, async () => {
      const id = `c${i}`;
      const [host, port] = row.to();
      await row.from().connect(id, host, port);
      const r = await row.at().report(id);
      assert.equal((r.local as { port: number }).port, row.arrivedOn(), `arrived on ${JSON.stringify(r.local)}`);
      const want = row.expect();
      if ('error' in want) assert.deepEqual(r.error, { code: want.error, errno: want.errno });
      else assert.deepEqual(r.od, want, `local ${JSON.stringify(r.local)}`);
    });
  });

  test("the rules under test are B's own: A's namespace has no ruleset", async () => {
    assert.match(await b.run('nft', ['list', 'ruleset']), /redirect to :\d+/);
    assert.equal((await a.run('nft', ['list', 'ruleset'])).trim(), '');
    assert.ok((await sh('ip', ['netns', 'list'])).includes(b.netns));
  });
});

describe('originalDestination without a namespace', () => {
  test('the addon is built and loads (Linux)', { skip: process.platform === 'linux' ? undefined : 'the addon is Linux only' }, () => {
    assert.deepEqual(originalDstSupport(), { ok: true });
  });

  test('a socket without a file descriptor (destroyed): ERR_ORIGINAL_DST, not a crash', { skip: process.platform === 'linux' ? undefined : 'the addon is Linux only' }, async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
      const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
      const socket = await accepted;
      socket.destroy();
      client.destroy();
      assert.throws(() => originalDestination(socket), (err: { code?: string; name?: string }) =>
        err.code === 'ERR_ORIGINAL_DST' && err.name === 'CaptureError');
    } finally {
      server.close();
    }
  });
});
