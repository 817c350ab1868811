import { RampartError } from '../errors.ts';
import { parseGoDuration } from '../resources/go-duration.ts';

const DAY_MS = 24 * 3_600_000;

/**
 * A lifetime given on the command line: a Go duration as Istio's settings take (`24h`, `90m`, `1h30m`), or whole
 * days or years (`90d`, `10y`, a year being 365 days) for CA lifetimes Go's syntax makes awkward.
 */
export function parseTtl(text: string, flag: string): number {
  const m = /^(\d+)([dy])$/.exec(text);
  const ms = m !== null ? Number(m[1]) * DAY_MS * (m[2] === 'y' ? 365 : 1) : (() => {
    const nanos = parseGoDuration(text);
    return nanos === undefined ? undefined : Number(nanos / 1_000_000n);
  })();
  if (ms === undefined || !(ms > 0)) {
    throw new RampartError('ERR_DURATION_INVALID', `${flag} "${text}" is not a positive duration; write it like 24h, 90m, 1h30m, 30d or 10y`);
  }
  return ms;
}

/** `2d3h`, `5h12m`, `42s`: the two largest units, for "time left" displays. */
export function formatRemaining(ms: number): string {
  const neg = ms < 0;
  let s = Math.floor(Math.abs(ms) / 1000);
  const units: Array<[string, number]> = [['d', 86_400], ['h', 3_600], ['m', 60], ['s', 1]];
  const parts: string[] = [];
  for (const [u, size] of units) {
    if (s >= size || (u === 's' && parts.length === 0)) {
      parts.push(`${Math.floor(s / size)}${u}`);
      s %= size;
    }
    if (parts.length === 2) break;
  }
  return (neg ? '-' : '') + parts.join('');
}
