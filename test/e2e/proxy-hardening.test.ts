import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { denyAdmin, listenLocal, loopbackAddress, peerAuthentication, rawExchange, scenarioDir, startProxy, waitUntil, writeSidecarFiles, type RunningProxy } from '../support/proxy.ts';

/**
 * What a hostile or broken client meets: request smuggling shapes refused before any policy or app sees them,
 * header size and count limits, slow and silent clients cut off, and a flood of idle connections that does not
 * keep a real client out for long. Raw sockets against the sidecar (PERMISSIVE, so plaintext is accepted).
 */

const HOST = loopbackAddress();
let dir: string;
let app: http.Server;
let proxy: RunningProxy;
const appSaw: string[] = [];

before(async () => {
  ({ dir } = await scenarioDir('rampart-hard-'));
  app = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      appSaw.push(`${req.method} ${req.url} ${body}`);
      res.writeHead(200, { 'content-length': '2' }).end('ok');
    });
  });
  const appPort = await listenLocal(app);
  const files = await writeSidecarFiles(dir, `${peerAuthentication('PERMISSIVE')}---
${denyAdmin(`  # A header on several lines: each line is matched on its own (Envoy since CVE-2026-26308).
  - when: [{key: "request.headers[x-team]", values: ["b"]}]
  # An absolute-form target names the host: this DENY must hold whatever the Host header says.
  - to: [{operation: {hosts: ["secret.com", "secret.com:*"]}}]
`)}`, `debugHeaders: true
workloads:
- name: httpbin
  labels: {app: httpbin}
  address: ${HOST}
  ports: [{name: http, port: 8000, targetPort: ${appPort}}]
`);
  proxy = await startProxy([
    ...files, '--workload', 'default/httpbin',
    '--idle-timeout', '1s', '--headers-timeout', '1s', '--max-header-bytes', '8192', '--max-headers', '20', '--max-connections', '200', '--admin-port', '0',
  ]);
});

