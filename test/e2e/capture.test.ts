import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NETNS_SKIP, TestNet, type Host } from '../support/netns.ts';
import { peerAuthentication, scenarioDir, spawnRampart, waitUntil, whenReady, writeSidecarFiles, type RunningProxy } from '../support/proxy.ts';

/**
 * Transparent interception across real hosts: three network namespaces on a bridge. sleep and httpbin each run an
 * unmodified app and a sidecar with `rampart capture` rules; `outside` runs an app with no sidecar and is not in the
 * registry. sleep's curl and node clients name `httpbin.default:8000` as they would in a cluster, and the sidecars
 * underneath turn that into mTLS with secure naming; httpbin's policies decide, and its app sees the caller in XFCC.
 */

const BIN = join(import.meta.dirname, '..', '..', 'src', 'cli', 'bin.ts');
const APPS = join(import.meta.dirname, '..', 'fixtures', 'capture-apps.mjs');
const SIDECAR_GID = 1337;

const POLICIES = `${peerAuthentication('STRICT')}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-from-sleep, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  # ports: on the TCP port the HTTP-only paths field is dropped from a DENY rule (Istio widens the deny), and the
  # rule would refuse every connection there.
  - to: [{operation: {ports: ["8000"], paths: ["/admin"]}}]
`;

let net: TestNet | undefined;
let sleepHost: Host;
let httpbinHost: Host;
let outsideHost: Host;
let dir: string;
let files: string[];
const sidecars: RunningProxy[] = [];
let sleep: RunningProxy;
let httpbin: RunningProxy;

const meshFile = (policy: string, extraService = ''): string => `meshConfig:
  outboundTrafficPolicy: {mode: ${policy}}
workloads:
- name: httpbin
  serviceAccount: httpbin
  labels: {app: httpbin}
  address: ${httpbinHost.address}
  ports:
  - {name: http, port: 8000, targetPort: 8000}
  - {name: tcp-echo, port: 9000, targetPort: 9000}
  - {name: grpc, port: 50051, targetPort: 50051}
- name: sleep
  serviceAccount: sleep
  labels: {app: sleep}
  address: ${sleepHost.address}
services:
- name: httpbin
  selector: {app: httpbin}
  ports: [{name: http, port: 8000}, {name: tcp-echo, port: 9000}, {name: grpc, port: 50051}]
${extraService}`;

function rampart(host: Host, args: readonly string[]): Promise<string> {
  return host.run(process.execPath, ['--import', 'tsx', BIN, ...args]);
}

async function startApp(host: Host, name: string): Promise<void> {
  const app = host.spawn(process.execPath, [APPS], { env: { ...process.env, APP_NAME: name } });
  let out = '';
  app.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  app.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  await waitUntil(`${name}'s app`, () => (out.includes('ready') ? true : undefined), 15_000, () => `: ${out}`);
}

async function startSidecar(host: Host, workload: string): Promise<RunningProxy> {
  await rampart(host, ['capture', 'apply']);
  const p = await whenReady(spawnRampart('proxy', [...files, '--workload', workload, '--capture', '--hosts-file', host.hostsFile], process.env,
    { prefix: ['ip', 'netns', 'exec', host.netns], gid: SIDECAR_GID }));
  sidecars.push(p);
  return p;
}

/** curl in a namespace: the status code, or the curl exit code as `exit N` when no response came. */
async function curl(host: Host, url: string): Promise<{ status: string; body: string }> {
  try {
    const out = await host.run('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', url]);
    const nl = out.lastIndexOf('\n');
    return { status: out.slice(nl + 1), body: out.slice(0, nl) };
  } catch (err) {
    const m = /curl: \((\d+)\)/.exec((err as Error).message);
    return { status: `exit ${m?.[1] ?? '?'}`, body: (err as Error).message };
  }
}

/** A plain node client in a namespace: `node -e CODE`, its stdout. */
function nodeClient(host: Host, code: string): Promise<string> {
  return host.run(process.execPath, ['--input-type=module', '-e', code]);
}

before(async () => {
  if (NETNS_SKIP !== undefined) return;
  net = await TestNet.create();
  sleepHost = await net.addHost('sleep');
  httpbinHost = await net.addHost('httpbin');
  outsideHost = await net.addHost('outside');
  ({ dir } = await scenarioDir('rampart-capture-'));
  files = await writeSidecarFiles(dir, POLICIES, meshFile('ALLOW_ANY'));
  await startApp(httpbinHost, 'httpbin');
  await startApp(sleepHost, 'sleep');
  await startApp(outsideHost, 'outside');
  httpbin = await startSidecar(httpbinHost, 'default/httpbin');
  sleep = await startSidecar(sleepHost, 'default/sleep');
});

