import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const BIN = join(import.meta.dirname, '..', 'src', 'cli', 'bin.ts');
const base = ['proxy', '--mesh', 'm.yaml', '-c', 'p.yaml', '--workload', 'default/x', '--ca', 'ca'];

// One row per bad option: the proxy refuses to start (exit 2) and names the option.
const rows: Array<[string[], RegExp]> = [
  [['--upstream', '9001'], /--upstream 9001: write it as LOCALPORT=HOST:PORT/],
  [['--upstream', '70000=reviews:9080'], /--upstream 70000=reviews:9080/],
  [['--outbound-port', 'x'], /--outbound-port: not a port/],
  [['--admin-port', '-1'], /--admin-port: not a port/],
  [['--workers', '0'], /--workers: a whole number from 1 to 64/],
  [['--max-headers', '1.5'], /--max-headers: not a positive whole number/],
  [['--idle-timeout', 'soon'], /--idle-timeout "soon" is not a positive duration/],
  [['--svid-ttl', '-1h'], /--svid-ttl/],
  [['--access-log', 'file'], /--access-log takes stdout or off/],
];

for (const [args, message] of rows) {
  test(`rampart proxy ${args.join(' ')}: exit 2 with the reason`, () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', BIN, ...base, ...args], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, message);
  });
}
