import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JWK } from 'jose';
import { checkedAddresses, fetchKeyDocument, KeyFetchRefused, type Resolver } from '../src/jwt/key-fetch.ts';
import { JwksSource, type JwksEvent } from '../src/jwt/jwks-source.ts';
import { KeyRegistry } from '../src/jwt/key-registry.ts';
import { JwksError } from '../src/jwt/key-set.ts';
import type { RequestAuthentication } from '../src/resources/types.ts';
import { loadResources } from '../src/resources/load.ts';

/**
 * Key documents are never fetched from link-local or metadata addresses. Every fetch here goes through a resolver
 * that only ever answers loopback: were the guard ever broken, the fetch would fail in that resolver instead of
 * sending a packet anywhere but this machine.
 */
const loopbackOnly: Resolver = async (host) => {
  const address = host === 'localhost' || host === 'keys.test' ? '127.0.0.1' : host;
  if (!address.startsWith('127.')) throw new Error(`test resolver: ${host} is not resolved here (the guard should have refused it first)`);
  return [{ address, family: 4 }];
};

const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const JWKS = JSON.stringify({ keys: [{ ...(publicKey.export({ format: 'jwk' }) as JWK), kid: 'k1', alg: 'ES256' }] });

/** A JWKS server on 127.0.0.1 whose answer to /jwks is set by the test: the keys, or a redirect to `location`. */
async function server(): Promise<{ base: string; answer: { location?: string; status?: number; body?: string }; hits: string[]; close: () => Promise<void> }> {
  const answer: { location?: string; status?: number; body?: string } = {};
  const hits: string[] = [];
  const srv = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    if (req.url === '/jwks' && answer.location !== undefined) {
      res.writeHead(answer.status ?? 302, { location: answer.location }).end();
      return;
    }
    if (req.url === '/loop') {
      res.writeHead(302, { location: '/loop' }).end();
      return;
    }
    if (req.url === '/big') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('x'.repeat(2 << 20));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(answer.body ?? JWKS);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as AddressInfo).port;
  return { base: `http://127.0.0.1:${port}`, answer, hits, close: () => new Promise((r) => { srv.closeAllConnections(); srv.close(() => r()); }) };
}

const FORBIDDEN_TARGETS: Array<[string, RegExp]> = [
  ['http://169.254.169.254/latest/meta-data/', /169\.254\.169\.254 is a link-local address/],
  ['http://2852039166/latest/meta-data/', /169\.254\.169\.254 is a link-local address/],
  ['http://0xa9.0xfe.0xa9.0xfe/', /169\.254\.169\.254 is a link-local address/],
  ['http://[::ffff:169.254.169.254]/', /169\.254\.169\.254 is a link-local address/],
  ['http://[fe80::1]/', /fe80::1 is a link-local address \(fe80::\/10\)/],
  ['http://[fd00:ec2::254]/latest/meta-data/', /fd00:ec2::254 is a cloud metadata service address/],
  ['http://metadata.google.internal/computeMetadata/v1/', /metadata\.google\.internal is a cloud metadata service/],
  ['http://METADATA.google.internal./computeMetadata/v1/', /metadata\.google\.internal is a cloud metadata service/],
];

test('a redirect to a link-local or metadata address is refused, with the last good keys kept', async () => {
  const srv = await server();
  const events: JwksEvent[] = [];
  const source = new JwksSource({ uri: `${srv.base}/jwks`, resolve: loopbackOnly, onEvent: (e) => events.push(e), timeoutMs: 5_000 });
  try {
    await source.refresh();
    const good = source.state();
    assert.ok('keys' in good, JSON.stringify(good));
    for (const [target, why] of FORBIDDEN_TARGETS) {
      srv.answer.location = target;
      events.length = 0;
      await source.refresh();
      const e = events[0];
      assert.ok(e !== undefined && e.type === 'fetch-failed', `${target}: ${JSON.stringify(events)}`);
      assert.match(e.error, /redirected to .*: refused: /, target);
      assert.match(e.error, why, target);
      assert.equal(e.keepingLastGood, true);
      const st = source.state();
      assert.ok('keys' in st && st.keys === good.keys, `${target}: the last good key set stays in use`);
    }
    // Each status that redirects is refused the same way.
    for (const status of [301, 303, 307, 308]) {
      srv.answer.location = 'http://169.254.169.254/';
      srv.answer.status = status;
      events.length = 0;
      await source.refresh();
      assert.match(events[0]?.type === 'fetch-failed' ? events[0].error : 'fetched', /refused: 169\.254\.169\.254/, String(status));
    }
  } finally {
    source.stop();
    await srv.close();
  }
});

