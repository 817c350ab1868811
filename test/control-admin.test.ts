import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import http from 'node:http';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runStatus } from '../src/cli/control-plane.ts';
import { DecisionFeed } from '../src/control/decision-feed.ts';
import type { ReportedAccess } from '../src/control/protocol.ts';
import { ControlPlane, ControlPlaneError } from '../src/control/server.ts';
import { DirectorySource } from '../src/control/source.ts';
import { PATH_STREAM } from '../src/control/protocol.ts';
import { clientTlsOptions } from '../src/identity/tls.ts';
import { issueSvid, newCa } from './support/certs.ts';
import { waitUntil } from './support/proxy.ts';

/** The control plane's admin port: who may read it, the console's pages and its event stream, over real sockets. */

const MESH = `workloads:
- {name: httpbin, namespace: default, serviceAccount: httpbin, labels: {app: httpbin}, address: 127.0.0.1, ports: [{name: http, port: 8000, targetPort: 18000}]}
services: []
`;
const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };

function entry(over: Partial<ReportedAccess> = {}): ReportedAccess {
  return {
    kind: 'http', time: '2026-12-06T12:00:00.000Z', durationMs: 1, port: 8000, sourcePrincipal: 'spiffe://cluster.local/ns/default/sa/sleep', mtls: true,
    method: 'GET', authority: 'httpbin.default:8000', path: '/headers', status: 403, responseFlags: '-', decision: 'DENY', decidedBy: 'deny',
    policy: 'default/deny-admin', rule: 0, reason: 'denied by DENY policy default/deny-admin rule 0', configVersion: '1', ...over,
  };
}

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: string }

function request(port: number, path: string, o: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: o.method ?? 'GET', headers: o.headers ?? {}, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

/** Reads server-sent events until `count` `decisions` events came; resolves with their ids and entries. */
function events(port: number, count: number, headers: Record<string, string> = {}, onEvent: (n: number) => void = () => undefined): { done: Promise<{ id: string; data: Array<{ id: number; path?: string }> }[]>; close(): void } {
  let req: http.ClientRequest;
  const done = new Promise<{ id: string; data: Array<{ id: number; path?: string }> }[]>((resolve, reject) => {
    const got: { id: string; data: Array<{ id: number; path?: string }> }[] = [];
    req = http.get({ host: '127.0.0.1', port, path: '/console/events', headers, agent: false }, (res) => {
      assert.equal(res.headers['content-type'], 'text/event-stream');
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
        for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          const fields = Object.fromEntries(block.split('\n').filter((l) => !l.startsWith(':') && l.includes(': ')).map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)]));
          if (fields['event'] !== 'decisions') continue;
          got.push({ id: fields['id']!, data: JSON.parse(fields['data']!) as Array<{ id: number; path?: string }> });
          onEvent(got.length);
          if (got.length === count) {
            resolve(got);
            res.destroy();
          }
        }
      });
    });
    req.on('error', (err) => (got.length < count ? reject(err) : undefined));
  });
  return { done, close: () => req.destroy() };
}

