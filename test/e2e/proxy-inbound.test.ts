import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import tls from 'node:tls';
import { join } from 'node:path';
import { SignJWT, type JWK } from 'jose';
import { writeCaDir } from '../../src/io/ca-dir.ts';
import { issueSvid, newCa } from '../support/certs.ts';
import { loopbackAddress, startProxy, type RunningProxy } from '../support/proxy.ts';
import type { CertificateAuthority } from '../../src/identity/ca.ts';
import type { Svid } from '../../src/identity/svid.ts';

/**
 * The sidecar as a real child process (`rampart proxy`) in front of a tiny app, on 127.0.0.1 addresses, with SVIDs
 * from a real CA and a real JWKS server: the seed scenario's three policies allowing and denying the right requests,
 * STRICT and PERMISSIVE, a spoofed x-forwarded-client-cert, config reload (good and bad), admin endpoints.
 */

const BIN = join(import.meta.dirname, '..', '..', 'src', 'cli', 'bin.ts');
const ISS = 'https://issuer.rampart.example';
const NOW = Math.floor(Date.now() / 1000);

// A loopback address of its own lets the sidecar use the seed's port 8000 without clashing with anything else.
const HOST = loopbackAddress();

let dir: string;
let ca: CertificateAuthority;
let sleepSvid: Svid;
let otherSvid: Svid;
let proxy: RunningProxy;
let adminPort = 0;
let app: http.Server;
let jwks: http.Server;
let signKey: ReturnType<typeof generateKeyPairSync>['privateKey'];
const seenByApp: Array<{ path: string; headers: http.IncomingHttpHeaders }> = [];

const policies = (mode: string, jwksUri: string): string => `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: ${mode}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: httpbin-jwt, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: "${ISS}"
    jwksUri: "${jwksUri}"
    audiences: ["httpbin"]
    outputClaimToHeaders: [{header: x-jwt-sub, claim: sub}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt-or-mtls, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/my-service-account"]}}]
  - from: [{source: {requestPrincipals: ["${ISS}/*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  - from: [{source: {notPrincipals: ["cluster.local/ns/ops/sa/admin"]}}]
    to: [{operation: {ports: ["8000"], paths: ["/admin", "/admin/*"]}}]
`;

let jwksUri = '';
const policyFile = (): string => join(dir, 'policies', 'policies.yaml');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rampart-proxy-'));
  ca = await newCa();
  await writeCaDir(join(dir, 'ca'), ca.material, false);
  sleepSvid = await issueSvid(ca, 'default', 'my-service-account');
  otherSvid = await issueSvid(ca, 'default', 'other');

  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  signKey = pair.privateKey;
  const jwk = { ...(pair.publicKey.export({ format: 'jwk' }) as JWK), kid: 'k1', alg: 'ES256' };
  jwks = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
  jwks.listen(0, '127.0.0.1');
  await once(jwks, 'listening');
  jwksUri = `http://127.0.0.1:${(jwks.address() as net.AddressInfo).port}/jwks.json`;

  app = http.createServer((req, res) => {
    seenByApp.push({ path: req.url ?? '', headers: req.headers });
    const body = JSON.stringify({ path: req.url, headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  });
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  const appPort = (app.address() as net.AddressInfo).port;

  await mkdir(join(dir, 'policies'));
  await writeFile(policyFile(), policies('STRICT', jwksUri));
  await writeFile(join(dir, 'mesh.yaml'), `workloads:
- name: httpbin
  namespace: default
  serviceAccount: httpbin
  labels: {app: httpbin}
  address: ${HOST}
  ports:
  - {name: http, port: 8000, targetPort: ${appPort}}
`);
  proxy = await startProxy(['--mesh', join(dir, 'mesh.yaml'), '--config', join(dir, 'policies'), '--workload', 'default/httpbin', '--ca', join(dir, 'ca'), '--admin-port', '0']);
  adminPort = proxy.ready['admin'] as number;
});

after(async () => {
  await proxy?.stop();
  app?.close();
  jwks?.close();
  await rm(dir, { recursive: true, force: true });
});

interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

