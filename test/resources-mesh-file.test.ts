import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMeshFile, protocolFromName, serviceEndpoints } from '../src/resources/mesh-file.ts';

const GOOD = `meshConfig:
  trustDomain: example.org
workloads:
- name: httpbin
  namespace: default
  serviceAccount: httpbin
  labels: {app: httpbin}
  ports:
  - {name: http, port: 8000, targetPort: 18000}
  - {name: tcp-echo, port: 9000, targetPort: 19000}
  - {port: 9100, targetPort: 19100}
- name: sleep
  labels: {app: sleep}
services:
- name: httpbin
  namespace: default
  selector: {app: httpbin}
  ports: [{name: http, port: 8000}]
`;

test('a mesh file: settings, workloads with defaults, services and their endpoints', () => {
  const { mesh, diagnostics } = parseMeshFile(GOOD, 'mesh.yaml');
  assert.deepEqual(diagnostics, []);
  assert.equal(mesh.mesh.trustDomain, 'example.org');
  assert.deepEqual(mesh.workloads.map((w) => `${w.namespace}/${w.name} sa=${w.serviceAccount} @${w.address}`), ['default/httpbin sa=httpbin @127.0.0.1', 'default/sleep sa=default @127.0.0.1']);
  assert.deepEqual(mesh.workloads[0]!.ports.map((p) => `${p.port}->${p.targetPort} ${p.protocol}`), ['8000->18000 HTTP', '9000->19000 TCP', '9100->19100 DETECT']);
  assert.deepEqual(serviceEndpoints(mesh, mesh.services[0]!).map((w) => w.name), ['httpbin']);
  assert.equal(mesh.services[0]!.ports[0]!.targetPort, 8000);
});

test('port protocols from names, as Istio names them', () => {
  const rows: Array<[string | undefined, string]> = [['http', 'HTTP'], ['http-web', 'HTTP'], ['HTTP2', 'HTTP2'], ['grpc-api', 'GRPC'], ['tcp', 'TCP'], ['mongo', 'DETECT'], ['web', 'DETECT'], [undefined, 'DETECT']];
  for (const [name, want] of rows) assert.equal(protocolFromName(name), want, String(name));
});

// One row per rule: the text, the diagnostic code, the line and the field path it must name.
const bad: Array<{ name: string; text: string; code: string; line: number; path: string }> = [
  { name: 'unknown top-level field', text: 'workload: []\n', code: 'ERR_FIELD_UNKNOWN', line: 1, path: 'workload' },
  { name: 'port out of range', text: 'workloads:\n- name: a\n  ports:\n  - port: 70000\n', code: 'ERR_PORT', line: 4, path: 'workloads[0].ports[0].port' },
  { name: 'port missing', text: 'workloads:\n- name: a\n  ports:\n  - name: http\n', code: 'ERR_FIELD_REQUIRED', line: 4, path: 'workloads[0].ports[0].port' },
  { name: 'same port on loopback', text: 'workloads:\n- name: a\n  ports:\n  - port: 80\n', code: 'ERR_PORT_CLASH', line: 4, path: 'workloads[0].ports[0].targetPort' },
  { name: 'duplicate port', text: 'workloads:\n- name: a\n  ports:\n  - {port: 80, targetPort: 81}\n  - {port: 80, targetPort: 82}\n', code: 'ERR_PORT_DUPLICATE', line: 5, path: 'workloads[0].ports[1].port' },
  { name: 'bad protocol', text: 'workloads:\n- name: a\n  ports:\n  - {port: 80, targetPort: 81, protocol: udp}\n', code: 'ERR_FIELD_ENUM', line: 4, path: 'workloads[0].ports[0].protocol' },
  { name: 'name not a DNS label', text: 'workloads:\n- name: Http_Bin\n', code: 'ERR_NAME', line: 2, path: 'workloads[0].name' },
  { name: 'workload without name', text: 'workloads:\n- labels: {app: a}\n', code: 'ERR_FIELD_REQUIRED', line: 2, path: 'workloads[0].name' },
  { name: 'duplicate workload', text: 'workloads:\n- name: a\n- name: a\n', code: 'ERR_WORKLOAD_DUPLICATE', line: 3, path: 'workloads[1].name' },
  { name: 'service without selector', text: 'services:\n- name: s\n  ports: [{port: 80}]\n', code: 'ERR_FIELD_REQUIRED', line: 2, path: 'services[0].selector' },
  { name: 'bad meshConfig field', text: 'meshConfig:\n  trustDomain: 5\n', code: 'ERR_FIELD_TYPE', line: 2, path: 'meshConfig.trustDomain' },
];

for (const row of bad) {
  test(`mesh file rejected: ${row.name}`, () => {
    const { mesh, diagnostics } = parseMeshFile(row.text, 'mesh.yaml');
    const d = diagnostics.find((x) => x.code === row.code);
    assert.ok(d !== undefined, `expected ${row.code}, got ${JSON.stringify(diagnostics)}`);
    assert.equal(d.file, 'mesh.yaml');
    assert.equal(d.line, row.line);
    assert.equal(d.path, row.path);
    // The broken entry is left out; nothing else was declared.
    assert.ok(mesh.workloads.length <= 1 && mesh.services.length === 0);
  });
}

test('one broken workload leaves the others in', () => {
  const { mesh, diagnostics } = parseMeshFile('workloads:\n- name: good\n- name: BAD\n- name: also-good\n', 'm.yaml');
  assert.equal(diagnostics.length, 1);
  assert.deepEqual(mesh.workloads.map((w) => w.name), ['good', 'also-good']);
});

test('service addresses: given ones kept, the others allocated from 240.240.0.0/16 by name, stable when services come and go', () => {
  const text = (extra: string): string => `workloads: []
services:
- {name: a, namespace: x, selector: {app: a}, address: 10.96.0.10, ports: [{port: 80}]}
- {name: b, namespace: x, selector: {app: b}, ports: [{port: 80}]}
- {name: c, namespace: y, selector: {app: c}, ports: [{port: 80}]}
${extra}`;
  const one = parseMeshFile(text(''), 'mesh.yaml');
  assert.deepEqual(one.diagnostics, []);
  const [a, b, c] = one.mesh.services;
  assert.equal(a!.address, '10.96.0.10');
  assert.equal(a!.allocated, false);
  for (const s of [b!, c!]) {
    assert.ok(s.allocated);
    assert.match(s.address, /^240\.240\.\d+\.\d+$/);
    assert.doesNotMatch(s.address, /\.(0|255)$/);
  }
  assert.notEqual(b!.address, c!.address);
  const more = parseMeshFile(text('- {name: d, namespace: x, selector: {app: d}, ports: [{port: 80}]}\n'), 'mesh.yaml');
  assert.deepEqual(more.mesh.services.slice(0, 3).map((s) => s.address), [a!.address, b!.address, c!.address], 'adding a service moves no other');
  const bad = parseMeshFile(`services:
- {name: a, selector: {app: a}, address: 10.0.0.300, ports: [{port: 80}]}
- {name: b, selector: {app: b}, address: 10.0.0.1, ports: [{port: 80}]}
- {name: c, selector: {app: c}, address: 10.0.0.1, ports: [{port: 80}]}
`, 'mesh.yaml');
  assert.deepEqual(bad.diagnostics.map((d) => `${d.line} ${d.path} ${d.code}`), ['2 services[0].address ERR_ADDRESS', '4 services[2].address ERR_ADDRESS_DUPLICATE']);
  assert.deepEqual(bad.mesh.services.map((s) => s.name), ['b']);
});
