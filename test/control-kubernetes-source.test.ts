import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubernetesSource } from '../src/control/kubernetes-source.ts';
import { buildMeshState, type MeshState } from '../src/control/snapshot.ts';
import { CONTROL_PLANE_PERMISSIONS, KubeApiServer, type KubeObject } from './support/kube-api.ts';
import { waitUntil } from './support/proxy.ts';

/**
 * The Kubernetes source against the tests' API server (test/support/kube-api.ts, whose wire format kubectl checks
 * in kube-api.test.ts), with the real @kubernetes/client-node: list then watch, resumed watches, a 410 relist, and
 * the cluster read as a mesh file and policies that the control plane's own validation loads.
 */

let api: KubeApiServer;
let source: KubernetesSource;
let changes = 0;

const policy = (name: string, methods: string[], ns = 'default'): KubeObject => ({
  apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns },
  spec: { selector: { matchLabels: { app: 'httpbin' } }, rules: [{ to: [{ operation: { methods } }] }] },
});

const pod = (name: string, ip: string, sa: string, labels: Record<string, string>, phase = 'Running'): KubeObject => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', labels },
  spec: { serviceAccountName: sa, containers: [{ name: 'app', ports: [{ name: 'http', containerPort: 8000, protocol: 'TCP' }] }] },
  status: { phase, podIP: ip },
});

async function state(): Promise<MeshState> {
  return buildMeshState(await source.read(), undefined);
}

before(async () => {
  api = new KubeApiServer();
  await api.listen();
  api.addUser('cp-token', { username: 'system:serviceaccount:istio-system:rampart', allow: CONTROL_PLANE_PERMISSIONS });
  api.put(pod('httpbin-1', '10.1.0.5', 'httpbin', { app: 'httpbin' }));
  api.put(pod('sleep-1', '10.1.0.6', 'sleep', { app: 'sleep' }));
  api.put(pod('pending-1', '', 'sleep', { app: 'sleep' }, 'Pending'));
  api.put({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'httpbin', namespace: 'default' }, spec: { selector: { app: 'httpbin' }, clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 8000, targetPort: 'http' }] } });
  api.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: { mesh: 'trustDomain: cluster.local\noutboundTrafficPolicy:\n  mode: REGISTRY_ONLY\naccessLogFile: /dev/stdout\n' } });
  api.put(policy('httpbin-get', ['GET']));
  const dir = await mkdtemp(join(tmpdir(), 'rampart-kube-source-'));
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(kubeconfig, api.kubeconfig('cp-token'));
  source = new KubernetesSource({ kubeconfig, backoff: { minMs: 20, maxMs: 200 } });
  source.watch(() => changes++);
  await source.start(15_000);
});

after(async () => {
  source?.stop();
  await api?.close();
});

test('the cluster as a mesh: running pods are workloads, services the registry with their ClusterIP, MeshConfig from the istio ConfigMap', async () => {
  const s = await state();
  assert.deepEqual(s.diagnostics.filter((d) => d.severity === 'error'), []);
  assert.deepEqual(s.mesh.workloads.map((w) => `${w.namespace}/${w.name} sa=${w.serviceAccount} @${w.address} ${w.ports.map((p) => p.port).join(',')}`),
    ['default/httpbin-1 sa=httpbin @10.1.0.5 8000', 'default/sleep-1 sa=sleep @10.1.0.6 8000']);
  const svc = s.mesh.services[0]!;
  assert.deepEqual([svc.name, svc.address, svc.allocated, svc.ports[0]!.targetPort], ['httpbin', '10.96.0.20', false, 8000], 'a named targetPort resolves to the container port');
  assert.equal(s.mesh.mesh.outboundTrafficPolicy, 'REGISTRY_ONLY');
  assert.deepEqual(s.resources.map((r) => `${r.kind} ${r.meta.namespace}/${r.meta.name}`), ['AuthorizationPolicy default/httpbin-get']);
});

