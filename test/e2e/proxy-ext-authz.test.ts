import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import { listenLocal, loopbackAddress, peerAuthentication, rawExchange, scenarioDir, startProxy, writeSidecarFiles, type RunningProxy } from '../support/proxy.ts';

/**
 * CUSTOM authorization through Istio's HTTP external authorizer, as in istio.io's ext-authz task: the authorizer
 * allows requests carrying `x-ext-authz: allow`, and its verdict header reaches the app on allow and the client on
 * deny. A slow authorizer fails closed; DENY policies still apply after the authorizer allowed.
 */

const HOST = loopbackAddress();
let dir: string;
let app: http.Server;
let authz: http.Server;
let proxy: RunningProxy;
const checks: Array<{ method: string; path: string; headers: http.IncomingHttpHeaders }> = [];

before(async () => {
  ({ dir } = await scenarioDir('rampart-extauthz-'));
  app = http.createServer((req, res) => {
    const out = JSON.stringify({ path: req.url, headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) }).end(out);
  });
  const appPort = await listenLocal(app);
  authz = http.createServer((req, res) => {
    checks.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers });
    if ((req.url ?? '').endsWith('/slow')) {
      setTimeout(() => res.writeHead(200).end(), 2_000).unref();
      return;
    }
    if (req.headers['x-ext-authz'] === 'busy') {
      res.writeHead(429, { 'content-type': 'text/plain' }).end('slow down');
      return;
    }
    if (req.headers['x-ext-authz'] === 'allow') {
      res.writeHead(200, { 'x-ext-authz-check-result': 'allowed' }).end();
      return;
    }
    res.writeHead(403, { 'x-ext-authz-check-result': 'denied', 'content-type': 'text/plain' }).end('denied by ext_authz for not found header `x-ext-authz: allow` in the request');
  });
  const authzPort = await listenLocal(authz);
  const files = await writeSidecarFiles(dir, `${peerAuthentication('PERMISSIVE')}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: CUSTOM
  provider: {name: sample-ext-authz-http}
  rules:
  - to: [{operation: {paths: ["/headers", "/slow", "/secret"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-secret, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/secret"]}}]
`, `meshConfig:
  extensionProviders:
  - name: sample-ext-authz-http
    envoyExtAuthzHttp:
      service: 127.0.0.1
      port: ${authzPort}
      timeout: 0.5s
      pathPrefix: /check
      includeRequestHeadersInCheck: ["x-ext-authz"]
      headersToUpstreamOnAllow: ["x-ext-authz-check-result"]
      headersToDownstreamOnDeny: ["x-ext-authz-check-result", "content-type"]
workloads:
- name: httpbin
  serviceAccount: httpbin
  labels: {app: httpbin}
  address: ${HOST}
  ports: [{name: http, port: 8000, targetPort: ${appPort}}]
`);
  proxy = await startProxy([...files, '--workload', 'default/httpbin']);
});

after(async () => {
  await proxy?.stop();
  app?.close();
  authz?.close();
  await rm(dir, { recursive: true, force: true });
});

async function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: string }> {
  const r = await fetch(`http://${HOST}:8000${path}`, { headers });
  return { status: r.status, headers: r.headers, body: await r.text() };
}

test('the authorizer allows: the request reaches the app with headersToUpstreamOnAllow; it saw method, prefixed path and the chosen headers', async () => {
  const r = await get('/headers?x=1', { 'x-ext-authz': 'allow', 'x-other': 'not sent', authorization: 'Bearer abc' });
  assert.equal(r.status, 200, r.body);
  const seen = JSON.parse(r.body) as { headers: Record<string, string> };
  assert.equal(seen.headers['x-ext-authz-check-result'], 'allowed');
  const c = checks.at(-1)!;
  assert.equal(c.method, 'GET');
  assert.equal(c.path, '/check/headers?x=1');
  assert.equal(c.headers['x-ext-authz'], 'allow');
  assert.equal(c.headers['authorization'], 'Bearer abc', 'Envoy always sends Authorization');
  assert.equal(c.headers['x-other'], undefined, 'headers not listed are not sent');
});

test("the authorizer denies: its status, body and listed headers reach the client; the app sees nothing", async () => {
  const before = checks.length;
  const r = await get('/headers');
  assert.equal(r.status, 403);
  assert.match(r.body, /^denied by ext_authz/);
  assert.equal(r.headers.get('x-ext-authz-check-result'), 'denied');
  assert.equal(checks.length, before + 1);
  await proxy.waitFor('UAEX log', (l) => l['log'] === 'access' && l['responseFlags'] === 'UAEX' && l['status'] === 403);
});

test('paths no CUSTOM rule names do not reach the authorizer; a slow authorizer fails closed (statusOnError 403); DENY still applies after an allow', async () => {
  const before = checks.length;
  assert.equal((await get('/ip')).status, 200);
  assert.equal(checks.length, before, 'not delegated');
  const slow = await get('/slow', { 'x-ext-authz': 'allow' });
  assert.equal(slow.status, 403);
  const log = await proxy.waitFor('timeout log', (l) => l['log'] === 'access' && String(l['reason']).includes('no answer within 500 ms'));
  assert.equal(log['decision'], 'DENY');
  const secret = await get('/secret', { 'x-ext-authz': 'allow' });
  assert.equal(secret.status, 403);
  assert.equal(secret.body, 'RBAC: access denied');
});

test('any status the authorizer denies with reaches the client with its own reason phrase', async () => {
  const r = await rawExchange(HOST, 8000, 'GET /headers HTTP/1.1\r\nHost: h\r\nX-Ext-Authz: busy\r\nConnection: close\r\n\r\n', 5_000);
  assert.match(r.text, /^HTTP\/1\.1 429 Too Many Requests\r\n/, r.text);
  assert.ok(r.text.endsWith('slow down'), r.text);
});