test('redirects within the allowed addresses are followed; loops and oversized documents fail clearly', async () => {
  const srv = await server();
  try {
    srv.answer.location = '/keys-moved';
    const doc = await fetchKeyDocument(`${srv.base}/jwks`, { timeoutMs: 5_000, resolve: loopbackOnly });
    assert.equal(doc.status, 200);
    assert.equal(doc.body, JWKS);
    assert.equal(doc.url, `${srv.base}/keys-moved`);
    await assert.rejects(fetchKeyDocument(`${srv.base}/loop`, { timeoutMs: 5_000, resolve: loopbackOnly }), /more than 5 redirects/);
    await assert.rejects(fetchKeyDocument(`${srv.base}/big`, { timeoutMs: 5_000, resolve: loopbackOnly }), /larger than 1048576 bytes/);
    // The connection goes to the address the resolver gave: a name only the resolver knows is served.
    const port = new URL(srv.base).port;
    const byName = await fetchKeyDocument(`http://keys.test:${port}/jwks-by-name`, { timeoutMs: 5_000, resolve: loopbackOnly });
    assert.equal(byName.status, 200);
    assert.ok(srv.hits.includes('/jwks-by-name'));
  } finally {
    await srv.close();
  }
});

test('a jwksUri at a forbidden address is refused before any fetch; its tokens fail closed', async () => {
  for (const [target, why] of FORBIDDEN_TARGETS) {
    assert.throws(() => new JwksSource({ uri: target, resolve: loopbackOnly }), (e: unknown) => e instanceof JwksError && why.test(e.message), target);
    await assert.rejects(fetchKeyDocument(target, { timeoutMs: 5_000, resolve: loopbackOnly }), (e: unknown) => e instanceof KeyFetchRefused && why.test(e.message), target);
  }
  // Loading refuses such a resource (rampart validate, the control plane and the sidecar all load this way)...
  const yaml = (uri: string): string => `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: foo}\nspec:\n  jwtRules:\n  - issuer: https://a.example\n    jwksUri: ${uri}\n`;
  const refused = loadResources([{ file: 'p.yaml', text: yaml('http://169.254.169.254/keys') }]);
  assert.deepEqual(refused.resources, []);
  assert.ok(refused.diagnostics.some((d) => d.code === 'ERR_JWT_JWKS_URI_FORBIDDEN' && d.line === 7));
  // ...and were one to reach the key registry anyway, the rule has no keys, with the reason: 401 for its tokens.
  const loaded = loadResources([{ file: 'p.yaml', text: yaml('https://keys.example.com/keys') }]);
  const ra = loaded.resources.filter((r): r is RequestAuthentication => r.kind === 'RequestAuthentication')[0]!;
  const rule = { ...ra.spec.jwtRules![0]!, jwksUri: 'http://169.254.169.254/keys' };
  const registry = await KeyRegistry.create([{ ...ra, spec: { ...ra.spec, jwtRules: [rule] } }], { resolve: loopbackOnly });
  const st = registry.keysFor({ policy: 'foo/jwt', index: 0, rule });
  assert.ok('unavailable' in st && /refused: 169\.254\.169\.254 is a link-local address/.test(st.unavailable), JSON.stringify(st));
});

test('a name that resolves to a link-local or metadata address is refused, whatever else it resolves to', async () => {
  const url = new URL('https://keys.example.com/jwks');
  const answers: Array<[string[], RegExp | undefined]> = [
    [['169.254.169.254'], /keys\.example\.com resolves to 169\.254\.169\.254 is a link-local address/],
    [['203.0.113.7', '169.254.170.2'], /resolves to 169\.254\.170\.2 is a link-local address/],
    [['fe80::a9fe:a9fe'], /resolves to fe80::a9fe:a9fe is a link-local address/],
    [['::ffff:169.254.169.254'], /resolves to 169\.254\.169\.254/],
    [['100.100.100.200'], /cloud metadata service address/],
    [['203.0.113.7', '2001:db8::7'], undefined],
  ];
  for (const [addresses, why] of answers) {
    // Only checked, never connected to: checkedAddresses is what every connection of fetchKeyDocument goes through.
    const resolve: Resolver = async () => addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
    if (why === undefined) assert.deepEqual((await checkedAddresses(url, resolve)).map((a) => a.address), addresses);
    else await assert.rejects(checkedAddresses(url, resolve), (e: unknown) => e instanceof KeyFetchRefused && why.test(e.message), addresses.join());
  }
});

test('OIDC discovery whose jwks_uri points at a metadata address: the rule has no keys, with the reason', async () => {
  const srv = await server();
  try {
    srv.answer.body = JSON.stringify({ issuer: srv.base, jwks_uri: 'http://169.254.169.254/latest/meta-data/' });
    const text = `apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: foo}\nspec:\n  jwtRules:\n  - issuer: ${srv.base}\n`;
    const ras = loadResources([{ file: 'p.yaml', text }]).resources.filter((r): r is RequestAuthentication => r.kind === 'RequestAuthentication');
    const registry = await KeyRegistry.create(ras, { resolve: loopbackOnly });
    const st = registry.keysFor({ policy: 'foo/jwt', index: 0, rule: ras[0]!.spec.jwtRules![0]! });
    assert.ok('unavailable' in st, JSON.stringify(st));
    assert.match(st.unavailable, /openid-configuration: jwks_uri http:\/\/169\.254\.169\.254\/latest\/meta-data\/ refused: 169\.254\.169\.254 is a link-local address/);
    assert.deepEqual(srv.hits, ['/.well-known/openid-configuration'], 'only the discovery document was fetched');
  } finally {
    await srv.close();
  }
});
