/**
 * Decisions per second for BENCH_WORKLOAD (ten applicable AuthorizationPolicies) in meshes of different sizes,
 * through the three entry points a caller has, with and without the explanation trace:
 *
 * - `workload`: `workloadPolicy.decide(prepared)`: the proxy's path; the workload's view is resolved once per
 *   snapshot and the request prepared once per request.
 * - `engine`: `engine.decide(prepared)`: adds the workload-cache lookup (key built from namespace and labels).
 * - `raw`: `engine.decide(checkRequest)`: adds request preparation (headers lower-cased, path split, IPs parsed).
 *
 * Every group (one entry point, trace on or off, all meshes round-robin) also measures the hand-written matcher
 * (baseline-matcher.ts). It allocates nothing and touches no engine data, so it tracks only the speed of the machine
 * at that moment; on the shared 2-core VMs that speed changes by up to 1.8× between minutes. Results are reported
 * as absolute time and as a multiple of that same-group baseline; comparisons across groups use the multiple.
 * The first group of a run may add a loop calling a trivial function, and a control: a second, separately loaded
 * copy of the smallest mesh, whose ratio to the first is the noise floor under the mesh-size ratios.
 */
import type { DecideOptions, PolicyEngine, WorkloadPolicy } from '../src/policy/engine.ts';
import type { Decision } from '../src/policy/decision.ts';
import type { CheckRequest, PreparedRequest } from '../src/policy/request.ts';
import { handWrittenDecision, trivialCheck } from './baseline-matcher.ts';
import { benchRequest, EXPECTED } from './fixtures.ts';
import { measureGroup, type Measurement, type TimedCase, type TimingOptions } from './timing.ts';

export type DecidePath = 'workload' | 'engine' | 'raw';

export const PATH_LABELS: Readonly<Record<DecidePath, string>> = {
  workload: 'workloadPolicy.decide(prepared)',
  engine: 'engine.decide(prepared)',
  raw: 'engine.decide(rawRequest)',
};

export interface DecideTarget {
  readonly size: number;
  readonly engine: PolicyEngine;
  readonly workloadPolicy: WorkloadPolicy;
}

/**
 * `alone`: measured before any larger mesh is loaded, so the heap holds this mesh only, as a sidecar's would.
 * `shared`: measured with every mesh loaded (the largest dominates the heap), meshes round-robin.
 */
export type DecideHeap = 'alone' | 'shared';

export interface DecideMeasurement extends Measurement {
  readonly mesh: number;
  readonly path: DecidePath;
  readonly trace: boolean;
  readonly heap: DecideHeap;
  /** ns/op of the hand-written matcher measured in the same group. */
  readonly baselineNsPerOp: number;
  /** nsPerOp / baselineNsPerOp: cost in units of the hand-written matcher, independent of the machine's speed. */
  readonly relative: number;
}

export type BaselineName = 'trivial-call' | 'hand-written-matcher' | 'control-copy';

export interface BaselineMeasurement extends Measurement {
  readonly name: BaselineName;
  readonly heap: DecideHeap;
  /** The group it ran in, e.g. `workload/no-trace`. */
  readonly group: string;
  readonly relative: number;
}

export interface DecideResults {
  readonly decisions: DecideMeasurement[];
  readonly baselines: BaselineMeasurement[];
}

const TRACE: DecideOptions = Object.freeze({ trace: true });

/**
 * Distinct but equal requests cycled through by every loop, and data passed to the loops as arguments rather than
 * captured: a proxy never sees the same request object twice, and nothing here should let the compiler treat the
 * request or the policies as constants.
 */
export const REQUEST_COPIES = 4;
const COPY_MASK = REQUEST_COPIES - 1; // REQUEST_COPIES is a power of two

function expected(d: Decision, trace: boolean): boolean {
  return d.decision === EXPECTED.decision && d.policy === EXPECTED.policy && d.rule === EXPECTED.rule && (!trace || d.trace.length > 0);
}

// One top-level loop per entry point, so that each call site sees one target method.

function workloadLoop(wp: WorkloadPolicy, reqs: readonly PreparedRequest[], opts: DecideOptions | undefined, n: number): number {
  const trace = opts !== undefined;
  let ok = 0;
  for (let i = 0; i < n; i++) if (expected(wp.decide(reqs[i & COPY_MASK]!, opts), trace)) ok++;
  return ok;
}

function engineLoop(engine: PolicyEngine, reqs: readonly PreparedRequest[], opts: DecideOptions | undefined, n: number): number {
  const trace = opts !== undefined;
  let ok = 0;
  for (let i = 0; i < n; i++) if (expected(engine.decide(reqs[i & COPY_MASK]!, opts), trace)) ok++;
  return ok;
}

function rawLoop(engine: PolicyEngine, reqs: readonly CheckRequest[], opts: DecideOptions | undefined, n: number): number {
  const trace = opts !== undefined;
  let ok = 0;
  for (let i = 0; i < n; i++) if (expected(engine.decide(reqs[i & COPY_MASK]!, opts), trace)) ok++;
  return ok;
}

