import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatRemaining } from '../src/cli/duration.ts';

// The two largest units that are not zero: "1d2m" says more than "1d0h", and a time just past a whole day reads
// "2521d7s" (what made an expiry test fail when it ran at midnight).
const rows: Array<[number, string]> = [
  [0, '0s'],
  [42_000, '42s'],
  [60_000, '1m'],
  [3_600_000 + 5_000, '1h5s'],
  [5 * 3_600_000 + 12 * 60_000 + 9_000, '5h12m'],
  [2 * 86_400_000 + 3 * 3_600_000, '2d3h'],
  [86_400_000 + 2 * 60_000, '1d2m'],
  [2521 * 86_400_000 + 7_000, '2521d7s'],
  [-(86_400_000 + 60_000), '-1d1m'],
];

for (const [ms, want] of rows) {
  test(`formatRemaining(${ms}) = ${want}`, () => assert.equal(formatRemaining(ms), want));
}
