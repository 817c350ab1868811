import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { freePort, listenLocal, loopbackAddress, scenarioDir, spawnRampart, steadyLoad, waitUntil, whenReady, type RunningProxy } from '../support/proxy.ts';

/**
 * Renewals through the control plane, with 24 s SVIDs: renewed over mTLS with the current SVID at about half the
 * lifetime; with the control plane down at renewal time, the proxy keeps its SVID, retries with backoff, and renews
 * as soon as its stream to the control plane is back, before the old SVID expires. Traffic between the two
 * sidecars never fails. (The outage is shorter than the half lifetime left: longer, and any proxy's SVID expires.)
 */

function get(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/', headers: { host: 'httpbin.default:8000' }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.setTimeout(5_000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

describe('SVID renewal through the control plane (real processes)', { timeout: 120_000 }, () => {
  const stops: Array<() => Promise<void>> = [];
  after(async () => {
    for (const s of stops.reverse()) await s();
  });

  it('renews with the current SVID, and across a control plane outage at renewal time, with zero failed requests', async () => {
    const { dir, ca } = await scenarioDir('rampart-renewal-');
    const cfg = join(dir, 'cfg');
    await mkdir(cfg);
    const app = http.createServer((_req, res) => res.end('ok'));
    const appPort = await listenLocal(app);
    stops.push(async () => void app.close());
    const [cpPort, upPort] = [await freePort(), await freePort()];
    const server = loopbackAddress();
    await writeFile(join(cfg, 'mesh.yaml'), `workloads:
- {name: httpbin, namespace: default, serviceAccount: httpbin, labels: {app: httpbin}, address: ${server}, ports: [{name: http, port: 8000, targetPort: ${appPort}}]}
- {name: sleep, namespace: default, serviceAccount: sleep, labels: {app: sleep}, address: ${loopbackAddress()}}
services:
- {name: httpbin, namespace: default, selector: {app: httpbin}, ports: [{name: http, port: 8000}]}
`);
    await writeFile(join(cfg, 'p.yaml'), 'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: default}\nspec: {mtls: {mode: STRICT}}\n');
    const startCp = async (): Promise<RunningProxy> => {
      const p = await whenReady(spawnRampart('control-plane', [cfg, '--ca', join(dir, 'ca'), '--port', String(cpPort), '--admin-port', '0', '--svid-ttl', '24s']));
      stops.push(() => p.stop());
      return p;
    };
    const proxy = async (name: string, extra: string[]): Promise<RunningProxy> => {
      const token = join(dir, `${name}.token`);
      await writeFile(token, await ca.bootstrapToken('default', name));
      const p = await whenReady(spawnRampart('proxy', ['--workload', `default/${name}`, '--control-plane', `https://127.0.0.1:${cpPort}`, '--token', token, '--root-cert', join(dir, 'ca', 'root-cert.pem'), ...extra]));
      stops.push(() => p.stop());
      return p;
    };
    let cp = await startCp();
    const httpbin = await proxy('httpbin', []);
    const sleep = await proxy('sleep', ['--upstream', `${upPort}=httpbin.default:8000`]);
    assert.equal(await get(upPort), 200);

    // A renewal with the SVID as the credential, at about half of the 24 s.
    const renewed = await cp.waitFor('a renewal by SVID', (l) => l['event'] === 'svid-signed' && l['by'] === 'svid' && String(l['spiffeId']).endsWith('/sa/httpbin'), 20_000);
    assert.ok(renewed);

    const load = steadyLoad(() => get(upPort), 20);

    // Down from just after this renewal until the first proxy's next renewal has failed, and restarted then: the
    // outage covers a renewal but stays shorter than the half lifetime every SVID still has.
    const proxies = [httpbin, sleep];
    const failedAt = (p: RunningProxy): number => p.lines.findIndex((l) => l['event'] === 'svid-renewal-failed');
    cp.child.kill('SIGKILL');
    await once(cp.child, 'exit');
    await httpbin.waitFor('a failed renewal on either proxy', () => proxies.some((p) => failedAt(p) >= 0), 20_000);
    const failing = proxies.find((p) => failedAt(p) >= 0)!;
    const rotations = (): number => failing.lines.filter((l) => l['event'] === 'svid-rotated').length;
    const before = rotations();
    const last = [...failing.lines].reverse().find((l) => l['event'] === 'svid-rotated')!;
    const expiresAt = new Date(String(last['notAfter'])).getTime();
    cp = await startCp();
    await failing.waitFor('the renewal after the outage', () => rotations() > before, 20_000);
    assert.ok(Date.now() < expiresAt, 'renewed before the old SVID expired');
    // Traffic goes on after the restart: a few more requests through, counted, not a fixed pause.
    const served = load.ok();
    await waitUntil('requests after the restart', () => (load.ok() >= served + 5 ? true : undefined), 15_000);
    const { ok, failures } = await load.stop();
    const events = (p: RunningProxy, name: string): string => p.lines.filter((l) => l['log'] !== 'access' || l['status'] !== 200).map((l) => `${name} ${JSON.stringify(l).slice(0, 300)}`).join('\n');
    assert.deepEqual(failures, [], `${events(httpbin, 'httpbin')}\n${events(sleep, 'sleep')}`);
    assert.ok(ok > 30, `${ok} requests`);
  });
});
