import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import https from 'node:https';
import { promisify } from 'node:util';
import { KubeApiServer } from './support/kube-api.ts';
import { waitUntil } from './support/proxy.ts';

/**
 * The tests' Kubernetes API server against an independent real client, Debian's kubectl: apply (create, then a
 * change as a merge patch), get, get --watch, delete, and the refusals of a bad or an unprivileged token. What
 * kubectl accepts here is the wire format the Kubernetes source is tested against (checked with Debian's kubectl
 * 1.20 and with 1.32).
 */

const exec = promisify(execFile);
const KUBECTL_SKIP = await exec('kubectl', ['version', '--client']).then(() => undefined, () => 'kubectl is not installed (Debian package kubernetes-client; .ci/run installs it)');

let api: KubeApiServer;
let dir: string;

async function kubeconfig(name: string, token: string): Promise<string> {
  const file = join(dir, `${name}.kubeconfig`);
  await writeFile(file, api.kubeconfig(token));
  return file;
}

async function kubectl(config: string, args: readonly string[], stdin?: string): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = execFile('kubectl', ['--kubeconfig', config, ...args], { timeout: 20_000 }, (err, out, errOut) =>
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? 1, out, err: errOut }));
    if (stdin !== undefined) child.stdin!.end(stdin);
  });
}

