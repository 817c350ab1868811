/**
 * `npm run bench`: decisions for one workload with ten applicable AuthorizationPolicies, in meshes of 10, 1,000 and
 * 100,000 policies, and the cost of loading and compiling those meshes. Three phases: the 10-policy mesh alone in
 * the process (a small sidecar's heap); then every mesh loaded and measured round-robin, without the trace and then
 * with it (see benchDecide on why the trace comes last). Prints tables, ratios and the targets, and writes
 * bench/results/latest.json. `--quick` runs meshes of up to 10,000 policies with short rounds: a smoke test, not
 * numbers to quote. The source measured is named by `git rev-parse HEAD` plus the uncommitted files under src/, or
 * by RAMPART_BENCH_SOURCE when the tree is not a git checkout (e.g. a `git archive` export).
 * After the policy phases, with the meshes released, the workload-identity suite runs (bench/identity.bench.ts:
 * SVID issuance, mTLS handshakes, the SPIFFE checks). `--only identity` runs that suite alone and writes
 * bench/results/identity.json (identity-quick.json with --quick); `--only policy` leaves it out.
 * The JWT suite (bench/jwt.bench.ts: verifications per second with and without the cache, against bare jose and
 * the raw signature check) runs after identity; `--only jwt` runs it alone and writes bench/results/jwt.json
 * (jwt-quick.json with --quick).
 * The data-path suite (bench/proxy.bench.ts: two sidecars against direct and an nginx pair, with wrk) runs last;
 * `--only proxy` runs it alone and writes bench/results/proxy.json. It needs wrk (and nginx for its peer lines).
 * The control-plane suite (bench/control.bench.ts, and bench/control-kube.bench.ts for the Kubernetes source: push convergence to 1, 100 and 1,000 simulated proxies, memory
 * per proxy, SVID signing over the network) runs after it; `--only control` runs it alone (bench/results/control.json).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ipMatchingAvailable } from './fixtures.ts';
import { benchIdentity, identityReport, type IdentityResults } from './identity.bench.ts';
import { benchJwt, jwtReport, type JwtResults } from './jwt.bench.ts';
import { benchProxy, proxyReport, type ProxyResults } from './proxy.bench.ts';
import { benchControl, controlReport, type ControlResults } from './control.bench.ts';
import { benchControlKube, controlKubeReport } from './control-kube.bench.ts';
import {
  benchDecide, machineProbe, PATH_LABELS, type BaselineMeasurement, type DecideHeap, type DecideMeasurement, type DecidePath, type DecideTarget,
} from './policy-decide.bench.ts';
import { loadMesh, type LoadedMesh } from './policy-load.bench.ts';
import type { TimingOptions } from './timing.ts';

const quick = process.argv.includes('--quick');
const only = onlyArgument();
const SIZES = quick ? [10, 1_000, 10_000] : [10, 1_000, 100_000];
const TIMING: TimingOptions = quick ? { warmupMs: 50, roundMs: 40, rounds: 3 } : { warmupMs: 250, roundMs: 100, rounds: 8 };

const TARGET_DECISIONS_PER_SEC = 1_000_000;
const TARGET_MESH_RATIO = 1.2;
const TARGET_LOAD_MS = 10_000;

const started = process.hrtime.bigint();
const loadAverageAtStart = os.loadavg()[0]!;
const compiled = import.meta.url.includes('/.bench-out/');
const log = (line: string): void => void process.stderr.write(`${line}\n`);

/** The package root: run.ts runs from bench/ (tsx) or from .bench-out/bench/ (compiled). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found above the benchmark');
    dir = up;
  }
  return dir;
}

/** Which source was measured: the commit, and the files under src/ that differ from it. */
function sourceState(): string {
  const given = process.env['RAMPART_BENCH_SOURCE'];
  if (given !== undefined && given !== '') return given;
  const git = (...args: string[]): string => execFileSync('git', ['-C', packageRoot(), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const head = git('rev-parse', '--short', 'HEAD').trim();
    const dirty = git('status', '--porcelain', '--', 'src').split('\n').filter((l) => l !== '').map((l) => l.slice(3));
    return dirty.length === 0 ? `${head} (src clean)` : `${head} + uncommitted ${dirty.join(', ')}`;
  } catch {
    return 'unknown (not a git checkout; set RAMPART_BENCH_SOURCE)';
  }
}
const source = sourceState();

/** `--only policy|identity|jwt` (or `--only=…`): one suite instead of all. */
function onlyArgument(): 'policy' | 'identity' | 'jwt' | 'proxy' | 'control' | undefined {
  const i = process.argv.findIndex((a) => a === '--only' || a.startsWith('--only='));
  if (i < 0) return undefined;
  const arg = process.argv[i]!;
  const value = arg === '--only' ? process.argv[i + 1] : arg.slice('--only='.length);
  if (value !== 'policy' && value !== 'identity' && value !== 'jwt' && value !== 'proxy' && value !== 'control') {
    throw new Error(`--only takes "policy", "identity", "jwt", "proxy" or "control", not ${JSON.stringify(value)}`);
  }
  return value;
}

/** What every results file says about the run. */
function runInfo(): Record<string, unknown> {
  return {
    date: new Date().toISOString(),
    quick,
    ...(only === undefined ? {} : { only }),
    source,
    node: process.version,
    v8: process.versions.v8,
    cores: os.availableParallelism(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    execArgv: process.execArgv,
    runner: compiled ? 'compiled (tsc to .bench-out)' : 'tsx',
    /** 1-minute load average: other work on the machine moves absolute numbers, not same-group ratios. */
    loadAverage: { start: loadAverageAtStart, end: os.loadavg()[0]! },
  };
}

function writeResults(file: string, result: Record<string, unknown>): void {
  const elapsedS = Number(process.hrtime.bigint() - started) / 1e9;
  const out = join(packageRoot(), 'bench', 'results', file);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ ...result, elapsedSeconds: elapsedS }, null, 2)}\n`);
  log(`\nwrote ${out} (${fixed(elapsedS, 1)} s in all; load average ${fixed(loadAverageAtStart, 2)} at start, ${fixed(os.loadavg()[0]!, 2)} at end)`);
}

async function runIdentity(): Promise<IdentityResults> {
  const identity = await benchIdentity({ quick, log });
  process.stdout.write(identityReport(identity, quick));
  return identity;
}

async function runProxy(): Promise<ProxyResults> {
  const proxy = await benchProxy({ quick, log, root: packageRoot() });
  process.stdout.write(proxyReport(proxy, quick));
  return proxy;
}

async function runControl(): Promise<ControlResults> {
  log('control plane: convergence, memory per proxy, signing');
  const control = await benchControl({ quick, log, root: packageRoot() });
  process.stdout.write(controlReport(control, quick));
  log('control plane on Kubernetes: convergence from the API server, memory with a large cluster');
  const kube = await benchControlKube({ quick, log, root: packageRoot() });
  process.stdout.write(controlKubeReport(kube));
  return { ...control, kubernetes: kube, targets: [...control.targets, ...kube.targets] } as ControlResults;
}

async function runJwt(): Promise<JwtResults> {
  const jwt = await benchJwt({ quick, log });
  process.stdout.write(jwtReport(jwt, quick));
  return jwt;
}

// ---------------------------------------------------------------- formatting

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const fixed = (n: number, digits: number): string => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const ms = (n: number | undefined): string => (n === undefined ? '-' : `${int(n)} ms`);
const ratio = (n: number): string => `${fixed(n, n < 10 ? 2 : 1)}×`;
const nsText = (n: number): string => fixed(n, n < 100 ? 1 : 0);

function table(head: readonly string[], rows: readonly (readonly string[])[], rightFrom = 1): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i >= rightFrom ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function section(title: string, body: string): void {
  process.stdout.write(`\n${title}\n${body}\n`);
}

// ---------------------------------------------------------------- run

const ipBlocks = ipMatchingAvailable();
process.stdout.write(
  `Rampart ${only === undefined ? 'policy, identity, JWT, data-path and control-plane' : only === 'jwt' ? 'JWT' : only} benchmarks${quick ? ' (--quick)' : ''}: ${new Date().toISOString().slice(0, 10)}, node ${process.version}, ` +
    `${os.availableParallelism()} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), ${compiled ? 'compiled with tsc' : 'run through tsx'}, ` +
    `load average ${fixed(loadAverageAtStart, 2)}; ipBlocks ${ipBlocks ? 'included' : 'LEFT OUT (src/match/cidr.ts is a stub)'}\nsource: ${source}\n`,
);

if (only === 'identity') {
  writeResults(quick ? 'identity-quick.json' : 'identity.json', { ...runInfo(), identity: await runIdentity() });
  // The policy phases below are the rest of this module; with --only identity they do not run.
  process.exit(0);
}
if (only === 'proxy') {
  const proxy = await runProxy();
  writeResults(quick ? 'proxy-quick.json' : 'proxy.json', { ...runInfo(), proxy });
  process.exit(0);
}
if (only === 'control') {
  writeResults(quick ? 'control-quick.json' : 'control.json', { ...runInfo(), control: await runControl() });
  process.exit(0);
}
if (only === 'jwt') {
  // Run first: runInfo() reads the load average at the end.
  const jwt = await runJwt();
  writeResults(quick ? 'jwt-quick.json' : 'jwt.json', { ...runInfo(), jwt });
  process.exit(0);
}

const target = (m: LoadedMesh): DecideTarget => ({ size: m.size, engine: m.engine, workloadPolicy: m.workloadPolicy });

// Phase 1: the smallest mesh alone in the process, as in a sidecar holding a small snapshot.
const meshes: LoadedMesh[] = [];
log(`loading a mesh of ${int(SIZES[0]!)} policies…`);
meshes.push(loadMesh(SIZES[0]!, { ipBlocks }, { parseBaseline: false }));
log(`measuring decisions with only the ${int(SIZES[0]!)}-policy mesh in the heap:`);
const alone = benchDecide([target(meshes[0]!)], { heap: 'alone', traces: [false], trivial: true }, TIMING, ipBlocks, log);

// Phase 2: every mesh loaded, measured round-robin, with a control copy of the smallest. The load timings are
// one-shot, so the machine's speed is probed before and after them.
const probeBefore = machineProbe(meshes[0]!.engine, ipBlocks);
for (const size of SIZES.slice(1)) {
  log(`loading a mesh of ${int(size)} policies…`);
  meshes.push(loadMesh(size, { ipBlocks }, { parseBaseline: size === SIZES[SIZES.length - 1] }));
}
const probeAfter = machineProbe(meshes[0]!.engine, ipBlocks);
log(`loading a second copy of the ${int(SIZES[0]!)}-policy mesh (control)…`);
const control = loadMesh(SIZES[0]!, { ipBlocks }, { parseBaseline: false });
log('measuring decisions with every mesh in the heap, round-robin:');
const shared = benchDecide(meshes.map(target), { heap: 'shared', traces: [false], trivial: false, control: target(control) }, TIMING, ipBlocks, log);

// Phase 3: the same with the trace.
log('measuring decisions with the trace:');
const traced = benchDecide(meshes.map(target), { heap: 'shared', traces: [true], trivial: false }, TIMING, ipBlocks, log);

const decisions = [...alone.decisions, ...shared.decisions, ...traced.decisions];
const baselines = [...alone.baselines, ...shared.baselines, ...traced.baselines];

// ---------------------------------------------------------------- report

const small = SIZES[0]!;
const large = SIZES[SIZES.length - 1]!;
const paths: readonly DecidePath[] = ['workload', 'engine', 'raw'];
const last = meshes[meshes.length - 1]!.phases;
const mid = meshes[1]!.phases;
const find = (mesh: number, path: DecidePath, trace: boolean, heap: DecideHeap): DecideMeasurement => {
  const m = decisions.find((d) => d.mesh === mesh && d.path === path && d.trace === trace && d.heap === heap);
  if (m === undefined) throw new Error(`missing measurement ${path}/${trace}/${mesh}/${heap}`);
  return m;
};
const baseline = (name: BaselineMeasurement['name']): BaselineMeasurement => {
  const b = baselines.find((x) => x.name === name);
  if (b === undefined) throw new Error(`missing baseline ${name}`);
  return b;
};
/** The fastest the machine was during the run, by the hand-written matcher. */
const fastestBaseline = Math.min(...baselines.filter((b) => b.name === 'hand-written-matcher').map((b) => b.nsPerOp));

section(
  `Loading and compiling (one cold run each)`,
  table(
    [
      'mesh', 'namespaces', 'workloads', 'YAML', 'generate*', 'js-yaml only†', 'loadResources', 'new Engine', 'compile policies',
      'matchers', 'load+compile', 'workload views', 'total', 'heap',
    ],
    meshes.map(({ phases: p }) => [
      int(p.policies), int(p.namespaces), int(p.workloads), `${fixed(p.textMB, 1)} MB`, ms(p.generateMs), ms(p.parseOnlyMs),
      ms(p.loadResourcesMs), ms(p.engineMs), ms(p.compilePoliciesMs), ms(p.buildMatchersMs), ms(p.loadAndCompileMs), ms(p.workloadViewsMs),
      ms(p.totalMs), p.heapMB === undefined ? '-' : `${int(p.heapMB)} MB`,
    ]),
  ) +
    '\n* not part of loading.  † baseline: js-yaml loadAll of the same text, no validation.' +
    '\ncompile policies: compiledPolicy(p, HTTP) and (p, TCP) for every policy (what the engine compiles eagerly);' +
    '\nmatchers: every rule of both forms evaluated once, building the matchers the engine defers to first use;' +
    '\nload+compile = loadResources + new Engine + compile policies + matchers: every policy fully compiled;' +
    '\ntotal adds engine.workload() for every distinct (namespace, selector) of the mesh.' +
    '\nheap: V8 heap used after a full GC, the meshes loaded before still alive.' +
    `\nmachine probe (hand-written matcher) before the loads: ${nsText(probeBefore)} ns, after: ${nsText(probeAfter)} ns` +
    ' (~400 ns when the machine is quiet; higher means the timings above are inflated).',
);

const rows: string[][] = [];
for (const m of decisions) {
  rows.push([
    PATH_LABELS[m.path], m.trace ? 'on' : 'off', int(m.mesh), m.heap, int(m.opsPerSec), nsText(m.nsPerOp), nsText(m.bestNsPerOp),
    ratio(m.relative), `${fixed(100 * m.spread, 0)}%`,
  ]);
}
for (const b of baselines.filter((x) => x.name !== 'hand-written-matcher')) {
  rows.push([
    `baseline: ${b.name}`, '', b.name === 'control-copy' ? int(small) : '', b.heap, int(b.opsPerSec), nsText(b.nsPerOp), nsText(b.bestNsPerOp),
    ratio(b.relative), `${fixed(100 * b.spread, 0)}%`,
  ]);
}
section(
  `Decisions for one workload with 10 applicable policies (median of ${TIMING.rounds} rounds of ${TIMING.roundMs} ms after ${TIMING.warmupMs} ms warm-up)`,
  table(['entry point', 'trace', 'mesh', 'heap', 'decisions/s', 'ns/decision', 'best round', '× hand-written', 'spread'], rows, 2) +
    `\nheap alone: before any larger mesh was loaded (~${int(meshes[0]!.phases.heapMB ?? 0)} MB); shared: every mesh loaded` +
    ` (~${int(last.heapMB ?? 0)} MB), meshes round-robin.` +
    '\n× hand-written: ns/decision over the hand-written matcher measured in the same group (machine-speed independent).' +
    '\nspread: (slowest - fastest round) / median.',
);
section(
  'Machine-speed probe: the hand-written matcher in each group (it allocates nothing and reads no engine data)',
  table(
    ['group', 'heap', 'ns', 'decisions/s'],
    baselines.filter((b) => b.name === 'hand-written-matcher').map((b) => [b.group, b.heap, nsText(b.nsPerOp), int(b.opsPerSec)]),
    2,
  ),
);

const ratioRows: string[][] = [];
const rel = (size: number, path: DecidePath, trace: boolean, heap: DecideHeap): number => find(size, path, trace, heap).relative;
const abs = (size: number, path: DecidePath, trace: boolean, heap: DecideHeap): number => find(size, path, trace, heap).nsPerOp;
for (const path of paths) {
  ratioRows.push([
    `${int(large)} vs ${int(small)} policies, separate heaps`, PATH_LABELS[path], 'off',
    ratio(rel(large, path, false, 'shared') / rel(small, path, false, 'alone')), `≤ ${TARGET_MESH_RATIO}× (normalized)`,
  ]);
}
for (const trace of [false, true]) {
  for (const path of paths) {
    for (const size of SIZES.slice(1)) {
      ratioRows.push([
        `${int(size)} vs ${int(small)} policies, same heap`, PATH_LABELS[path], trace ? 'on' : 'off',
        ratio(abs(size, path, trace, 'shared') / abs(small, path, trace, 'shared')), '',
      ]);
    }
  }
}
ratioRows.push([
  `control: copy of the ${int(small)}-policy mesh vs first`, PATH_LABELS.workload, 'off',
  ratio(baseline('control-copy').nsPerOp / abs(small, 'workload', false, 'shared')), 'noise floor',
]);
for (const path of paths) {
  ratioRows.push([
    `heap: ${int(small)} policies, shared (${int(last.heapMB ?? 0)} MB) vs alone`, PATH_LABELS[path], 'off',
    ratio(rel(small, path, false, 'shared') / rel(small, path, false, 'alone')), 'normalized',
  ]);
}
for (const path of paths) {
  for (const size of [small, large]) {
    ratioRows.push(['trace vs no trace', PATH_LABELS[path], `mesh ${int(size)}`, ratio(rel(size, path, true, 'shared') / rel(size, path, false, 'shared')), 'normalized']);
  }
}
const hand = baseline('hand-written-matcher').nsPerOp; // first group: workload, alone
const w = rel(small, 'workload', false, 'alone');
const e = rel(small, 'engine', false, 'alone');
const r = rel(small, 'raw', false, 'alone');
ratioRows.push(['workload lookup: engine.decide vs workloadPolicy.decide', 'prepared', `${int(small)}, alone`, ratio(e / w), `+${int((e - w) * hand)} ns`]);
ratioRows.push(['request preparation: raw vs prepared', 'engine.decide', `${int(small)}, alone`, ratio(r / e), `+${int((r - e) * hand)} ns`]);
ratioRows.push(['workloadPolicy.decide vs hand-written matcher', 'no trace', `${int(small)}, alone`, ratio(w), '']);
ratioRows.push([
  'workloadPolicy.decide vs trivial call', 'no trace', `${int(small)}, alone`,
  ratio(abs(small, 'workload', false, 'alone') / baseline('trivial-call').nsPerOp), '',
]);
if (last.parseOnlyMs !== undefined) {
  ratioRows.push(['loadResources vs js-yaml only', '', `${int(large)}`, ratio(last.loadResourcesMs / last.parseOnlyMs), '']);
}
ratioRows.push([
  'load+compile per policy', '', `${int(large)} vs ${int(mid.policies)}`,
  ratio(last.loadAndCompileMs / last.policies / (mid.loadAndCompileMs / mid.policies)), 'linear = 1×',
]);
ratioRows.push([
  'workload views per workload', '', `${int(large)} vs ${int(mid.policies)}`,
  ratio(last.workloadViewsMs / last.workloads / (mid.workloadViewsMs / mid.workloads)), 'linear = 1×',
]);
section(
  'Ratios (of ns per operation; "normalized" compares multiples of each group\'s hand-written matcher)',
  table(['ratio', 'of', 'mesh / heap', 'measured', 'target / note'], ratioRows, 3),
);

interface TargetCheck {
  readonly target: string;
  readonly measured: string;
  readonly met: boolean;
}
const targets: TargetCheck[] = [];
for (const path of paths) {
  const m = find(small, path, false, 'alone');
  targets.push({
    target: `≥ ${int(TARGET_DECISIONS_PER_SEC)} decisions/s, ${PATH_LABELS[path]}, ${small}-policy mesh`,
    measured: `${int(m.opsPerSec)}/s, ${nsText(m.nsPerOp)} ns (${int(1e9 / (m.relative * fastestBaseline))}/s at the run's fastest)`,
    met: m.opsPerSec >= TARGET_DECISIONS_PER_SEC,
  });
}
for (const path of paths) {
  const q = rel(large, path, false, 'shared') / rel(small, path, false, 'alone');
  const same = abs(large, path, false, 'shared') / abs(small, path, false, 'shared');
  targets.push({
    target: `${int(large)} vs ${small} policies ≤ ${TARGET_MESH_RATIO}×, ${PATH_LABELS[path]}`,
    measured: `${ratio(q)} (same heap ${ratio(same)})`,
    met: q <= TARGET_MESH_RATIO,
  });
}
targets.push({
  target: `load + compile every policy of ${int(large)} (matchers included) < ${TARGET_LOAD_MS / 1000} s`,
  measured: `${fixed(last.loadAndCompileMs / 1000, 2)} s (${fixed(last.loadAndEagerCompileMs / 1000, 2)} s before matchers)`,
  met: last.loadAndCompileMs < TARGET_LOAD_MS,
});
targets.push({
  target: `… and every workload view (${int(last.workloads)}) < ${TARGET_LOAD_MS / 1000} s`,
  measured: `${fixed(last.totalMs / 1000, 2)} s`,
  met: last.totalMs < TARGET_LOAD_MS,
});
section(
  quick ? 'Targets (--quick: smaller meshes and short rounds, not comparable)' : 'Targets',
  table(['target', 'measured', ''], targets.map((t) => [t.target, t.measured, t.met ? 'met' : 'MISSED']), 1) +
    "\nat the run's fastest: the same multiple of the hand-written matcher at its fastest group, i.e. on a quiet machine.",
);

