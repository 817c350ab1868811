/**
 * Durations written the way Go's time.ParseDuration (and the CEL `duration()` used by Istio's CRDs) reads them:
 * an optional sign, then one or more `<decimal><unit>` parts, e.g. `5s`, `1.5s`, `100ms`, `1m30s`. Units are
 * ns, us (µs, μs), ms, s, m, h. A bare `0` is allowed.
 */

const NANOS_PER_UNIT: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  'µs': 1_000n, // U+00B5 micro sign
  'μs': 1_000n, // U+03BC Greek mu
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

/** Go durations are int64 nanoseconds. */
const MAX_NANOS = (1n << 63n) - 1n;

export const NANOS_PER_MILLISECOND = 1_000_000n;

/** Nanoseconds, or `undefined` when `text` is not a Go duration (or overflows int64 as Go's parser does). */
export function parseGoDuration(text: string): bigint | undefined {
  let rest = text;
  let negative = false;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    negative = rest.startsWith('-');
    rest = rest.slice(1);
  }
  if (rest === '0') return 0n;
  if (rest === '') return undefined;
  let total = 0n;
  while (rest !== '') {
    const m = /^([0-9]*)(?:\.([0-9]*))?/.exec(rest);
    const whole = m?.[1] ?? '';
    const frac = m?.[2] ?? '';
    if (whole === '' && frac === '') return undefined;
    rest = rest.slice(m?.[0].length ?? 0);
    // Like Go, the unit is everything up to the next digit or dot.
    const unitMatch = /^[^0-9.]+/.exec(rest);
    if (unitMatch === null) return undefined;
    const unit = NANOS_PER_UNIT[unitMatch[0]];
    if (unit === undefined) return undefined;
    rest = rest.slice(unitMatch[0].length);
    let part = BigInt(whole === '' ? '0' : whole) * unit;
    if (frac !== '') part += (BigInt(frac) * unit) / 10n ** BigInt(frac.length);
    total += part;
    if (total > MAX_NANOS) return undefined;
  }
  return negative ? -total : total;
}
