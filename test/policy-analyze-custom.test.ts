import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { analyze } from '../src/policy/analyze.ts';
import { PolicyEngine } from '../src/policy/engine.ts';
import { loadResources } from '../src/resources/load.ts';
import { DEFAULT_MESH, parseMeshConfig } from '../src/resources/mesh-config.ts';

/** A CUSTOM policy naming a provider the mesh config lacks: a warning in validate, and the engine denies what it matches. */

const CUSTOM = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: default}
spec:
  action: CUSTOM
  provider:
    name: my-authz
  rules: [{to: [{operation: {paths: ["/x"]}}]}]
`;

const MESH = (name: string, type = 'envoyExtAuthzHttp'): string => `extensionProviders:\n- name: ${name}\n  ${type}: {service: authz.default.svc.cluster.local, port: 8000}\n`;

function warnings(meshText?: string): Array<{ code: string; line: number; path: string; message: string }> {
  const mesh = meshText === undefined ? DEFAULT_MESH : parseMeshConfig(meshText, 'mesh.yaml').mesh;
  const loaded = loadResources([{ file: 'p.yaml', text: CUSTOM }]);
  assert.equal(loaded.resources.length, 1);
  return analyze(loaded.resources, mesh).filter((d) => d.code.startsWith('WARN_CUSTOM')).map((d) => ({ code: d.code, line: d.line, path: d.path, message: d.message }));
}

test('an undefined provider is a warning on its name line, with a suggestion among the defined ones', () => {
  const [w, ...rest] = warnings(MESH('my-authzz'));
  assert.deepEqual(rest, []);
  assert.deepEqual([w!.code, w!.line, w!.path], ['WARN_CUSTOM_PROVIDER_UNDEFINED', 7, 'spec.provider.name']);
  assert.match(w!.message, /provider "my-authz" is not in meshConfig\.extensionProviders \(did you mean "my-authzz"\?\); defined: my-authzz\. istiod turns its rules into DENY rules/);
  assert.match(warnings()[0]!.message, /the mesh config defines no extensionProviders \(validate a mesh directory, or pass --mesh\)/);
});

test('a defined provider is quiet; one of a type the sidecar does not call is a warning too', () => {
  assert.deepEqual(warnings(MESH('my-authz')), []);
  const [w] = warnings(MESH('my-authz', 'envoyExtAuthzGrpc'));
  assert.equal(w!.code, 'WARN_CUSTOM_PROVIDER_UNSUPPORTED');
  assert.match(w!.message, /envoyExtAuthzGrpc; Rampart's sidecar calls envoyExtAuthzHttp providers only, and fails closed \(403\)/);
});

test('what the warning says is what the engine does: a matching request is denied, others are not', () => {
  const loaded = loadResources([{ file: 'p.yaml', text: CUSTOM }]);
  const engine = new PolicyEngine(loaded.resources, parseMeshConfig(MESH('other'), 'mesh.yaml').mesh);
  const req = (path: string) => ({ destination: { namespace: 'default', labels: {}, port: 80 }, source: { principal: 'cluster.local/ns/default/sa/a' }, http: { method: 'GET', host: 'a', path, headers: {} } });
  const denied = engine.decide(req('/x'), { extAuthz: 'allow' });
  assert.equal(denied.decision, 'DENY');
  assert.match(denied.reason, /CUSTOM provider "my-authz" is not defined in meshConfig\.extensionProviders/);
  assert.equal(engine.decide(req('/y'), {}).decision, 'ALLOW');
});

test('rampart validate --mesh prints the warning and still exits 0 (the policy is valid Istio)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rampart-custom-'));
  try {
    await writeFile(join(dir, 'p.yaml'), CUSTOM);
    await writeFile(join(dir, 'mesh-config.yaml'), MESH('my-authzz'));
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '..', 'src', 'cli', 'bin.ts'), 'validate', '--mesh', join(dir, 'mesh-config.yaml'), join(dir, 'p.yaml')], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /p\.yaml:7: warning \(AuthorizationPolicy default\/ext\) spec\.provider\.name: provider "my-authz" is not in meshConfig\.extensionProviders \(did you mean "my-authzz"\?\).*\[WARN_CUSTOM_PROVIDER_UNDEFINED\]/);
    assert.match(r.stdout, /1 resource\(s\) valid, 0 error\(s\), 1 warning\(s\)/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