function mtls(svid: Svid, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: HOST, port: 8000, path, headers: { host: 'httpbin.default:8000', ...headers },
      key: svid.keyPem, cert: svid.chainPem, ca: ca.trustBundle.pem, agent: false,
      // The server's SPIFFE ID is checked below (secure naming is the client sidecar's job, tested there).
      checkServerIdentity: () => undefined,
    }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function plain(path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port: 8000, path, headers: { host: 'httpbin.default:8000', ...headers }, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const token = (claims: Record<string, unknown> = {}): Promise<string> =>
  new SignJWT({ iss: ISS, sub: 'alice', aud: 'httpbin', exp: NOW + 3600, iat: NOW, ...claims }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(signKey);

test('mTLS from the allowed service account reaches the app, with the peer in x-forwarded-client-cert (a spoofed one dropped)', async () => {
  const r = await mtls(sleepSvid, '/headers?x=1', { 'x-forwarded-client-cert': 'By=spiffe://evil;URI=spiffe://cluster.local/ns/ops/sa/admin' });
  assert.equal(r.status, 200, r.body);
  const seen = JSON.parse(r.body) as { path: string; headers: Record<string, string> };
  assert.equal(seen.path, '/headers?x=1');
  const xfcc = seen.headers['x-forwarded-client-cert']!;
  assert.match(xfcc, /^By=spiffe:\/\/cluster\.local\/ns\/default\/sa\/httpbin;Hash=[0-9a-f]{64};Subject="";URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/my-service-account$/);
  assert.doesNotMatch(xfcc, /evil|ops/);
  assert.equal(seen.headers['x-forwarded-proto'], 'https');
  assert.ok((seen.headers['x-request-id'] ?? '').length > 0);
});

test('STRICT: a plaintext client is refused at the connection, and it is logged', async () => {
  await assert.rejects(plain('/headers'), (e: NodeJS.ErrnoException) => ['ECONNRESET', 'EPIPE'].includes(e.code ?? '') || /socket hang up/.test(e.message));
  await proxy.waitFor('refusal log', (l) => l['kind'] === 'connection' && /STRICT/.test(String(l['reason'])));
});

test('mTLS from another service account: 403 RBAC without a token, 200 with a valid token (the token not forwarded, its claim in a header), 401 with an expired one', async () => {
  const denied = await mtls(otherSvid, '/headers');
  assert.equal(denied.status, 403);
  assert.equal(denied.body, 'RBAC: access denied');
  assert.equal(denied.headers['x-rampart-policy'], undefined, 'no policy names for callers by default');
  assert.equal(denied.headers['x-rampart-request-id'], undefined);
  assert.equal(denied.headers['x-request-id'], undefined);

  const ok = await mtls(otherSvid, '/headers', { authorization: `Bearer ${await token()}` });
  assert.equal(ok.status, 200, ok.body);
  const seen = JSON.parse(ok.body) as { headers: Record<string, string> };
  assert.equal(seen.headers['authorization'], undefined, 'the token is removed unless forwardOriginalToken');
  assert.equal(seen.headers['x-jwt-sub'], 'alice', 'outputClaimToHeaders');

  const expired = await mtls(otherSvid, '/headers', { authorization: `Bearer ${await token({ exp: NOW - 3600 })}` });
  assert.equal(expired.status, 401);
  assert.equal(expired.body, 'Jwt is expired');
  assert.match(expired.headers['www-authenticate'] ?? '', /^Bearer realm="http:\/\/httpbin\.default:8000\/headers", error="invalid_token"$/);

  const wrongAud = await mtls(otherSvid, '/headers', { authorization: `Bearer ${await token({ aud: 'other' })}` });
  assert.equal(wrongAud.status, 403);
  assert.equal(wrongAud.body, 'Audiences in Jwt are not allowed');
});

/** One request as raw bytes over mTLS, so that header lines can be repeated exactly as an attacker sends them. */
function mtlsRaw(svid: Svid, head: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: HOST, port: 8000, key: svid.keyPem, cert: svid.chainPem, ca: ca.trustBundle.pem, checkServerIdentity: () => undefined }, () => {
      sock.write(`${head}connection: close\r\n\r\n`);
    });
    let text = '';
    sock.on('data', (c: Buffer) => (text += c.toString('latin1')));
    sock.on('end', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, body: text.slice(text.indexOf('\r\n\r\n') + 4) });
    });
    sock.on('error', reject);
  });
}

