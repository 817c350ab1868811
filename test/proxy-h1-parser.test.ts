import { test } from 'node:test';
import assert from 'node:assert/strict';
import { H1Parser, h1ParserAvailable, type H1Head } from '../src/proxy/h1-parser.ts';

/**
 * The llhttp wrapper on its own: heads split across reads and longer than llhttp's 32-header batches come out
 * whole, the strict mode's refusals carry llhttp's codes, and an upgrade taken hands back the bytes after it.
 */

interface Seen {
  heads: H1Head[];
  bodies: string[];
  completes: number;
}

function parser(kind: 'request' | 'response', opts: { upgraded?: () => boolean; skipBody?: boolean; maxHeaderBytes?: number } = {}): { p: H1Parser; seen: Seen } {
  const seen: Seen = { heads: [], bodies: [], completes: 0 };
  const p = new H1Parser(kind, opts.maxHeaderBytes ?? 16_384, {
    begin: () => undefined,
    head: (h) => {
      seen.heads.push(h);
      return opts.skipBody === true;
    },
    body: (c) => seen.bodies.push(c.toString('latin1')),
    complete: () => seen.completes++,
    ...(opts.upgraded === undefined ? {} : { upgraded: opts.upgraded }),
  });
  return { p, seen };
}

test('the parser binding is available on this Node.js', () => {
  assert.equal(h1ParserAvailable, true);
});

test('a head split byte by byte, with 40 headers, comes out whole and in order', () => {
  const { p, seen } = parser('request');
  const headers = Array.from({ length: 40 }, (_, i) => `X-H${i}: v${i}\r\n`).join('');
  const text = Buffer.from(`POST /a/b?c=d HTTP/1.1\r\nHost: h\r\n${headers}Content-Length: 3\r\n\r\nabc`);
  for (let i = 0; i < text.length; i++) assert.equal(p.execute(text.subarray(i, i + 1)), undefined);
  assert.equal(seen.heads.length, 1);
  const h = seen.heads[0]!;
  assert.equal(h.method, 'POST');
  assert.equal(h.url, '/a/b?c=d');
  assert.equal(h.rawHeaders.length, 2 * 42);
  assert.deepEqual(h.rawHeaders.slice(0, 4), ['Host', 'h', 'X-H0', 'v0']);
  assert.deepEqual(h.rawHeaders.slice(-4), ['X-H39', 'v39', 'Content-Length', '3']);
  assert.equal(seen.bodies.join(''), 'abc');
  assert.equal(seen.completes, 1);
});

test('strict refusals carry llhttp\'s codes', () => {
  const rows: Array<[string, string]> = [
    ['POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n', 'HPE_INVALID_TRANSFER_ENCODING'],
    ['POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', 'HPE_UNEXPECTED_CONTENT_LENGTH'],
    ['POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 'HPE_INVALID_CHUNK_SIZE'],
    ['GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  folded\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
  ];
  for (const [text, code] of rows) {
    const { p } = parser('request');
    const err = p.execute(Buffer.from(text));
    assert.ok(err !== undefined && !Buffer.isBuffer(err), JSON.stringify(text));
    assert.equal(err.llhttpCode, code, JSON.stringify(text));
    assert.equal(err.code, 'ERR_HTTP1_PARSE');
  }
  const { p } = parser('request', { maxHeaderBytes: 64 });
  const big = p.execute(Buffer.from(`GET / HTTP/1.1\r\nHost: h\r\nX: ${'a'.repeat(100)}\r\n\r\n`));
  assert.ok(big !== undefined && !Buffer.isBuffer(big));
  assert.equal(big.llhttpCode, 'HPE_HEADER_OVERFLOW');
});

test('an upgrade taken hands back the bytes after the head; one not taken is read past as HTTP', () => {
  const handshake = 'GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
  const taken = parser('request', { upgraded: () => true });
  const rest = taken.p.execute(Buffer.from(`${handshake}\x81\x05hello`, 'latin1'));
  assert.ok(Buffer.isBuffer(rest));
  assert.equal(rest.toString('latin1'), '\x81\x05hello');
  assert.equal(taken.seen.heads[0]!.upgrade, true);
  // Nothing more is parsed once the upgrade is taken.
  assert.equal(taken.p.execute(Buffer.from('GET / HTTP/1.1\r\nHost: h\r\n\r\n')), undefined);
  assert.equal(taken.seen.heads.length, 1);

  const notTaken = parser('request', { upgraded: () => false });
  assert.equal(notTaken.p.execute(Buffer.from(`${handshake}GET /next HTTP/1.1\r\nHost: h\r\n\r\n`)), undefined);
  assert.deepEqual(notTaken.seen.heads.map((h) => h.url), ['/ws', '/next']);
});

test('responses: a body skipped for HEAD, one delimited by the end of the connection, and 100 before the final answer', () => {
  const head = parser('response', { skipBody: true });
  assert.equal(head.p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n')), undefined);
  assert.equal(head.seen.completes, 1);
  assert.deepEqual(head.seen.bodies, []);

  const untilClose = parser('response');
  assert.equal(untilClose.p.execute(Buffer.from('HTTP/1.1 200 OK\r\n\r\npart one, ')), undefined);
  assert.equal(untilClose.p.execute(Buffer.from('part two')), undefined);
  assert.equal(untilClose.seen.completes, 0);
  assert.equal(untilClose.p.finish(), undefined);
  assert.equal(untilClose.seen.completes, 1);
  assert.equal(untilClose.seen.bodies.join(''), 'part one, part two');
  assert.equal(untilClose.seen.heads[0]!.keepAlive, false);

  const cont = parser('response');
  assert.equal(cont.p.execute(Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok')), undefined);
  assert.deepEqual(cont.seen.heads.map((h) => `${h.status} ${h.statusText}`), ['100 Continue', '201 Created']);
  assert.equal(cont.seen.completes, 2);
});

test('closing inside a callback waits for the parser to return (no use after free)', () => {
  let p: H1Parser | undefined;
  let completes = 0;
  p = new H1Parser('response', 0, {
    begin: () => undefined,
    head: () => false,
    body: () => undefined,
    complete: () => {
      completes++;
      p?.close();
    },
  });
  assert.equal(p.execute(Buffer.from('HTTP/1.1 200 OK\r\n\r\nuntil close')), undefined);
  assert.equal(p.finish(), undefined);
  assert.equal(completes, 1);
  // Closed: later input is ignored.
  assert.equal(p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')), undefined);
  assert.equal(completes, 1);
});
