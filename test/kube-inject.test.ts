import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { CronJob } from 'kubernetes-models/batch/v1/CronJob';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Service } from 'kubernetes-models/v1/Service';
import { inject, INIT_CONTAINER, PROXY_CONTAINER } from '../src/kube/inject.ts';

/**
 * `rampart inject`, field by field, and its output checked against the Kubernetes schemas (kubernetes-models):
 * the app's containers unchanged, the init step and the sidecar added to every pod template, the rest untouched.
 */

const exec = promisify(execFile);
const BIN = join(import.meta.dirname, '..', 'src', 'cli', 'bin.ts');

const APP_CONTAINER = { name: 'httpbin', image: 'docker.io/kennethreitz/httpbin', ports: [{ containerPort: 80, name: 'http' }], env: [{ name: 'A', value: '1' }] };

const MANIFESTS = `apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: httpbin}}
  template:
    metadata:
      labels: {app: httpbin}
      annotations:
        traffic.sidecar.istio.io/excludeOutboundPorts: "5432"
        traffic.sidecar.istio.io/excludeInboundPorts: "9090"
    spec:
      serviceAccountName: httpbin
      containers:
      - ${JSON.stringify(APP_CONTAINER)}
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: default}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000, targetPort: 80}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: jobs}
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: report, image: busybox, command: [sh, -c, "echo hi"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: debug, annotations: {sidecar.istio.io/inject: "false"}}
spec:
  containers: [{name: debug, image: busybox}]
`;

type Obj = Record<string, unknown>;
const docsOf = (text: string): Obj[] => parseAllDocuments(text).map((d) => d.toJS() as Obj);
const podSpec = (o: Obj, path: string[]): Obj => path.reduce((x: Obj, k) => x[k] as Obj, o);

test('a Deployment: the app container as it was, rampart-init and rampart-proxy added, volumes and annotation', () => {
  const r = inject(MANIFESTS, 'app.yaml', { image: 'registry.example/rampart:1', controlPlane: 'https://cp.istio-system.svc:15012' });
  assert.deepEqual(r.injected, ['Deployment default/httpbin', 'CronJob jobs/report']);
  assert.deepEqual(r.skipped, [{ workload: 'Pod default/debug', reason: 'annotated sidecar.istio.io/inject: "false"' }]);
  const [deploy, svc, cron, pod] = docsOf(r.text);
  const before = docsOf(MANIFESTS);
  assert.deepEqual(svc, before[1], 'a Service is not a workload: unchanged');
  assert.deepEqual(pod, before[3], 'inject: "false" leaves it unchanged');
  const spec = podSpec(deploy!, ['spec', 'template', 'spec']);
  const containers = spec['containers'] as Obj[];
  assert.deepEqual(containers[0], APP_CONTAINER, "the app's container, field for field");
  assert.equal(spec['serviceAccountName'], 'httpbin');
  const proxy = containers[1]!;
  assert.equal(proxy['name'], PROXY_CONTAINER);
  assert.equal(proxy['image'], 'registry.example/rampart:1');
  assert.deepEqual(proxy['args'], ['proxy', '--capture', '--workload', '$(POD_NAMESPACE)/$(POD_NAME)', '--control-plane', 'https://cp.istio-system.svc:15012',
    '--token', '/var/run/secrets/tokens/istio-token', '--root-cert', '/var/run/secrets/rampart/root-cert.pem']);
  assert.deepEqual((proxy['env'] as Obj[]).map((e) => `${String(e['name'])}=${JSON.stringify(e['valueFrom'])}`),
    ['POD_NAME={"fieldRef":{"fieldPath":"metadata.name"}}', 'POD_NAMESPACE={"fieldRef":{"fieldPath":"metadata.namespace"}}']);
  const psc = proxy['securityContext'] as Obj;
  assert.deepEqual([psc['runAsUser'], psc['runAsGroup'], psc['runAsNonRoot'], psc['allowPrivilegeEscalation'], psc['capabilities']], [1337, 1337, true, false, { drop: ['ALL'] }]);
  const init = (spec['initContainers'] as Obj[])[0]!;
  assert.equal(init['name'], INIT_CONTAINER);
  assert.deepEqual(init['args'], ['capture', 'apply', '--proxy-uid', '1337', '--proxy-gid', '1337', '--exclude-inbound-ports', '9090', '--exclude-outbound-ports', '5432']);
  assert.deepEqual((init['securityContext'] as Obj)['capabilities'], { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] });
  const volumes = spec['volumes'] as Obj[];
  assert.deepEqual(volumes.map((v) => v['name']), ['data', 'istio-token', 'rampart-ca-root']);
  assert.deepEqual(volumes[1], { name: 'istio-token', projected: { sources: [{ serviceAccountToken: { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' } }] } });
  const annotations = podSpec(deploy!, ['spec', 'template', 'metadata'])['annotations'] as Record<string, string>;
  assert.ok(annotations['sidecar.rampart.io/status'] !== undefined);
  assert.equal((deploy!['spec'] as Obj)['replicas'], 2);
  // The CronJob's pod template is found under jobTemplate.
  const cronSpec = podSpec(cron!, ['spec', 'jobTemplate', 'spec', 'template', 'spec']);
  assert.deepEqual((cronSpec['containers'] as Obj[]).map((c) => c['name']), ['report', PROXY_CONTAINER]);
});

test('injecting twice is injecting once; a manifest that does not parse is an error with its line', () => {
  const once = inject(MANIFESTS, 'app.yaml').text;
  const twice = inject(once, 'app.yaml');
  assert.equal(twice.text, once);
  assert.deepEqual(twice.injected, []);
  assert.deepEqual(twice.skipped.map((s) => s.reason), ['already injected', 'already injected', 'annotated sidecar.istio.io/inject: "false"']);
  assert.throws(() => inject('kind: Pod\nmetadata: {name: [\n', 'bad.yaml'), (e: Error & { code?: string }) => e.code === 'ERR_INJECT_YAML' && /^bad\.yaml:\d+: /.test(e.message));
});

test('the injected manifests are valid Kubernetes objects (kubernetes-models schemas)', () => {
  const [deploy, svc, cron, pod] = docsOf(inject(MANIFESTS, 'app.yaml').text);
  for (const [Model, o] of [[Deployment, deploy], [Service, svc], [CronJob, cron], [Pod, pod]] as const) {
    assert.doesNotThrow(() => new (Model as new (o: unknown) => { validate(): void })(o).validate(), `${String(o!['kind'])}`);
  }
  // And the check can fail: a string where a port number belongs is refused.
  const broken = structuredClone(deploy!);
  ((podSpec(broken, ['spec', 'template', 'spec'])['containers'] as Obj[])[0]!['ports'] as Obj[])[0]!['containerPort'] = 'http';
  assert.throws(() => new Deployment(broken as never).validate(), /containerPort must be integer/);
});

test('rampart inject -f FILE prints the injected manifests and names what it left alone', async () => {
  const { mkdtemp, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(join(tmpdir(), 'rampart-inject-'));
  await writeFile(join(dir, 'app.yaml'), MANIFESTS);
  const { stdout, stderr } = await exec(process.execPath, ['--import', 'tsx', BIN, 'inject', '-f', join(dir, 'app.yaml'), '--image', 'x/rampart:2']);
  assert.equal(stdout, inject(MANIFESTS, join(dir, 'app.yaml'), { image: 'x/rampart:2', controlPlane: 'https://rampart-control-plane.istio-system.svc:15012' }).text);
  assert.match(stderr, /^rampart inject: Pod default\/debug left as it is: annotated sidecar\.istio\.io\/inject: "false"$/m);
});
