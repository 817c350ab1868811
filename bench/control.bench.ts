/**
 * The control plane: push convergence and SVID signing over the network, against `rampart control-plane` run as a
 * child process (its CPU and memory read from /proc).
 *
 * - Convergence: 1, 100 and 1,000 simulated proxies subscribed (ControlPlaneClient, the proxies' own client,
 *   answering each snapshot with an ACK at once instead of building a policy engine), spread over ten workloads
 *   that share one SVID each. A policy file is rewritten; the time from the write to each proxy's ACK of the new
 *   version, p50 and p99 over proxies and changes, and the slowest proxy per change. The debounce (100 ms by default,
 *   as istiod's PILOT_DEBOUNCE_AFTER) is part of it, and the directory watch.
 * - Memory: the control plane's RSS with N proxies connected, less its RSS with none, per proxy.
 * - Signing: SVID renewals (CSR + the current SVID as client certificate) per second over 16 mTLS HTTP/2
 *   connections, against CertificateAuthority.issue() in this process as the baseline.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority, createSelfSignedCa } from '../src/identity/ca.ts';
import { istioSpiffeId } from '../src/identity/spiffe-id.ts';
import { svidFromPem, type Svid } from '../src/identity/svid.ts';
import { clientTlsOptions } from '../src/identity/tls.ts';
import { TrustBundle } from '../src/identity/trust-bundle.ts';
import { createCsr, generateKeyPair, privateKeyPem } from '../src/identity/x509.ts';
import { writeCaDir } from '../src/io/ca-dir.ts';
import { ControlPlaneClient } from '../src/proxy/control-client.ts';
import { CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT, PATH_CSR } from '../src/control/protocol.ts';

export const TARGET_CONVERGE_P99_MS = 1_000;
export const TARGET_MB_PER_PROXY = 1;
export const WORKLOADS = 10;

export interface ControlBenchOptions {
  readonly quick: boolean;
  readonly log: (line: string) => void;
  readonly root: string;
}

export interface ConvergenceRow {
  readonly proxies: number;
  readonly changes: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** The slowest proxy's ACK, per change (median over changes). */
  readonly allAckedMs: number;
  readonly cpuMsPerChange: number;
  readonly rssMB: number;
  readonly mbPerProxy: number;
}

export interface ControlResults {
  readonly convergence: readonly ConvergenceRow[];
  readonly signing: { readonly networkPerSecond: number; readonly inProcessPerSecond: number; readonly connections: number };
  readonly targets: ReadonlyArray<{ readonly target: string; readonly measured: string; readonly met: boolean }>;
}

export function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
}

export function procStat(pid: number): { cpuMs: number; rssMB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const ticks = Number(stat[11]) + Number(stat[12]);
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { cpuMs: ticks * 10, rssMB: Number(rss?.[1] ?? 0) / 1024 };
}