test('tokens on the wire: a second Authorization line is verified too, and a token Envoy finds malformed is 401 with its text', async () => {
  const good = await token();
  const forged = `${good.slice(0, good.lastIndexOf('.'))}.${Buffer.alloc(64, 7).toString('base64url')}`;
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const shaped = (header: Record<string, unknown>, claims: Record<string, unknown>): string => {
    const input = `${b64({ alg: 'ES256', kid: 'k1', ...header })}.${b64({ iss: ISS, sub: 'alice', aud: 'httpbin', exp: NOW + 3600, ...claims })}`;
    return `${input}.${cryptoSign('sha256', Buffer.from(input), { key: signKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
  };
  const req = (...auth: string[]): string => `GET /headers HTTP/1.1\r\nhost: httpbin.default:8000\r\n${auth.map((a) => `authorization: Bearer ${a}\r\n`).join('')}`;
  const rows: Array<[string, string, number, string | undefined]> = [
    ['a good token, then a forged one on a second line', req(good, forged), 401, 'Jwt verification fails'],
    ['a forged token, then a good one', req(forged, good), 401, 'Jwt verification fails'],
    ['a validly signed token whose kid is a number', req(shaped({ kid: 7 }, {})), 401, 'Jwt header [kid] field is not a string'],
    ['a validly signed token whose exp is beyond uint64', req(shaped({}, { exp: 1e20 })), 401, 'Jwt payload [exp] field is not a positive 64 bit integer'],
    ['a validly signed token whose aud list holds a number', req(shaped({}, { aud: ['httpbin', 1] })), 401, 'Jwt payload [aud] field is not a string or string list'],
  ];
  for (const [name, head, status, body] of rows) {
    const before = seenByApp.length;
    const r = await mtlsRaw(otherSvid, head);
    assert.equal(r.status, status, `${name}: ${r.body}`);
    if (body !== undefined) assert.equal(r.body, body, name);
    assert.equal(seenByApp.length, before, `${name}: nothing reached the app`);
  }
  // The same good token on two lines is one token: allowed, and neither line reaches the app.
  const before = seenByApp.length;
  const twice = await mtlsRaw(otherSvid, req(good, good));
  assert.equal(twice.status, 200, twice.body);
  assert.equal(seenByApp.length, before + 1);
  assert.equal(seenByApp.at(-1)!.headers['authorization'], undefined);
});

test('DENY before ALLOW: /admin is refused even to the allowed service account; paths are normalized first', async () => {
  assert.equal((await mtls(sleepSvid, '/admin')).status, 403);
  assert.equal((await mtls(sleepSvid, '/admin/users')).status, 403);
  assert.equal((await mtls(sleepSvid, '/public/../admin')).status, 403);
  const r = await mtls(sleepSvid, '/a/./b/../c');
  assert.equal(r.status, 200);
  assert.equal((JSON.parse(r.body) as { path: string }).path, '/a/c', 'forwarded as normalized');
});

test('access log lines and Istio metrics on the admin port; readiness and the current certificate', async () => {
  const entry = await proxy.waitFor('access log of a 403', (l) => l['log'] === 'access' && l['status'] === 403 && l['decidedBy'] === 'deny');
  assert.equal(entry['policy'], 'default/deny-admin');
  assert.equal(entry['sourcePrincipal'], 'spiffe://cluster.local/ns/default/sa/my-service-account');
  assert.equal(entry['mtls'], true);
  const get = async (path: string): Promise<Reply> => {
    const res = await fetch(`http://127.0.0.1:${adminPort}${path}`);
    return { status: res.status, headers: {}, body: await res.text() };
  };
  assert.equal((await get('/ready')).status, 200);
  const metrics = (await get('/metrics')).body;
  assert.match(metrics, /istio_requests_total\{reporter="destination",source_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/my-service-account",destination_workload="httpbin",destination_workload_namespace="default",destination_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/httpbin",connection_security_policy="mutual_tls",request_protocol="http",response_code="403",response_flags="-"\} \d+/);
  assert.match(metrics, /rampart_decisions_total\{kind="http",decision="DENY",decided_by="deny",policy="default\/deny-admin"\} \d+/);
  assert.match(metrics, /rampart_connections_refused_total\{reason="plaintext_to_strict"\} [1-9]/);
  const certs = JSON.parse((await get('/certs')).body) as { spiffeId: string };
  assert.equal(certs.spiffeId, 'spiffe://cluster.local/ns/default/sa/httpbin');
  const config = (await get('/config')).body;
  assert.match(config, /require-jwt-or-mtls/);
});

