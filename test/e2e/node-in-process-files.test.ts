import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { request as undiciRequest, type Dispatcher } from 'undici';
import { Workload, type WorkloadOptions } from '../../src/node/index.ts';
import { issueSvid } from '../support/certs.ts';
import { listenLocal, loopbackAddress, rawExchange, scenarioDir, waitUntil } from '../support/proxy.ts';

/**
 * rampart/node on local files (the mesh file, policy files and a CA directory, as `rampart proxy --mesh --config
 * --ca`): a configuration with an error is refused whole and the last good one stays enforced; a first
 * configuration with an error refuses to start; PERMISSIVE ports take mTLS and plaintext on one socket; HTTP/2
 * through the same server; a server of the app's own made with tlsOptions()/secure(); TLS sessions resumed.
 */

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

const policies = (mode: string, extra = ''): string => `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: ${mode}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  action: CUSTOM
  provider: {name: sample-ext-authz-http}
  rules: [{to: [{operation: {paths: ["/custom"]}}]}]
${extra}`;

async function replaceFile(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}

/** One HTTP/2 GET on a session: its status and body. */
function h2Get(session: http2.ClientHttp2Session, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ':path': path });
    let body = '';
    let code = 0;
    s.on('response', (h) => (code = Number(h[':status'])));
    s.on('data', (c: Buffer) => (body += c.toString()));
    s.on('end', () => resolve({ status: code, body }));
    s.on('error', reject);
    s.end();
  });
}

async function status(dispatcher: Dispatcher, url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const r = await undiciRequest(url, { dispatcher, headers });
  return { status: r.statusCode, body: await r.body.text(), headers: r.headers };
}

