import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { denyAdmin, listenLocal, loopbackAddress, peerAuthentication, rawExchange, scenarioDir, startProxy, waitUntil, writeSidecarFiles, type RunningProxy } from '../support/proxy.ts';

/**
 * HTTP/1.1 framing through the inbound sidecar, against an app whose answers are scripted by path: pipelining,
 * chunked bodies both ways, responses delimited by the app's close, HEAD, 100-continue, the app closing or
 * resetting its connection, the app down, large bodies with back-pressure, and the request shapes refused
 * (Host missing or repeated, CONNECT, a body that stops coming). Raw sockets where framing is what is tested.
 */

const HOST = loopbackAddress();
let dir: string;
let app: http.Server;
let proxy: RunningProxy;
const appConnections = new Set<net.Socket>();

before(async () => {
  ({ dir } = await scenarioDir('rampart-h1-'));
  app = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const path = req.url ?? '/';
      if (path === '/echo') {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length), 'x-seen-te': String(req.headers['transfer-encoding'] ?? '') }).end(body);
      } else if (path === '/sha') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end(createHash('sha256').update(body).digest('hex'));
      } else if (path === '/big') {
        // 2 MB in 64 KB writes, chunked (no content-length).
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        const piece = Buffer.alloc(65_536, 'z');
        let left = 32;
        const more = (): void => {
          while (left > 0) {
            left--;
            if (!res.write(piece)) {
              res.once('drain', more);
              return;
            }
          }
          res.end();
        };
        more();
      } else if (path === '/chunked') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('one,');
        setTimeout(() => res.end('two'), 20);
      } else if (path === '/until-close') {
        // A response delimited by the end of the connection, as an HTTP/1.0-style server sends it.
        req.socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end');
      } else if (path === '/app-closes') {
        res.writeHead(200, { 'content-length': '6', connection: 'close' }).end('closed');
      } else if (path === '/reset') {
        res.writeHead(200, { 'content-length': '100' });
        res.write('partial');
        setTimeout(() => req.socket.destroy(), 20);
      } else if (path === '/bytes') {
        // Header text is bytes: node:http reads it as latin1, and writes it back the same way.
        res.writeHead(200, { 'x-back': String(req.headers['x-name']), 'content-length': '0' }).end();
      } else if (path === '/head') {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '11' }).end(req.method === 'HEAD' ? undefined : 'hello world');
      } else {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(path.length) }).end(path);
      }
    });
  });
  // A WebSocket endpoint reduced to what a proxy sees: the 101 handshake, then bytes echoed back as they come.
  app.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    if (head.length > 0) socket.write(head);
    socket.on('data', (c: Buffer) => socket.write(c));
    socket.on('end', () => socket.end());
  });
  app.on('connection', (s: net.Socket) => {
    appConnections.add(s);
    s.once('close', () => appConnections.delete(s));
  });
  const appPort = await listenLocal(app);
  const down = net.createServer();
  const downPort = await listenLocal(down);
  down.close();
  const files = await writeSidecarFiles(dir, `${peerAuthentication('PERMISSIVE')}---
${denyAdmin()}`, `workloads:
- name: httpbin
  labels: {app: httpbin}
  address: ${HOST}
  ports:
  - {name: http, port: 8000, targetPort: ${appPort}}
  - {name: http-down, port: 8001, targetPort: ${downPort}}
`);
  proxy = await startProxy([
    ...files, '--workload', 'default/httpbin',
    '--request-timeout', '1s', '--headers-timeout', '1s',
  ]);
});

after(async () => {
  await proxy?.stop();
  app?.closeAllConnections();
  app?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Writes raw bytes, then reads until the sidecar closes or `waitMs` passes. */
function raw(text: string | Buffer, waitMs = 3_000, port = 8000): Promise<{ text: string; closed: boolean }> {
  return rawExchange(HOST, port, text, waitMs);
}

/** Requests over one kept-alive connection with node:http's client; the bodies and whether the socket was reused. */
async function request(agent: http.Agent, path: string, opts: { method?: string; body?: Buffer | string; headers?: http.OutgoingHttpHeaders; port?: number } = {}):
  Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port: opts.port ?? 8000, path, method: opts.method ?? 'GET', agent, headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), reused: req.reusedSocket }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

function responses(text: string): string[] {
  return text.split(/(?=HTTP\/1\.1 \d{3} )/).filter((s) => s !== '');
}