const POLICY = (methods: string): string => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin
  namespace: default
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - to: [{operation: {methods: [${methods}]}}]
`;

before(async () => {
  api = new KubeApiServer();
  await api.listen();
  api.addUser('admin-token', { username: 'admin', allow: ['*'] });
  api.addUser('reader-token', { username: 'reader', allow: ['get authorizationpolicies', 'list authorizationpolicies'] });
  dir = await mkdtemp(join(tmpdir(), 'rampart-kube-'));
});

after(async () => {
  await api?.close();
});

test('kubectl apply creates, a second apply patches, get shows it, delete removes it', { skip: KUBECTL_SKIP }, async () => {
  const admin = await kubeconfig('admin', 'admin-token');
  const created = await kubectl(admin, ['apply', '--validate=false', '-f', '-'], POLICY('"GET"'));
  assert.equal(created.code, 0, created.err);
  assert.match(created.out, /authorizationpolicy\.security\.istio\.io\/httpbin created/);
  const changed = await kubectl(admin, ['apply', '--validate=false', '-f', '-'], POLICY('"GET", "POST"'));
  assert.equal(changed.code, 0, changed.err);
  assert.match(changed.out, /authorizationpolicy\.security\.istio\.io\/httpbin configured/);
  const [stored] = api.objects('authorizationpolicies', 'default');
  assert.deepEqual((stored!['spec'] as { rules: Array<{ to: Array<{ operation: { methods: string[] } }> }> }).rules[0]!.to[0]!.operation.methods, ['GET', 'POST']);
  assert.ok(stored!.metadata.annotations?.['kubectl.kubernetes.io/last-applied-configuration'] !== undefined, 'kubectl keeps its annotation');
  assert.ok(api.requests.some((r) => r.startsWith('PATCH /apis/security.istio.io/v1/namespaces/default/authorizationpolicies/httpbin')));
  const got = await kubectl(admin, ['get', 'authorizationpolicies.v1beta1.security.istio.io', '-o', 'json']);
  assert.equal(got.code, 0, got.err);
  const list = JSON.parse(got.out) as { items: Array<{ apiVersion: string; metadata: { name: string; resourceVersion: string } }> };
  assert.deepEqual(list.items.map((i) => `${i.apiVersion} ${i.metadata.name}`), ['security.istio.io/v1beta1 httpbin']);
  assert.equal(list.items[0]!.metadata.resourceVersion, stored!.metadata.resourceVersion);
  const deleted = await kubectl(admin, ['delete', 'authorizationpolicy', 'httpbin']);
  assert.equal(deleted.code, 0, deleted.err);
  assert.match(deleted.out, /authorizationpolicy\.security\.istio\.io "httpbin" deleted/);
  assert.deepEqual(api.objects('authorizationpolicies'), []);
});

test('kubectl get --watch sees a change made while it watches', { skip: KUBECTL_SKIP }, async () => {
  const admin = await kubeconfig('admin', 'admin-token');
  assert.equal((await kubectl(admin, ['apply', '--validate=false', '-f', '-'], POLICY('"GET"'))).code, 0);
  const watch = spawn('kubectl', ['--kubeconfig', admin, 'get', 'authorizationpolicies', '--watch', '--output-watch-events', '-o', 'jsonpath={.type} {.object.metadata.name} {.object.spec.rules[0].to[0].operation.methods}{"\\n"}'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  watch.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  watch.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
  try {
    await waitUntil('the first listing', () => (out.includes('ADDED httpbin') ? true : undefined), 15_000, () => `: ${out}`);
    assert.equal((await kubectl(admin, ['apply', '--validate=false', '-f', '-'], POLICY('"PUT"'))).code, 0);
    await waitUntil('the change', () => (/MODIFIED httpbin \["PUT"\]/.test(out) ? true : undefined), 15_000, () => `: ${out}`);
    assert.equal((await kubectl(admin, ['delete', 'authorizationpolicy', 'httpbin'])).code, 0);
    await waitUntil('the deletion', () => (out.includes('DELETED httpbin') ? true : undefined), 15_000, () => `: ${out}`);
  } finally {
    watch.kill();
  }
});

test('a bad token is 401 and a token without the verb is 403, as kubectl reports them', { skip: KUBECTL_SKIP }, async () => {
  const nobody = await kubeconfig('nobody', 'no-such-token');
  const r = await kubectl(nobody, ['get', 'authorizationpolicies']);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /Unauthorized|must be logged in/);
  const reader = await kubeconfig('reader', 'reader-token');
  assert.equal((await kubectl(reader, ['get', 'authorizationpolicies'])).code, 0);
  const w = await kubectl(reader, ['delete', 'authorizationpolicy', 'x']);
  assert.notEqual(w.code, 0);
  assert.match(w.err, /forbidden: User "reader" cannot delete resource "authorizationpolicies" in API group "security\.istio\.io" in the namespace "default"/);
});

/** One request to the test API server as a plain client; the JSON answer (or the NDJSON lines of a watch). */
function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${api.url}${path}`, { method, ca: api.caPem, headers: { authorization: 'Bearer admin-token', 'content-type': 'application/json', ...headers } }, (res) => {
      let b = '';
      res.on('data', (c: Buffer) => (b += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: b === '' ? {} : JSON.parse(b) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** A watch's event lines until `until` matches one (bounded); the events read. */
function watchLines(path: string, until: (e: { type: string; object: Record<string, unknown> }) => boolean, start: () => Promise<unknown> = async () => undefined): Promise<Array<{ type: string; object: Record<string, unknown> }>> {
  return new Promise((resolve, reject) => {
    const events: Array<{ type: string; object: Record<string, unknown> }> = [];
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`watch ${path}: no matching event in ${JSON.stringify(events)}`));
    }, 10_000);
    const req = https.request(`${api.url}${path}`, { ca: api.caPem, headers: { authorization: 'Bearer admin-token' } }, (res) => {
      let buf = '';
      res.on('data', (c: Buffer) => {
        buf += c.toString('utf8');
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const e = JSON.parse(buf.slice(0, nl)) as { type: string; object: Record<string, unknown> };
          buf = buf.slice(nl + 1);
          events.push(e);
          if (until(e)) {
            clearTimeout(timer);
            req.destroy();
            resolve(events);
            return;
          }
        }
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve(events);
      });
      void start();
    });
    req.on('error', () => undefined);
    req.end();
  });
}

const pa = (name: string, mode: string): Record<string, unknown> => ({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name, namespace: 'istio-system' }, spec: { mtls: { mode } } });
const rvOf = (o: Record<string, unknown>): number => Number((o['metadata'] as { resourceVersion: string }).resourceVersion);

