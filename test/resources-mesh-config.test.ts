import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_MESH, parseMeshConfig } from '../src/resources/mesh-config.ts';

test('mesh config: Istio defaults when empty', () => {
  const { mesh, diagnostics } = parseMeshConfig('', 'mesh.yaml');
  assert.deepEqual(diagnostics, []);
  assert.deepEqual(mesh, DEFAULT_MESH);
  assert.equal(mesh.rootNamespace, 'istio-system');
  assert.equal(mesh.trustDomain, 'cluster.local');
  assert.equal(mesh.pathNormalization, 'BASE');
});

test('mesh config: Istio field names are read, unknown MeshConfig fields are ignored', () => {
  const text = [
    'rootNamespace: mesh-root',
    'trustDomain: new-td',
    'trustDomainAliases: [old-td, older-td]',
    'pathNormalization: {normalization: MERGE_SLASHES}',
    'accessLogFile: /dev/stdout',
    'extensionProviders:',
    '- name: authz',
    '  envoyExtAuthzHttp: {service: authz.foo.svc.cluster.local, port: 8000}',
  ].join('\n');
  const { mesh, diagnostics } = parseMeshConfig(text, 'mesh.yaml');
  assert.deepEqual(diagnostics, []);
  assert.equal(mesh.rootNamespace, 'mesh-root');
  assert.deepEqual(mesh.trustDomainAliases, ['old-td', 'older-td']);
  assert.equal(mesh.pathNormalization, 'MERGE_SLASHES');
  assert.deepEqual(mesh.extensionProviders.map((p) => [p.name, p.type]), [['authz', 'envoyExtAuthzHttp']]);
});

test('mesh config: DEFAULT normalization is BASE', () => {
  assert.equal(parseMeshConfig('pathNormalization: {normalization: DEFAULT}', 'm').mesh.pathNormalization, 'BASE');
});

test('mesh config: the istio ConfigMap form is unwrapped', () => {
  const text = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    trustDomain: corp.example\n';
  assert.equal(parseMeshConfig(text, 'cm.yaml').mesh.trustDomain, 'corp.example');
});

test('mesh config: errors name the file, line and field', () => {
  const text = 'trustDomain: a\npathNormalization:\n  normalization: SOMETIMES\nextensionProviders:\n- name: x\n  envoyExtAuthzHttp: {}\n  envoyExtAuthzGrpc: {}\n';
  const { diagnostics } = parseMeshConfig(text, 'mesh.yaml');
  assert.deepEqual(diagnostics.map((d) => [d.line, d.path, d.code]), [
    [3, 'pathNormalization.normalization', 'ERR_FIELD_ENUM'],
    [5, 'extensionProviders[0]', 'ERR_PROVIDER_TYPE'],
  ]);
});

test('mesh config: gatewayTopology is refused with its field, never ignored; numTrustedProxies 0 is what Rampart does', () => {
  const rows: Array<[string, Array<[number, string]>]> = [
    ['defaultConfig:\n  gatewayTopology:\n    numTrustedProxies: 2\n', [[3, 'defaultConfig.gatewayTopology.numTrustedProxies']]],
    ['defaultConfig:\n  gatewayTopology: {forwardClientCertDetails: SANITIZE_SET}\n', [[2, 'defaultConfig.gatewayTopology.forwardClientCertDetails']]],
    ['defaultConfig:\n  gatewayTopology:\n    numTrustedProxies: 1\n    proxyProtocol: {}\n', [[3, 'defaultConfig.gatewayTopology.numTrustedProxies'], [4, 'defaultConfig.gatewayTopology.proxyProtocol']]],
    ['defaultConfig:\n  gatewayTopology: {numTrustedProxies: 0}\n', []],
    ['defaultConfig:\n  holdApplicationUntilProxyStarts: true\n', []],
  ];
  for (const [text, want] of rows) {
    const { diagnostics } = parseMeshConfig(text, 'mesh.yaml');
    assert.deepEqual(diagnostics.map((d) => [d.line, d.path]), want, text);
    for (const d of diagnostics) {
      assert.equal(d.code, 'ERR_MESH_GATEWAY_TOPOLOGY_UNSUPPORTED');
      assert.equal(d.severity, 'error');
      assert.equal(d.file, 'mesh.yaml');
    }
  }
  assert.match(parseMeshConfig('defaultConfig: {gatewayTopology: {numTrustedProxies: 2}}', 'm').diagnostics[0]!.message, /X-Forwarded-For.*remove it, or set numTrustedProxies: 0/);
});