test('reload: PERMISSIVE takes effect on the next connection; an invalid change is refused and the last good configuration stays', async () => {
  await writeFile(policyFile(), policies('PERMISSIVE', jwksUri));
  await proxy.waitFor('config version 2', (l) => l['event'] === 'config-applied' && l['configVersion'] === '2');
  const plainNoToken = await plain('/headers');
  assert.equal(plainNoToken.status, 403, 'plaintext is accepted now, and authorization still applies');
  const plainToken = await plain('/headers', { authorization: `Bearer ${await token()}` });
  assert.equal(plainToken.status, 200);
  assert.equal((JSON.parse(plainToken.body) as { headers: Record<string, string> }).headers['x-forwarded-proto'], 'http');
  assert.equal((await mtls(sleepSvid, '/headers')).status, 200, 'mTLS on the same port still works');

  await writeFile(policyFile(), `${policies('STRICT', jwksUri)}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: broken, namespace: default}
spec:
  action: ALLOW
  rules:
  - to: [{operation: {methods: 7}}]
`);
  const rejected = await proxy.waitFor('config rejected', (l) => l['event'] === 'config-rejected');
  assert.match(JSON.stringify(rejected['errors']), /policies\.yaml:\d+.*methods/);
  // Still PERMISSIVE (version 2): the STRICT in the same broken change was not applied.
  assert.equal((await plain('/headers', { authorization: `Bearer ${await token()}` })).status, 200);
});

test('reload: a misspelled kind is refused with a suggestion, not skipped, and the DENY it carried still applies', async () => {
  assert.equal((await mtls(sleepSvid, '/admin')).status, 403, 'the DENY in force before the change');
  const typo = policies('PERMISSIVE', jwksUri).replace('kind: AuthorizationPolicy\nmetadata: {name: deny-admin', 'kind: AuthorisationPolicy\nmetadata: {name: deny-admin');
  assert.notEqual(typo, policies('PERMISSIVE', jwksUri));
  await writeFile(policyFile(), typo);
  const rejected = await proxy.waitFor('config rejected', (l) => l['event'] === 'config-rejected' && /AuthorisationPolicy/.test(JSON.stringify(l['errors'])));
  assert.match(JSON.stringify(rejected['errors']), /policies\.yaml:\d+.*did you mean \\"AuthorizationPolicy\\"/);
  assert.equal((await mtls(sleepSvid, '/admin')).status, 403, 'the last good DENY still applies');
  assert.equal((await mtls(sleepSvid, '/headers')).status, 200);
});

test('a first configuration with errors: the proxy exits 2 and names file, line and field; nothing listens', async () => {
  const { spawnSync } = await import('node:child_process');
  const bad = join(dir, 'bad');
  await mkdir(bad);
  await writeFile(join(bad, 'p.yaml'), 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: default}\nspec:\n  action: ALOW\n');
  const r = spawnSync(process.execPath, ['--import', 'tsx', BIN, 'proxy', '--mesh', join(dir, 'mesh.yaml'), '--config', bad, '--workload', 'default/httpbin', '--ca', join(dir, 'ca')], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /p\.yaml:5.*spec\.action/);
  const good = join(dir, 'good');
  await mkdir(good);
  await writeFile(join(good, 'p.yaml'), policies('STRICT', jwksUri));
  const unknown = spawnSync(process.execPath, ['--import', 'tsx', BIN, 'proxy', '--mesh', join(dir, 'mesh.yaml'), '--config', good, '--workload', 'default/nope', '--ca', join(dir, 'ca')], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /workload default\/nope is not in the mesh file/);
});
