import { test } from 'node:test';
import assert from 'node:assert/strict';
import { placeWorkloads } from '../src/mesh/placed-source.ts';
import { parseMeshFile } from '../src/resources/mesh-file.ts';

const TEXT = `# the example's mesh
workloads:
- name: httpbin
  namespace: default
  address: 127.0.100.1   # loopback layout
  ports:
  - {name: http, port: 8000, targetPort: 18100}
- name: sleep
  address: 127.0.100.2
- name: bad
  ports: not-a-list
`;

test('placed mesh text: the named workloads get their namespaces\' addresses, everything else stays as written', () => {
  const placed = placeWorkloads(TEXT, new Map([['default/httpbin', '10.250.0.2'], ['default/sleep', '10.250.0.3']]));
  assert.match(placed, /^# the example's mesh$/m);
  assert.match(placed, /address: 10\.250\.0\.2/);
  assert.match(placed, /address: 10\.250\.0\.3/);
  assert.doesNotMatch(placed, /127\.0\.100\./);
  const { mesh, diagnostics } = parseMeshFile(placed, 'mesh.yaml');
  assert.deepEqual(mesh.workloads.map((w) => `${w.name}@${w.address}`), ['httpbin@10.250.0.2', 'sleep@10.250.0.3']);
  // The error stays where the user's file has it: same line, same path.
  const before = parseMeshFile(TEXT, 'mesh.yaml').diagnostics.map((d) => `${d.line} ${d.path}`);
  assert.deepEqual(diagnostics.map((d) => `${d.line} ${d.path}`), before);
  assert.ok(before.length > 0);
});

test('placed mesh text: a text that does not parse, or names none of the workloads, is returned unchanged', () => {
  assert.equal(placeWorkloads('workloads: [\n', new Map([['default/a', '10.0.0.1']])), 'workloads: [\n');
  assert.equal(placeWorkloads(TEXT, new Map([['other/x', '10.0.0.1']])), TEXT);
});
