import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = join(import.meta.dirname, '..', 'src', 'cli', 'bin.ts');
const EX = join(import.meta.dirname, '..', 'examples', 'quickstart');

function rampart(args: string[], input?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', BIN, ...args], { encoding: 'utf8', input: input ?? '', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function tmp(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-cli-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

test('check: the quickstart request is allowed by rule 0 of require-jwt-or-mtls (exit 0)', () => {
  const r = rampart(['check', '-c', join(EX, 'policies.yaml'), '-r', join(EX, 'request.json'), '--json']);
  assert.equal(r.code, 0, r.stderr);
  const d = JSON.parse(r.stdout) as { decision: string; status: number; policy: string; rule: number; mtlsMode: string };
  assert.deepEqual([d.decision, d.status, d.policy, d.rule, d.mtlsMode], ['ALLOW', 200, 'default/require-jwt-or-mtls', 0, 'STRICT']);
});

test('check: /admin/./users is normalized and denied by deny-admin (exit 1, text explains)', () => {
  const r = rampart(['check', '-c', join(EX, 'policies.yaml'), '-r', join(EX, 'request-admin.json')]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /^DENY \(403\)\s+denied by DENY policy default\/deny-admin rule 0/);
  assert.match(r.stdout, /GET \/admin\/users \(normalized from \/admin\/\.\/users, BASE\)/);
});

test('check: plaintext to a STRICT port is a refused connection with status null', () => {
  const r = rampart(['check', '-c', join(EX, 'policies.yaml'), '-r', join(EX, 'request-plaintext.json'), '--json']);
  assert.equal(r.code, 1);
  const d = JSON.parse(r.stdout) as { status: null; connection: string };
  assert.equal(d.status, null);
  assert.equal(d.connection, 'refused');
});

test('check: the request can come from standard input', () => {
  const req = JSON.stringify({ destination: { namespace: 'default', labels: { app: 'httpbin' }, port: 8000 }, source: { principal: 'cluster.local/ns/default/sa/my-service-account' }, http: { method: 'GET', path: '/admin' } });
  const r = rampart(['check', '-c', join(EX, 'policies.yaml'), '-r', '-', '--json'], req);
  assert.equal(r.code, 1);
  assert.equal((JSON.parse(r.stdout) as { policy: string }).policy, 'default/deny-admin');
});

test('check: a malformed request names the field and exits 2', () => {
  const dir = tmp({ 'req.json': JSON.stringify({ destination: { port: 99999 } }) });
  const r = rampart(['check', '-c', join(EX, 'policies.yaml'), '-r', join(dir, 'req.json')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /destination\.port: must be an integer from 0 to 65535/);
});

test('check: configuration errors are listed and no decision is made (exit 2)', () => {
  const dir = tmp({ 'p.yaml': 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n  actions: DENY\n' });
  const r = rampart(['check', '-c', dir, '-r', join(EX, 'request.json')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /p\.yaml:5: error \(AuthorizationPolicy default\/x\) spec\.actions: unknown field "actions" \(did you mean "action"\?\)/);
});

test('check: --ext-authz decides a CUSTOM delegation offline', () => {
  const dir = tmp({
    'p.yaml': 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ext, namespace: default}\nspec:\n  action: CUSTOM\n  provider: {name: authz}\n  rules: [{}]\n',
    'mesh.yaml': 'extensionProviders:\n- name: authz\n  envoyExtAuthzHttp: {service: authz.default.svc.cluster.local, port: 9000}\n',
  });
  const allow = rampart(['check', '-c', join(dir, 'p.yaml'), '--mesh', join(dir, 'mesh.yaml'), '-r', join(EX, 'request.json'), '--ext-authz', 'allow']);
  assert.equal(allow.code, 0, allow.stdout + allow.stderr);
  const deny = rampart(['check', '-c', join(dir, 'p.yaml'), '--mesh', join(dir, 'mesh.yaml'), '-r', join(EX, 'request.json'), '--ext-authz', 'deny', '--json']);
  assert.equal(deny.code, 1);
  assert.equal((JSON.parse(deny.stdout) as { customProvider: string }).customProvider, 'authz');
});

test('validate: the quickstart is valid (exit 0)', () => {
  const r = rampart(['validate', EX]);
  assert.equal(r.code, 0, r.stdout);
  assert.match(r.stdout, /4 resource\(s\) valid, 0 error\(s\)/);
});

test('validate: errors exit 1 and good resources are still counted', () => {
  const dir = tmp({
    'a.yaml': [
      'apiVersion: security.istio.io/v1', 'kind: AuthorizationPolicy', 'metadata: {name: good}', 'spec: {}',
      '---',
      'apiVersion: security.istio.io/v1', 'kind: AuthorizationPolicy', 'metadata: {name: bad}', 'spec:', '  rules:', '  - from:', '    - source:', '        ipBlocks: ["10.0.0.0/8", "not-an-ip"]',
    ].join('\n'),
  });
  const r = rampart(['validate', dir, '--json']);
  assert.equal(r.code, 1);
  const out = JSON.parse(r.stdout) as { resources: number; errors: number; diagnostics: { line: number; path: string }[] };
  assert.equal(out.resources, 1);
  assert.equal(out.errors, 1);
  assert.deepEqual([out.diagnostics[0]!.line, out.diagnostics[0]!.path], [13, 'spec.rules[0].from[0].source.ipBlocks[1]']);
});

test('validate: warnings beyond istioctl analyze', () => {
  const policies = [
    'apiVersion: security.istio.io/v1', 'kind: AuthorizationPolicy', 'metadata: {name: ghost, namespace: foo}', 'spec:', '  selector: {matchLabels: {app: ghost}}', '  rules: [{}]',
    '---',
    'apiVersion: security.istio.io/v1', 'kind: AuthorizationPolicy', 'metadata: {name: jwt-only, namespace: foo}', 'spec:', '  selector: {matchLabels: {app: web}}', '  rules:', '  - from: [{source: {requestPrincipals: ["*"]}}]',
    '---',
    'apiVersion: security.istio.io/v1', 'kind: AuthorizationPolicy', 'metadata: {name: never, namespace: foo}', 'spec:', '  selector: {matchLabels: {app: web}}', '  rules:', '  - to: [{operation: {paths: ["/a"], notPaths: ["/a"]}}]',
    '---',
    'apiVersion: security.istio.io/v1', 'kind: AuthorizationPolicy', 'metadata: {name: deny-all, namespace: foo}', 'spec:', '  action: DENY', '  rules: [{}]',
  ].join('\n');
  const dir = tmp({ 'p.yaml': policies, 'workloads.yaml': '- {namespace: foo, labels: {app: web}}\n' });
  const r = rampart(['validate', join(dir, 'p.yaml'), '--workloads', join(dir, 'workloads.yaml'), '--json']);
  assert.equal(r.code, 0, r.stdout);
  const codes = (JSON.parse(r.stdout) as { diagnostics: { code: string; resource: string }[] }).diagnostics.map((d) => `${d.code} ${d.resource}`);
  for (const want of [
    'WARN_SELECTS_NOTHING AuthorizationPolicy foo/ghost',
    'WARN_NO_REQUEST_AUTHENTICATION AuthorizationPolicy foo/jwt-only',
    'WARN_RULE_NEVER_MATCHES AuthorizationPolicy foo/never',
    'WARN_ALLOW_SHADOWED AuthorizationPolicy foo/jwt-only',
  ]) assert.ok(codes.includes(want), `missing ${want} in ${codes.join('; ')}`);
});
