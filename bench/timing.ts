/**
 * Timing loops for micro-benchmarks: calibrated batches timed with process.hrtime.bigint, a warm-up, then several
 * bounded rounds whose median is reported. Cases of one group are measured round-robin, so that every case runs
 * under the same JIT and heap state and their ratio is not an artefact of which one ran first.
 */

/**
 * A case runs `n` iterations of the operation in its own loop (so the call site stays monomorphic) and returns how
 * many iterations gave the expected result; anything but `n` is an error. The count also keeps the work observable.
 */
export interface TimedCase {
  readonly id: string;
  readonly loop: (n: number) => number;
}

export interface TimingOptions {
  /** Warm-up per case before any round is measured. */
  readonly warmupMs: number;
  /** Length of one measured round of one case. */
  readonly roundMs: number;
  readonly rounds: number;
}

export interface Measurement {
  readonly id: string;
  /** Median over rounds. */
  readonly nsPerOp: number;
  readonly opsPerSec: number;
  /** ns/op of each round, in order. */
  readonly roundsNsPerOp: readonly number[];
  /** Fastest round: the least disturbed by other work on a shared machine. */
  readonly bestNsPerOp: number;
  /** (max - min) / median over rounds: how noisy the measurement was. */
  readonly spread: number;
  readonly iterations: number;
}

/** Target length of one timed batch: long enough that the clock read is noise, short enough to bound a round. */
const BATCH_NS = 5_000_000n;

function runChecked(c: TimedCase, n: number): bigint {
  const t0 = process.hrtime.bigint();
  const ok = c.loop(n);
  const elapsed = process.hrtime.bigint() - t0;
  if (ok !== n) throw new Error(`benchmark ${c.id}: ${n - ok} of ${n} iterations did not give the expected result`);
  return elapsed;
}

/** Iterations per batch so that one batch takes about BATCH_NS. */
function calibrate(c: TimedCase): number {
  let n = 1;
  for (;;) {
    const t = runChecked(c, n);
    if (t >= BATCH_NS / 4n || n >= 1 << 30) {
      const perOp = Number(t) / n;
      return Math.max(1, Math.round(Number(BATCH_NS) / Math.max(perOp, 0.01)));
    }
    n *= 2;
  }
}

function runFor(c: TimedCase, batch: number, ms: number): { ns: bigint; iterations: number } {
  const budget = BigInt(Math.round(ms * 1e6));
  let ns = 0n;
  let iterations = 0;
  while (ns < budget) {
    ns += runChecked(c, batch);
    iterations += batch;
  }
  return { ns, iterations };
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Measures the cases of one group round-robin and returns one measurement per case, in the given order. */
export function measureGroup(cases: readonly TimedCase[], opts: TimingOptions): Measurement[] {
  const batches = cases.map((c) => {
    runFor(c, calibrate(c), opts.warmupMs);
    // Calibrate again once optimized: the first batch size was set by unoptimized code.
    return calibrate(c);
  });
  const rounds: number[][] = cases.map(() => []);
  const iterations: number[] = cases.map(() => 0);
  for (let r = 0; r < opts.rounds; r++) {
    cases.forEach((c, i) => {
      const { ns, iterations: n } = runFor(c, batches[i]!, opts.roundMs);
      rounds[i]!.push(Number(ns) / n);
      iterations[i]! += n;
    });
  }
  return cases.map((c, i) => {
    const perRound = rounds[i]!;
    const nsPerOp = median(perRound);
    return {
      id: c.id,
      nsPerOp,
      opsPerSec: 1e9 / nsPerOp,
      roundsNsPerOp: perRound,
      bestNsPerOp: Math.min(...perRound),
      spread: (Math.max(...perRound) - Math.min(...perRound)) / nsPerOp,
      iterations: iterations[i]!,
    };
  });
}

/** Wall time of one call, in milliseconds, with its result. */
export function timeOnce<T>(fn: () => T): { ms: number; value: T } {
  const t0 = process.hrtime.bigint();
  const value = fn();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, value };
}

/** A case that runs operations for about `ms` (synchronously or with its own number in flight) and returns how many completed. */
export interface RoundCase {
  readonly id: string;
  readonly run: (ms: number) => number | Promise<number>;
}

/**
 * Round-robin rounds like measureGroup, for cases that time themselves (asynchronous operations, operations in
 * flight): warm-up for each case, then rounds in which every case runs for roundMs in turn; ns/op is wall time per
 * completed operation. `secondWarmup` adds a shorter second warm-up pass, since the first warm-up of a case can
 * deoptimize code that a case before it had optimized.
 */
export async function measureRounds(cases: readonly RoundCase[], opts: TimingOptions, options: { readonly secondWarmup?: boolean } = {}): Promise<Measurement[]> {
  for (const c of cases) await c.run(opts.warmupMs);
  if (options.secondWarmup === true) for (const c of cases) await c.run(opts.warmupMs / 2);
  const rounds: number[][] = cases.map(() => []);
  const iterations = cases.map(() => 0);
  for (let r = 0; r < opts.rounds; r++) {
    for (const [i, c] of cases.entries()) {
      const t0 = process.hrtime.bigint();
      const n = await c.run(opts.roundMs);
      const ns = Number(process.hrtime.bigint() - t0);
      if (n <= 0) throw new Error(`benchmark ${c.id}: nothing completed in a round`);
      rounds[i]!.push(ns / n);
      iterations[i]! += n;
    }
  }
  return cases.map((c, i) => {
    const perRound = rounds[i]!;
    const nsPerOp = median(perRound);
    return {
      id: c.id,
      nsPerOp,
      opsPerSec: 1e9 / nsPerOp,
      roundsNsPerOp: perRound,
      bestNsPerOp: Math.min(...perRound),
      spread: (Math.max(...perRound) - Math.min(...perRound)) / nsPerOp,
      iterations: iterations[i]!,
    };
  });
}
