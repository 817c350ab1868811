import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { listenLocal, loopbackAddress, peerAuthentication, scenarioDir, startProxy, waitUntil, writeSidecarFiles, type RunningProxy } from '../support/proxy.ts';

/**
 * Two workloads, each with its sidecar as a child process: sleep's app (this test) reaches httpbin through its
 * sidecar as an HTTP proxy, with CONNECT and through a local upstream port; the sidecars speak mTLS with SVIDs from
 * one CA; secure naming, the outbound traffic policy and STRICT at httpbin are exercised.
 */

const HTTPBIN = loopbackAddress();
const SLEEP = loopbackAddress();
let dir: string;
let app: http.Server;
let appPort = 0;
let upstreamPort = 0;
let httpbin: RunningProxy;
let sleep: RunningProxy;
let outboundPort = 0;

const POLICIES = `${peerAuthentication('STRICT')}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-from-sleep, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]
    to: [{operation: {methods: ["GET", "POST"]}}]
`;

const meshFile = (policy: string): string => `meshConfig:
  outboundTrafficPolicy: {mode: ${policy}}
workloads:
- name: httpbin
  serviceAccount: httpbin
  labels: {app: httpbin}
  address: ${HTTPBIN}
  ports: [{name: http, port: 8000, targetPort: ${appPort}}]
- name: sleep
  serviceAccount: sleep
  labels: {app: sleep}
  address: ${SLEEP}
# A registry entry whose endpoint is really httpbin's sidecar: the server proves "httpbin", not "reviews".
- name: reviews
  serviceAccount: reviews
  labels: {app: reviews}
  address: ${HTTPBIN}
  ports: [{name: http, port: 8000, targetPort: 1}]
services:
- name: httpbin
  selector: {app: httpbin}
  ports: [{name: http, port: 8000}]
- name: reviews
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: 8000}]
`;

before(async () => {
  ({ dir } = await scenarioDir('rampart-mesh-'));
  app = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      const out = JSON.stringify({ method: req.method, path: req.url, headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) }).end(out);
    });
  });
  // WebSocket reduced to what proxies see: the 101 handshake, then bytes echoed back.
  app.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Seen-Xfcc: ${String(req.headers['x-forwarded-client-cert'] ?? '').includes('sa/sleep') ? 'sleep' : 'none'}\r\n\r\n`);
    socket.on('data', (c: Buffer) => socket.write(c));
    socket.on('end', () => socket.end());
  });
  appPort = await listenLocal(app);
  const probe = net.createServer();
  upstreamPort = await listenLocal(probe);
  probe.close();
  const common = await writeSidecarFiles(dir, POLICIES, meshFile('ALLOW_ANY'));
  [httpbin, sleep] = await Promise.all([
    startProxy([...common, '--workload', 'default/httpbin']),
    startProxy([...common, '--workload', 'default/sleep', '--outbound-port', '0', '--admin-port', '0', '--upstream', `${upstreamPort}=httpbin.default.svc.cluster.local:8000`]),
  ]);
  outboundPort = (sleep.ready['outbound'] as Record<string, number>)['http-proxy']!;
});

after(async () => {
  await Promise.all([httpbin?.stop(), sleep?.stop()]);
  app?.close();
  await rm(dir, { recursive: true, force: true });
});

interface Reply {
  readonly status: number;
  readonly body: string;
}

function viaProxy(url: string, method = 'GET', body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({ host: '127.0.0.1', port: outboundPort, method, path: url, headers: { host: u.host }, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('through the HTTP proxy: sleep → its sidecar → mTLS → httpbin sidecar → app; httpbin sees sleep\'s identity', async () => {
  const r = await viaProxy('http://httpbin.default:8000/headers?a=1', 'POST', 'hello');
  assert.equal(r.status, 200, r.body);
  const seen = JSON.parse(r.body) as { method: string; path: string; body: string; headers: Record<string, string> };
  assert.equal(seen.path, '/headers?a=1');
  assert.equal(seen.body, 'hello');
  assert.match(seen.headers['x-forwarded-client-cert']!, /By=spiffe:\/\/cluster\.local\/ns\/default\/sa\/httpbin;.*URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/);
  const log = await sleep.waitFor('outbound log', (l) => l['kind'] === 'outbound' && l['via'] === 'http-proxy' && l['status'] === 200);
  assert.equal(log['mtls'], true);
  assert.equal(log['cluster'], 'outbound_.8000_._.httpbin.default.svc.cluster.local');
  // httpbin decided on sleep's verified principal.
  await httpbin.waitFor('inbound allow', (l) => l['log'] === 'access' && l['sourcePrincipal'] === 'spiffe://cluster.local/ns/default/sa/sleep' && l['decision'] === 'ALLOW');
  // A method the policy does not allow is refused by httpbin's sidecar, and the 403 reaches the app through sleep's.
  const put = await viaProxy('http://httpbin.default:8000/headers', 'PUT');
  assert.equal(put.status, 403);
  assert.equal(put.body, 'RBAC: access denied');
});

test('through a local upstream port and through CONNECT, the same mTLS path', async () => {
  const r = await fetch(`http://127.0.0.1:${upstreamPort}/ip`);
  assert.equal(r.status, 200);
  assert.match(((await r.json()) as { headers: Record<string, string> }).headers['x-forwarded-client-cert']!, /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/);

  const tunnel = await new Promise<net.Socket>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: outboundPort, method: 'CONNECT', path: 'httpbin.default:8000', agent: false });
    req.on('connect', (res: http.IncomingMessage, socket: net.Socket) => (res.statusCode === 200 ? resolve(socket) : reject(new Error(`CONNECT ${res.statusCode}`))));
    req.on('error', reject);
    req.end();
  });
  tunnel.write('GET /through-connect HTTP/1.1\r\nhost: httpbin.default:8000\r\nconnection: close\r\n\r\n');
  let raw = '';
  for await (const c of tunnel) raw += (c as Buffer).toString('utf8');
  assert.match(raw, /^HTTP\/1\.1 200/);
  assert.match(raw, /"path":"\/through-connect"/);
});

