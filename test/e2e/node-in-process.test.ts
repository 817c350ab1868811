import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import tls, { type TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { exportJWK, SignJWT } from 'jose';
import { request as undiciRequest, type Dispatcher } from 'undici';
import { Workload } from '../../src/node/index.ts';
import { issueSvid } from '../support/certs.ts';
import { freePort, listenLocal, loopbackAddress, scenarioDir, spawnRampart, waitUntil, whenReady, type RunningProxy } from '../support/proxy.ts';

/**
 * rampart/node against a real control plane (a child process) and a real sidecar: the seed scenario's three
 * policies enforced inside an Express app and a Fastify app with no sidecar, the same table of requests through
 * both of them and through a sidecar giving the same answers, SVID rotation under held connections, a policy change
 * reaching the apps, and secure naming refusing a server with another identity.
 */

const ISSUER = 'https://issuer.rampart.example';

/** The seed scenario's policies as `npm start` runs them (examples/mesh), their JWKS served by this test. */
async function seedPolicies(jwksPort: number): Promise<string> {
  const text = await readFile(join(import.meta.dirname, '..', '..', 'examples', 'mesh', 'policies.yaml'), 'utf8');
  assert.ok(text.includes('http://127.0.0.1:15180/.well-known/jwks.json'));
  return text.replace('http://127.0.0.1:15180/.well-known/jwks.json', `http://127.0.0.1:${jwksPort}/jwks.json`);
}

const DENY_BLOCKED = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-blocked, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/blocked"]}}]}]
`;

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly wwwAuthenticate: string | undefined;
}

/** What an app saw of a request: the parts that must not depend on who enforced. */
function appView(req: http.IncomingMessage): Record<string, unknown> {
  return {
    path: req.url, authorization: req.headers['authorization'] ?? null, xfcc: req.headers['x-forwarded-client-cert'] ?? null,
    proto: req.headers['x-forwarded-proto'] ?? null, hasRequestId: typeof req.headers['x-request-id'] === 'string',
  };
}

async function ask(dispatcher: Dispatcher, host: string, path: string, token?: string): Promise<Answer> {
  const r = await undiciRequest(`http://${host}:8000${path}`, { dispatcher, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  const body = await r.body.text();
  const w = r.headers['www-authenticate'];
  return { status: r.statusCode, body, wwwAuthenticate: typeof w === 'string' ? w : undefined };
}

