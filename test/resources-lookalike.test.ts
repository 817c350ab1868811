import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatDiagnostic } from '../src/resources/diagnostic.ts';
import { loadResources } from '../src/resources/load.ts';

/** Documents that look like Istio security resources but are not: errors, never silently skipped. */

const DENY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
`;

function only(text: string): { severity: string; code: string; line: number; path: string; message: string; resources: number } {
  const { resources, diagnostics } = loadResources([{ file: 'p.yaml', text }]);
  assert.equal(diagnostics.length, 1, diagnostics.map(formatDiagnostic).join('\n'));
  const d = diagnostics[0]!;
  return { severity: d.severity, code: d.code, line: d.line, path: d.path, message: d.message, resources: resources.length };
}

test('a kind one letter off is an error on the kind line, with the kind it was meant to be', () => {
  const d = only(DENY.replace('AuthorizationPolicy', 'AuthorisationPolicy'));
  assert.deepEqual([d.severity, d.code, d.line, d.path, d.resources], ['error', 'ERR_KIND_UNKNOWN', 2, 'kind', 0]);
  assert.match(d.message, /did you mean "AuthorizationPolicy"\?/);
  assert.match(only(DENY.replace('AuthorizationPolicy', 'PeerAuthentcation').replace('spec:\n  action: DENY\n  rules: [{to: [{operation: {paths: ["/admin"]}}]}]', 'spec: {}')).message, /did you mean "PeerAuthentication"\?/);
});

test('a kind in the wrong case says kinds are case-sensitive', () => {
  const d = only(DENY.replace('kind: AuthorizationPolicy', 'kind: authorizationpolicy'));
  assert.equal(d.code, 'ERR_KIND_UNKNOWN');
  assert.match(d.message, /case-sensitive: "AuthorizationPolicy"/);
});

test('another kind in security.istio.io is an error naming the kinds there are', () => {
  const d = only(DENY.replace('kind: AuthorizationPolicy', 'kind: NetworkPolicy'));
  assert.equal(d.code, 'ERR_KIND_UNKNOWN');
  assert.match(d.message, /security\.istio\.io has no kind "NetworkPolicy"; its kinds are AuthorizationPolicy, PeerAuthentication, RequestAuthentication/);
});

test('a misspelled API group, or a security kind in another group or none, is an error on the apiVersion line', () => {
  const typo = only(DENY.replace('security.istio.io/v1', 'securty.istio.io/v1'));
  assert.deepEqual([typo.severity, typo.code, typo.line, typo.path], ['error', 'ERR_API_GROUP', 1, 'apiVersion']);
  assert.match(typo.message, /did you mean "security\.istio\.io\/v1"\?/);
  const beta = only(DENY.replace('security.istio.io/v1', 'networking.istio.io/v1beta1'));
  assert.match(beta.message, /AuthorizationPolicy with apiVersion "networking\.istio\.io\/v1beta1" .*did you mean "security\.istio\.io\/v1beta1"\?/);
  const none = only(DENY.replace('apiVersion: security.istio.io/v1\n', ''));
  assert.equal(none.code, 'ERR_API_GROUP');
  assert.match(none.message, /with no apiVersion/);
  // A near group with a kind of its own is still an error (there is nothing else it could be).
  assert.equal(only('apiVersion: securiti.istio.io/v1beta1\nkind: Whatever\nmetadata: {name: x}\n').code, 'ERR_API_GROUP');
});

test("Istio's removed security APIs are errors that say what replaced them", () => {
  const rbac = only('apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r}\nspec: {rules: []}\n');
  assert.equal(rbac.code, 'ERR_KIND_REMOVED');
  assert.match(rbac.message, /removed in Istio 1\.6 .*write AuthorizationPolicy/);
  const authn = only('apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {peers: [{mtls: {}}]}\n');
  assert.match(authn.message, /write PeerAuthentication \(mTLS\) and RequestAuthentication \(JWT\)/);
});

test('a document without kind whose spec has security fields is an error listing them', () => {
  const d = only('metadata: {name: x}\nspec:\n  jwtRules: []\n  selector: {}\n');
  assert.equal(d.code, 'ERR_KIND_LOOKALIKE');
  assert.match(d.message, /spec\.jwtRules like an Istio security resource/);
  assert.equal(only('apiVersion: v1\nkind: Policy\nmetadata: {name: x}\nspec: {mtls: {mode: STRICT}}\n').code, 'ERR_KIND_LOOKALIKE');
});

test("Linkerd's AuthorizationPolicy is a warning that it is not enforced; plainly other kinds stay notices", () => {
  const l = only('apiVersion: policy.linkerd.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec: {targetRef: {kind: Server, name: s}}\n');
  assert.deepEqual([l.severity, l.code], ['warning', 'WARN_FOREIGN_POLICY']);
  assert.match(l.message, /not enforced/);
  // Kubernetes' Ingress has spec.rules as well; its group says what it is.
  for (const text of ['apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\nspec: {rules: []}\n', 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {selector: {}}\n', 'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec: {hosts: [a]}\n']) {
    const d = only(text);
    assert.deepEqual([d.severity, d.code], ['notice', 'NOTICE_KIND_SKIPPED'], text);
  }
});

test('the lookalike inside a List is reported at its item', () => {
  const text = `apiVersion: v1\nkind: List\nitems:\n- ${DENY.replace('AuthorizationPolicy', 'AuthorisationPolicy').trimEnd().split('\n').join('\n  ')}\n`;
  const d = only(text);
  assert.equal(d.code, 'ERR_KIND_UNKNOWN');
  assert.equal(d.line, 5);
  assert.equal(d.path, 'kind', 'paths are relative to the resource, as for every other diagnostic');
});

test('rampart validate exits 1 on a misspelled kind and names file, line and the suggestion', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rampart-lookalike-'));
  try {
    await writeFile(join(dir, 'p.yaml'), `${DENY.replace('AuthorizationPolicy', 'AuthorisationPolicy')}---\n${DENY.replace('deny-admin', 'deny-other')}`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '..', 'src', 'cli', 'bin.ts'), 'validate', join(dir, 'p.yaml')], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /p\.yaml:2: error kind: security\.istio\.io has no kind "AuthorisationPolicy" \(did you mean "AuthorizationPolicy"\?\) \[ERR_KIND_UNKNOWN\]/);
    assert.match(r.stdout + r.stderr, /1 resource\(s\) valid, 1 error\(s\)/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