after(async () => {
  await proxy?.stop();
  app?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Writes raw bytes and reads until the server closes (or `waitMs`); the text received and how long it took. */
function raw(text: string, waitMs = 5_000): Promise<{ text: string; ms: number; closed: boolean }> {
  return rawExchange(HOST, 8000, text, waitMs);
}

const smuggling: Array<{ name: string; request: string }> = [
  { name: 'Content-Length and Transfer-Encoding together', request: 'POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n' },
  { name: 'two different Content-Length values', request: 'POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd' },
  { name: 'bad chunk size', request: 'POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n' },
  { name: 'Transfer-Encoding other than chunked last', request: 'POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n' },
  { name: 'space before the colon of a header', request: 'GET /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n' },
  { name: 'a bare LF in a header value', request: 'GET /x HTTP/1.1\r\nHost: h\r\nX-A: a\nTransfer-Encoding: chunked\r\n\r\n' },
  { name: 'obsolete line folding', request: 'GET /x HTTP/1.1\r\nHost: h\r\nX-A: a\r\n  continued\r\n\r\n' },
  { name: 'control character in the request target', request: 'GET /x\x01y HTTP/1.1\r\nHost: h\r\n\r\n' },
];

for (const row of smuggling) {
  test(`smuggling shape refused with 400 before any policy or app: ${row.name}`, async () => {
    const before = appSaw.length;
    const r = await raw(row.request);
    assert.match(r.text, /^HTTP\/1\.1 400 /, JSON.stringify(r.text));
    assert.ok(r.closed, 'the connection is closed');
    assert.equal(appSaw.length, before, `the app saw ${appSaw.slice(before).join(' | ')}`);
  });
}

test('a header on several lines: each line is matched, so adding a line cannot escape a DENY', async () => {
  const before = appSaw.length;
  for (const lines of ['X-Team: a\r\nX-Team: b', 'X-Team: b\r\nX-Team: a', 'X-Team: a\r\nx-team: b\r\nX-TEAM: c']) {
    const r = await raw(`GET /x HTTP/1.1\r\nHost: h\r\n${lines}\r\nConnection: close\r\n\r\n`);
    assert.match(r.text, /^HTTP\/1\.1 403 /, lines);
    // This mesh enables debug headers: the denial names its request id, layer, policy and rule.
    assert.match(r.text, /\r\nx-rampart-policy: default\/deny-admin rule 1\r\n/i);
    assert.match(r.text, /\r\nx-rampart-decided-by: deny\r\n/i);
    assert.match(r.text, /\r\nx-rampart-request-id: [0-9a-f-]{36}\r\n/i);
  }
  assert.equal(appSaw.length, before, `the app saw ${appSaw.slice(before).join(' | ')}`);
  // One line "a, b" is one value, as in Envoy: not "b".
  const one = await raw('GET /x HTTP/1.1\r\nHost: h\r\nX-Team: a, b\r\nConnection: close\r\n\r\n');
  assert.match(one.text, /^HTTP\/1\.1 200 /);
});

test('an absolute-form target is decided on its own authority, which replaces Host upstream', async () => {
  const before = appSaw.length;
  const rows: Array<[string, RegExp]> = [
    ['GET http://secret.com/x HTTP/1.1\r\nHost: public.com', /^HTTP\/1\.1 403 /],
    ['GET http://secret.com:8000/x?y=1 HTTP/1.1\r\nHost: public.com', /^HTTP\/1\.1 403 /],
    ['GET HTTP://SECRET.COM/x HTTP/1.1\r\nHost: public.com', /^HTTP\/1\.1 403 /],
    ['GET http://secret.com HTTP/1.1\r\nHost: public.com', /^HTTP\/1\.1 403 /],
    ['GET ftp://secret.com/x HTTP/1.1\r\nHost: public.com', /^HTTP\/1\.1 400 /],
    ['GET http://user@secret.com/x HTTP/1.1\r\nHost: public.com', /^HTTP\/1\.1 400 /],
    ['GET http:///x HTTP/1.1\r\nHost: public.com', /^HTTP\/1\.1 400 /],
  ];
  for (const [head, want] of rows) {
    const r = await raw(`${head}\r\nConnection: close\r\n\r\n`);
    assert.match(r.text, want, head);
  }
  assert.equal(appSaw.length, before, `the app saw ${appSaw.slice(before).join(' | ')}`);
  // The other way round: the target's authority is allowed, and it is the Host the app gets, with an origin-form path.
  const seen: http.IncomingHttpHeaders[] = [];
  const listener = (req: http.IncomingMessage): void => void seen.push(req.headers);
  app.on('request', listener);
  try {
    const ok = await raw('GET http://public.com/x?q=1 HTTP/1.1\r\nHost: secret.com\r\nConnection: close\r\n\r\n');
    assert.match(ok.text, /^HTTP\/1\.1 200 /);
    assert.equal(appSaw.at(-1), 'GET /x?q=1 ');
    assert.equal(seen.at(-1)?.host, 'public.com');
  } finally {
    app.off('request', listener);
  }
});

test('header size and count limits answer 431; the app sees nothing', async () => {
  const before = appSaw.length;
  const big = await raw(`GET /x HTTP/1.1\r\nHost: h\r\nX-Big: ${'a'.repeat(9_000)}\r\n\r\n`);
  assert.match(big.text, /^HTTP\/1\.1 431 /);
  const many = await raw(`GET /x HTTP/1.1\r\nHost: h\r\n${Array.from({ length: 25 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`);
  assert.match(many.text, /^HTTP\/1\.1 431 /);
  assert.equal(appSaw.length, before);
  // Twenty headers exactly pass.
  const ok = await raw(`GET /ok HTTP/1.1\r\nHost: h\r\nConnection: close\r\n${Array.from({ length: 18 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`);
  assert.match(ok.text, /^HTTP\/1\.1 200 /);
});

test('a slow client (headers never finished) gets 408 and is cut off; a silent one is closed after the idle timeout', async () => {
  const slow = await raw('GET /x HTTP/1.1\r\nHost: h\r\nX-Slow: ', 6_000);
  assert.ok(slow.closed, 'closed by the proxy');
  assert.match(slow.text, /^HTTP\/1\.1 408 |^$/);
  assert.ok(slow.ms < 4_000, `took ${slow.ms} ms`);
  const silent = await raw('', 6_000);
  assert.ok(silent.closed);
  assert.ok(silent.ms < 4_000, `took ${silent.ms} ms`);
});

test('a flood of idle connections: a real request still gets through, connections beyond the limit are closed, the flood is cleared by the idle timeout', async () => {
  const flood: net.Socket[] = [];
  for (let i = 0; i < 260; i++) {
    const s = net.connect({ host: HOST, port: 8000 });
    s.on('error', () => undefined);
    flood.push(s);
  }
  await Promise.all(flood.map((s) => new Promise((r) => (s.connecting ? s.once('connect', r).once('close', r) : r(undefined)))));
  // The proxy counts (and logs) each connection it closed for the limit: no timing guess about which close was which.
  const admin = proxy.ready['admin'] as number;
  const overLimit = async (): Promise<number> => Number(/rampart_connections_refused_total\{reason="connection_limit"\} (\d+)/.exec(await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text())?.[1] ?? 0);
  let dropped = 0;
  for (const end = Date.now() + 10_000; (dropped = await overLimit()) < 50 && Date.now() < end;) await new Promise((r) => setTimeout(r, 50));
  assert.ok(dropped >= 50, `connections beyond --max-connections 200 are closed at once (${dropped} were)`);
  await proxy.waitFor('a connection-limit refusal logged', (l) => l['log'] === 'access' && l['kind'] === 'connection' && /^connection limit of 200 reached$/.test(String(l['reason'])));
  // Once the idle timeout clears the flood, a real client is served; the proxy process is still up.
  await waitUntil('the flood cleared by the idle timeout', () => (flood.every((s) => s.destroyed || s.closed) ? true : undefined), 15_000);
  const r = await raw('GET /after-flood HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n');
  assert.match(r.text, /^HTTP\/1\.1 200 /);
  assert.ok(flood.every((s) => s.destroyed || s.closed), 'every idle connection was closed by the proxy');
  assert.equal(proxy.child.exitCode, null);
  for (const s of flood) s.destroy();
});