/** A plaintext request straight to the port: answered, or the connection reset (as a STRICT port does). */
function plaintext(address: string): Promise<string> {
  // 'reset': the connection ended with no HTTP answer (a sidecar resets it; a TLS-only server drops it).
  return new Promise((resolve) => {
    const req = http.request({ host: address, port: 8000, path: '/headers', agent: false }, (res) => {
      res.resume();
      resolve(`status ${res.statusCode}`);
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNRESET' || err.message === 'socket hang up' ? 'reset' : `error ${err.code ?? err.message}`));
    req.setTimeout(5_000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

describe('rampart/node with a control plane (Express, Fastify, and a sidecar beside them)', { timeout: 180_000 }, () => {
  let dir: string;
  let cfg: string;
  let ca: Awaited<ReturnType<typeof scenarioDir>>['ca'];
  let cp: RunningProxy;
  let sidecar: RunningProxy;
  let jwks: http.Server;
  let key: KeyObject;
  let otherKey: KeyObject;
  let cpPort: number;
  const addr = { node: loopbackAddress(), fastify: loopbackAddress(), sidecar: loopbackAddress(), sleep: loopbackAddress(), guest: loopbackAddress(), rogue: loopbackAddress() };
  const workloads: Workload[] = [];
  let httpbinNode: Workload;
  let httpbinFastify: Workload;
  let sleep: Workload;
  let guest: Workload;
  let sleepDispatcher: Dispatcher;
  let guestDispatcher: Dispatcher;
  const servers: Array<{ close(): unknown }> = [];
  let fastify: FastifyInstance;
  const nodeAccess: Array<Record<string, unknown>> = [];
  let sidecarApp: http.Server;

  /** A token from the issuer; `expiredAgoS` makes one that expired that many seconds ago. */
  const token = (claims: Record<string, unknown> = {}, signWith: KeyObject = key, expiredAgoS?: number): Promise<string> => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ aud: 'httpbin', ...claims }).setProtectedHeader({ alg: 'RS256', kid: signWith === key ? 'k1' : 'k2' }).setIssuer(ISSUER).setSubject('alice')
      .setIssuedAt(now - 3_600).setExpirationTime(expiredAgoS === undefined ? now + 600 : now - expiredAgoS).sign(signWith);
  };

  const start = async (workload: string, sa: string, extra: { accessLog?: (lines: string) => void } = {}): Promise<Workload> => {
    const w = await Workload.start({
      workload: `default/${workload}`,
      controlPlane: { url: `https://127.0.0.1:${cpPort}`, token: await ca.bootstrapToken('default', sa), rootCertFile: join(dir, 'ca', 'root-cert.pem') },
      accessLog: extra.accessLog ?? 'off',
      log: { info: () => undefined, warn: () => undefined, error: () => undefined },
    });
    workloads.push(w);
    return w;
  };

  before(async () => {
    ({ dir, ca } = await scenarioDir('rampart-node-'));
    cfg = join(dir, 'cfg');
    await mkdir(cfg);
    key = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    otherKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const jwk = { ...(await exportJWK(key)), kid: 'k1', alg: 'RS256', use: 'sig' };
    delete (jwk as Record<string, unknown>)['d'];
    for (const f of ['p', 'q', 'dp', 'dq', 'qi']) delete (jwk as Record<string, unknown>)[f];
    jwks = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
    const jwksPort = await listenLocal(jwks);
    sidecarApp = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(appView(req)));
    });
    const appPort = await listenLocal(sidecarApp);
    cpPort = await freePort();
    const workload = (name: string, sa: string, labels: string, address: string, ports = '[{name: http, port: 8000}]'): string =>
      `- {name: ${name}, namespace: default, serviceAccount: ${sa}, labels: {${labels}}, address: ${address}, ports: ${ports}}`;
    await writeFile(join(cfg, 'mesh.yaml'), `meshConfig: {trustDomain: cluster.local}
workloads:
${workload('httpbin-node', 'httpbin', 'app: httpbin, via: node', addr.node)}
${workload('httpbin-fastify', 'httpbin', 'app: httpbin, via: fastify', addr.fastify)}
${workload('httpbin-sidecar', 'httpbin', 'app: httpbin, via: sidecar', addr.sidecar, `[{name: http, port: 8000, targetPort: ${appPort}}]`)}
${workload('httpbin-rogue', 'httpbin', 'app: rogue', addr.rogue)}
${workload('sleep', 'my-service-account', 'app: sleep', addr.sleep, '[]')}
${workload('guest', 'guest', 'app: guest', addr.guest, '[]')}
services:
- {name: httpbin-node, namespace: default, selector: {via: node}, ports: [{name: http, port: 8000}]}
- {name: httpbin-fastify, namespace: default, selector: {via: fastify}, ports: [{name: http, port: 8000}]}
- {name: httpbin-sidecar, namespace: default, selector: {via: sidecar}, ports: [{name: http, port: 8000}]}
- {name: httpbin-rogue, namespace: default, selector: {app: rogue}, ports: [{name: http, port: 8000}]}
`);
    await writeFile(join(cfg, 'policies.yaml'), await seedPolicies(jwksPort));
    cp = await whenReady(spawnRampart('control-plane', [cfg, '--ca', join(dir, 'ca'), '--port', String(cpPort), '--admin-port', String(await freePort()), '--debounce', '50ms']));
    const tokenFile = join(dir, 'sidecar.token');
    await writeFile(tokenFile, await ca.bootstrapToken('default', 'httpbin'));
    const starting = whenReady(spawnRampart('proxy', ['--workload', 'default/httpbin-sidecar', '--control-plane', `https://127.0.0.1:${cpPort}`, '--token', tokenFile, '--root-cert', join(dir, 'ca', 'root-cert.pem')]));

    // Express, enforced by middleware, on the server rampart/node makes for the workload port.
    httpbinNode = await start('httpbin-node', 'httpbin', { accessLog: (lines) => nodeAccess.push(...lines.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)) });
    const app = express();
    app.use(httpbinNode.middleware());
    app.use((req, res) => {
      const socket = req.socket as TLSSocket;
      res.json({
        ...appView(req), principal: req.rampart?.principal ?? null, serviceAccount: req.rampart?.serviceAccount ?? null, claims: req.rampart?.claims ?? null,
        serverSerial: typeof socket.getCertificate === 'function' ? (socket.getCertificate() as { serialNumber?: string } | null)?.serialNumber ?? null : null,
        clientPort: socket.remotePort,
      });
    });
    const nodeServer = httpbinNode.createServer(app);
    nodeServer.server.listen(8000, addr.node);
    await once(nodeServer.server, 'listening');
    servers.push({ close: () => nodeServer.close(1_000) });

    // Fastify on its own HTTPS server (the workload's TLS options, kept current by secure()), enforced by the plugin.
    httpbinFastify = await start('httpbin-fastify', 'httpbin');
    fastify = Fastify({ https: httpbinFastify.tlsOptions() });
    httpbinFastify.secure(fastify.server as unknown as tls.Server);
    await fastify.register(httpbinFastify.fastify());
    fastify.all('/*', async (request) => ({ ...appView(request.raw), principal: (request as unknown as { rampart?: { principal?: string } }).rampart?.principal ?? null }));
    await fastify.listen({ port: 8000, host: addr.fastify });

    sleep = await start('sleep', 'my-service-account');
    guest = await start('guest', 'guest');
    sleepDispatcher = sleep.dispatcher();
    guestDispatcher = guest.dispatcher();
    sidecar = await starting;
  });

  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
    await fastify?.close();
    await Promise.all(workloads.map((w) => w.close()));
    await sidecar?.stop();
    await cp?.stop();
    jwks?.close();
    sidecarApp?.close();
  });

  it('enforces the seed scenario in Express and Fastify, with the same answers as a sidecar, request for request', async () => {
    const good = await token();
    const admin = await token({ sub: 'bob' });
    const forged = await token({}, otherKey);
    const expired = await token({}, key, 600);
    const rows: Array<{ name: string; from: Dispatcher; path: string; token?: string; expect: number }> = [
      { name: 'mesh client with the allowed identity', from: sleepDispatcher, path: '/headers', expect: 200 },
      { name: 'allowed identity on /admin', from: sleepDispatcher, path: '/admin', expect: 403 },
      { name: 'allowed identity on /admin/users', from: sleepDispatcher, path: '/admin/users', expect: 403 },
      { name: 'another identity, no token', from: guestDispatcher, path: '/headers', expect: 403 },
      { name: 'another identity with a good token', from: guestDispatcher, path: '/headers', token: good, expect: 200 },
      { name: 'a good token on /admin', from: guestDispatcher, path: '/admin', token: admin, expect: 403 },
      { name: 'a token signed by another key', from: guestDispatcher, path: '/headers', token: forged, expect: 401 },
      { name: 'an expired token', from: guestDispatcher, path: '/headers', token: expired, expect: 401 },
    ];
    for (const row of rows) {
      const answers = {
        node: await ask(row.from, 'httpbin-node.default', row.path, row.token),
        fastify: await ask(row.from, 'httpbin-fastify.default', row.path, row.token),
        sidecar: await ask(row.from, 'httpbin-sidecar.default', row.path, row.token),
      };
      assert.equal(answers.sidecar.status, row.expect, `${row.name}: the sidecar answered ${answers.sidecar.status} ${answers.sidecar.body}`);
      for (const via of ['node', 'fastify'] as const) {
        assert.equal(answers[via].status, answers.sidecar.status, `${row.name}: ${via} answered ${answers[via].status} ${answers[via].body}`);
        if (row.expect !== 200) {
          assert.equal(answers[via].body, answers.sidecar.body, `${row.name}: ${via}'s denial text`);
          assert.equal(answers[via].wwwAuthenticate?.replace(/realm="http:\/\/[^/]+/, 'realm="'), answers.sidecar.wwwAuthenticate?.replace(/realm="http:\/\/[^/]+/, 'realm="'), `${row.name}: www-authenticate`);
        } else {
          // The app sees the request as the sidecar's app sees it: the token removed, XFCC for the caller, proto, id.
          const seen = JSON.parse(answers[via].body) as Record<string, unknown>;
          const bySidecar = JSON.parse(answers.sidecar.body) as Record<string, unknown>;
          for (const k of ['path', 'authorization', 'xfcc', 'proto', 'hasRequestId']) assert.deepEqual(seen[k], bySidecar[k], `${row.name}: ${via}'s app saw ${k}`);
        }
      }
    }
    for (const via of ['node', 'fastify', 'sidecar'] as const) assert.equal(await plaintext(addr[via]), 'reset', `plaintext to the STRICT port (${via})`);
  });

  it("gives the app the caller's verified identity and claims", async () => {
    const bySleep = JSON.parse((await ask(sleepDispatcher, 'httpbin-node.default', '/headers')).body) as Record<string, unknown>;
    assert.equal(bySleep['principal'], 'cluster.local/ns/default/sa/my-service-account');
    assert.equal(bySleep['serviceAccount'], 'my-service-account');
    assert.equal(bySleep['claims'], null);
    assert.match(String(bySleep['xfcc']), /^By=spiffe:\/\/cluster\.local\/ns\/default\/sa\/httpbin;Hash=[0-9a-f]{64};Subject="";URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/my-service-account$/);
    const byGuest = JSON.parse((await ask(guestDispatcher, 'httpbin-node.default', '/headers', await token({ group: 'eng' }))).body) as Record<string, unknown>;
    assert.equal(byGuest['principal'], 'cluster.local/ns/default/sa/guest');
    assert.equal((byGuest['claims'] as Record<string, unknown>)['group'], 'eng');
    assert.equal((byGuest['claims'] as Record<string, unknown>)['sub'], 'alice');
    const fastifySaw = JSON.parse((await ask(sleepDispatcher, 'httpbin-fastify.default', '/headers')).body) as Record<string, unknown>;
    assert.equal(fastifySaw['principal'], 'cluster.local/ns/default/sa/my-service-account');
  });

  it('writes the access entry of each decision, as the sidecar does', async () => {
    // Paths of this test alone: entries of earlier requests may still arrive (the log is written in batches).
    await ask(sleepDispatcher, 'httpbin-node.default', '/admin/access-entry');
    await ask(sleepDispatcher, 'httpbin-node.default', '/status/201');
    const entries = await waitUntil('two access entries', () => {
      const mine = nodeAccess.filter((e) => e['path'] === '/admin/access-entry' || e['path'] === '/status/201');
      return mine.length >= 2 ? mine : undefined;
    }, 5_000);
    const denied = entries.find((e) => e['path'] === '/admin/access-entry')!;
    assert.equal(denied['log'], 'access');
    assert.equal(denied['decision'], 'DENY');
    assert.equal(denied['policy'], 'default/deny-admin');
    assert.equal(denied['status'], 403);
    assert.equal(denied['sourcePrincipal'], 'spiffe://cluster.local/ns/default/sa/my-service-account');
    assert.equal(denied['workload'], 'default/httpbin-node');
    const allowed = entries.find((e) => e['path'] === '/status/201')!;
    assert.equal(allowed['decision'], 'ALLOW');
    assert.equal(allowed['status'], 200);
    assert.ok((allowed['bytesSent'] as number) > 0, 'bytes the app wrote are counted');
    // The same Istio series as a sidecar's, on the same admin answers.
    const metrics = await httpbinNode.admin('/metrics');
    assert.match(metrics.body, /istio_requests_total\{reporter="destination",source_principal="spiffe:\/\/cluster\.local\/ns\/default\/sa\/my-service-account",destination_workload="httpbin-node"/);
    assert.match(metrics.body, /rampart_decisions_total\{kind="http",decision="DENY",decided_by="deny",policy="default\/deny-admin"\}/);
  });

  it('rotates the SVID with connections held open: they keep working, new ones get the new certificate', async () => {
    const held = sleep.dispatcher({ connections: 1 });
    const first = JSON.parse((await ask(held, 'httpbin-node.default', '/one')).body) as Record<string, unknown>;
    assert.ok(typeof first['serverSerial'] === 'string');
    await httpbinNode.renewSvid();
    await sleep.renewSvid();
    const again = await ask(held, 'httpbin-node.default', '/two');
    assert.equal(again.status, 200);
    const onHeld = JSON.parse(again.body) as Record<string, unknown>;
    assert.equal(onHeld['clientPort'], first['clientPort'], 'the same connection carried the second request');
    assert.equal(onHeld['serverSerial'], first['serverSerial'], 'an open connection keeps the certificate it was made with');
    const fresh = sleep.dispatcher();
    const renewed = JSON.parse((await ask(fresh, 'httpbin-node.default', '/three')).body) as Record<string, unknown>;
    assert.notEqual(renewed['serverSerial'], first['serverSerial'], 'a new connection gets the renewed certificate');
    assert.equal(renewed['principal'], 'cluster.local/ns/default/sa/my-service-account', "the client's renewed SVID names the same identity");
    await held.close();
    await fresh.close();
  });

  it("a policy change at the control plane reaches the apps' next requests", async () => {
    assert.equal((await ask(sleepDispatcher, 'httpbin-node.default', '/blocked')).status, 200);
    const versions = [httpbinNode.configVersion, httpbinFastify.configVersion];
    await writeFile(join(cfg, 'blocked.yaml.tmp'), DENY_BLOCKED);
    await rename(join(cfg, 'blocked.yaml.tmp'), join(cfg, 'blocked.yaml'));
    await waitUntil('the new version in both apps', () => (httpbinNode.configVersion !== versions[0] && httpbinFastify.configVersion !== versions[1] ? true : undefined), 15_000);
    for (const host of ['httpbin-node.default', 'httpbin-fastify.default']) {
      const r = await ask(sleepDispatcher, host, '/blocked');
      assert.equal(r.status, 403, host);
      assert.equal(r.body, 'RBAC: access denied');
    }
    assert.equal((await ask(sleepDispatcher, 'httpbin-node.default', '/headers')).status, 200);
  });

  it('refuses a server that proves another service account than the registry lists (secure naming)', async () => {
    // At the address of httpbin-rogue (service account httpbin), a server holding a genuine SVID of the mesh, for guest.
    const svid = await issueSvid(ca, 'default', 'guest');
    const rogue = tls.createServer({ key: svid.keyPem, cert: svid.chainPem }, (s: TLSSocket) => {
      s.on('error', () => undefined);
      s.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
    });
    rogue.listen(8000, addr.rogue);
    await once(rogue, 'listening');
    try {
      await assert.rejects(ask(sleepDispatcher, 'httpbin-rogue.default', '/'), /the peer is spiffe:\/\/cluster\.local\/ns\/default\/sa\/guest, expected service account default\/httpbin/);
      const agent = sleep.httpsAgent();
      const viaAgent = await new Promise<string>((resolve) => {
        https.get('https://httpbin-rogue.default:8000/', { agent }, (res) => resolve(`status ${res.statusCode}`)).on('error', (err) => resolve(`error ${err.message}`));
      });
      assert.match(viaAgent, /^error .*expected service account default\/httpbin/);
      agent.destroy();
      // The same agent reaches a server that proves the right identity.
      const good = sleep.httpsAgent();
      const ok = await new Promise<number>((resolve, reject) => {
        https.get('https://httpbin-node.default:8000/via-agent', { agent: good }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject);
      });
      assert.equal(ok, 200);
      good.destroy();
    } finally {
      rogue.close();
    }
  });

  it('reaches the app through the global fetch with the dispatcher option', async () => {
    const r = await fetch('https://httpbin-node.default:8000/fetched', { dispatcher: sleepDispatcher } as unknown as RequestInit);
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as Record<string, unknown>)['principal'], 'cluster.local/ns/default/sa/my-service-account');
  });
});

