import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { buildProgram } from '../src/cli/main.ts';

/**
 * deploy/kubernetes: every manifest a valid Kubernetes object (kubernetes-models schemas), the control plane's
 * permissions exactly what the Kubernetes source reads and writes, Istio's three security CRDs in both versions.
 */

const DIR = join(import.meta.dirname, '..', 'deploy', 'kubernetes');
type Obj = Record<string, unknown>;
const docs = (file: string): Obj[] => parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((d) => d.toJS() as Obj);

const MODELS: Record<string, new (o: never) => { validate(): void }> = {
  CustomResourceDefinition, Deployment, ClusterRole, ClusterRoleBinding, Namespace, Service, ServiceAccount,
} as never;

test('every manifest of deploy/kubernetes is a valid object of its kind', () => {
  const all = [...docs('crds.yaml'), ...docs('control-plane.yaml')];
  assert.deepEqual(all.map((o) => o['kind']), ['CustomResourceDefinition', 'CustomResourceDefinition', 'CustomResourceDefinition',
    'Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Deployment', 'Service']);
  for (const o of all) assert.doesNotThrow(() => new MODELS[String(o['kind'])]!(o as never).validate(), String(o['kind']));
});

test("Istio's security CRDs: group, kinds, v1 stored and v1beta1 served, status subresource", () => {
  const crds = docs('crds.yaml');
  assert.deepEqual(crds.map((c) => (c['metadata'] as Obj)['name']), ['peerauthentications.security.istio.io', 'requestauthentications.security.istio.io', 'authorizationpolicies.security.istio.io']);
  for (const c of crds) {
    const versions = (c['spec'] as { versions: Array<{ name: string; served: boolean; storage: boolean; subresources: Obj }> }).versions;
    assert.deepEqual(versions.map((v) => `${v.name} served=${v.served} storage=${v.storage} status=${'status' in v.subresources}`), ['v1 served=true storage=true status=true', 'v1beta1 served=true storage=false status=true']);
  }
});

test("the control plane's ClusterRole grants exactly what it uses, nothing more", () => {
  const role = docs('control-plane.yaml').find((o) => o['kind'] === 'ClusterRole')!;
  const granted = (role['rules'] as Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }>)
    .flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${v} ${g === '' ? '' : `${g}/`}${res}`)))).sort();
  const istio = ['peerauthentications', 'requestauthentications', 'authorizationpolicies'];
  assert.deepEqual(granted, [
    ...['pods', 'services', 'configmaps'].flatMap((r) => [`list ${r}`, `watch ${r}`]), 'create events',
    'list discovery.k8s.io/endpointslices', 'watch discovery.k8s.io/endpointslices',
    ...istio.flatMap((r) => [`list security.istio.io/${r}`, `watch security.istio.io/${r}`, `patch security.istio.io/${r}/status`]),
    'create authentication.k8s.io/tokenreviews',
  ].sort());
  assert.ok(!granted.some((g) => g.includes('*') || g.startsWith('get secrets')), 'no wildcard, no secrets');
});

test('the Deployment runs a command rampart accepts: control-plane --kubernetes on the CA directory', () => {
  const deploy = docs('control-plane.yaml').find((o) => o['kind'] === 'Deployment')!;
  const c = ((deploy['spec'] as Obj)['template'] as { spec: { containers: Array<{ args: string[] }> } }).spec.containers[0]!;
  const program = buildProgram();
  const cmd = program.commands.find((x) => x.name() === 'control-plane')!;
  let parsed: Obj | undefined;
  cmd.action((_dir: unknown, o: Obj) => {
    parsed = o;
  });
  program.parse(['node', 'rampart', ...c.args]);
  assert.equal(parsed?.['kubernetes'], true);
  assert.equal(parsed?.['ca'], '/var/lib/rampart/ca');
  assert.equal(parsed?.['host'], '0.0.0.0');
});
