import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DemoConfigError, parseDemoConfig } from '../src/mesh/demo-config.ts';
import type { MeshAccess } from '../src/mesh/local-mesh.ts';
import { accessLine, callerName, deciderName } from '../src/mesh/walkthrough.ts';
import { parseMeshFile } from '../src/resources/mesh-file.ts';

describe('demo.yaml', () => {
  it('the bundled example parses', async () => {
    const file = join(import.meta.dirname, '..', 'examples', 'mesh', 'demo.yaml');
    const d = parseDemoConfig(await readFile(file, 'utf8'), file);
    assert.deepEqual(d.issuer, { iss: 'https://issuer.rampart.example', audience: 'httpbin', host: '127.0.0.1', port: 15180 });
    assert.deepEqual(d.apps, ['default/httpbin']);
    assert.deepEqual(d.clients, [{ workload: 'default/sleep', outboundPort: 15101 }, { workload: 'default/guest', outboundPort: 15102 }]);
    assert.deepEqual(d.walkthrough, { server: 'default/httpbin', meshClient: 'default/sleep', otherClient: 'default/guest' });
  });

  const bad: Array<[string, string, RegExp]> = [
    ['a list at the top', '- a', /\(top\): expected a mapping/],
    ['issuer without listen', 'issuer: {iss: x, audience: y}', /issuer\.listen: expected a non-empty string/],
    ['listen not HOST:PORT', 'issuer: {iss: x, audience: y, listen: localhost}', /issuer\.listen: expected HOST:PORT/],
    ['an app not NAMESPACE/NAME', 'apps: [httpbin]', /apps\[0\]: expected NAMESPACE\/NAME/],
    ['a client port out of range', 'clients: [{workload: default/sleep, outboundPort: 70000}]', /clients\[0\]\.outboundPort: expected a port number/],
    ['clients not a list', 'clients: {a: 1}', /clients: expected a list/],
    ['walkthrough missing a role', 'walkthrough: {server: default/httpbin, meshClient: default/sleep}', /walkthrough\.otherClient/],
    ['not YAML', 'a: [', /demo\.yaml/],
  ];
  for (const [name, text, message] of bad) {
    it(`refuses ${name}, naming the field`, () => {
      assert.throws(() => parseDemoConfig(text, 'demo.yaml'), (err: unknown) => err instanceof DemoConfigError && message.test(err.message));
    });
  }

  it('an empty file is no demo at all', () => {
    assert.deepEqual(parseDemoConfig('', 'demo.yaml'), { apps: [], clients: [] });
  });
});

describe('rampart up lines', () => {
  const mesh = parseMeshFile(`workloads:
- {name: sleep, namespace: default, serviceAccount: my-service-account, address: 127.0.0.2}
- {name: httpbin, namespace: default, serviceAccount: httpbin, address: 127.0.0.1, ports: [{name: http, port: 8000, targetPort: 18000}]}
`, 'mesh.yaml').mesh;
  const base: MeshAccess = {
    workload: 'default/httpbin', kind: 'http', time: '2026-11-27T03:13:24.123Z', method: 'GET', path: '/headers', status: 200, sourceIp: '127.0.0.2',
    sourcePrincipal: 'spiffe://cluster.local/ns/default/sa/my-service-account', mtls: true, decision: 'ALLOW', decidedBy: 'allow',
    policy: 'default/require-jwt-or-mtls', rule: 0, reason: 'allowed', responseFlags: '-',
    durationMs: 1, port: 8000, bytesReceived: 0, bytesSent: 2, requestPrincipal: undefined, requestId: 'r1', configVersion: '1',
  };

  it('names callers by workload, else by principal, else as outside', () => {
    assert.equal(callerName(mesh, base.sourcePrincipal, undefined), 'sleep');
    assert.equal(callerName(mesh, 'spiffe://cluster.local/ns/x/sa/y', undefined), 'spiffe://cluster.local/ns/x/sa/y');
    assert.equal(callerName(mesh, undefined, '10.0.0.1'), 'outside (10.0.0.1)');
  });

  const rows: Array<[string, Partial<MeshAccess>, string]> = [
    ['an allow by a policy rule', {}, '03:13:24  sleep → httpbin  GET /headers  200 ALLOW: allowed by default/require-jwt-or-mtls rule 0  (mTLS)'],
    ['a deny with no policy names the reason', { status: 401, decision: 'DENY', decidedBy: 'jwt', policy: null, rule: null, reason: 'Jwt is expired' }, '03:13:24  sleep → httpbin  GET /headers  401 DENY: Jwt is expired  (mTLS)'],
    ['a verified token is shown', { requestPrincipal: 'https://issuer/x' }, '03:13:24  sleep → httpbin  GET /headers  200 ALLOW: allowed by default/require-jwt-or-mtls rule 0  (mTLS, JWT https://issuer/x)'],
    ['a refused connection', { kind: 'connection', sourcePrincipal: undefined, mtls: false, decision: 'DENY', reason: 'plaintext connection refused: mTLS mode is STRICT' }, '03:13:24  outside (127.0.0.2) → httpbin  connection refused: plaintext connection refused: mTLS mode is STRICT'],
  ];
  for (const [name, change, line] of rows) {
    it(name, () => assert.equal(accessLine(mesh, { ...base, ...change }), line));
  }

  it('names the deciding layer when no policy decided', () => {
    assert.equal(deciderName({ ...base, policy: null, decidedBy: 'allow', decision: 'DENY' }), 'no ALLOW rule matched');
    assert.equal(deciderName({ ...base, policy: null, decidedBy: 'default' }), 'no policy applies');
  });
});