export const policy = (i: number, n: number): string => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: w${i}-allow, namespace: default}
spec:
  selector: {matchLabels: {app: w${i}}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/w${(i + 1) % WORKLOADS}"]}}], to: [{operation: {paths: ["/v${n}/*"]}}]}]
`;

export async function waitFor(what: string, f: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!f()) {
    if (Date.now() > end) throw new Error(`control bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Convergence: simulated proxies (ControlPlaneClient, the proxies' own client, ACKing each snapshot at once) over
 * ten workloads, connected in batches up to each of `sizes`; `change(c, version)` makes change c, and the time from
 * it to each proxy's ACK is measured. The clients stay in `clients` for the caller to stop.
 */
export async function measureConvergence(o: {
  readonly url: string; readonly ca: CertificateAuthority; readonly pid: number; readonly idleRssMB: number;
  readonly sizes: readonly number[]; readonly changes: number; readonly clients: ControlPlaneClient[];
  readonly change: (c: number, version: number) => void; readonly log: (line: string) => void; readonly label?: string;
}): Promise<{ rows: ConvergenceRow[]; svids: Svid[] }> {
  const { url, ca, pid, clients } = o;
  const roots = ca.trustBundle.pem;
  const bundle = TrustBundle.fromPem('cluster.local', roots);
  const svids: Svid[] = [];
  const tokens: string[] = [];
  for (let i = 0; i < WORKLOADS; i++) {
    const keys = await generateKeyPair('ec-p256');
    const id = istioSpiffeId('cluster.local', 'default', `w${i}`);
    svids.push(svidFromPem(privateKeyPem(keys.privateKey), ca.issue({ csr: createCsr(keys, id.uri) }, id).chainPem));
    tokens.push(await ca.bootstrapToken('default', `w${i}`));
  }
  // Per proxy: the time each version arrived (ACKs go out at once, on the same tick).
  const arrived: Array<Map<string, number>> = [];
  const connect = (k: number): void => {
    const w = k % WORKLOADS;
    const c = new ControlPlaneClient({ url, rootsPem: roots, token: tokens[w]!, workload: `default/w${w}` });
    c.useSvid(svids[w]!, bundle);
    const seen = new Map<string, number>();
    arrived.push(seen);
    c.subscribe({ onSnapshot: async (s) => {
      seen.set(s.version, Date.now());
      return { ok: true };
    } });
    clients.push(c);
  };
  let version = 1;
  const rows: ConvergenceRow[] = [];
  for (const n of o.sizes) {
    // Connect in batches, so the handshakes do not all land at once.
    while (clients.length < n) {
      const batch = Math.min(50, n - clients.length);
      const from = clients.length;
      for (let k = 0; k < batch; k++) connect(from + k);
      await waitFor(`${clients.length} proxies subscribed`, () => arrived.slice(from).every((m) => m.has(String(version))), 60_000);
    }
    await new Promise((r) => setTimeout(r, 300));
    const connected = procStat(pid);
    const latencies: number[] = [];
    const slowest: number[] = [];
    const cpuBefore = procStat(pid).cpuMs;
    for (let c = 0; c < o.changes; c++) {
      const next = version + 1;
      const t0 = Date.now();
      o.change(c, next);
      await waitFor(`version ${next} everywhere`, () => arrived.every((m) => m.has(String(next))), 30_000);
      version = next;
      const ms = arrived.map((m) => m.get(String(next))! - t0);
      latencies.push(...ms);
      slowest.push(Math.max(...ms));
      await new Promise((r) => setTimeout(r, 250));
    }
    const cpuMs = procStat(pid).cpuMs - cpuBefore;
    latencies.sort((a, b) => a - b);
    slowest.sort((a, b) => a - b);
    const row: ConvergenceRow = {
      proxies: n, changes: o.changes, p50Ms: percentile(latencies, 0.5), p99Ms: percentile(latencies, 0.99), allAckedMs: slowest[Math.floor(slowest.length / 2)]!,
      cpuMsPerChange: cpuMs / o.changes, rssMB: connected.rssMB, mbPerProxy: (connected.rssMB - o.idleRssMB) / n,
    };
    rows.push(row);
    o.log(`  ${o.label ?? ''}${n} proxies: p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms, all ACKed ${row.allAckedMs} ms; RSS ${row.rssMB.toFixed(1)} MB (${(row.mbPerProxy * 1024).toFixed(0)} KB per proxy)`);
  }
  return { rows, svids };
}

export async function benchControl(opts: ControlBenchOptions): Promise<ControlResults> {
  const { log, quick } = opts;
  const sizes = quick ? [1, 50, 200] : [1, 100, 1_000];
  const changes = quick ? 3 : 5;
  const dir = mkdtempSync(join(tmpdir(), 'rampart-bench-control-'));
  let cp: ChildProcess | undefined;
  const clients: ControlPlaneClient[] = [];
  try {
    const material = await createSelfSignedCa({ trustDomain: 'cluster.local' });
    const ca = new CertificateAuthority(material, { trustDomain: 'cluster.local' });
    await writeCaDir(join(dir, 'ca'), material, false);
    const cfg = join(dir, 'cfg');
    mkdirSync(cfg);
    writeFileSync(join(cfg, 'mesh.yaml'), `workloads:\n${Array.from({ length: WORKLOADS }, (_, i) =>
      `- {name: w${i}, namespace: default, serviceAccount: w${i}, labels: {app: w${i}}, address: 127.0.0.${i + 2}, ports: [{name: http, port: 8000, targetPort: ${18000 + i}}]}`).join('\n')}\nservices: []\n`);
    for (let i = 0; i < WORKLOADS; i++) writeFileSync(join(cfg, `w${i}.yaml`), policy(i, 0));
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const cli = join(opts.root, '.bench-out', 'src', 'cli', 'bin.js');
    const out = openSync(join(dir, 'control-plane.log'), 'w');
    cp = spawn(process.execPath, [cli, 'control-plane', cfg, '--ca', join(dir, 'ca'), '--port', String(port), '--admin-port', '0'], { stdio: ['ignore', out, out] });
    await waitFor('the control plane', () => /"event":"ready"/.test(readFileSync(join(dir, 'control-plane.log'), 'utf8')), 30_000);
    const pid = cp.pid!;
    const idle = procStat(pid);
    const url = `https://127.0.0.1:${port}`;
    const roots = ca.trustBundle.pem;
    const bundle = TrustBundle.fromPem('cluster.local', roots);
    const { rows: convergence, svids } = await measureConvergence({ url, ca, pid, idleRssMB: idle.rssMB, sizes, changes, clients, log,
      change: (c, next) => writeFileSync(join(cfg, `w${c % WORKLOADS}.yaml`), policy(c % WORKLOADS, next)) });
    for (const c of clients) c.stop();
    clients.length = 0;

    // Signing over the network: renewals with the current SVID, 16 connections.
    const connections = 16;
    // A few CSRs per workload, each for that workload's own identity (the CA refuses any other).
    const csrs: string[][] = [];
    for (let w = 0; w < WORKLOADS; w++) {
      csrs.push([]);
      for (let i = 0; i < 3; i++) csrs[w]!.push(createCsr(await generateKeyPair('ec-p256'), svids[w]!.spiffeId.uri));
    }
    const seconds = quick ? 1.5 : 4;
    let signed = 0;
    const end = Date.now() + seconds * 1000;
    const serverId = istioSpiffeId('cluster.local', CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT).uri;
    const started = Date.now();
    await Promise.all(Array.from({ length: connections }, async (_, k) => {
      const w = k % WORKLOADS;
      const session = http2.connect(url, { ...clientTlsOptions(svids[w]!, bundle, { ids: [serverId] }), servername: 'rampart-control-plane' });
      let sessionError: Error | undefined;
      session.on('error', (err) => (sessionError = err));
      try {
        let i = k;
        while (Date.now() < end) {
          const csr = csrs[w]![i++ % 3]!;
          const status = await new Promise<number>((resolve, reject) => {
            const req = session.request({ ':method': 'POST', ':path': PATH_CSR, 'content-type': 'application/json' });
            let code = 0;
            req.on('response', (h) => (code = Number(h[':status'])));
            req.on('data', () => undefined);
            req.on('end', () => resolve(code));
            req.on('error', reject);
            req.end(JSON.stringify({ csr }));
          });
          if (status !== 200) throw new Error(`control bench: a renewal answered ${status}${sessionError === undefined ? '' : ` (${sessionError.message})`}`);
          signed++;
        }
      } finally {
        session.close();
      }
    }));
    const networkPerSecond = signed / ((Date.now() - started) / 1000);
    // Baseline: the same CA code in this process, one at a time.
    let local = 0;
    const localEnd = Date.now() + seconds * 500;
    const localStart = Date.now();
    while (Date.now() < localEnd) {
      const w = local % WORKLOADS;
      ca.issue({ csr: csrs[w]![local % 3]! }, svids[w]!.spiffeId);
      local++;
    }
    const inProcessPerSecond = local / ((Date.now() - localStart) / 1000);
    log(`  signing: ${Math.round(networkPerSecond)}/s over ${connections} mTLS connections, ${Math.round(inProcessPerSecond)}/s in process`);

    const largest = convergence[convergence.length - 1]!;
    const targets = [
      { target: `${largest.proxies} proxies converged at p99 < ${TARGET_CONVERGE_P99_MS} ms after a change`, measured: `p99 ${largest.p99Ms} ms (p50 ${largest.p50Ms} ms, slowest ${largest.allAckedMs} ms)`, met: largest.p99Ms < TARGET_CONVERGE_P99_MS },
      { target: `< ${TARGET_MB_PER_PROXY} MB of control-plane memory per connected proxy`, measured: `${(largest.mbPerProxy * 1024).toFixed(0)} KB (${largest.rssMB.toFixed(1)} MB with ${largest.proxies})`, met: largest.mbPerProxy < TARGET_MB_PER_PROXY },
    ];
    return { convergence, signing: { networkPerSecond, inProcessPerSecond, connections }, targets };
  } finally {
    for (const c of clients) c.stop();
    if (cp !== undefined && cp.exitCode !== null) log(`control bench: the control plane exited (${cp.exitCode}); its log: ${readFileSync(join(dir, 'control-plane.log'), 'utf8').slice(-2000)}`);
    cp?.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    rmSync(dir, { recursive: true, force: true });
  }
}

export function controlReport(r: ControlResults, quick: boolean): string {
  const head = ['proxies', 'changes', 'p50 ms', 'p99 ms', 'all ACKed ms', 'CPU ms per change', 'RSS MB', 'KB per proxy'];
  const rows = r.convergence.map((c) => [String(c.proxies), String(c.changes), String(c.p50Ms), String(c.p99Ms), String(c.allAckedMs), c.cpuMsPerChange.toFixed(0), c.rssMB.toFixed(1), (c.mbPerProxy * 1024).toFixed(0)]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i]!.length)));
  const table = [head, widths.map((w) => '-'.repeat(w)), ...rows].map((row) => row.map((c, i) => c.padStart(widths[i]!)).join('  ')).join('\n');
  const s = r.signing;
  return `\nControl plane${quick ? ' (--quick)' : ''}: a policy file rewritten, time to each simulated proxy's ACK (debounce 100 ms included)\n${table}\n` +
    `SVID renewals over ${s.connections} mTLS HTTP/2 connections: ${Math.round(s.networkPerSecond)}/s; CertificateAuthority.issue() in process: ${Math.round(s.inProcessPerSecond)}/s ` +
    `(${(s.networkPerSecond / s.inProcessPerSecond).toFixed(2)}×)\n\nControl-plane targets\n${r.targets.map((t) => `${t.met ? 'met    ' : 'MISSED '} ${t.target}: ${t.measured}`).join('\n')}\n`;
}