function trivialLoop(reqs: readonly PreparedRequest[], n: number): number {
  let ok = 0;
  for (let i = 0; i < n; i++) if (trivialCheck(reqs[i & COPY_MASK]!)) ok++;
  return ok;
}

function handWrittenLoop(reqs: readonly PreparedRequest[], ipBlocks: boolean, n: number): number {
  let ok = 0;
  for (let i = 0; i < n; i++) if (handWrittenDecision(reqs[i & COPY_MASK]!, ipBlocks) === 'ALLOW') ok++;
  return ok;
}

function rawCopies(): CheckRequest[] {
  return Array.from({ length: REQUEST_COPIES }, () => benchRequest());
}

function preparedCopies(engine: PolicyEngine): PreparedRequest[] {
  return rawCopies().map((r) => engine.prepare(r));
}

/**
 * The hand-written matcher alone for about half a second: how fast the machine is right now, to read next to
 * numbers that have no same-group baseline (the one-shot load timings). ~400 ns on a quiet machine of ours.
 */
export function machineProbe(engine: PolicyEngine, ipBlocks: boolean): number {
  const reqs = preparedCopies(engine);
  const [m] = measureGroup([{ id: 'hand-written-matcher', loop: (n) => handWrittenLoop(reqs, ipBlocks, n) }], { warmupMs: 100, roundMs: 80, rounds: 5 });
  return m!.nsPerOp;
}

export interface DecideRun {
  /** Labels the results: see DecideHeap. */
  readonly heap: DecideHeap;
  /** Trace settings to measure, in order. */
  readonly traces: readonly boolean[];
  /** Add the trivial-call floor to the first group. */
  readonly trivial: boolean;
  /** Add a second copy of the smallest mesh to the first group. */
  readonly control?: DecideTarget;
}

const caseId = (size: number, path: DecidePath, trace: boolean): string => `${path}/${trace ? 'trace' : 'no-trace'}/${size}`;

/**
 * Runs one group per (trace, path) over the given meshes; within a group the cases are measured round-robin.
 *
 * Order matters to V8: once the trace path has run, `decide` is re-optimized with feedback from both branches, so
 * the runner measures every no-trace group (what a sidecar that never traces runs) before any trace group.
 */
export function benchDecide(
  targets: readonly DecideTarget[],
  run: DecideRun,
  timing: TimingOptions,
  ipBlocks: boolean,
  progress: (line: string) => void,
): DecideResults {
  const raw = rawCopies();
  const prepared = targets.map((t) => preparedCopies(t.engine));
  const baselineReqs = prepared[0]!;
  const controlReqs = run.control === undefined ? undefined : preparedCopies(run.control.engine);
  const decisions: DecideMeasurement[] = [];
  const baselines: BaselineMeasurement[] = [];
  const paths: readonly DecidePath[] = ['workload', 'engine', 'raw'];
  let first = true;
  for (const trace of run.traces) {
    for (const path of paths) {
      const opts = trace ? TRACE : undefined;
      const group = `${path}/${trace ? 'trace' : 'no-trace'}`;
      const cases: TimedCase[] = targets.map((t, i) => {
        const reqs = prepared[i]!;
        const loop = path === 'workload'
          ? (n: number) => workloadLoop(t.workloadPolicy, reqs, opts, n)
          : path === 'engine' ? (n: number) => engineLoop(t.engine, reqs, opts, n) : (n: number) => rawLoop(t.engine, raw, opts, n);
        return { id: caseId(t.size, path, trace), loop };
      });
      cases.push({ id: 'hand-written-matcher', loop: (n) => handWrittenLoop(baselineReqs, ipBlocks, n) });
      if (first && run.trivial) cases.push({ id: 'trivial-call', loop: (n) => trivialLoop(baselineReqs, n) });
      const control = run.control;
      if (first && control !== undefined && controlReqs !== undefined) {
        cases.push({ id: 'control-copy', loop: (n) => workloadLoop(control.workloadPolicy, controlReqs, undefined, n) });
      }
      first = false;
      progress(`  ${PATH_LABELS[path]}${trace ? ' with trace' : ''}: ${cases.map((c) => c.id).join(', ')}`);
      const measured = measureGroup(cases, timing);
      const hand = measured.find((m) => m.id === 'hand-written-matcher')!.nsPerOp;
      for (const m of measured) {
        const target = targets.find((t) => caseId(t.size, path, trace) === m.id);
        if (target === undefined) baselines.push({ ...m, name: m.id as BaselineName, heap: run.heap, group, relative: m.nsPerOp / hand });
        else decisions.push({ ...m, mesh: target.size, path, trace, heap: run.heap, baselineNsPerOp: hand, relative: m.nsPerOp / hand });
      }
    }
  }
  return { decisions, baselines };
}
