import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyze } from '../src/policy/analyze.ts';
import { loadResources } from '../src/resources/load.ts';
import { DEFAULT_MESH } from '../src/resources/mesh-config.ts';
import { ap, docs, ra } from './support/yaml.ts';

const RA = ra('jwt', { selector: { matchLabels: { app: 'httpbin' } }, jwtRules: [{ issuer: 'https://a.example', jwksUri: 'https://a.example/jwks' }] });
const sel = { matchLabels: { app: 'httpbin' } };

function optional(yaml: string, workloads?: Array<{ namespace: string; labels: Record<string, string> }>): boolean {
  const loaded = loadResources([{ file: 'p.yaml', text: yaml }]);
  assert.deepEqual(loaded.diagnostics.filter((d) => d.severity === 'error'), []);
  return analyze(loaded.resources, DEFAULT_MESH, workloads).some((d) => d.code === 'WARN_JWT_OPTIONAL');
}

// The classic trap: a RequestAuthentication alone refuses bad tokens but lets requests without one through.
const rows: Array<[string, string, boolean]> = [
  ['RequestAuthentication alone', RA, true],
  ['ALLOW requiring requestPrincipals on the same workload', docs(RA, ap('need', { selector: sel, rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] })), false],
  ['DENY notRequestPrincipals, namespace-wide', docs(RA, ap('deny', { action: 'DENY', rules: [{ from: [{ source: { notRequestPrincipals: ['*'] } }] }] })), false],
  ['ALLOW with a token rule and a path rule (tokens considered, optional on purpose)', docs(RA, ap('mixed', { selector: sel, rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }, { to: [{ operation: { paths: ['/healthz'] } }] }] })), false],
  ['ALLOW that never mentions tokens', docs(RA, ap('paths', { selector: sel, rules: [{ to: [{ operation: { paths: ['/healthz'] } }] }] })), true],
  ['a when condition on request.auth.claims counts', docs(RA, ap('claims', { selector: sel, rules: [{ when: [{ key: 'request.auth.claims[group]', values: ['dev'] }] }] })), false],
  ['requiring policy on another workload', docs(RA, ap('other', { selector: { matchLabels: { app: 'other' } }, rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] })), true],
  ['requiring policy in another namespace', docs(RA, ap('elsewhere', { rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] }, 'bar')), true],
  ['requiring policy mesh-wide in the root namespace', docs(RA, ap('mesh', { rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] }, 'istio-system')), false],
];
for (const [name, yaml, warned] of rows) {
  test(`WARN_JWT_OPTIONAL: ${name} → ${warned ? 'warning' : 'no warning'}`, () => {
    assert.equal(optional(yaml), warned);
  });
}

test('WARN_JWT_OPTIONAL with known workloads: warns when any selected workload is left unprotected', () => {
  const need = ap('need', { selector: { matchLabels: { app: 'httpbin', version: 'v1' } }, rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] });
  const v1 = { namespace: 'foo', labels: { app: 'httpbin', version: 'v1' } };
  const v2 = { namespace: 'foo', labels: { app: 'httpbin', version: 'v2' } };
  assert.equal(optional(docs(RA, need), [v1]), false);
  assert.equal(optional(docs(RA, need), [v1, v2]), true);
});