describe('the control plane admin port', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  async function start(extra: Partial<ConstructorParameters<typeof ControlPlane>[0]> = {}): Promise<ControlPlane> {
    const dir = await mkdtemp(join(tmpdir(), 'rampart-admin-'));
    await writeFile(join(dir, 'mesh.yaml'), MESH);
    const cp = new ControlPlane({ source: new DirectorySource(dir), ca: await newCa(), port: 0, adminPort: 0, log: quiet, ...extra });
    await cp.start();
    cleanups.push(() => cp.stop());
    return cp;
  }

  it('on loopback answers only requests that name a loopback host (no DNS rebinding)', async () => {
    const cp = await start();
    const port = cp.adminPort!;
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]) assert.equal((await request(port, '/status', { headers: { host } })).status, 200, host);
    const rebound = await request(port, '/status', { headers: { host: `attacker.example:${port}` } });
    assert.equal(rebound.status, 421);
    assert.match(rebound.body, /answers only for 127\.0\.0\.1, localhost and \[::1\], not attacker\.example/);
    assert.equal((await request(port, '/console/', { headers: { host: 'rebind.attacker.example' } })).status, 421);
    // Probes stay open whatever the name.
    assert.equal((await request(port, '/ready', { headers: { host: 'kubelet.example' } })).status, 200);
  });

  it('is read-only and sends its pages with a script policy that allows no inline script', async () => {
    const cp = await start();
    const port = cp.adminPort!;
    const post = await request(port, '/status', { method: 'POST', body: '{}' });
    assert.equal(post.status, 405);
    const page = await request(port, '/console/');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-security-policy']), /script-src 'self';/);
    assert.doesNotMatch(page.body, /<script>/);
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    assert.equal((await request(port, '/')).headers.location, '/console/');
  });

  it('refuses to bind beyond loopback without a token', () => {
    assert.throws(() => new ControlPlane({ source: new DirectorySource('/nonexistent'), ca: undefined as never, adminPort: 0, adminHost: '0.0.0.0', log: quiet }),
      (e: unknown) => e instanceof ControlPlaneError && e.code === 'ERR_ADMIN_TOKEN_REQUIRED' && /beyond loopback, with no token/.test(e.message));
  });

  it('beyond loopback: Bearer for programs, a sign-in and a session cookie for browsers; rampart status with the token file', async () => {
    const token = 'console-token-0123456789';
    const cp = await start({ adminHost: '0.0.0.0', adminToken: token });
    const port = cp.adminPort!;
    const none = await request(port, '/status');
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Bearer realm="rampart-admin"');
    assert.match(none.body, /"code":"ERR_ADMIN_UNAUTHENTICATED"/);
    assert.equal((await request(port, '/status', { headers: { authorization: 'Bearer console-token-0123456788' } })).status, 401);
    assert.equal((await request(port, '/status', { headers: { authorization: `Bearer ${token}x` } })).status, 401);
    const ok = await request(port, '/status', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200);
    assert.equal((JSON.parse(ok.body) as { workloads: string[] }).workloads[0], 'default/httpbin');
    assert.equal((await request(port, '/console/events')).status, 401);
    assert.equal((await request(port, '/ready')).status, 200);

    const page = await request(port, '/console/');
    assert.equal(page.status, 401);
    assert.match(page.body, /<form method="post" action="\/console\/login">/);
    const wrong = await request(port, '/console/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=nope' });
    assert.equal(wrong.status, 401);
    assert.match(wrong.body, /That token is not the one/);
    assert.equal(wrong.headers['set-cookie'], undefined);
    const signed = await request(port, '/console/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${token}` });
    assert.equal(signed.status, 303);
    const cookie = String(signed.headers['set-cookie']);
    assert.match(cookie, /^rampart_console=[\w-]{43}; HttpOnly; SameSite=Strict; Path=\/$/);
    assert.ok(!cookie.includes(token), 'the cookie is a session, not the token');
    const session = cookie.split(';')[0]!;
    assert.equal((await request(port, '/console/', { headers: { cookie: session } })).status, 200);
    assert.equal((await request(port, '/console/', { headers: { cookie: 'rampart_console=forged' } })).status, 401);

    const dir = await mkdtemp(join(tmpdir(), 'rampart-admin-token-'));
    await writeFile(join(dir, 'token'), `${token}\n`);
    await writeFile(join(dir, 'bad'), 'not-it\n');
    const admin = `http://127.0.0.1:${port}`;
    const withToken = await runStatus({ admin, adminTokenFile: join(dir, 'token'), json: true });
    assert.equal(withToken.exitCode, 0, withToken.stderr);
    const without = await runStatus({ admin });
    assert.equal(without.exitCode, 2);
    assert.match(without.stderr, /needs its admin token \(--admin-token-file FILE\)/);
    assert.match((await runStatus({ admin, adminTokenFile: join(dir, 'bad') })).stderr, /the one given was refused/);
    assert.match((await runStatus({ admin, adminTokenFile: join(dir, 'missing') })).stderr, /--admin-token-file .*missing: no such file/);
  });

  it('streams decisions as server-sent events and resumes after Last-Event-ID with nothing lost or repeated', async () => {
    const cp = await start();
    const port = cp.adminPort!;
    cp.decisions.add('default/httpbin', 1, [entry({ path: '/one' }), entry({ path: '/two' })]);
    // The backlog arrives first; then what is added while the viewer is connected.
    const first = events(port, 2, {}, (n) => void (n === 1 && cp.decisions.add('default/httpbin', 1, [entry({ path: '/three' })])));
    const got = await first.done;
    assert.deepEqual(got.flatMap((e) => e.data.map((d) => d.path)), ['/one', '/two', '/three']);
    assert.equal(got[0]!.id, '2');
    assert.equal(got[1]!.id, '3');
    cp.decisions.add('default/httpbin', 1, [entry({ path: '/four' })]);
    const resumed = events(port, 1, { 'last-event-id': '2' });
    const again = await resumed.done;
    assert.deepEqual(again[0]!.data.map((d) => d.path), ['/three', '/four']);
  });

  it('escapes what requests carry: a path with markup is shown as text', async () => {
    const cp = await start();
    const port = cp.adminPort!;
    const [e] = cp.decisions.add('default/httpbin', 1, [entry({ path: '/<img src=x onerror=alert(1)>', reason: '"><script>alert(2)</script>', explanation: 'DENY </pre><b>x</b>' })]);
    const page = await request(port, `/console/decisions/${e!.id}`);
    assert.equal(page.status, 200);
    assert.ok(!page.body.includes('<img src=x'), 'markup from the request reached the page');
    assert.ok(!page.body.includes('<script>alert(2)'), 'markup from the reason reached the page');
    assert.match(page.body, /&lt;img src=x onerror=alert\(1\)&gt;/);
    assert.match(page.body, /DENY &lt;\/pre&gt;&lt;b&gt;x&lt;\/b&gt;/);
    const api = JSON.parse((await request(port, `/console/api/decisions/${e!.id}`)).body) as { path: string };
    assert.equal(api.path, '/<img src=x onerror=alert(1)>');
    assert.equal((await request(port, '/console/api/decisions/999999')).status, 404);
  });
});