test('pipelined requests are answered in order, one at a time', async () => {
  const r = await raw('GET /first HTTP/1.1\r\nHost: h\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\nGET /third HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n');
  const rs = responses(r.text);
  assert.equal(rs.length, 3, r.text);
  assert.match(rs[0]!, /^HTTP\/1\.1 200 [^]*\r\n\r\n\/first$/);
  assert.match(rs[1]!, /^HTTP\/1\.1 403 [^]*RBAC: access denied$/);
  assert.match(rs[2]!, /^HTTP\/1\.1 200 [^]*\r\n\r\n\/third$/);
  assert.ok(r.closed, 'Connection: close ends the connection after the last response');
});

test('a chunked request body reaches the app whole, still chunked', async () => {
  const r = await raw('POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
  assert.match(r.text, /^HTTP\/1\.1 200 /);
  assert.match(r.text, /\r\nx-seen-te: chunked\r\n/i);
  assert.ok(r.text.endsWith('\r\n\r\nhello world'), r.text);
});

test('chunked and close-delimited responses reach an HTTP/1.1 client chunked, on a connection that stays open', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const a = await request(agent, '/chunked');
    assert.equal(a.body.toString(), 'one,two');
    assert.equal(a.headers['transfer-encoding'], 'chunked');
    const b = await request(agent, '/until-close');
    assert.equal(b.body.toString(), 'until the end');
    assert.equal(b.headers['transfer-encoding'], 'chunked');
    assert.equal(b.reused, true);
    // The app closed its side; the client's connection carries on to a new one.
    const c = await request(agent, '/after');
    assert.equal(c.body.toString(), '/after');
    assert.equal(c.reused, true);
  } finally {
    agent.destroy();
  }
});

test('HTTP/1.0 is refused with 426, as Envoy does unless accept_http_10 is set', async () => {
  const r = await raw('GET /x HTTP/1.0\r\nHost: h\r\n\r\n');
  assert.match(r.text, /^HTTP\/1\.1 426 /, r.text);
  assert.ok(r.closed);
});

test('a response to HEAD has no body, and the next request on the connection is read right', async () => {
  const r = await raw('HEAD /head HTTP/1.1\r\nHost: h\r\n\r\nGET /head HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n');
  const rs = responses(r.text);
  assert.equal(rs.length, 2, r.text);
  assert.match(rs[0]!, /content-length: 11\r\n/i);
  assert.ok(rs[0]!.endsWith('\r\n\r\n'), 'no body after the HEAD response');
  assert.ok(rs[1]!.endsWith('hello world'));
});

test('Expect: 100-continue gets the app\'s 100 before the body is sent', async () => {
  const agent = new http.Agent({ keepAlive: false });
  const got = await new Promise<{ continued: boolean; body: string }>((resolve, reject) => {
    let continued = false;
    const req = http.request({ host: HOST, port: 8000, path: '/echo', method: 'POST', agent, headers: { expect: '100-continue', 'content-length': '4' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ continued, body }));
    });
    req.on('continue', () => {
      continued = true;
      req.end('data');
    });
    req.on('error', reject);
  });
  assert.deepEqual(got, { continued: true, body: 'data' });
});

test('the app closing its connection after a response does not fail the next request', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 5; i++) {
      const a = await request(agent, '/app-closes');
      assert.equal(a.body.toString(), 'closed');
      assert.notEqual(a.headers['connection'], 'close', 'the client\'s connection is not the app\'s');
      const b = await request(agent, `/next-${i}`);
      assert.equal(b.body.toString(), `/next-${i}`);
    }
  } finally {
    agent.destroy();
  }
});

test('an app reset mid-response cuts the client\'s connection and is logged UR', async () => {
  const r = await raw('GET /reset HTTP/1.1\r\nHost: h\r\n\r\n');
  assert.ok(r.closed);
  assert.match(r.text, /^HTTP\/1\.1 200 [^]*\r\n\r\npartial$/);
  const line = await proxy.waitFor('UR entry', (l) => l['path'] === '/reset');
  assert.equal(line['responseFlags'], 'UR');
});

test('an app that is down gets Envoy\'s 503 and flag UF', async () => {
  const r = await raw('GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n', 3_000, 8001);
  assert.match(r.text, /^HTTP\/1\.1 503 /);
  assert.match(r.text, /upstream connect error or disconnect\/reset before headers\. reset reason: connection failure$/);
  const line = await proxy.waitFor('UF entry', (l) => l['port'] === 8001 && l['path'] === '/x');
  assert.equal(line['responseFlags'], 'UF');
  assert.equal(line['status'], 503);
});