test("EndpointSlices: only a service's ready endpoints serve it; without a slice the selector decides", async () => {
  assert.equal((await state()).mesh.services[0]!.endpoints, undefined, 'no slice yet');
  api.put(pod('httpbin-3', '10.1.0.9', 'httpbin', { app: 'httpbin' }));
  api.put({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'httpbin-abc', namespace: 'default', labels: { 'kubernetes.io/service-name': 'httpbin' } },
    addressType: 'IPv4', ports: [{ name: 'http', port: 8000 }],
    endpoints: [{ addresses: ['10.1.0.5'], conditions: { ready: true } }, { addresses: ['10.1.0.9'], conditions: { ready: false } }] });
  await waitForState((s) => s.mesh.services[0]!.endpoints !== undefined);
  const s = await state();
  assert.deepEqual(s.mesh.services[0]!.endpoints, ['10.1.0.5']);
  const { resolveDestination } = await import('../src/proxy/registry.ts');
  assert.deepEqual(resolveDestination(s.mesh, 'default', 'httpbin', 8000)!.endpoints.map((e) => e.workload.name), ['httpbin-1'], 'httpbin-3 is a workload but not ready');
  assert.ok(s.mesh.workloads.some((w) => w.name === 'httpbin-3'));
  api.remove('pods', 'default', 'httpbin-3');
  api.remove('endpointslices', 'default', 'httpbin-abc');
  await waitForState((x) => x.mesh.services[0]!.endpoints === undefined);
});

test('a change in the cluster reaches the source through its watch, and a deletion too', async () => {
  const before = changes;
  api.put(policy('httpbin-post', ['POST']));
  await waitUntil('the new policy', () => (changes > before ? true : undefined), 10_000);
  assert.deepEqual((await state()).resources.map((r) => r.meta.name).sort(), ['httpbin-get', 'httpbin-post']);
  api.remove('authorizationpolicies', 'default', 'httpbin-post');
  await waitForState((s) => s.resources.length === 1);
});

test('a watch cut by the server is resumed from the last version: what changed meanwhile arrives, nothing twice', async () => {
  const cut = api.requests.length;
  api.dropWatches();
  const rv = api.resourceVersion;
  api.put(pod('httpbin-2', '10.1.0.7', 'httpbin', { app: 'httpbin' }));
  await waitForState((s) => s.mesh.workloads.some((w) => w.name === 'httpbin-2'));
  // Resumed, not relisted: after the cut the pods came back through a watch from a version, with no list.
  const since = api.requests.slice(cut).filter((r) => r.startsWith('GET /api/v1/pods'));
  assert.ok(since.length > 0 && since.every((r) => r.includes('watch=true') && /resourceVersion=[1-9]\d*/.test(r)), since.join('\n'));
  assert.ok(Number(source.versions['pods']) > rv);
});

test('410 Gone: the source lists again and loses nothing — added objects there, deleted ones gone', async () => {
  api.dropWatches();
  api.put(policy('during-outage', ['PUT']));
  api.remove('authorizationpolicies', 'default', 'httpbin-get');
  api.compact();
  const lists = api.requests.filter((r) => r.startsWith('GET /apis/security.istio.io/v1/authorizationpolicies') && !r.includes('watch=true')).length;
  await waitForState((s) => s.resources.map((r) => r.meta.name).join() === 'during-outage');
  assert.ok(api.requests.filter((r) => r.startsWith('GET /apis/security.istio.io/v1/authorizationpolicies') && !r.includes('watch=true')).length > lists, 'relisted');
});

test('an invalid resource from the cluster keeps its last good version, as a file does', async () => {
  const good = await state();
  api.put({ ...policy('during-outage', ['PUT']), spec: { action: 'NOT-AN-ACTION', rules: [{}] } });
  let next: MeshState | undefined;
  for (const end = Date.now() + 10_000; Date.now() < end;) {
    next = buildMeshState(await source.read(), good);
    if (next.rejectedFiles.length > 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.deepEqual(next!.rejectedFiles, ['default/AuthorizationPolicy/during-outage']);
  assert.deepEqual(next!.resources.map((r) => r.meta.name), ['during-outage'], 'the last good version stays');
  assert.match(next!.diagnostics.map((d) => `${d.file}:${d.line} ${d.path} ${d.message}`).join('\n'), /default\/AuthorizationPolicy\/during-outage:\d+ spec\.action/);
});

async function waitForState(ok: (s: MeshState) => boolean): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    const s = await state();
    if (ok(s)) return;
    if (Date.now() > end) throw new Error(`timed out; resources ${s.resources.map((r) => r.meta.name).join(',')}; workloads ${s.mesh.workloads.map((w) => w.name).join(',')}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