describe('rampart/node on local files', { timeout: 120_000 }, () => {
  let dir: string;
  let ca: Awaited<ReturnType<typeof scenarioDir>>['ca'];
  let files: { mesh: string; config: string[]; ca: string };
  const addr = { web: loopbackAddress(), own: loopbackAddress(), client: loopbackAddress(), h2: loopbackAddress() };
  let web: Workload;
  let client: Workload;
  let dispatcher: Dispatcher;
  const closers: Array<() => unknown> = [];
  let authz: http.Server;
  const checks: string[] = [];

  const start = (workload: string, more: Partial<WorkloadOptions> = {}): Promise<Workload> =>
    Workload.start({ workload, ...files, accessLog: 'off', log: quiet, ...more } as WorkloadOptions);

  before(async () => {
    ({ dir, ca } = await scenarioDir('rampart-node-files-'));
    await mkdir(join(dir, 'policies'));
    await writeFile(join(dir, 'policies', 'p.yaml'), policies('PERMISSIVE'));
    authz = http.createServer((req, res) => {
      checks.push(req.url ?? '');
      if (req.headers['x-ext-authz'] === 'allow') res.writeHead(200, { 'x-ext-authz-check-result': 'allowed' }).end();
      else res.writeHead(403, { 'x-ext-authz-check-result': 'denied', 'content-type': 'text/plain' }).end('denied by ext_authz');
    });
    const authzPort = await listenLocal(authz);
    closers.push(() => authz.close());
    await writeFile(join(dir, 'mesh.yaml'), `meshConfig:
  trustDomain: cluster.local
  extensionProviders:
  - name: sample-ext-authz-http
    envoyExtAuthzHttp:
      service: 127.0.0.1
      port: ${authzPort}
      pathPrefix: /check
      includeRequestHeadersInCheck: ["x-ext-authz"]
      headersToUpstreamOnAllow: ["x-ext-authz-check-result"]
      headersToDownstreamOnDeny: ["x-ext-authz-check-result", "content-type"]
workloads:
- {name: web, namespace: default, serviceAccount: web, labels: {app: web}, address: ${addr.web}, ports: [{name: http, port: 8080}]}
- {name: own, namespace: default, serviceAccount: own, labels: {app: own}, address: ${addr.own}, ports: [{name: http, port: 8443}]}
- {name: grpc, namespace: default, serviceAccount: grpc, labels: {app: grpc}, address: ${addr.h2}, ports: [{name: http2, port: 8444}]}
- {name: client, namespace: default, serviceAccount: client, labels: {app: client}, address: ${addr.client}}
services:
- {name: web, namespace: default, selector: {app: web}, ports: [{name: http, port: 8080}]}
- {name: own, namespace: default, selector: {app: own}, ports: [{name: http, port: 8443}]}
`);
    files = { mesh: join(dir, 'mesh.yaml'), config: [join(dir, 'policies')], ca: join(dir, 'ca') };
    web = await start('default/web');
    client = await start('default/client');
    closers.push(() => web.close(), () => client.close());
    const server = web.createServer((req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
      const socket = (('stream' in req ? req.stream.session?.socket : req.socket) ?? req.socket) as TLSSocket;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
        principal: req.rampart?.principal ?? null, mtls: req.rampart?.mtls ?? null, version: req.httpVersion, path: req.url,
        resumed: typeof socket.isSessionReused === 'function' ? socket.isSessionReused() : null,
        check: req.headers['x-ext-authz-check-result'] ?? null,
      }));
    });
    server.server.listen(8080, addr.web);
    await once(server.server, 'listening');
    closers.unshift(() => server.close(500));
    dispatcher = client.dispatcher();
  });

  after(async () => {
    for (const c of closers) await c();
  });

  it('takes mTLS and plaintext on one PERMISSIVE port, each for what it proved', async () => {
    const viaMesh = JSON.parse((await status(dispatcher, `http://web.default:8080/`)).body) as Record<string, unknown>;
    assert.deepEqual([viaMesh['principal'], viaMesh['mtls']], ['cluster.local/ns/default/sa/client', true]);
    const plain = await new Promise<Record<string, unknown>>((resolve, reject) => {
      http.get({ host: addr.web, port: 8080, path: '/', agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(JSON.parse(body) as Record<string, unknown>));
      }).on('error', reject);
    });
    assert.deepEqual([plain['principal'], plain['mtls']], [null, false]);
  });

  it('decides and routes the normalized path, refuses HTTP/1.0, and decides once behind two layers', async () => {
    const raw = async (line: string): Promise<string> => (await rawExchange(addr.web, 8080, `${line}\r\nhost: web.default:8080\r\nconnection: close\r\n\r\n`, 3_000)).text;
    assert.match(await raw('GET /public/../admin HTTP/1.1'), /^HTTP\/1\.1 403 /, 'the DENY on /admin applies to /public/../admin');
    const merged = await raw('GET /a/./b?x=1 HTTP/1.1');
    assert.match(merged, /^HTTP\/1\.1 200 /);
    assert.equal((JSON.parse(merged.slice(merged.indexOf('{'), merged.lastIndexOf('}') + 1)) as Record<string, unknown>)['path'], '/a/b?x=1', 'the app gets the path that was decided');
    assert.match(await raw('GET / HTTP/1.0'), /^HTTP\/1\.1 426 /);
    const many = Array.from({ length: 101 }, (_, i) => `x-h${i}: v`).join('\r\n');
    assert.match(await raw(`GET / HTTP/1.1\r\n${many}`), /^HTTP\/1\.1 431 /, 'more than 100 headers are refused, as by the sidecar');
    // Middleware behind createServer: the request is decided once (one access entry), and the app runs.
    const lines: string[] = [];
    const layered = await start('default/own', { accessLog: (l: string) => lines.push(...l.trim().split('\n')) });
    const mw = layered.middleware();
    const server = layered.createServer((req: http.IncomingMessage, res: http.ServerResponse) => mw(req, res, () => res.end('layered')));
    server.server.listen(8443, addr.own);
    await once(server.server, 'listening');
    try {
      assert.equal((await status(client.dispatcher(), 'http://own.default:8443/twice')).body, 'layered');
      await layered.close();
      assert.equal(lines.filter((l) => l.includes('"path":"/twice"')).length, 1);
    } finally {
      await server.close(500);
    }
  });

  it('serves HTTP/2 on the same server, decided the same way', async () => {
    const session = http2.connect(`http://${addr.web}:8080`);
    try {
      const ask = (path: string): Promise<{ status: number; body: string }> => h2Get(session, path);
      const ok = await ask('/');
      assert.equal(ok.status, 200);
      assert.equal((JSON.parse(ok.body) as Record<string, unknown>)['version'], '2.0');
      const denied = await ask('/admin');
      assert.deepEqual([denied.status, denied.body], [403, 'RBAC: access denied']);
    } finally {
      session.close();
    }
  });

  it('asks the CUSTOM provider, and passes on its answer as the sidecar does', async () => {
    const allowed = await status(dispatcher, 'http://web.default:8080/custom', { 'x-ext-authz': 'allow' });
    assert.equal(allowed.status, 200);
    assert.equal((JSON.parse(allowed.body) as Record<string, unknown>)['check'], 'allowed', 'headersToUpstreamOnAllow reach the app');
    assert.equal(checks.at(-1), '/check/custom');
    const denied = await status(dispatcher, 'http://web.default:8080/custom');
    assert.deepEqual([denied.status, denied.body, denied.headers['x-ext-authz-check-result']], [403, 'denied by ext_authz', 'denied']);
    const before = checks.length;
    assert.equal((await status(dispatcher, 'http://web.default:8080/other')).status, 200);
    assert.equal(checks.length, before, 'a path the CUSTOM rule does not name is not sent to the provider');
  });

  it('resumes TLS sessions to the same server under the same expected identity, and never across a new SVID', async () => {
    const ask = async (): Promise<Record<string, unknown>> => {
      const d = client.dispatcher();
      try {
        return JSON.parse((await status(d, `http://web.default:8080/`)).body) as Record<string, unknown>;
      } finally {
        await d.close();
      }
    };
    await ask();
    const again = await ask();
    assert.equal(again['resumed'], true, 'a new connection resumed the session of the last one');
    assert.equal(again['principal'], 'cluster.local/ns/default/sa/client', 'a resumed session still names the client');
    await client.renewSvid();
    const renewed = await ask();
    assert.equal(renewed['resumed'], false, 'a session made under the old SVID is not offered again');
    assert.equal((await ask())['resumed'], true);
  });

  it('refuses a configuration with an error whole, keeping the last good one enforced', async () => {
    const version = web.configVersion;
    assert.equal((await status(dispatcher, `http://web.default:8080/admin`)).status, 403);
    // A typo'd action in the DENY policy: were that one policy left out and the rest applied, /admin would open.
    await replaceFile(join(dir, 'policies', 'p.yaml'), `${policies('PERMISSIVE').replace('action: DENY', 'action: DENNY')}`);
    assert.equal(await web.reload(), false);
    assert.equal(web.configVersion, version);
    assert.equal((await status(dispatcher, `http://web.default:8080/admin`)).status, 403, 'the DENY of the last good configuration still applies');
    // Fixed: applied, and the mode change (STRICT) reaches the next connection.
    await replaceFile(join(dir, 'policies', 'p.yaml'), policies('STRICT'));
    await waitUntil('the fixed configuration', () => (web.configVersion !== version ? true : undefined), 10_000);
    const refused = await new Promise<string>((resolve) => {
      http.get({ host: addr.web, port: 8080, path: '/', agent: false }, (res) => resolve(`status ${res.statusCode}`)).on('error', () => resolve('reset'));
    });
    assert.equal(refused, 'reset');
    assert.equal((await status(client.dispatcher(), `http://web.default:8080/`)).status, 200);
  });

  it('will not start on a first configuration with an error, and says where it is', async () => {
    const bad = join(dir, 'bad');
    await mkdir(bad);
    await writeFile(join(bad, 'p.yaml'), policies('STRICT').replace('action: DENY', 'action: DENNY'));
    await assert.rejects(Workload.start({ workload: 'default/web', mesh: files.mesh, config: [bad], ca: files.ca, accessLog: 'off', log: quiet }),
      (err: Error & { code?: string }) => err.code === 'ERR_PROXY_CONFIG' && /p\.yaml:\d+/.test(err.message) && /action/.test(err.message));
    await assert.rejects(Workload.start({ workload: 'default/nobody', ...files, accessLog: 'off', log: quiet }), /default\/nobody is not in the mesh file/);
    assert.throws(() => web.middleware({ port: 9999 }), /port 9999 is not a port of workload default\/web/);
    // A control plane without the credentials a first CSR needs is refused before anything is attempted.
    await assert.rejects(Workload.start({ workload: 'default/web', controlPlane: { url: 'https://127.0.0.1:1', rootCert: 'x' }, accessLog: 'off', log: quiet }),
      (err: Error & { code?: string }) => err.code === 'ERR_WORKLOAD_TOKEN');
    await assert.rejects(Workload.start({ workload: 'default/web', controlPlane: { url: 'https://127.0.0.1:1', token: 'x' }, accessLog: 'off', log: quiet }),
      (err: Error & { code?: string }) => err.code === 'ERR_WORKLOAD_ROOTS');
  });

  it("enforces in a server of the app's own, made with tlsOptions() and kept current by secure()", async () => {
    const own = await start('default/own');
    closers.unshift(() => own.close());
    const server = own.secure(https.createServer(own.tlsOptions(), own.handler((req: http.IncomingMessage, res: http.ServerResponse) => {
      const cert = (req.socket as TLSSocket).getCertificate() as { serialNumber?: string } | null;
      res.end(JSON.stringify({ principal: req.rampart?.principal ?? null, serial: cert?.serialNumber ?? null }));
    })));
    server.listen(8443, addr.own);
    await once(server, 'listening');
    closers.unshift(() => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }));
    const fresh = (): Promise<Record<string, unknown>> => status(client.dispatcher(), 'https://own.default:8443/').then((r) => JSON.parse(r.body) as Record<string, unknown>);
    const before = await fresh();
    assert.equal(before['principal'], 'cluster.local/ns/default/sa/client');
    await own.renewSvid();
    const afterRotation = await fresh();
    assert.notEqual(afterRotation['serial'], before['serial'], 'secure() gave the server the renewed SVID');
    assert.equal((await status(client.dispatcher(), 'https://own.default:8443/admin')).status, 403, 'the workload policies apply to it');
  });

  it("enforces in an http2 secure server of the app's own, for an HTTP/2 mTLS client with an SVID of the mesh", async () => {
    const w = await start('default/grpc');
    closers.unshift(() => w.close());
    const server = w.secure(http2.createSecureServer({ ...w.tlsOptions(), allowHTTP1: true }, w.handler((req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
      res.end(JSON.stringify({ principal: req.rampart?.principal ?? null, version: req.httpVersion }));
    })));
    server.listen(8444, addr.h2);
    await once(server, 'listening');
    closers.unshift(() => new Promise<void>((r) => server.close(() => r())));
    const svid = await issueSvid(ca, 'default', 'client');
    const session = http2.connect(`https://${addr.h2}:8444`, { key: svid.keyPem, cert: svid.chainPem, ca: ca.trustBundle.pem, checkServerIdentity: () => undefined });
    try {
      const ask = (path: string): Promise<{ status: number; body: string }> => h2Get(session, path);
      const ok = await ask('/');
      assert.equal(ok.status, 200);
      assert.deepEqual(JSON.parse(ok.body), { principal: 'cluster.local/ns/default/sa/client', version: '2.0' });
      assert.deepEqual(await ask('/admin'), { status: 403, body: 'RBAC: access denied' });
    } finally {
      session.close();
    }
  });
});