test('2 MB up and 2 MB down pass whole (back-pressure both ways)', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const up = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < up.length; i++) up[i] = i % 251;
    const a = await request(agent, '/sha', { method: 'POST', body: up });
    assert.equal(a.body.toString(), createHash('sha256').update(up).digest('hex'));
    const b = await request(agent, '/big');
    assert.equal(b.body.length, 2 * 1024 * 1024);
    assert.ok(b.body.every((c) => c === 0x7a));
  } finally {
    agent.destroy();
  }
});

const refused: Array<{ name: string; request: string }> = [
  { name: 'two Host headers', request: 'GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n' },
  { name: 'HTTP/1.1 without Host', request: 'GET /x HTTP/1.1\r\n\r\n' },
  { name: 'CONNECT', request: 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n' },
];
for (const row of refused) {
  test(`refused with 400 and closed: ${row.name}`, async () => {
    const r = await raw(row.request);
    assert.match(r.text, /^HTTP\/1\.1 400 /, r.text);
    assert.ok(r.closed);
  });
}

test('a denied request whose body is still coming is answered and its connection closed', async () => {
  const r = await raw('POST /admin HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nonly ten..');
  assert.match(r.text, /^HTTP\/1\.1 403 /);
  assert.match(r.text, /\r\nconnection: close\r\n/i);
  assert.ok(r.closed, 'the unread body must not be read as the next request');
});

test('a body that stops coming gets 408 within the request timeout; the app\'s connection is cut', async () => {
  const start = Date.now();
  const r = await raw('POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab', 5_000);
  assert.ok(r.closed);
  assert.match(r.text, /^HTTP\/1\.1 408 /);
  assert.ok(Date.now() - start < 4_000, `took ${Date.now() - start} ms`);
  const line = await proxy.waitFor('408 entry', (l) => l['path'] === '/echo' && l['status'] === 408);
  assert.equal(line['responseFlags'], 'DPE');
  await waitUntil('the app connection closed', () => ([...appConnections].every((s) => s.destroyed || s.readyState !== 'open') ? true : undefined), 3_000);
});

test('header bytes above 0x7f reach the app and come back unchanged (no re-encoding)', async () => {
  const r = await raw(Buffer.concat([Buffer.from('GET /bytes HTTP/1.1\r\nHost: h\r\nX-Name: caf'), Buffer.from([0xc3, 0xa9]), Buffer.from('\r\nConnection: close\r\n\r\n')]));
  const bytes = Buffer.from(r.text, 'latin1');
  assert.ok(bytes.includes(Buffer.concat([Buffer.from('x-back: caf'), Buffer.from([0xc3, 0xa9]), Buffer.from('\r\n')])), JSON.stringify(r.text));
});

test('a WebSocket handshake becomes a tunnel when the app answers 101; frames pass both ways; logged at its end', async () => {
  const s = net.connect({ host: HOST, port: 8000 });
  await once(s, 'connect');
  let got = '';
  s.on('data', (c: Buffer) => (got += c.toString('latin1')));
  // The first frame rides in the same write as the handshake, before any answer.
  s.write('GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nframe-1|');
  await waitUntil('the 101 and the first echo', () => (got.endsWith('frame-1|') ? true : undefined), 5_000, () => JSON.stringify(got));
  assert.match(got, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(got, /\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/i);
  s.write('GET /not-http HTTP/1.1\r\n\r\n');
  await waitUntil('the second echo, unparsed', () => (got.endsWith('GET /not-http HTTP/1.1\r\n\r\n') ? true : undefined), 5_000, () => JSON.stringify(got));
  s.end();
  await once(s, 'close');
  const line = await proxy.waitFor('tunnel entry', (l) => l['path'] === '/ws');
  assert.equal(line['status'], 101);
  assert.equal(line['responseFlags'], '-');
  assert.equal(line['decision'], 'ALLOW');
});

test('a WebSocket handshake is decided like any request: denied, it gets 403 and no tunnel', async () => {
  const r = await raw('GET /admin HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nframe');
  assert.match(r.text, /^HTTP\/1\.1 403 /);
  assert.ok(r.closed);
  assert.doesNotMatch(r.text, /frame/);
});
