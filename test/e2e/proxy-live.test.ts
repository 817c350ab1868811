import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeCaDir } from '../../src/io/ca-dir.ts';
import type { CertificateAuthority } from '../../src/identity/ca.ts';
import type { Svid } from '../../src/identity/svid.ts';
import { issueSvid, newCa } from '../support/certs.ts';
import { loopbackAddress, startProxy, type RunningProxy } from '../support/proxy.ts';

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

const policies = (extraPath: string): string => `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
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
  dir = await mkdtemp(join(tmpdir(), 'rampart-live-'));
  ca = await newCa();
  await writeCaDir(join(dir, 'ca'), ca.material, false);
  client = await issueSvid(ca, 'default', 'sleep');
  app = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' }).end('ok'));
  app.keepAliveTimeout = 60_000;
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  await mkdir(join(dir, 'policies'));
  await writeFile(join(dir, 'policies', 'p.yaml'), policies('/v1'));
  await writeFile(join(dir, 'mesh.yaml'), `workloads:
- name: httpbin
  serviceAccount: httpbin
  labels: {app: httpbin}
  address: ${HOST}
  ports: [{name: http, port: 8000, targetPort: ${(app.address() as net.AddressInfo).port}}]
`);
  proxy = await startProxy(['--mesh', join(dir, 'mesh.yaml'), '--config', join(dir, 'policies'), '--workload', 'default/httpbin', '--ca', join(dir, 'ca'), '--svid-ttl', '3s']);
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
  const until = Date.now() + 7_000;
  const lane = async (agent: https.Agent | false): Promise<void> => {
    while (Date.now() < until) await one(agent);
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
  const rotations = proxy.lines.filter((l) => l['event'] === 'svid-rotated').length;
  assert.ok(rotations >= 3, `expected the SVID to rotate at least twice under load, saw ${rotations} SVIDs`);
  assert.ok(serials.size >= 2, `clients saw ${serials.size} server certificate(s)`);
  const applied = proxy.lines.filter((l) => l['event'] === 'config-applied').length;
  assert.ok(applied >= 1, 'the policy changes were applied');
  assert.equal(proxy.lines.filter((l) => l['event'] === 'config-rejected').length, 0);
});
