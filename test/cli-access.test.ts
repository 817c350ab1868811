import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const BIN = join(import.meta.dirname, '..', 'src', 'cli', 'bin.ts');
const EXAMPLE = join(import.meta.dirname, '..', 'examples', 'mesh');

function rampart(args: string[], input = ''): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', BIN, ...args], { encoding: 'utf8', input, timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Cell { source: string; destination: string; port: number; outcome: string; reason: string; condition?: string }

test('rampart access: the README mesh as a table, every cell explained', () => {
  const r = rampart(['access', EXAMPLE]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^caller {22}default\/httpbin:8000 HTTP$/m);
  assert.match(r.stdout, /^default\/guest {15}denied \[1\]$/m);
  assert.match(r.stdout, /^default\/my-service-account {2}if \[3\]$/m);
  assert.match(r.stdout, /^\[3\] default\/my-service-account → default\/httpbin:8000: allowed when not DENY default\/deny-admin rule 0 \[to\[0\]\.operation\.paths in \["\/admin", "\/admin\/\*"\]\]$/m);
  assert.match(r.stdout, /^\[4\] no mTLS → default\/httpbin:8000: denied: connection refused: the port is STRICT/m);
});

test('rampart access --json agrees with rampart check for each caller of the README mesh', () => {
  const r = rampart(['access', EXAMPLE, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const m = JSON.parse(r.stdout) as { cells: Cell[] };
  assert.equal(m.cells.length, 5);
  const policies = join(EXAMPLE, 'policies.yaml');
  for (const cell of m.cells.filter((c) => c.source !== 'any JWT')) {
    const [ns, sa] = cell.source.split('/');
    const verdict = (path: string): number | null => rampart(['check', '-c', policies, '-r', '-'], JSON.stringify({
      destination: { namespace: 'default', labels: { app: 'httpbin' }, port: cell.port },
      source: sa === undefined ? {} : { principal: `cluster.local/ns/${ns}/sa/${sa}` },
      http: { method: 'GET', path, host: 'httpbin.default:8000' },
    })).code;
    const [headers, admin] = [verdict('/headers'), verdict('/admin')];
    if (cell.outcome === 'denied') assert.deepEqual([headers, admin], [1, 1], cell.source);
    if (cell.outcome === 'allowed') assert.deepEqual([headers, admin], [0, 0], cell.source);
    // The only condition for sleep's identity is the DENY on /admin.
    if (cell.outcome === 'conditional') assert.deepEqual([headers, admin], [0, 1], cell.source);
  }
});

test('rampart access refuses a configuration with errors, naming file and line, and a missing directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-access-'));
  cpSync(EXAMPLE, dir, { recursive: true });
  writeFileSync(join(dir, 'policies.yaml'), readFileSync(join(dir, 'policies.yaml'), 'utf8').replace('action: DENY', 'action: DENNY'));
  const bad = rampart(['access', dir]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /policies\.yaml:\d+: error .*spec\.action/);
  assert.match(bad.stderr, /1 error\(s\) in the configuration; no matrix computed/);
  const missing = rampart(['access', join(dir, 'nope')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^rampart access: /);
});
