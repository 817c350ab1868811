/**
 * The control plane with the Kubernetes source (`rampart control-plane --kubernetes`, a child process) against the
 * tests' API server (test/support/kube-api.ts) in this process:
 *
 * - Convergence: 1, 100 and 1,000 simulated proxies (ControlPlaneClient, ACKing at once), an AuthorizationPolicy
 *   changed through the API server; the time from the write to each proxy's ACK (watch event, debounce, push).
 *   The same measure as control.bench.ts for files, in the same run.
 * - Memory: the control plane's RSS after 10,000 Pods and 1,000 AuthorizationPolicies are added, less before,
 *   per Pod (policies counted in).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { CertificateAuthority, createSelfSignedCa } from '../src/identity/ca.ts';
import { writeCaDir } from '../src/io/ca-dir.ts';
import { ControlPlaneClient } from '../src/proxy/control-client.ts';
import { KubeApiServer, type KubeObject } from '../test/support/kube-api.ts';
import { measureConvergence, policy, procStat, waitFor, WORKLOADS, TARGET_CONVERGE_P99_MS, type ConvergenceRow } from './control.bench.ts';

export interface KubeControlResults {
  readonly convergence: readonly ConvergenceRow[];
  readonly memory: { readonly pods: number; readonly policies: number; readonly beforeMB: number; readonly afterMB: number; readonly kbPerPod: number; readonly settleMs: number };
  readonly targets: ReadonlyArray<{ readonly target: string; readonly measured: string; readonly met: boolean }>;
}

const pod = (name: string, ns: string, ip: string, sa: string, app: string, port: number): KubeObject => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns, labels: { app } },
  spec: { serviceAccountName: sa, containers: [{ name: 'app', ports: [{ name: 'http', containerPort: port }] }] }, status: { phase: 'Running', podIP: ip },
});

export async function benchControlKube(opts: { readonly quick: boolean; readonly log: (line: string) => void; readonly root: string }): Promise<KubeControlResults> {
  const { log, quick } = opts;
  const sizes = quick ? [1, 50, 200] : [1, 100, 1_000];
  const changes = quick ? 3 : 5;
  const [bulkPods, bulkPolicies] = quick ? [1_000, 100] : [10_000, 1_000];
  const dir = mkdtempSync(join(tmpdir(), 'rampart-bench-control-kube-'));
  const api = new KubeApiServer();
  let cp: ChildProcess | undefined;
  const clients: ControlPlaneClient[] = [];
  try {
    await api.listen();
    api.addUser('bench', { username: 'system:serviceaccount:istio-system:rampart', allow: ['*'] });
    for (let i = 0; i < WORKLOADS; i++) {
      api.put(pod(`w${i}`, 'default', `127.0.0.${i + 2}`, `w${i}`, `w${i}`, 18000 + i));
      api.put(parse(policy(i, 0)) as KubeObject);
    }
    const material = await createSelfSignedCa({ trustDomain: 'cluster.local' });
    const ca = new CertificateAuthority(material, { trustDomain: 'cluster.local' });
    await writeCaDir(join(dir, 'ca'), material, false);
    writeFileSync(join(dir, 'kubeconfig'), api.kubeconfig('bench'));
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const cli = join(opts.root, '.bench-out', 'src', 'cli', 'bin.js');
    const out = openSync(join(dir, 'control-plane.log'), 'w');
    cp = spawn(process.execPath, [cli, 'control-plane', '--kubernetes', '--kubeconfig', join(dir, 'kubeconfig'), '--ca', join(dir, 'ca'), '--port', String(port), '--admin-port', '0'], { stdio: ['ignore', out, out] });
    await waitFor('the control plane', () => /"event":"ready"/.test(readFileSync(join(dir, 'control-plane.log'), 'utf8')), 30_000);
    const pid = cp.pid!;
    const idle = procStat(pid);
    const url = `https://127.0.0.1:${port}`;
    const { rows: convergence } = await measureConvergence({ url, ca, pid, idleRssMB: idle.rssMB, sizes, changes, clients, log, label: 'kubernetes, ',
      change: (c, next) => api.put(parse(policy(c % WORKLOADS, next)) as KubeObject) });
    for (const c of clients) c.stop();
    clients.length = 0;
    await new Promise((r) => setTimeout(r, 500));

    // Memory: a large cluster's Pods and policies, and the control plane's RSS once it has built that state.
    const before = procStat(pid).rssMB;
    const t0 = Date.now();
    for (let i = 0; i < bulkPods; i++) api.put(pod(`p${i}`, `ns${i % 100}`, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, `sa${i % 50}`, `app${i % 200}`, 8080));
    for (let i = 0; i < bulkPolicies; i++) {
      api.put({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: `p${i}`, namespace: `ns${i % 100}` },
        spec: { selector: { matchLabels: { app: `app${i % 200}` } }, rules: [{ from: [{ source: { principals: [`cluster.local/ns/ns${i % 100}/sa/sa${i % 50}`] } }], to: [{ operation: { methods: ['GET'], paths: [`/api/${i}/*`] } }] }] } });
    }
    const logFile = join(dir, 'control-plane.log');
    const want = WORKLOADS + bulkPods;
    await waitFor('the large cluster built', () => new RegExp(`"resources":${WORKLOADS + bulkPolicies},"workloads":${want}`).test(readFileSync(logFile, 'utf8')), 120_000);
    const settleMs = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 1_000));
    const after = procStat(pid).rssMB;
    const memory = { pods: bulkPods, policies: bulkPolicies, beforeMB: before, afterMB: after, kbPerPod: ((after - before) * 1024) / bulkPods, settleMs };
    log(`  kubernetes, ${bulkPods} pods and ${bulkPolicies} policies: RSS ${before.toFixed(1)} → ${after.toFixed(1)} MB (${memory.kbPerPod.toFixed(1)} KB per pod), built in ${settleMs} ms`);
    const largest = convergence[convergence.length - 1]!;
    return {
      convergence, memory,
      targets: [{ target: `Kubernetes source: ${largest.proxies} proxies converged at p99 < ${TARGET_CONVERGE_P99_MS} ms after a change at the API server`, measured: `p99 ${largest.p99Ms} ms (p50 ${largest.p50Ms} ms, slowest ${largest.allAckedMs} ms)`, met: largest.p99Ms < TARGET_CONVERGE_P99_MS }],
    };
  } finally {
    for (const c of clients) c.stop();
    if (cp !== undefined && cp.exitCode !== null) log(`control bench: the control plane exited (${cp.exitCode}); its log: ${readFileSync(join(dir, 'control-plane.log'), 'utf8').slice(-2000)}`);
    cp?.kill('SIGTERM');
    await api.close();
    await new Promise((r) => setTimeout(r, 200));
    rmSync(dir, { recursive: true, force: true });
  }
}

export function controlKubeReport(r: KubeControlResults): string {
  const rows = r.convergence.map((c) => `  ${String(c.proxies).padStart(5)} proxies: p50 ${c.p50Ms} ms, p99 ${c.p99Ms} ms, all ACKed ${c.allAckedMs} ms, CPU ${c.cpuMsPerChange.toFixed(0)} ms per change`).join('\n');
  const m = r.memory;
  return `\nControl plane on Kubernetes: an AuthorizationPolicy changed at the API server, time to each simulated proxy's ACK\n${rows}\n` +
    `  ${m.pods} pods and ${m.policies} policies added: RSS ${m.beforeMB.toFixed(1)} → ${m.afterMB.toFixed(1)} MB, ${m.kbPerPod.toFixed(1)} KB per pod; built ${m.settleMs} ms after the last write began\n` +
    `${r.targets.map((t) => `${t.met ? 'met    ' : 'MISSED '} ${t.target}: ${t.measured}`).join('\n')}\n`;
}
