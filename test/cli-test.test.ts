import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'src', 'cli', 'bin.ts');
const SUITES = join(ROOT, 'examples', 'policy-tests');
const JWKS = `https://issuer.rampart.example=${join(SUITES, 'issuer-jwks.json')}`;

/** A scratch directory for one test, removed whatever the test does. */
function withTempDir(prefix: string, body: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  try {
    body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function rampart(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('rampart test: the example suites pass against the seed mesh, the quick start and istio.io Bookinfo', () => {
  const seed = rampart(['test', join(SUITES, 'seed.test.yaml'), '-c', join(ROOT, 'examples', 'mesh'), '--jwks', JWKS]);
  assert.equal(seed.code, 0, seed.stdout + seed.stderr);
  assert.match(seed.stdout, /✔ guest with a valid token gets in by the JWT rule {2}ALLOW 200 default\/require-jwt-or-mtls rule 1/);
  assert.match(seed.stdout, /7 case\(s\) in 1 file\(s\): 7 passed, 0 failed/);
  const qs = rampart(['test', join(SUITES, 'quickstart.test.yaml'), '-c', join(ROOT, 'examples', 'quickstart', 'policies.yaml')]);
  assert.equal(qs.code, 0, qs.stdout + qs.stderr);
  const bi = rampart(['test', join(SUITES, 'bookinfo.test.yaml'), '-c', join(SUITES, 'bookinfo')]);
  assert.equal(bi.code, 0, bi.stdout + bi.stderr);
  assert.match(bi.stdout, /8 passed, 0 failed/);
});

test('rampart test: keys are never fetched; a token then gets 401 and the output says why', () => {
  const r = rampart(['test', join(SUITES, 'seed.test.yaml'), '-c', join(ROOT, 'examples', 'mesh')]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /✖ guest with a valid token gets in by the JWT rule/);
  assert.match(r.stdout, /status: expected 200, got 401/);
  assert.match(r.stderr, /keys at http:\/\/127\.0\.0\.1:15180\/\.well-known\/jwks\.json were not fetched/);
});

test('rampart test: a failing case names its line, what differs and the explanation; --junit and --json agree', () => {
  withTempDir('rampart-suite-', (dir) => {
  const suite = join(dir, 'wrong.test.yaml');
  writeFileSync(suite, [
    'now: 2026-12-01T00:30:00Z',
    'cases:',
    '- name: sleep reaches /admin',
    '  request:',
    '    source: {workload: default/sleep}',
    '    destination: {workload: default/httpbin}',
    '    http: {method: GET, host: "httpbin.default:8000", path: /admin}',
    '  expect: ALLOW',
    '- name: the expired token is still valid at now',
    '  request:',
    '    source: {workload: default/guest}',
    '    destination: {workload: default/httpbin}',
    `    http: {method: GET, host: "httpbin.default:8000", path: /ip, headers: {authorization: "Bearer ${/Bearer (\S+)"\}\}\n  expect: \{decision: DENY, status: 401/.exec(readFileSync(join(SUITES, 'seed.test.yaml'), 'utf8'))![1]}"}}`,
    '  expect: ALLOW',
    '',
  ].join('\n'));
  const junit = join(dir, 'junit.xml');
  const r = rampart(['test', suite, '-c', join(ROOT, 'examples', 'mesh'), '--jwks', JWKS, '--junit', junit]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`✖ sleep reaches /admin {2}\\(${suite.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3\\)`));
  assert.match(r.stdout, /decision: expected ALLOW, got DENY/);
  assert.match(r.stdout, /│ DENY \(403\)/);
  assert.match(r.stdout, /│ {3}decided by: default\/deny-admin rule 0/);
  assert.match(r.stdout, /✔ the expired token is still valid at now/, 'the suite\'s now decides token times');
  assert.match(r.stdout, /2 case\(s\) in 1 file\(s\): 1 passed, 1 failed/);
  const xml = readFileSync(junit, 'utf8');
  assert.match(xml, /<testsuites name="rampart test" tests="2" failures="1">/);
  assert.match(xml, /<testcase name="sleep reaches \/admin"[^>]* line="3">\s*<failure message="decision: expected ALLOW, got DENY/);
  const j = rampart(['test', suite, '-c', join(ROOT, 'examples', 'mesh'), '--jwks', JWKS, '--json']);
  const out = JSON.parse(j.stdout) as { passed: number; failed: number; suites: { cases: { passed: boolean; decision: { policy: string } }[] }[] };
  assert.deepEqual([out.passed, out.failed], [1, 1]);
  assert.equal(out.suites[0]!.cases[0]!.decision.policy, 'default/deny-admin');
  });
});

test('rampart test --diff: a policy change that widens access is listed case by case', () => {
  withTempDir('rampart-diff-', (dir) => {
  const before = join(dir, 'before');
  const after = join(dir, 'after');
  cpSync(join(ROOT, 'examples', 'mesh'), before, { recursive: true });
  cpSync(join(ROOT, 'examples', 'mesh'), after, { recursive: true });
  const p = join(after, 'policies.yaml');
  // The change under review: guest joins the allowed principals.
  writeFileSync(p, readFileSync(p, 'utf8').replace('principals: ["cluster.local/ns/default/sa/my-service-account"]', 'principals: ["cluster.local/ns/default/sa/my-service-account", "cluster.local/ns/default/sa/guest"]'));
  const same = rampart(['test', join(SUITES, 'seed.test.yaml'), '--diff', before, before, '--jwks', JWKS]);
  assert.equal(same.code, 0, same.stdout + same.stderr);
  assert.match(same.stdout, /0 of 7 decision\(s\) change/);
  const r = rampart(['test', join(SUITES, 'seed.test.yaml'), '--diff', before, after, '--jwks', JWKS]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /2 of 7 decision\(s\) change\n {2}1 widen access, 0 narrow it, 1 decided otherwise/);
  // The token holder is still allowed, now by the first rule: the same outcome, decided otherwise.
  assert.match(r.stdout, /MOVES {3}guest with a valid token gets in by the JWT rule/);
  assert.match(r.stdout, /WIDENS {2}guest without a token matches no ALLOW rule/);
  assert.match(r.stdout, /before: DENY 403 {2}/);
  assert.match(r.stdout, /after: {2}ALLOW 200 default\/require-jwt-or-mtls rule 0/);
  });
});

test('rampart test: bad suites and configurations decide nothing (exit 2, file and line)', () => {
  withTempDir('rampart-bad-', (dir) => {
  const suite = join(dir, 'bad.test.yaml');
  writeFileSync(suite, '- name: a\n  request:\n    source: {workload: default/nobody}\n    destination: {workload: default/httpbin}\n  expect: ALLOW\n- name: b\n  request: {destination: {namespace: default}}\n');
  const r = rampart(['test', suite, '-c', join(ROOT, 'examples', 'mesh')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /bad\.test\.yaml:3.*no workload "default\/nobody" in the mesh file/);
  assert.match(r.stderr, /bad\.test\.yaml:6.*a case needs `expect`/);
  assert.equal(r.stdout, '');
  const bare = rampart(['test', suite]);
  assert.equal(bare.code, 2);
  assert.match(bare.stderr, /-c PATH\.\.\. or --diff OLD NEW/);
  });
});
