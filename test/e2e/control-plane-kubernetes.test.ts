import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { istioSpiffeId } from '../../src/identity/spiffe-id.ts';
import { createCsr, generateKeyPair } from '../../src/identity/x509.ts';
import { ControlPlaneClient } from '../../src/proxy/control-client.ts';
import { join } from 'node:path';
import { newCa } from '../support/certs.ts';
import { CONTROL_PLANE_PERMISSIONS, KubeApiServer, type KubeObject } from '../support/kube-api.ts';
import { freePort, listenLocal, loopbackAddress, scenarioDir, spawnRampart, whenReady, type RunningProxy } from '../support/proxy.ts';

/**
 * `rampart control-plane --kubernetes`: the workloads are the cluster's Pods, the registry its Services, the
 * policies its Istio resources. Two sidecars (real processes) get their configuration from it; an
 * AuthorizationPolicy created, changed and deleted through the API server decides the next request.
 */

const POLICY = (methods: string[]): KubeObject => ({
  apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'httpbin', namespace: 'default' },
  spec: { selector: { matchLabels: { app: 'httpbin' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/sleep'] } }], to: [{ operation: { methods } }] }] },
});

/**
 * A projected service-account token as the kubelet writes it: a JWT whose sub is system:serviceaccount:NS:SA. Its
 * signature is the cluster's business; here the test API server's TokenReview knows the token itself.
 */
function serviceAccountToken(ns: string, sa: string, nonce: string): string {
  const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  return `${b64({ alg: 'RS256', kid: 'cluster' })}.${b64({ aud: ['istio-ca'], iss: 'https://kubernetes.default.svc', sub: `system:serviceaccount:${ns}:${sa}`, iat: now, exp: now + 3600, 'kubernetes.io': { namespace: ns, serviceaccount: { name: sa } }, nonce })}.c2lnbmF0dXJl`;
}

function request(port: number, method: string, path: string): Promise<number | 'reset'> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    // An --upstream port is a TCP tunnel: a destination it cannot reach closes the app's connection.
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' || err.message === 'socket hang up' ? resolve('reset') : reject(err)));
    req.setTimeout(5_000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

describe('control plane on a Kubernetes API server (real processes)', { timeout: 120_000 }, () => {
  let api: KubeApiServer;
  let ca: Awaited<ReturnType<typeof newCa>>;
  let dir: string;
  let cp: RunningProxy;
  const proxies: RunningProxy[] = [];
  let app: http.Server;
  let upPort: number;
  let up2Port: number;
  let cpUrl: string;

  before(async () => {
    ({ dir, ca } = await scenarioDir('rampart-cp-kube-'));
    app = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('hello'));
    });
    const appPort = await listenLocal(app);
    upPort = await freePort();
    up2Port = await freePort();
    const [httpbinIp, sleepIp] = [loopbackAddress(), loopbackAddress()];
    api = new KubeApiServer();
    await api.listen();
    // Least privilege, as deploy/kubernetes grants it: list and watch of the kinds it reads, status and events it writes.
    api.addUser('cp-token', { username: 'system:serviceaccount:istio-system:rampart', allow: CONTROL_PLANE_PERMISSIONS });
    const pod = (name: string, ip: string, sa: string, app: string, ports: number[]): KubeObject => ({
      apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', labels: { app } },
      spec: { serviceAccountName: sa, containers: [{ name: 'app', ports: ports.map((p) => ({ name: 'http', containerPort: p })) }] }, status: { phase: 'Running', podIP: ip },
    });
    // The pod's IP is a loopback address of its own here: its sidecar listens there, the app on 127.0.0.1.
    api.put(pod('httpbin-1', httpbinIp, 'httpbin', 'httpbin', [appPort]));
    api.put(pod('sleep-1', sleepIp, 'sleep', 'sleep', []));
    api.put(pod('sleep-2', loopbackAddress(), 'sleep', 'sleep', []));
    api.put({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'httpbin', namespace: 'default' }, spec: { selector: { app: 'httpbin' }, clusterIP: '10.96.0.30', ports: [{ name: 'http', port: 8000, targetPort: appPort }] } });
    api.put({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'default' }, spec: { mtls: { mode: 'STRICT' } } });
    api.put(POLICY(['GET']));
    const kubeconfig = join(dir, 'kubeconfig');
    await writeFile(kubeconfig, api.kubeconfig('cp-token'));
    const [cpPort, adminPort] = [await freePort(), await freePort()];
    cp = await whenReady(spawnRampart('control-plane', ['--kubernetes', '--kubeconfig', kubeconfig, '--ca', join(dir, 'ca'), '--port', String(cpPort), '--admin-port', String(adminPort), '--debounce', '50ms']));
    const token = async (name: string, sa: string): Promise<string> => {
      const f = join(dir, `${name}.token`);
      await writeFile(f, await ca.bootstrapToken('default', sa));
      return f;
    };
    const common = (workload: string): string[] => ['--workload', `default/${workload}`, '--control-plane', `https://127.0.0.1:${cpPort}`, '--root-cert', join(dir, 'ca', 'root-cert.pem')];
    proxies.push(await whenReady(spawnRampart('proxy', [...common('httpbin-1'), '--token', await token('httpbin', 'httpbin')])));
    proxies.push(await whenReady(spawnRampart('proxy', [...common('sleep-1'), '--token', await token('sleep', 'sleep'), '--upstream', `${upPort}=httpbin.default:8000`])));
    // sleep-2 starts as a pod does on a cluster: with its projected service-account token, no bootstrap token.
    const projected = serviceAccountToken('default', 'sleep', 'sleep-2');
    api.issueToken(projected, { namespace: 'default', serviceAccount: 'sleep', podName: 'sleep-2', audiences: ['istio-ca'], expiresAt: Date.now() + 3_600_000 });
    await writeFile(join(dir, 'istio-token'), projected);
    proxies.push(await whenReady(spawnRampart('proxy', [...common('sleep-2'), '--token', join(dir, 'istio-token'), '--upstream', `${up2Port}=httpbin.default:8000`])));
    cpUrl = `https://127.0.0.1:${cpPort}`;
  });

  after(async () => {
    await Promise.all(proxies.map((p) => p.stop()));
    await cp?.stop();
    app?.close();
    await api?.close();
  });

  it("the cluster's policy decides: GET allowed for sleep, POST denied", async () => {
    assert.match(String(cp.ready['msg']), /control plane ready/);
    assert.equal(await request(upPort, 'GET', '/x'), 200);
    assert.equal(await request(upPort, 'POST', '/x'), 403);
  });

  it('a change through the API server reaches the sidecars and decides the next request; so does a deletion', async () => {
    api.put(POLICY(['GET', 'POST']));
    await eventually(async () => (await request(upPort, 'POST', '/x')) === 200);
    api.put(POLICY(['PUT']));
    await eventually(async () => (await request(upPort, 'POST', '/x')) === 403);
    // Deleted: with no ALLOW policy left, every request is allowed (Istio).
    api.remove('authorizationpolicies', 'default', 'httpbin');
    await eventually(async () => (await request(upPort, 'DELETE', '/x')) === 200);
  });

  it('an invalid change is reported where kubectl users look (status and an Event) while the last good version decides', async () => {
    api.put(POLICY(['GET']));
    await eventually(async () => (await request(upPort, 'POST', '/x')) === 403);
    api.put({ ...POLICY(['POST']), spec: { ...(POLICY(['POST'])['spec'] as object), action: 'ALLOW_ALL' } });
    await eventually(async () => {
      const [p] = api.objects('authorizationpolicies', 'default');
      return (p?.['status'] as { conditions?: Array<{ status: string }> } | undefined)?.conditions?.[0]?.status === 'False';
    });
    const [p] = api.objects('authorizationpolicies', 'default');
    const status = p!['status'] as { conditions: Array<{ type: string; reason: string; message: string }>; validationMessages: Array<{ level: string; description: string }> };
    assert.equal(status.conditions[0]!.type, 'Reconciled');
    assert.equal(status.conditions[0]!.reason, 'Invalid');
    assert.match(status.validationMessages[0]!.description, /spec\.action/);
    const events = api.objects('events', 'default');
    assert.ok(events.some((e) => e['reason'] === 'InvalidConfiguration' && e['type'] === 'Warning' && (e['involvedObject'] as { name: string }).name === 'httpbin' && /spec\.action/.test(String(e['message']))), JSON.stringify(events));
    // The last good version (GET only) still decides.
    assert.equal(await request(upPort, 'POST', '/x'), 403);
    assert.equal(await request(upPort, 'GET', '/x'), 200);
    // Mended: accepted again, and the status says so.
    api.put(POLICY(['GET', 'POST']));
    await eventually(async () => (await request(upPort, 'POST', '/x')) === 200);
    await eventually(async () => {
      const [q] = api.objects('authorizationpolicies', 'default');
      const st = q?.['status'] as { conditions?: Array<{ status: string }>; validationMessages?: unknown } | undefined;
      return st?.conditions?.[0]?.status === 'True' && st.validationMessages === undefined;
    });
  });

  it("a pod's projected service-account token gets it the SVID of that service account (TokenReview), and nothing else", async () => {
    assert.equal(await request(up2Port, 'GET', '/x'), 200, 'sleep-2 holds a sleep SVID: allowed as sleep');
    await cp.waitFor('the signing by TokenReview', (l) => l['event'] === 'svid-signed' && l['spiffeId'] === 'spiffe://cluster.local/ns/default/sa/sleep' && l['by'] === 'service-account-token');
    assert.ok(api.requests.some((r) => r === 'POST /apis/authentication.k8s.io/v1/tokenreviews'));
    const roots = await readFile(join(dir, 'ca', 'root-cert.pem'), 'utf8');
    const csrFor = async (sa: string): Promise<string> => createCsr(await generateKeyPair(), istioSpiffeId('cluster.local', 'default', sa).uri);
    const client = (token: string): ControlPlaneClient => new ControlPlaneClient({ url: cpUrl, rootsPem: roots, workload: 'default/sleep-2', token });
    const genuine = serviceAccountToken('default', 'sleep', 'direct');
    api.issueToken(genuine, { namespace: 'default', serviceAccount: 'sleep', audiences: ['istio-ca'], expiresAt: Date.now() + 60_000 });
    // A genuine token for sleep with a CSR naming httpbin: refused.
    await assert.rejects(client(genuine).requestSvid(await csrFor('httpbin'), undefined), /refused the CSR \(403\)/);
    // The same token with its own identity: signed (service-account tokens are not single use).
    const ok = await client(genuine).requestSvid(await csrFor('sleep'), undefined);
    assert.match(ok.chainPem, /BEGIN CERTIFICATE/);
    // Forged (the cluster never issued it), expired, or for another audience: not authenticated.
    const expired = serviceAccountToken('default', 'sleep', 'expired');
    api.issueToken(expired, { namespace: 'default', serviceAccount: 'sleep', audiences: ['istio-ca'], expiresAt: Date.now() - 1_000 });
    const otherAudience = serviceAccountToken('default', 'sleep', 'kubernetes-audience');
    api.issueToken(otherAudience, { namespace: 'default', serviceAccount: 'sleep', audiences: ['https://kubernetes.default.svc'], expiresAt: Date.now() + 60_000 });
    for (const t of [serviceAccountToken('default', 'httpbin', 'forged'), expired, otherAudience]) {
      await assert.rejects(client(t).requestSvid(await csrFor(t === otherAudience || t === expired ? 'sleep' : 'httpbin'), undefined), /refused the CSR \(401\).*not authenticated by the cluster/);
    }
  });

  it('a pod that goes away leaves the registry: the service has no endpoint', async () => {
    api.remove('pods', 'default', 'httpbin-1');
    await eventually(async () => (await request(upPort, 'GET', '/x')) === 'reset');
    const sleep = proxies[1]!;
    await sleep.waitFor('the refused outbound entry', (l) => l['kind'] === 'outbound' && /no healthy upstream: outbound_\.8000_\._\.httpbin\.default\.svc\.cluster\.local has no endpoints/.test(String(l['error'])));
  });
});

async function eventually(ok: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}
