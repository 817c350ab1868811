import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadResources } from '../src/resources/load.ts';

test('loads both apiVersions, defaults the namespace, skips other kinds with a notice', () => {
  const text = [
    'apiVersion: security.istio.io/v1',
    'kind: AuthorizationPolicy',
    'metadata: {name: a}',
    'spec: {}',
    '---',
    'apiVersion: security.istio.io/v1beta1',
    'kind: PeerAuthentication',
    'metadata: {name: p, namespace: foo}',
    'spec: {mtls: {mode: STRICT}}',
    '---',
    'apiVersion: v1',
    'kind: Service',
    'metadata: {name: s}',
  ].join('\n');
  const { resources, diagnostics } = loadResources([{ file: 'a.yaml', text }]);
  assert.deepEqual(resources.map((r) => `${r.kind} ${r.meta.namespace}/${r.meta.name}`), [
    'AuthorizationPolicy default/a',
    'PeerAuthentication foo/p',
  ]);
  assert.equal(diagnostics.length, 1);
  assert.equal(diagnostics[0]!.severity, 'notice');
  assert.equal(diagnostics[0]!.line, 11);
});

test('an unknown field is an error with file, line and path; other documents still load', () => {
  const text = [
    'apiVersion: security.istio.io/v1',
    'kind: AuthorizationPolicy',
    'metadata: {name: bad}',
    'spec:',
    '  rules:',
    '  - from:',
    '    - source:',
    '        principal: ["x"]',
    '---',
    'apiVersion: security.istio.io/v1',
    'kind: AuthorizationPolicy',
    'metadata: {name: good}',
    'spec: {action: DENY, rules: [{}]}',
  ].join('\n');
  const { resources, diagnostics } = loadResources([{ file: 'p.yaml', text }]);
  assert.deepEqual(resources.map((r) => r.meta.name), ['good']);
  const err = diagnostics.find((d) => d.severity === 'error');
  assert.ok(err);
  assert.equal(err.file, 'p.yaml');
  assert.equal(err.line, 8);
  assert.equal(err.path, 'spec.rules[0].from[0].source.principal');
  assert.match(err.message, /did you mean "principals"/);
});

test('kind: List and JSON documents load', () => {
  const json = JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'r', namespace: 'x' }, spec: { jwtRules: [{ issuer: 'i', jwksUri: 'https://i/jwks' }] } },
    ],
  }, null, 2);
  const { resources, diagnostics } = loadResources([{ file: 'l.json', text: json }]);
  assert.equal(diagnostics.filter((d) => d.severity === 'error').length, 0);
  assert.equal(resources.length, 1);
  assert.equal(resources[0]!.kind, 'RequestAuthentication');
});

test('a YAML syntax error is reported with its line and does not stop other documents', () => {
  const text = 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ok}\n---\nfoo: [unclosed\n';
  const { resources, diagnostics } = loadResources([{ file: 's.yaml', text }]);
  assert.equal(resources.length, 1);
  const err = diagnostics.find((d) => d.code === 'ERR_YAML_SYNTAX');
  assert.ok(err);
  assert.equal(err.line >= 5, true);
});
