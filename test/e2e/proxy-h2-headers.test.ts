import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import { listenLocal, loopbackAddress, peerAuthentication, scenarioDir, startProxy, writeSidecarFiles, type RunningProxy } from '../support/proxy.ts';

/**
 * HTTP/2 requests written frame by frame, as an attacker sends them: header fields that HTTP/2 forbids (an upper-case
 * name, CR, LF or NUL in a value, white space at an end) make the stream reset with PROTOCOL_ERROR, as Envoy does;
 * node:http2 alone would drop the field and hand the rest of the request on, past a DENY that looked for it.
 */

const HOST = loopbackAddress();
let dir: string;
let app: http.Server;
let proxy: RunningProxy;
const appSaw: string[] = [];

interface HpackDecompressor {
  write(b: Buffer): void;
  execute(): void;
  read(): { name: string; value: string } | null;
}
const hpack = createRequire(import.meta.url)('hpack.js') as { decompressor: { create(o: { table: { size: number } }): HpackDecompressor } };

before(async () => {
  ({ dir } = await scenarioDir('rampart-h2hdr-'));
  app = http.createServer((req, res) => {
    appSaw.push(`${req.url} ${JSON.stringify(req.headers)}`);
    res.writeHead(200, { 'content-length': '2' }).end('ok');
  });
  const appPort = await listenLocal(app);
  const files = await writeSidecarFiles(dir, `${peerAuthentication('PERMISSIVE')}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin-role, namespace: default}
spec:
  action: DENY
  rules:
  - when: [{key: "request.headers[x-role]", values: ["admin"]}]
`, `workloads:
- name: httpbin
  labels: {app: httpbin}
  address: ${HOST}
  ports: [{name: http, port: 8000, targetPort: ${appPort}}]
`);
  proxy = await startProxy([...files, '--workload', 'default/httpbin']);
});

after(async () => {
  await proxy?.stop();
  app?.close();
  await rm(dir, { recursive: true, force: true });
});

/** HPACK literal without indexing (or with incremental indexing), no Huffman coding: any bytes can be sent. */
function literal(name: string, value: string, index = false): Buffer {
  const n = Buffer.from(name, 'latin1');
  const v = Buffer.from(value, 'latin1');
  assert.ok(n.length < 127 && v.length < 127);
  return Buffer.concat([Buffer.from([index ? 0x40 : 0x00, n.length]), n, Buffer.from([v.length]), v]);
}

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

/** GET / with :authority and the given fields (blocks already encoded), on streams 1, 3, …; per stream: status or reset code. */
async function h2Exchange(blocks: Buffer[][]): Promise<Array<string>> {
  const s = net.connect({ host: HOST, port: 8000 });
  await once(s, 'connect');
  // :method GET (static 2), :scheme http (6), :path / (4) are indexed; :authority is a literal.
  const requests = blocks.map((fields, i) => frame(1, 0x5, 2 * i + 1, Buffer.concat([Buffer.from([0x82, 0x86, 0x84]), literal(':authority', 'httpbin.default:8000'), ...fields])));
  s.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0)), ...requests]));
  const results = new Map<number, string>();
  const decoder = hpack.decompressor.create({ table: { size: 4096 } });
  let buf = Buffer.alloc(0);
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer for every stream: ${JSON.stringify([...results])}`)), 10_000);
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3]!;
        const flags = buf[4]!;
        const id = buf.readUInt32BE(5) & 0x7fffffff;
        const payload = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === 4 && (flags & 1) === 0) s.write(frame(4, 1, 0, Buffer.alloc(0)));
        if (type === 1) {
          decoder.write(Buffer.from(payload));
          decoder.execute();
          for (let h = decoder.read(); h !== null; h = decoder.read()) if (h.name === ':status') results.set(id, h.value);
        }
        if (type === 3) results.set(id, `reset ${payload.readUInt32BE(0)}`);
        if (type === 7) results.set(-1, `goaway ${payload.readUInt32BE(4)}`);
      }
      if (blocks.every((_, i) => results.has(2 * i + 1)) || results.has(-1)) {
        clearTimeout(timer);
        resolve();
      }
    });
    s.once('error', reject);
  });
  try {
    await done;
  } finally {
    s.destroy();
  }
  return blocks.map((_, i) => results.get(2 * i + 1) ?? results.get(-1) ?? 'none');
}

const PROTOCOL_ERROR = 'reset 1';

test('a valid HTTP/2 request through the header check is decided as usual: allowed, and denied on x-role admin', async () => {
  assert.deepEqual(await h2Exchange([[literal('x-role', 'user')], [literal('x-role', 'admin')]]), ['200', '403']);
});

test('HTTP/2: a header on two fields meets the DENY on either (node:http2 would have joined them to "user, admin")', async () => {
  const before = appSaw.length;
  assert.deepEqual(await h2Exchange([[literal('x-role', 'user'), literal('x-role', 'admin')], [literal('x-role', 'admin'), literal('x-role', 'user')]]), ['403', '403']);
  assert.equal(appSaw.length, before);
});

// The last column: whether node:http2 would have dropped the field and handed the request on (nghttp2 resets an
// upper-case name by itself, before any request reaches the listener).
const malformed: Array<[string, Buffer[], boolean?]> = [
  ['an upper-case field name (nghttp2 resets it by itself)', [literal('X-Role', 'admin')], false],
  ['LF in a value', [literal('x-note', 'a\nb'), literal('x-role', 'user')]],
  ['CR in a value', [literal('x-note', 'a\rb')]],
  ['NUL in a value', [literal('x-role', 'admin\u0000')]],
  ['another control character', [literal('x-note', 'a\u0001b')]],
  ['white space at the end of a value', [literal('x-role', 'admin ')]],
  ['a name with a space', [literal('x role', 'admin')]],
];

for (const [name, fields, dropped = true] of malformed) {
  test(`HTTP/2 stream reset with PROTOCOL_ERROR, nothing reaches the app: ${name}`, async () => {
    const before = appSaw.length;
    const logged = proxy.lines.length;
    assert.deepEqual(await h2Exchange([fields]), [PROTOCOL_ERROR]);
    assert.equal(appSaw.length, before, `the app saw ${appSaw.slice(before).join(' | ')}`);
    if (dropped) {
      await proxy.waitFor('the refusal in the access log', (l) => proxy.lines.indexOf(l) >= logged && l['kind'] === 'http' && l['responseFlags'] === 'DPE' && /^header /.test(String(l['reason'])));
    }
  });
}

test('a malformed field stored in the HPACK table and referred to again later is refused each time', async () => {
  const before = appSaw.length;
  // Stream 1 adds "x-note: a<LF>b" to the dynamic table (index 62); stream 3 refers to it by index only; stream 5 is clean.
  const results = await h2Exchange([[literal('x-note', 'a\nb', true)], [Buffer.from([0x80 | 62])], [literal('x-role', 'user')]]);
  assert.deepEqual(results, [PROTOCOL_ERROR, PROTOCOL_ERROR, '200']);
  assert.equal(appSaw.length, before + 1);
});