test('resource versions: a list names the latest, a watch from it sees only what follows, in order', async () => {
  const base = '/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications';
  assert.equal((await call('POST', base, pa('a', 'STRICT'))).status, 201);
  const list = await call('GET', base);
  assert.equal(list.json['kind'], 'PeerAuthenticationList');
  const from = rvOf(list.json);
  const events = await watchLines(`${base}?watch=true&resourceVersion=${from}`, (e) => e.type === 'DELETED', async () => {
    await call('POST', base, pa('b', 'PERMISSIVE'));
    await call('PATCH', `${base}/a`, { spec: { mtls: { mode: 'DISABLE' } } }, { 'content-type': 'application/merge-patch+json' });
    await call('DELETE', `${base}/b`);
  });
  assert.deepEqual(events.map((e) => `${e.type} ${(e.object['metadata'] as { name: string }).name}`), ['ADDED b', 'MODIFIED a', 'DELETED b']);
  const rvs = events.map((e) => rvOf(e.object));
  assert.ok(rvs.every((rv, i) => rv > from && (i === 0 || rv > rvs[i - 1]!)), `increasing after ${from}: ${rvs.join(',')}`);
  // A stale update is a conflict; one naming the current version goes through.
  const current = (await call('GET', `${base}/a`)).json;
  assert.equal((await call('PUT', `${base}/a`, { ...current, metadata: { ...(current['metadata'] as object), resourceVersion: String(from) } })).status, 409);
  assert.equal((await call('PUT', `${base}/a`, current)).status, 200);
});

test('410 Gone for a compacted version, as an ERROR event; bookmarks carry the latest version', async () => {
  const base = '/apis/security.istio.io/v1beta1/namespaces/istio-system/peerauthentications';
  const old = api.resourceVersion;
  await call('POST', base, pa('c', 'STRICT'));
  api.compact();
  const gone = await watchLines(`${base}?watch=true&resourceVersion=${old}`, (e) => e.type === 'ERROR');
  assert.equal(gone.length, 1);
  assert.equal(gone[0]!.object['code'], 410);
  assert.equal(gone[0]!.object['reason'], 'Expired');
  const marks = await watchLines(`${base}?watch=true&resourceVersion=${api.resourceVersion}&allowWatchBookmarks=true`, (e) => e.type === 'BOOKMARK', async () => api.bookmark());
  assert.equal(rvOf(marks.at(-1)!.object), api.resourceVersion);
  assert.equal(marks.at(-1)!.object['apiVersion'], 'security.istio.io/v1beta1');
});

test('the status subresource changes status only, and an update of the resource leaves status alone', async () => {
  const base = '/apis/security.istio.io/v1/namespaces/istio-system/peerauthentications';
  await call('POST', base, pa('s', 'STRICT'));
  const cond = { conditions: [{ type: 'Reconciled', status: 'False', reason: 'Invalid', message: 'bad' }] };
  const st = await call('PATCH', `${base}/s/status`, { status: cond, spec: { mtls: { mode: 'DISABLE' } } }, { 'content-type': 'application/merge-patch+json' });
  assert.equal(st.status, 200);
  assert.deepEqual(st.json['status'], cond);
  assert.deepEqual(st.json['spec'], { mtls: { mode: 'STRICT' } }, 'spec untouched through status');
  const up = await call('PATCH', `${base}/s`, { status: null, spec: { mtls: { mode: 'PERMISSIVE' } } }, { 'content-type': 'application/merge-patch+json' });
  assert.deepEqual(up.json['status'], cond, 'status untouched through the resource');
  assert.deepEqual(up.json['spec'], { mtls: { mode: 'PERMISSIVE' } });
});

test('TokenReview: a registered token names its service account for its audience; others are not authenticated', async () => {
  api.issueToken('sa-token', { namespace: 'default', serviceAccount: 'httpbin', audiences: ['istio-ca'], expiresAt: Date.now() + 60_000 });
  api.issueToken('old-token', { namespace: 'default', serviceAccount: 'httpbin', audiences: ['istio-ca'], expiresAt: Date.now() - 1 });
  const review = (token: string, audiences: string[]): Promise<{ status: number; json: Record<string, unknown> }> =>
    call('POST', '/apis/authentication.k8s.io/v1/tokenreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } });
  const ok = await review('sa-token', ['istio-ca']);
  assert.equal(ok.status, 201);
  const s = ok.json['status'] as { authenticated?: boolean; user: { username?: string }; audiences?: string[]; error?: string };
  assert.equal(s.authenticated, true);
  assert.equal(s.user.username, 'system:serviceaccount:default:httpbin');
  assert.deepEqual(s.audiences, ['istio-ca']);
  for (const [token, aud, error] of [['sa-token', ['kubernetes'], /audiences/], ['old-token', ['istio-ca'], /expired/], ['forged', ['istio-ca'], /invalid/]] as const) {
    const r = (await review(token, [...aud])).json['status'] as { authenticated?: boolean; error?: string };
    assert.notEqual(r.authenticated, true, token);
    assert.match(r.error ?? '', error);
  }
});
