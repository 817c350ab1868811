import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import { listenLocal, loopbackAddress, peerAuthentication, scenarioDir, startProxy, writeSidecarFiles } from '../support/proxy.ts';

/** --workers 2: the listeners are shared, the admin endpoint sums the workers' metrics, and a stop ends them all. */
test('a sidecar of two worker processes serves, reports metrics summed over both, and stops cleanly', async () => {
  const HOST = loopbackAddress();
  const { dir } = await scenarioDir('rampart-workers-');
  const app = http.createServer((_req, res) => res.end(`pid ${process.pid}`));
  const appPort = await listenLocal(app);
  const files = await writeSidecarFiles(dir, peerAuthentication('PERMISSIVE'), `workloads:
- name: httpbin
  labels: {app: httpbin}
  address: ${HOST}
  ports: [{name: http, port: 8000, targetPort: ${appPort}}]
`);
  const proxy = await startProxy([...files, '--workload', 'default/httpbin', '--workers', '2', '--admin-port', '0']);
  try {
    assert.equal(proxy.ready['workers'], 2);
    const count = (event: string): number => proxy.lines.filter((l) => l['event'] === event).length;
    // The workers' lines come through the same pipe as the primary's, but need not have been read yet.
    await proxy.waitFor('both workers ready', () => count('worker-ready') >= 2);
    assert.equal(count('worker-ready'), 2);
    for (let i = 0; i < 20; i++) {
      const r = await fetch(`http://${HOST}:8000/x${i}`, { headers: { connection: 'close' } });
      assert.equal(r.status, 200);
      await r.text();
    }
    const admin = proxy.ready['admin'] as number;
    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    const m = /istio_requests_total\{[^}]*response_code="200"[^}]*\} (\d+)/.exec(metrics);
    assert.equal(m?.[1], '20', 'summed over the workers');
    assert.equal((await fetch(`http://127.0.0.1:${admin}/ready`)).status, 200);
    assert.match(await (await fetch(`http://127.0.0.1:${admin}/certs`)).text(), /spiffe:\/\/cluster\.local\/ns\/default\/sa\/default/);
    // Each worker holds an SVID of its own.
    await proxy.waitFor('an SVID per worker', () => count('svid-rotated') >= 2);
    assert.equal(count('svid-rotated'), 2);
  } finally {
    await proxy.stop();
    app.close();
    await rm(dir, { recursive: true, force: true });
  }
  assert.equal(proxy.child.exitCode, 0);
});
