import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import http2 from 'node:http2';
import tls from 'node:tls';
import type { CertificateAuthority } from '../../src/identity/ca.ts';
import type { Svid } from '../../src/identity/svid.ts';
import { issueSvid } from '../support/certs.ts';
import { listenLocal, loopbackAddress, peerAuthentication, scenarioDir, startProxy, writeSidecarFiles, type RunningProxy } from '../support/proxy.ts';

/**
 * gRPC (HTTP/2) through the sidecar, inside mTLS as a client sidecar's tunnel carries it: requests authorized per
 * method path, forwarded to the app over h2c with trailers intact, and denials answered as gRPC clients expect
 * them (HTTP 200 with grpc-status 7 PERMISSION_DENIED, as Envoy's local replies for gRPC).
 */

const HOST = loopbackAddress();
let dir: string;
let ca: CertificateAuthority;
let sleep: Svid;
let other: Svid;
let app: http2.Http2Server;
let proxy: RunningProxy;
const appSaw: string[] = [];

before(async () => {
  ({ dir, ca } = await scenarioDir('rampart-h2-'));
  sleep = await issueSvid(ca, 'default', 'sleep');
  other = await issueSvid(ca, 'default', 'other');
  app = http2.createServer();
  app.on('stream', (stream, headers) => {
    appSaw.push(`${headers[':path']} te=${headers['te']} xfcc=${headers['x-forwarded-client-cert'] === undefined ? 'no' : 'yes'}`);
    stream.on('data', () => undefined);
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-trailer': 'yes' }));
      stream.end(Buffer.from(`reply to ${headers[':path']}`));
    });
  });
  const appPort = await listenLocal(app);
  const files = await writeSidecarFiles(dir, `${peerAuthentication('STRICT')}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-from-sleep, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]
    to: [{operation: {methods: ["POST"], paths: ["/pkg.Echo/*"]}}]
`, `workloads:
- name: echo
  serviceAccount: echo
  labels: {app: echo}
  address: ${HOST}
  ports: [{name: grpc, port: 9090, targetPort: ${appPort}}]
`);
  proxy = await startProxy([...files, '--workload', 'default/echo']);
});

after(async () => {
  await proxy?.stop();
  app?.close();
  await rm(dir, { recursive: true, force: true });
});

interface GrpcReply {
  readonly headers: http2.IncomingHttpHeaders;
  readonly trailers: http2.IncomingHttpHeaders;
  readonly body: string;
}

/** One gRPC-shaped call over h2c inside mTLS with `svid`. */
async function call(svid: Svid, path: string): Promise<GrpcReply> {
  const socket = tls.connect({ host: HOST, port: 9090, key: svid.keyPem, cert: svid.chainPem, ca: ca.trustBundle.pem, checkServerIdentity: () => undefined });
  await once(socket, 'secureConnect');
  const session = http2.connect('http://echo.default:9090', { createConnection: () => socket });
  try {
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    req.end(Buffer.from([0, 0, 0, 0, 0]));
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    let body = '';
    req.on('response', (h) => (headers = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    await once(req, 'end');
    return { headers, trailers, body };
  } finally {
    session.close();
  }
}

test('an allowed gRPC call reaches the app over h2c with te: trailers and XFCC, and its trailers come back', async () => {
  const r = await call(sleep, '/pkg.Echo/Say');
  assert.equal(r.headers[':status'], 200);
  assert.equal(r.body, 'reply to /pkg.Echo/Say');
  assert.equal(r.trailers['grpc-status'], '0');
  assert.equal(r.trailers['x-trailer'], 'yes');
  assert.equal(appSaw.at(-1), '/pkg.Echo/Say te=trailers xfcc=yes');
});

test('denied gRPC calls get HTTP 200 with grpc-status 7 and nothing reaches the app', async () => {
  const before = appSaw.length;
  const wrongMethod = await call(sleep, '/pkg.Admin/Drop');
  assert.equal(wrongMethod.headers[':status'], 200);
  assert.equal(wrongMethod.headers['grpc-status'], '7');
  assert.equal(decodeURIComponent(String(wrongMethod.headers['grpc-message'])), 'RBAC: access denied');
  const wrongPeer = await call(other, '/pkg.Echo/Say');
  assert.equal(wrongPeer.headers['grpc-status'], '7');
  assert.equal(appSaw.length, before);
  await proxy.waitFor('h2 deny log', (l) => l['log'] === 'access' && l['path'] === '/pkg.Admin/Drop' && l['status'] === 403);
});