describe('decisions reported on the stream', () => {
  it('are kept under the subscribing workload whatever an entry claims, and malformed ones are not kept', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rampart-admin-report-'));
    await writeFile(join(dir, 'mesh.yaml'), MESH);
    const ca = await newCa();
    const cp = new ControlPlane({ source: new DirectorySource(dir), ca, port: 0, log: quiet });
    await cp.start();
    const svid = await issueSvid(ca, 'default', 'httpbin');
    const session = http2.connect(`https://127.0.0.1:${cp.port}`, { ...clientTlsOptions(svid, ca.trustBundle, { ids: [cp.identity.uri] }), servername: 'rampart-control-plane' });
    session.on('error', () => undefined);
    try {
      const req = session.request({ ':method': 'POST', ':path': PATH_STREAM }, { endStream: false });
      req.on('error', () => undefined);
      req.write(`${JSON.stringify({ type: 'subscribe', workload: 'default/httpbin' })}\n`);
      await new Promise<void>((resolve) => req.once('data', () => resolve()));
      req.write(`${JSON.stringify({ type: 'access', entries: [{ ...entry({ path: '/forged' }), workload: 'istio-system/other', id: 99 }], dropped: 7 })}\n`);
      req.write(`${JSON.stringify({ type: 'access', entries: [{ path: '/not-a-report' }] })}\n`);
      req.write(`${JSON.stringify({ type: 'access', entries: [entry({ path: '/last' })] })}\n`);
      await waitUntil('two reports kept', () => (cp.decisions.nextId === 3 ? true : undefined), 5_000);
      const kept = cp.decisions.recent();
      assert.deepEqual(kept.map((e) => [e.id, e.workload, e.path]), [[1, 'default/httpbin', '/forged'], [2, 'default/httpbin', '/last']]);
      assert.equal(cp.decisions.dropped, 7);
    } finally {
      session.destroy();
      await cp.stop();
    }
  });
});

describe('DecisionFeed', () => {
  it('keeps the most recent entries in its ring, numbered, and counts what proxies dropped', () => {
    const feed = new DecisionFeed(3);
    const seen: number[] = [];
    const off = feed.subscribe((es) => seen.push(...es.map((e) => e.id)));
    feed.add('default/a', 1, [entry(), entry()], 0);
    feed.add('default/a', 1, [entry(), entry()], 5);
    off();
    feed.add('default/a', 1, [entry()]);
    assert.deepEqual(seen, [1, 2, 3, 4]);
    assert.deepEqual(feed.recent().map((e) => e.id), [3, 4, 5]);
    assert.equal(feed.get(1), undefined);
    assert.equal(feed.get(5)?.workload, 'default/a');
    assert.deepEqual(feed.recent(10, 3).map((e) => e.id), [4, 5]);
    assert.deepEqual(feed.recent(1).map((e) => e.id), [5]);
    assert.equal(feed.dropped, 5);
  });
});
