import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import type { CertificateAuthority } from '../../src/identity/ca.ts';
import type { Svid } from '../../src/identity/svid.ts';
import { issueSvid } from '../support/certs.ts';
import { listenLocal, loopbackAddress, peerAuthentication, scenarioDir, startProxy, writeSidecarFiles, type RunningProxy } from '../support/proxy.ts';

/**
 * Live changes under load: the sidecar's SVID rotates every couple of seconds and the policies are rewritten while
 * clients keep sending requests over kept-alive and fresh mTLS connections. Not one request may fail.
 */

const HOST = loopbackAddress();
let dir: string;
let ca: CertificateAuthority;
let client: Svid;
let app: http.Server;
let proxy: RunningProxy;

const policies = (extraPath: string): string => `${peerAuthentication('STRICT')}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-sleep, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]
    to: [{operation: {paths: ["/load", "${extraPath}"]}}]
`;

before(async () => {
  ({ dir, ca } = await scenarioDir('rampart-live-'));
  client = await issueSvid(ca, 'default', 'sleep');
  app = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' }).end('ok'));
  app.keepAliveTimeout = 60_000;
  const appPort = await listenLocal(app);
  const files = await writeSidecarFiles(dir, policies('/v1'), `workloads:
- name: httpbin
  serviceAccount: httpbin
  labels: {app: httpbin}
  address: ${HOST}
  ports: [{name: http, port: 8000, targetPort: ${appPort}}]
`);
  proxy = await startProxy([...files, '--workload', 'default/httpbin', '--svid-ttl', '3s']);
});

after(async () => {
  await proxy?.stop();
  app?.close();
  await rm(dir, { recursive: true, force: true });
});

test('SVID rotation and policy reloads under load: zero failed requests, old connections kept, new ones on the new SVID', async () => {
  const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 4, key: client.keyPem, cert: client.chainPem, ca: ca.trustBundle.pem, checkServerIdentity: () => undefined });
  const failures: string[] = [];
  const serials = new Set<string>();
  let ok = 0;
  const one = (agent: https.Agent | false): Promise<void> =>
    new Promise((resolve) => {
      const req = https.request({
        host: HOST, port: 8000, path: '/load', agent,
        ...(agent === false ? { key: client.keyPem, cert: client.chainPem, ca: ca.trustBundle.pem, checkServerIdentity: () => undefined } : {}),
      }, (res) => {
        const sock = res.socket as import('node:tls').TLSSocket;
        serials.add(sock.getPeerCertificate().serialNumber);
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) ok++;
          else failures.push(`status ${res.statusCode}`);
          resolve();
        });
      });
      req.on('error', (err) => {
        failures.push(err.message);
        resolve();
      });
      req.end();
    });
  const rotated = (): number => proxy.lines.filter((l) => l['event'] === 'svid-rotated').length;
  // At least 7 s of load; longer (bounded) on a slow machine until the SVID has rotated twice, so that what is
  // asserted below has happened under load however fast the machine is.
  const until = Date.now() + 7_000;
  const hardEnd = Date.now() + 30_000;
  const lane = async (agent: https.Agent | false): Promise<void> => {
    while (Date.now() < until || (rotated() < 3 && Date.now() < hardEnd)) await one(agent);
  };
  const reloads = (async () => {
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 1_300));
      await writeFile(join(dir, 'policies', 'p.yaml'), policies(`/v${i + 2}`));
    }
  })();
  await Promise.all([lane(keepAlive), lane(keepAlive), lane(keepAlive), lane(false), lane(false), reloads]);
  keepAlive.destroy();
  assert.deepEqual(failures.slice(0, 5), [], `${failures.length} failed of ${ok + failures.length}`);
  assert.ok(ok > 100, `only ${ok} requests completed`);
  const rotations = rotated();
  assert.ok(rotations >= 3, `expected the SVID to rotate at least twice under load, saw ${rotations} SVIDs`);
  assert.ok(serials.size >= 2, `clients saw ${serials.size} server certificate(s)`);
  const applied = proxy.lines.filter((l) => l['event'] === 'config-applied').length;
  assert.ok(applied >= 1, 'the policy changes were applied');
  assert.equal(proxy.lines.filter((l) => l['event'] === 'config-rejected').length, 0);
});