test("sleep's sidecar reports its outbound traffic with Istio's labels (reporter=\"source\")", async () => {
  const metrics = await (await fetch(`http://127.0.0.1:${sleep.ready['admin'] as number}/metrics`)).text();
  assert.match(metrics, /istio_requests_total\{reporter="source",source_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/sleep",destination_workload="httpbin",destination_workload_namespace="default",destination_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/httpbin",connection_security_policy="mutual_tls",request_protocol="http",response_code="200",response_flags="-"\} [1-9]/);
  assert.match(metrics, /istio_tcp_connections_opened_total\{reporter="source",[^}]*destination_workload="httpbin"[^}]*connection_security_policy="mutual_tls"\} [1-9]/);
  assert.match(metrics, /istio_tcp_sent_bytes_total\{reporter="source",[^}]*\} [1-9]/);
});

test('secure naming: a server that proves another service account than the registry lists is refused (503), nothing reaches the app', async () => {
  const r = await viaProxy('http://reviews.default:9080/secret');
  assert.equal(r.status, 503);
  const log = await sleep.waitFor('secure naming failure', (l) => l['kind'] === 'outbound' && l['status'] === 503);
  assert.match(String(log['error']), /reviews|service account|expected/i);
});

test('outside the mesh: ALLOW_ANY connects directly; REGISTRY_ONLY (after a reload of the mesh file) answers 502', async () => {
  const direct = await viaProxy(`http://127.0.0.1:${appPort}/direct`);
  assert.equal(direct.status, 200);
  assert.equal((JSON.parse(direct.body) as { headers: Record<string, string> }).headers['x-forwarded-client-cert'], undefined, 'plain, no mesh identity');
  await writeFile(join(dir, 'mesh.yaml'), meshFile('REGISTRY_ONLY'));
  await sleep.waitFor('reload', (l) => l['event'] === 'config-applied' && l['configVersion'] === '2');
  const blocked = await viaProxy(`http://127.0.0.1:${appPort}/direct`);
  assert.equal(blocked.status, 502);
  assert.match(blocked.body, /REGISTRY_ONLY/);
  // Mesh destinations are unaffected.
  assert.equal((await viaProxy('http://httpbin.default:8000/still')).status, 200);
});

test('a WebSocket through the HTTP proxy: both sidecars tunnel it after the app\'s 101, over mTLS as sleep', async () => {
  const s = net.connect({ host: '127.0.0.1', port: outboundPort });
  await once(s, 'connect');
  let got = '';
  s.on('data', (c: Buffer) => (got += c.toString('latin1')));
  s.write('GET http://httpbin.default:8000/ws HTTP/1.1\r\nHost: httpbin.default:8000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  await waitUntil('the 101', () => (got.includes('\r\n\r\n') ? true : undefined), 10_000, () => JSON.stringify(got));
  assert.match(got, /^HTTP\/1\.1 101 /);
  assert.match(got, /\r\nX-Seen-Xfcc: sleep\r\n/i, 'httpbin\'s sidecar forwarded it with sleep\'s identity');
  s.write('ping-over-mtls');
  await waitUntil('the echo', () => (got.endsWith('ping-over-mtls') ? true : undefined), 10_000, () => JSON.stringify(got));
  s.end();
  await once(s, 'close');
  const line = await httpbin.waitFor('tunnel entry', (l) => l['log'] === 'access' && l['path'] === '/ws');
  assert.equal(line['status'], 101);
  assert.equal(line['sourcePrincipal'], 'spiffe://cluster.local/ns/default/sa/sleep');
});