after(async () => {
  await Promise.all(sidecars.map((s) => s.stop()));
  await net?.remove();
});

test('curl names httpbin.default:8000 and gets there over mTLS; httpbin decides and its app sees the caller in XFCC', { skip: NETNS_SKIP }, async () => {
  const hosts = await readFile(sleepHost.hostsFile, 'utf8');
  assert.match(hosts, /^240\.240\.\d+\.\d+\thttpbin\.default\.svc\.cluster\.local httpbin\.default\.svc httpbin\.default httpbin$/m);
  const r = await curl(sleepHost, 'http://httpbin.default:8000/headers');
  assert.equal(r.status, '200', r.body);
  const body = JSON.parse(r.body) as { app: string; headers: Record<string, string>; remote: string };
  assert.equal(body.app, 'httpbin');
  assert.match(body.headers['x-forwarded-client-cert'] ?? '', /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
  assert.equal(body.headers['x-forwarded-proto'], 'https', 'mTLS between the sidecars, as Envoy tells the app');
  assert.equal(body.remote, '127.0.0.1', 'the app is reached by its sidecar, on loopback');
  const denied = await curl(sleepHost, 'http://httpbin.default:8000/admin');
  assert.deepEqual([denied.status, denied.body], ['403', 'RBAC: access denied']);
  // httpbin's sidecar logged both, with sleep's principal and the port the app named.
  const entry = await httpbin.waitFor('the access entry of /admin', (l) => l['path'] === '/admin' && l['kind'] === 'http');
  assert.equal(entry['sourcePrincipal'], 'spiffe://cluster.local/ns/default/sa/sleep');
  assert.equal(entry['decision'], 'DENY');
  const out = await sleep.waitFor('the outbound entry', (l) => l['kind'] === 'outbound' && l['via'] === 'capture' && l['path'] === '/admin');
  assert.equal(out['mtls'], true);
  assert.equal(out['destinationServiceAccount'], 'default/httpbin');
  assert.equal(out['cluster'], 'outbound_.8000_._.httpbin.default.svc.cluster.local');
});

test('a plain node:http client by the bare service name (same namespace), and a raw TCP echo, through capture', { skip: NETNS_SKIP }, async () => {
  const text = await nodeClient(sleepHost, `import http from 'node:http';
http.get('http://httpbin:8000/status', (res) => { let b = ''; res.on('data', (c) => b += c); res.on('end', () => console.log(res.statusCode, JSON.parse(b).headers['x-forwarded-client-cert'])); });`);
  assert.match(text, /^200 By=spiffe:\/\/cluster\.local\/ns\/default\/sa\/httpbin;Hash=[0-9a-f]{64};Subject="";URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep\n$/);
  const echoed = await nodeClient(sleepHost, `import net from 'node:net';
const s = net.connect(9000, 'httpbin.default', () => s.write('ping over capture'));
let b = ''; s.on('data', (c) => { b += c; if (b.length >= 17) s.end(); }); s.on('close', () => console.log(b));`);
  assert.equal(echoed, 'ping over capture\n');
  const entry = await httpbin.waitFor('the TCP entry', (l) => l['kind'] === 'tcp' && l['port'] === 9000, 15_000);
  assert.equal(entry['sourcePrincipal'], 'spiffe://cluster.local/ns/default/sa/sleep');
});

test('HTTP/2 (gRPC over h2c by prior knowledge) through capture, trailers included', { skip: NETNS_SKIP }, async () => {
  const text = await nodeClient(sleepHost, `import http2 from 'node:http2';
const c = http2.connect('http://httpbin.default:50051');
const req = c.request({ ':method': 'POST', ':path': '/echo.Echo/Say', 'content-type': 'application/grpc', te: 'trailers' });
let b = ''; let h; req.on('response', (x) => (h = x)); req.on('data', (d) => b += d);
req.on('trailers', (t) => { console.log(h[':status'], h['x-app'], h['x-path'], t['grpc-status'], b); c.close(); });
req.end('hello');`);
  assert.equal(text, '200 httpbin /echo.Echo/Say 0 hello\n');
  const entry = await httpbin.waitFor('the gRPC entry', (l) => l['kind'] === 'http' && l['path'] === '/echo.Echo/Say');
  assert.equal(entry['sourcePrincipal'], 'spiffe://cluster.local/ns/default/sa/sleep');
  assert.equal(entry['decision'], 'ALLOW');
});

test('plaintext from a namespace without a sidecar is refused on the STRICT port; the app is not reached', { skip: NETNS_SKIP }, async () => {
  const before = httpbin.lines.length;
  const r = await curl(outsideHost, `http://${httpbinHost.address}:8000/headers`);
  assert.match(r.status, /^exit (52|56)$/, `reset or empty reply, got ${r.status}: ${r.body}`);
  const entry = await httpbin.waitFor('the refusal', (l) => httpbin.lines.indexOf(l) >= before && l['kind'] === 'connection');
  assert.match(String(entry['reason']), /plaintext connection refused: mTLS mode is STRICT/);
});

test('a destination outside the registry: passed through on ALLOW_ANY, refused on REGISTRY_ONLY (a live change)', { skip: NETNS_SKIP }, async () => {
  const url = `http://${outsideHost.address}:8000/hello`;
  const open = await curl(sleepHost, url);
  assert.equal(open.status, '200', open.body);
  const body = JSON.parse(open.body) as { app: string; remote: string; headers: Record<string, string> };
  assert.equal(body.app, 'outside');
  assert.equal(body.remote, sleepHost.address);
  assert.equal(body.headers['x-forwarded-client-cert'], undefined, 'plaintext, as the app sent it');
  const passed = await sleep.waitFor('the passthrough entry', (l) => l['via'] === 'capture' && l['path'] === '/hello');
  assert.equal(passed['mtls'], false);
  assert.equal(passed['cluster'], undefined);
  await writeFile(join(dir, 'mesh.yaml'), meshFile('REGISTRY_ONLY'));
  await sleep.waitFor('REGISTRY_ONLY applied', (l) => l['event'] === 'config-applied', 15_000);
  const closed = await curl(sleepHost, url);
  assert.match(closed.status, /^exit (52|56)$/, `${closed.status}: ${closed.body}`);
  const refused = await sleep.waitFor('the refused entry', (l) => l['via'] === 'capture' && typeof l['error'] === 'string' && String(l['error']).includes('REGISTRY_ONLY'));
  assert.equal(refused['destination'], `${outsideHost.address}:8000`);
  // The mesh still works.
  assert.equal((await curl(sleepHost, 'http://httpbin.default:8000/headers')).status, '200');
});

test('a new service reaches the running namespace\'s /etc/hosts (written in place)', { skip: NETNS_SKIP }, async () => {
  await writeFile(join(dir, 'mesh.yaml'), meshFile('REGISTRY_ONLY', `- name: web
  address: 10.96.7.7
  selector: {app: httpbin}
  ports: [{name: http, port: 80, targetPort: 8000}]
`));
  const resolved = await waitForAsync(async () => {
    const out = await sleepHost.run('getent', ['hosts', 'web.default']).catch(() => '');
    return out.includes('10.96.7.7') ? out : undefined;
  });
  assert.match(resolved, /^10\.96\.7\.7\s+web\.default\.svc\.cluster\.local/);
  const r = await curl(sleepHost, 'http://web.default/headers');
  assert.equal(r.status, '200', r.body);
});

test("the sidecar's own connections are not captured (no loop), and no captured connection was refused", { skip: NETNS_SKIP }, async () => {
  assert.equal((await curl(sleepHost, 'http://httpbin.default:8000/once')).status, '200');
  await sleep.waitFor('the entry of /once', (l) => l['via'] === 'capture' && l['path'] === '/once');
  await httpbin.waitFor('the inbound entry of /once', (l) => l['kind'] === 'http' && l['path'] === '/once');
  // One request, one captured connection: had the sidecar's own mTLS connection been captured, it would have come
  // back to the outbound capture port as a second connection carrying the same request.
  assert.equal(sleep.lines.filter((l) => l['via'] === 'capture' && l['path'] === '/once').length, 1);
  assert.equal(httpbin.lines.filter((l) => l['kind'] === 'http' && l['path'] === '/once').length, 1);
  for (const s of [sleep, httpbin]) assert.deepEqual(s.lines.filter((l) => l['event'] === 'capture-refused'), []);
});

test('capture remove leaves no rule behind, and traffic then flows uncaptured', { skip: NETNS_SKIP }, async () => {
  for (const h of [sleepHost, httpbinHost]) {
    await rampart(h, ['capture', 'remove']);
    const nft = await h.run('nft', ['list', 'ruleset']);
    assert.doesNotMatch(nft, /rampart/i, `${h.netns}: ${nft}`);
    const ipt = await h.run('iptables-save', []).catch(() => '');
    assert.doesNotMatch(ipt, /RAMPART/, `${h.netns}: ${ipt}`);
  }
  const before = sleep.lines.filter((l) => l['via'] === 'capture').length;
  // Straight to httpbin's app: no capture on either side now, so plaintext reaches the app itself.
  const r = await curl(sleepHost, `http://${httpbinHost.address}:8000/direct`);
  assert.equal(r.status, '200', r.body);
  assert.equal((JSON.parse(r.body) as { remote: string }).remote, sleepHost.address);
  assert.equal(sleep.lines.filter((l) => l['via'] === 'capture').length, before);
});

async function waitForAsync<T>(f: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}
