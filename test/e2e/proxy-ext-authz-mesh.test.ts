import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { listenLocal, loopbackAddress, scenarioDir, startProxy, writeSidecarFiles, type RunningProxy } from '../support/proxy.ts';

/**
 * A CUSTOM provider addressed by its mesh service name, as Istio users write it
 * (`ext-authz.default.svc.cluster.local`), with the authorizer behind a sidecar of its own in STRICT mode: the
 * check goes out through the calling sidecar's outbound path (registry, mTLS, secure naming), and an authorizer
 * that cannot be reached fails closed, or open only where `failOpen` says so.
 */

const HTTPBIN = loopbackAddress();
const AUTHZ = loopbackAddress();
let dir: string;
let app: http.Server;
let authz: http.Server;
let httpbin: RunningProxy;
let authzProxy: RunningProxy;
const checks: Array<{ path: string; headers: http.IncomingHttpHeaders }> = [];
const appSaw: string[] = [];

const providers = (service: string, failOpen: boolean): string => `  extensionProviders:
  - name: mesh-authz
    envoyExtAuthzHttp:
      service: ${service}
      port: 9000
      timeout: 2s
      failOpen: ${failOpen}
      includeRequestHeadersInCheck: ["x-ext-authz"]`;

let meshFile = '';

before(async () => {
  ({ dir } = await scenarioDir('rampart-extauthz-mesh-'));
  app = http.createServer((req, res) => {
    appSaw.push(req.url ?? '');
    res.writeHead(200, { 'content-length': '2' }).end('ok');
  });
  authz = http.createServer((req, res) => {
    checks.push({ path: req.url ?? '', headers: req.headers });
    if (req.headers['x-ext-authz'] === 'allow') res.writeHead(200).end();
    else res.writeHead(403, { 'content-type': 'text/plain' }).end('denied by the mesh authorizer');
  });
  const appPort = await listenLocal(app);
  const authzPort = await listenLocal(authz);
  meshFile = `meshConfig:
${providers('ext-authz.default.svc.cluster.local', false)}
workloads:
- name: httpbin
  serviceAccount: httpbin
  labels: {app: httpbin}
  address: ${HTTPBIN}
  ports: [{name: http, port: 8000, targetPort: ${appPort}}]
- name: ext-authz
  serviceAccount: ext-authz
  labels: {app: ext-authz}
  address: ${AUTHZ}
  ports: [{name: http, port: 9000, targetPort: ${authzPort}}]
services:
- name: ext-authz
  namespace: default
  selector: {app: ext-authz}
  ports: [{name: http, port: 9000}]
- name: nowhere
  namespace: default
  selector: {app: nowhere}
  ports: [{name: http, port: 9000}]
`;
  const files = await writeSidecarFiles(dir, `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: httpbin, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  mtls: {mode: PERMISSIVE}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-httpbin-checks, namespace: default}
spec:
  selector: {matchLabels: {app: ext-authz}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/httpbin"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: CUSTOM
  provider: {name: mesh-authz}
  rules: [{to: [{operation: {paths: ["/guarded"]}}]}]
`, meshFile);
  [httpbin, authzProxy] = await Promise.all([
    startProxy([...files, '--workload', 'default/httpbin', '--admin-port', '0']),
    startProxy([...files, '--workload', 'default/ext-authz', '--admin-port', '0']),
  ]);
});

after(async () => {
  await Promise.all([httpbin?.stop(), authzProxy?.stop()]);
  app?.close();
  authz?.close();
  await rm(dir, { recursive: true, force: true });
});

async function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://${HTTPBIN}:8000${path}`, { headers });
  return { status: r.status, body: await r.text() };
}

test('a provider named by its mesh service is reached through the registry, over mTLS to its own sidecar', async () => {
  const ok = await get('/guarded', { 'x-ext-authz': 'allow' });
  assert.equal(ok.status, 200, ok.body);
  assert.equal(appSaw.at(-1), '/guarded');
  const c = checks.at(-1)!;
  assert.equal(c.path, '/guarded');
  // The authorizer's sidecar terminated mTLS from httpbin's identity (its STRICT port and ALLOW policy let nothing else in).
  assert.match(String(c.headers['x-forwarded-client-cert']), /By=spiffe:\/\/cluster\.local\/ns\/default\/sa\/ext-authz;.*URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/httpbin$/);
  // As Envoy's HTTP ext_authz, the check carries the original request's Host.
  assert.equal(c.headers.host, `${HTTPBIN}:8000`);
  const before = appSaw.length;
  const denied = await get('/guarded');
  assert.equal(denied.status, 403);
  assert.equal(denied.body, 'denied by the mesh authorizer');
  assert.equal(appSaw.length, before, 'a denied request never reaches the app');
});

async function changeProviders(service: string, failOpen: boolean): Promise<void> {
  const seen = httpbin.lines.length;
  await writeFile(join(dir, 'mesh.yaml'), meshFile.replace(providers('ext-authz.default.svc.cluster.local', false), providers(service, failOpen)));
  await httpbin.waitFor('the new providers applied', (l) => l['event'] === 'config-applied' && httpbin.lines.indexOf(l) >= seen, 20_000);
}

test('an authorizer that cannot be reached: 403 (statusOnError), or allowed when the provider says failOpen', async () => {
  // A service of the registry with no endpoint: the check cannot be made.
  await changeProviders('nowhere.default.svc.cluster.local', false);
  const before = appSaw.length;
  const closed = await get('/guarded', { 'x-ext-authz': 'allow' });
  assert.equal(closed.status, 403);
  assert.equal(appSaw.length, before);
  await httpbin.waitFor('the failed check logged', (l) => l['log'] === 'access' && l['status'] === 403 && /no healthy upstream/.test(String(l['reason'])));
  // failOpen: true is Istio's way to keep serving without the authorizer; the request goes through, and the log says why.
  await changeProviders('nowhere.default.svc.cluster.local', true);
  const open = await get('/guarded');
  assert.equal(open.status, 200, open.body);
  assert.equal(appSaw.at(-1), '/guarded');
  await httpbin.waitFor('the fail-open in the access log', (l) => l['log'] === 'access' && l['status'] === 200 && /CUSTOM provider "mesh-authz" unreachable, failOpen: .*no healthy upstream/.test(String(l['reason'])));
  // Paths the CUSTOM rule does not name never depended on the authorizer.
  assert.equal((await get('/other')).status, 200);
});
