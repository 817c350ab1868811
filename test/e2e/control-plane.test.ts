import assert from 'node:assert/strict';
import { once } from 'node:events';
import { appendFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { StatusReport } from '../../src/control/protocol.ts';
import { createCsr, generateKeyPair } from '../../src/identity/x509.ts';
import { istioSpiffeId } from '../../src/identity/spiffe-id.ts';
import { ControlPlaneClient } from '../../src/proxy/control-client.ts';
import { newCa } from '../support/certs.ts';
import { freePort, listenLocal, loopbackAddress, scenarioDir, spawnRampart, steadyLoad, waitUntil, whenReady, type RunningProxy } from '../support/proxy.ts';

/**
 * The control plane and three proxies as real processes on 127.0.0.1: the proxies get their SVIDs (bootstrap
 * token, then renewals) and their configuration from it; a policy change reaches every proxy; an invalid change
 * is refused with the last good configuration still enforced; the control plane restarts under traffic with no
 * failed request; a proxy started while it is down comes up when it returns; forged credentials are refused.
 */

function appServer(name: string): http.Server {
  return http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ app: name, path: req.url, xfcc: req.headers['x-forwarded-client-cert'] ?? null })));
  });
}

function get(port: number, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.setTimeout(5_000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/**
 * Replaces a configuration file whole (a temporary name, then a rename), as editors save: an in-place write is a
 * truncation and then the text, and a watcher woken between the two — under load, past the debounce — reads an
 * empty, valid file.
 */
async function replaceFile(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}

const STRICT = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
`;

const ALLOW_SLEEP = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-sleep, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]}]
`;

const DENY_BLOCKED = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-blocked, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/blocked"]}}]}]
`;

describe('control plane with three proxies (real processes)', { timeout: 180_000 }, () => {
  let dir: string;
  let cfg: string;
  let ca: Awaited<ReturnType<typeof newCa>>;
  let cpPort: number;
  let adminPort: number;
  let cp: RunningProxy;
  const proxies = new Map<string, Pick<RunningProxy, 'stop' | 'waitFor' | 'lines'>>();
  const apps: http.Server[] = [];
  let upPort: number;
  let httpbinAdmin: number;
  const addr = { httpbin: loopbackAddress(), sleep: loopbackAddress(), ratings: loopbackAddress() };

  const startCp = async (): Promise<RunningProxy> =>
    whenReady(spawnRampart('control-plane', [cfg, '--ca', join(dir, 'ca'), '--port', String(cpPort), '--admin-port', String(adminPort), '--debounce', '50ms']));
  const tokenFile = async (name: string, sa: string): Promise<string> => {
    const f = join(dir, `${name}-${Date.now()}-${Math.random()}.token`);
    await writeFile(f, await ca.bootstrapToken('default', sa));
    return f;
  };
  const proxyArgs = async (workload: string, sa: string, extra: string[] = []): Promise<string[]> =>
    ['--workload', `default/${workload}`, '--control-plane', `https://127.0.0.1:${cpPort}`, '--token', await tokenFile(workload, sa), '--root-cert', join(dir, 'ca', 'root-cert.pem'), ...extra];
  const status = async (): Promise<StatusReport> => JSON.parse((await get(adminPort, '/status', `127.0.0.1:${adminPort}`)).body) as StatusReport;
  /** Every one of `n` proxies connected and running the control plane's current version. */
  const allSynced = async (n: number): Promise<StatusReport> => {
    let last: StatusReport | undefined;
    for (const end = Date.now() + 20_000; Date.now() < end;) {
      try {
        last = await status();
        if (last.proxies.length === n && last.proxies.every((p) => p.state === 'ACK' && p.ackedVersion === last!.version)) return last;
      } catch {
        // Not up (yet).
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`proxies not in sync: ${JSON.stringify(last, null, 2)}`);
  };

  before(async () => {
    ({ dir, ca } = await scenarioDir('rampart-cp-'));
    cfg = join(dir, 'cfg');
    await mkdir(cfg);
    [cpPort, adminPort, upPort, httpbinAdmin] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const ports: Record<string, number> = {};
    for (const name of ['httpbin', 'ratings']) {
      const s = appServer(name);
      apps.push(s);
      ports[name] = await listenLocal(s);
    }
    await writeFile(join(cfg, 'mesh.yaml'), `meshConfig: {trustDomain: cluster.local}
workloads:
- {name: httpbin, namespace: default, serviceAccount: httpbin, labels: {app: httpbin}, address: ${addr.httpbin}, ports: [{name: http, port: 8000, targetPort: ${ports['httpbin']}}]}
- {name: sleep, namespace: default, serviceAccount: sleep, labels: {app: sleep}, address: ${addr.sleep}}
- {name: ratings, namespace: default, serviceAccount: ratings, labels: {app: ratings}, address: ${addr.ratings}, ports: [{name: http, port: 9080, targetPort: ${ports['ratings']}}]}
services:
- {name: httpbin, namespace: default, selector: {app: httpbin}, ports: [{name: http, port: 8000}]}
- {name: ratings, namespace: default, selector: {app: ratings}, ports: [{name: http, port: 9080}]}
`);
    await writeFile(join(cfg, 'policies.yaml'), `${STRICT}---\n${ALLOW_SLEEP}`);
    // The CA directory of the scenario is the control plane's: tokens minted here verify there.
    cp = await startCp();
    const started = await Promise.all([
      whenReady(spawnRampart('proxy', await proxyArgs('httpbin', 'httpbin', ['--admin-port', String(httpbinAdmin)]))),
      whenReady(spawnRampart('proxy', await proxyArgs('sleep', 'sleep', ['--upstream', `${upPort}=httpbin.default:8000`, '--upstream', `${upPort + 1}=ratings.default:9080`]))),
      whenReady(spawnRampart('proxy', await proxyArgs('ratings', 'ratings'))),
    ]);
    proxies.set('httpbin', started[0]).set('sleep', started[1]).set('ratings', started[2]);
  });

  after(async () => {
    await Promise.all([...proxies.values()].map((p) => p.stop()));
    await cp?.stop();
    for (const s of apps) s.close();
  });

  it('signs each proxy an SVID for its token\'s identity and reports them in sync', async () => {
    const s = await allSynced(3);
    assert.deepEqual(s.proxies.map((p) => p.workload).sort(), ['default/httpbin', 'default/ratings', 'default/sleep']);
    for (const p of s.proxies) {
      assert.equal(p.identity, `spiffe://cluster.local/ns/default/sa/${p.workload.split('/')[1]}`);
      assert.ok(p.certNotAfter !== null && new Date(p.certNotAfter).getTime() > Date.now() + 3_600_000, 'a day-long SVID');
    }
    await cp.waitFor('a first SVID signed for a bootstrap token', (l) => l['event'] === 'svid-signed' && l['by'] === 'bootstrap-token');
    const r = await get(upPort, '/headers', 'httpbin.default:8000');
    assert.equal(r.status, 200);
    assert.match(JSON.parse(r.body).xfcc, /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
  });

  it('a policy change reaches every proxy and decides the next request', async () => {
    const before = await status();
    assert.equal((await get(upPort, '/blocked', 'httpbin.default:8000')).status, 200);
    await replaceFile(join(cfg, 'deny.yaml'), DENY_BLOCKED);
    const s = await allSyncedAfter(before.version);
    assert.notEqual(s.version, before.version);
    assert.equal((await get(upPort, '/blocked', 'httpbin.default:8000')).status, 403);
    assert.equal((await get(upPort, '/headers', 'httpbin.default:8000')).status, 200);
    // ratings has no ALLOW policy of its own: the namespace-wide DENY reaches it too.
    assert.equal((await get(upPort + 1, '/blocked', 'ratings.default:9080')).status, 403);
  });

  async function allSyncedAfter(version: string | null): Promise<StatusReport> {
    for (const end = Date.now() + 20_000; Date.now() < end;) {
      const s = await status();
      if (s.version !== version) return allSynced(3);
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`the control plane never left version ${version}`);
  }

  /** The status once it reports a rejected file (10 s at most). */
  async function firstRejection(): Promise<StatusReport> {
    for (const end = Date.now() + 10_000; Date.now() < end;) {
      const x = await status();
      if (x.rejected.length > 0) return x;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('no rejection reported within 10 s');
  }

  it('an invalid change is rejected, reported, and the last good configuration stays enforced', async () => {
    const before = await allSynced(3);
    await replaceFile(join(cfg, 'deny.yaml'), DENY_BLOCKED.replace('action: DENY', 'action: DENNY'));
    const s = await firstRejection();
    assert.equal(s.version, before.version, 'nothing pushed');
    assert.match(s.rejected.join('\n'), /deny\.yaml:5: error .*spec\.action/);
    await cp.waitFor('config-rejected logged', (l) => l['event'] === 'config-rejected');
    assert.equal((await get(upPort, '/blocked', 'httpbin.default:8000')).status, 403, 'the last good DENY still applies');
    // rampart status says so too, and exits 1.
    const out = spawnRampart('status', ['--admin', `http://127.0.0.1:${adminPort}`]);
    const [code] = (await once(out.child, 'exit')) as [number];
    assert.equal(code, 1);
    await replaceFile(join(cfg, 'deny.yaml'), DENY_BLOCKED);
  });

  it('a misspelled kind or API group is rejected with a suggestion, not skipped: the DENY it carries stays enforced', async () => {
    for (const [typo, expected] of [
      [DENY_BLOCKED.replace('kind: AuthorizationPolicy', 'kind: AuthorisationPolicy'), /deny\.yaml:2: error .*kind: .*"AuthorisationPolicy" \(did you mean "AuthorizationPolicy"\?\)/],
      [DENY_BLOCKED.replace('security.istio.io/v1', 'securty.istio.io/v1'), /deny\.yaml:1: error .*apiVersion: .*did you mean "security\.istio\.io\/v1"/],
    ] as const) {
      // The good DENY in force first, with nothing rejected.
      await replaceFile(join(cfg, 'deny.yaml'), DENY_BLOCKED);
      const inForce = async (): Promise<boolean> => (await status()).rejected.length === 0 && (await get(upPort, '/blocked', 'httpbin.default:8000')).status === 403;
      for (const end = Date.now() + 10_000; Date.now() < end && !(await inForce());) await new Promise((r) => setTimeout(r, 50));
      assert.ok(await inForce(), 'the good DENY in force before the typo');
      const before = await allSynced(3);
      await replaceFile(join(cfg, 'deny.yaml'), typo);
      const s = await firstRejection();
      assert.equal(s.version, before.version, 'nothing pushed');
      assert.match(s.rejected.join('\n'), expected);
      assert.equal((await get(upPort, '/blocked', 'httpbin.default:8000')).status, 403, 'the DENY still applies');
      const out = spawnRampart('status', ['--admin', `http://127.0.0.1:${adminPort}`]);
      const [code] = (await once(out.child, 'exit')) as [number];
      assert.equal(code, 1, 'rampart status exits 1 while a file is rejected');
      await replaceFile(join(cfg, 'deny.yaml'), DENY_BLOCKED);
      for (const end = Date.now() + 10_000; Date.now() < end && (await status()).rejected.length > 0;) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual((await status()).rejected, []);
    }
  });

  it('a mesh file that disappears is reported and changes nothing; it is read again when back', async () => {
    const before = await allSynced(3);
    const meshFile = join(cfg, 'mesh.yaml');
    await rename(meshFile, `${meshFile}.away`);
    let s: StatusReport | undefined;
    for (const end = Date.now() + 10_000; Date.now() < end && s === undefined;) {
      const x = await status();
      if (x.sourceError !== null) s = x;
      else await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(s !== undefined, 'the unreadable source reported');
    assert.match(s.sourceError ?? '', /mesh\.yaml/);
    assert.equal(s.version, before.version);
    assert.equal((await get(upPort, '/headers', 'httpbin.default:8000')).status, 200);
    await rename(`${meshFile}.away`, meshFile);
    for (const end = Date.now() + 10_000; Date.now() < end && (await status()).sourceError !== null;) await new Promise((r) => setTimeout(r, 50));
    assert.equal((await status()).sourceError, null);
    await allSynced(3);
  });

  it('the control plane killed and restarted while traffic flows: zero failed requests, proxies resume', async () => {
    await allSynced(3);
    const load = steadyLoad(async () => (await get(upPort, '/headers', 'httpbin.default:8000')).status, 5);
    cp.child.kill('SIGKILL');
    await once(cp.child, 'exit');
    await proxies.get('sleep')!.waitFor('the stream lost', (l) => l['event'] === 'control-plane-disconnected');
    const duringOutage = load.ok();
    await waitUntil('requests flowing with the control plane down', () => (load.ok() >= duringOutage + 5 ? true : undefined), 15_000);
    // The sidecar's /config says it is cut off from the control plane, and why.
    type CpView = { version: string; controlPlane: { connected: boolean; lastError: string | null; digest: string | null; identity: string } };
    const config = async (): Promise<CpView> => JSON.parse((await get(httpbinAdmin, '/config', 'admin')).body) as CpView;
    const away = await config();
    assert.equal(away.controlPlane.connected, false);
    assert.ok(away.controlPlane.lastError !== null && away.controlPlane.lastError !== '');
    assert.match(away.controlPlane.digest ?? '', /^[0-9a-f]{64}$/);
    // Restarted with a second trusted root (step 1 of a root rotation): the proxies take it from the snapshot.
    const certs = async (): Promise<{ trustBundle: unknown[] }> => JSON.parse((await get(httpbinAdmin, '/certs', 'admin')).body) as { trustBundle: unknown[] };
    assert.equal((await certs()).trustBundle.length, 1);
    await appendFile(join(dir, 'ca', 'root-cert.pem'), (await newCa()).trustBundle.pem);
    cp = await startCp();
    await allSynced(3);
    assert.equal((await certs()).trustBundle.length, 2, 'the new root reached the proxy');
    const back = await config();
    assert.equal(back.controlPlane.connected, true);
    assert.equal(back.controlPlane.identity, 'spiffe://cluster.local/ns/istio-system/sa/rampart-control-plane');
    const { ok, failures } = await load.stop();
    assert.deepEqual(failures, []);
    assert.ok(ok > 50, `${ok} requests`);
  });

  it('a proxy started while the control plane is down comes up once it returns', async () => {
    await proxies.get('ratings')!.stop();
    proxies.delete('ratings');
    await cp.stop();
    const late = spawnRampart('proxy', await proxyArgs('ratings', 'ratings'));
    proxies.set('ratings', late);
    await late.waitFor('a failed first CSR', (l) => l['event'] === 'svid-renewal-failed', 20_000);
    assert.ok(!late.lines.some((l) => l['event'] === 'ready'));
    cp = await startCp();
    const ready = await whenReady(late, 30_000);
    proxies.set('ratings', ready);
    await allSynced(3);
    assert.equal((await get(upPort + 1, '/headers', 'ratings.default:9080')).status, 200);
  });

  it('a change a proxy cannot apply is NACKed with its error, shown in the status, and the proxy keeps its version', async () => {
    const before = await allSynced(3);
    const meshFile = join(cfg, 'mesh.yaml');
    const original = await readFile(meshFile, 'utf8');
    // A running sidecar's labels and ports are fixed for its life (a pod's are too): ratings refuses this version.
    await writeFile(meshFile, original.replace('labels: {app: ratings}', 'labels: {app: ratings, version: v2}'));
    let s: StatusReport | undefined;
    for (const end = Date.now() + 15_000; Date.now() < end && s === undefined;) {
      const x = await status();
      if (x.version !== before.version && x.proxies.some((p) => p.state === 'NACK')) s = x;
      else await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(s !== undefined, 'a NACK reported');
    const ratings = s.proxies.find((p) => p.workload === 'default/ratings')!;
    assert.equal(ratings.state, 'NACK');
    assert.match(ratings.error ?? '', /workload default\/ratings changed in the mesh file; restart the sidecar/);
    assert.equal(ratings.ackedVersion, before.version, 'still on the version it ran');
    await cp.waitFor('the NACK logged', (l) => l['event'] === 'proxy-nack');
    assert.equal((await get(upPort + 1, '/headers', 'ratings.default:9080')).status, 200, 'ratings still serves on its old configuration');
    await writeFile(meshFile, original);
    await allSynced(3);
  });

  it('refuses a forged bootstrap token, a used one, a CSR for another identity, and a subscription for another workload', async () => {
    const roots = await readFile(join(dir, 'ca', 'root-cert.pem'), 'utf8');
    const url = `https://127.0.0.1:${cpPort}`;
    const csrFor = async (sa: string): Promise<string> => createCsr(await generateKeyPair(), istioSpiffeId('cluster.local', 'default', sa).uri);
    // Signed by another CA.
    const forger = await newCa();
    const forged = new ControlPlaneClient({ url, rootsPem: roots, workload: 'default/httpbin', token: await forger.bootstrapToken('default', 'httpbin') });
    await assert.rejects(forged.requestSvid(await csrFor('httpbin'), undefined), /refused the CSR \(401\).*not signed by this CA/);
    // A genuine token, for sleep, with a CSR naming httpbin.
    const sleepToken = await ca.bootstrapToken('default', 'sleep');
    const wrongId = new ControlPlaneClient({ url, rootsPem: roots, workload: 'default/sleep', token: sleepToken });
    await assert.rejects(wrongId.requestSvid(await csrFor('httpbin'), undefined), /refused the CSR \(40[13]\)/);
    // The same token again (even with a correct CSR): single use.
    await assert.rejects(wrongId.requestSvid(await csrFor('sleep'), undefined), /already used/);
    // A proxy holding sleep's identity asking for httpbin's configuration.
    const impostor = spawnRampart('proxy', ['--workload', 'default/httpbin', '--control-plane', url, '--token', await tokenFile('impostor', 'sleep'), '--root-cert', join(dir, 'ca', 'root-cert.pem'), '--host', loopbackAddress()]);
    try {
      await cp.waitFor('the subscription refused', (l) => l['event'] === 'subscribe-refused' && String(l['reason']).includes('runs as spiffe://cluster.local/ns/default/sa/httpbin'));
      assert.ok(!impostor.lines.some((l) => l['event'] === 'ready'));
    } finally {
      await impostor.stop();
    }
  });
});
