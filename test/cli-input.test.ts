import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PolicyEngine } from '../src/policy/engine.ts';
import { formatDecision } from '../src/policy/explain.ts';
import { parseCheckRequest } from '../src/policy/request.ts';
import { loadResources } from '../src/resources/load.ts';
import { DEFAULT_MESH } from '../src/resources/mesh-config.ts';

/** Small input mistakes get the message about the mistake made, not about a consequence of it. */

const BIN = join(import.meta.dirname, '..', 'src', 'cli', 'bin.ts');
const EX = join(import.meta.dirname, '..', 'examples', 'quickstart');
const rampart = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rampart-input-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('a misspelled option is reported as unknown, before any missing required option, with a suggestion', () => {
  const r = rampart(['check', '--polcy', 'p.yaml', '-r', 'x.json']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^error: unknown option '--polcy'$/m);
  assert.doesNotMatch(r.stderr, /required option/);
  const near = rampart(['check', '-c', join(EX, 'policies.yaml'), '--requst', 'x.json']);
  assert.match(near.stderr, /error: unknown option '--requst'\n\(Did you mean --request\?\)/);
  // Options of the command and values that are "-" (standard input) are not taken for unknown options.
  const ok = rampart(['check', '-c', join(EX, 'policies.yaml'), '-r', join(EX, 'request.json'), '--json']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(rampart(['ca', 'init', join(dir, 'ca'), '--forse']).stderr, /unknown option '--forse'\n\(Did you mean --force\?\)/);
});

test('an unknown field anywhere in a check request is an error with its path and a suggestion', () => {
  const base = { destination: { namespace: 'default', port: 80 }, http: { method: 'GET', path: '/' } };
  const cases: Array<[unknown, RegExp]> = [
    [{ ...base, http: { ...base.http, heders: { a: 'b' } } }, /^http\.heders: unknown field \(did you mean "headers"\?\); expected one of method, host, path, headers$/],
    [{ ...base, destination: { ...base.destination, lables: {} } }, /^destination\.lables: unknown field \(did you mean "labels"\?\)/],
    [{ ...base, source: { principle: 'cluster.local/ns/a/sa/b' } }, /^source\.principle: unknown field \(did you mean "principal"\?\)/],
    [{ ...base, auth: { principal: 'a/b', audience: ['x'] } }, /^auth\.audience: unknown field \(did you mean "audiences"\?\)/],
    [{ ...base, destinaton: {} }, /^destinaton: unknown field \(did you mean "destination"\?\)/],
    [[base, base], /^request: is a list: rampart check decides one request; .*\(rampart test\)$/],
  ];
  for (const [value, expected] of cases) assert.throws(() => parseCheckRequest(value), (e: Error) => expected.test(e.message), JSON.stringify(value));
});

test('rampart check names the file and the misspelled http field', async () => {
  const file = join(dir, 'req.json');
  await writeFile(file, JSON.stringify({ destination: { namespace: 'default', port: 8000 }, http: { method: 'GET', path: '/', heders: {} } }));
  const r = rampart(['check', '-c', join(EX, 'policies.yaml'), '-r', file]);
  assert.equal(r.status, 2);
  assert.equal(r.stderr, `rampart check: ${file}: http.heders: unknown field (did you mean "headers"?); expected one of method, host, path, headers\n`);
});

test('a source.namespaces rule explains itself with the namespace it compared', () => {
  const { resources } = loadResources([{ file: 'p.yaml', text: 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ns, namespace: default}\nspec:\n  rules: [{from: [{source: {namespaces: ["prod"]}}]}]\n' }]);
  const engine = new PolicyEngine(resources, DEFAULT_MESH);
  const d = engine.decide({ destination: { namespace: 'default', labels: {}, port: 80 }, source: { principal: 'cluster.local/ns/default/sa/sleep' }, http: { method: 'GET', path: '/' } }, { trace: true });
  assert.match(formatDecision(d), /from\[0\]\.source\.namespaces: "default" \(of "cluster\.local\/ns\/default\/sa\/sleep"\) not in \["prod"\]/);
  const plain = engine.decide({ destination: { namespace: 'default', labels: {}, port: 80 }, http: { method: 'GET', path: '/' } }, { trace: true });
  assert.match(formatDecision(plain), /source\.namespaces: \(no peer identity: plaintext connection\)/);
});