// ---------------------------------------------------------------- identity

// The meshes are released first (their load phases are kept for the JSON): the identity suite runs in a small heap.
const loadPhases = meshes.map((m) => m.phases);
meshes.length = 0;
(globalThis as { gc?: () => void }).gc?.();
const identity = only === 'policy' ? undefined : await runIdentity();
const jwt = only === 'policy' ? undefined : await runJwt();
const proxy = only === 'policy' ? undefined : await runProxy();
const controlPlane = only === 'policy' ? undefined : await runControl();

// ---------------------------------------------------------------- JSON

writeResults(quick ? 'quick.json' : 'latest.json', {
  ...runInfo(),
  ipBlocks,
  timing: TIMING,
  load: loadPhases,
  loadMachineProbeNs: { before: probeBefore, after: probeAfter },
  decisions: decisions.map((m) => ({ entryPoint: PATH_LABELS[m.path], ...m })),
  baselines,
  ratios: ratioRows.map(([name, of, where, measured, note]) => ({ name, of, where, measured, note })),
  targets,
  ...(identity === undefined ? {} : { identity }),
  ...(jwt === undefined ? {} : { jwt }),
  ...(proxy === undefined ? {} : { proxy }),
  ...(controlPlane === undefined ? {} : { control: controlPlane }),
});
