import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, type JWK } from 'jose';
import { JwtAuthenticator } from '../src/jwt/authenticator.ts';
import { KeyRegistry } from '../src/jwt/key-registry.ts';
import { KeySet } from '../src/jwt/key-set.ts';
import type { JwksEvent } from '../src/jwt/jwks-source.ts';
import { PolicyEngine } from '../src/policy/engine.ts';
import { parseCheckRequest } from '../src/policy/request.ts';
import { collectJwtRules, extractTokens, type JwtRuleRef } from '../src/policy/request-authn.ts';
import { loadResources } from '../src/resources/load.ts';
import type { RequestAuthentication } from '../src/resources/types.ts';
import { outcome, httpRequest } from './support/decide.ts';
import { ap, docs, ra } from './support/yaml.ts';

const NOW = Math.floor(Date.now() / 1000);

interface Issuer {
  readonly iss: string;
  keys: Array<{ privateKey: KeyObject; jwk: JWK }>;
}

function newKey(kid: string): { privateKey: KeyObject; jwk: JWK } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, jwk: { ...(publicKey.export({ format: 'jwk' }) as JWK), kid, alg: 'ES256' } };
}

function token(issuer: Issuer, claims: Record<string, unknown> = {}, keyIndex = 0): Promise<string> {
  const k = issuer.keys[keyIndex]!;
  return new SignJWT({ iss: issuer.iss, sub: 'alice', aud: 'httpbin', exp: NOW + 3600, iat: NOW, ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: k.jwk.kid as string })
    .sign(k.privateKey);
}

/** A token with any header and payload, validly signed with node:crypto (jose refuses to sign some of these shapes). */
function signedByHand(issuer: Issuer, header: Record<string, unknown>, payload: Record<string, unknown>): string {
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b64({ alg: 'ES256', kid: issuer.keys[0]!.jwk.kid, ...header })}.${b64({ iss: issuer.iss, sub: 'alice', aud: 'httpbin', exp: NOW + 3600, iat: NOW, ...payload })}`;
  return `${input}.${cryptoSign('sha256', Buffer.from(input), { key: issuer.keys[0]!.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

/** The clock every authenticator here reads: the time the tokens were made from, whatever the wall clock does. */
const clock = (): number => NOW * 1000;

/** A real JWKS server on 127.0.0.1 serving each issuer's current public keys; `delayMs` slows every answer. */
async function jwksServer(issuers: Issuer[]): Promise<{ url: (i: number) => string; hits: () => number; delayMs: { value: number }; down: { value: boolean }; close: () => Promise<void> }> {
  let hits = 0;
  const delayMs = { value: 0 };
  const down = { value: false };
  const server = http.createServer((req, res) => {
    hits++;
    const i = Number((req.url ?? '').split('/')[1]);
    const issuer = issuers[i];
    setTimeout(() => {
      if (down.value || issuer === undefined) {
        res.writeHead(503).end('down');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: issuer.keys.map((k) => k.jwk) }));
    }, delayMs.value);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    url: (i) => `http://127.0.0.1:${port}/${i}/jwks.json`,
    hits: () => hits,
    delayMs,
    down,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

async function setup(yaml: string, options: { minRefetchMs?: number; overrides?: Map<string, string> } = {}): Promise<{ decide: (req: unknown) => ReturnType<PolicyEngine['decide']>; registry: KeyRegistry; events: JwksEvent[]; verifier: JwtAuthenticator; rules: JwtRuleRef[]; engine: PolicyEngine }> {
  const loaded = loadResources([{ file: 'p.yaml', text: yaml }]);
  assert.deepEqual(loaded.diagnostics.filter((d) => d.severity === 'error'), []);
  const events: JwksEvent[] = [];
  const registry = await KeyRegistry.create(loaded.resources.filter((r): r is RequestAuthentication => r.kind === 'RequestAuthentication'), {
    minRefetchMs: options.minRefetchMs ?? 0,
    onEvent: (e) => events.push(e),
    ...(options.overrides === undefined ? {} : { overrides: options.overrides }),
  });
  const verifier = new JwtAuthenticator({ keysFor: (ref) => registry.keysFor(ref), onUnknownKid: (ref) => registry.unknownKid(ref), now: clock });
  const engine = new PolicyEngine(loaded.resources);
  const rules = collectJwtRules(loaded.resources.filter((r): r is RequestAuthentication => r.kind === 'RequestAuthentication'));
  return { decide: (req) => engine.decide(parseCheckRequest(req), { trace: true, jwtVerifier: verifier }), registry, events, verifier, rules, engine };
}

const bearer = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` });

test('Istio outcomes with a jwksUri served on 127.0.0.1: no token passes, bad token 401, audience 403, principal for policy', async () => {
  const A: Issuer = { iss: 'https://a.example', keys: [newKey('a1')] };
  const srv = await jwksServer([A]);
  try {
    const { decide } = await setup(docs(
      ra('jwt', { selector: { matchLabels: { app: 'httpbin' } }, jwtRules: [{ issuer: A.iss, jwksUri: srv.url(0), audiences: ['httpbin'] }] }),
      ap('require', { selector: { matchLabels: { app: 'httpbin' } }, rules: [{ from: [{ source: { requestPrincipals: ['https://a.example/alice'] } }], when: [{ key: 'request.auth.claims[groups]', values: ['dev'] }] }] }),
    ));
    const good = await token(A, { groups: ['dev', 'ops'] });
    const rows: Array<[string, unknown, string, RegExp?]> = [
      ['no token: authn passes, authorization denies', httpRequest({}), 'DENY 403', /no rule of the 1 ALLOW policy matched/],
      ['valid token with the group', httpRequest({ headers: bearer(good) }), 'ALLOW'],
      ['valid token without the group', httpRequest({ headers: bearer(await token(A)) }), 'DENY 403'],
      ['expired', httpRequest({ headers: bearer(await token(A, { exp: NOW - 120 })) }), 'DENY 401', /Jwt is expired/],
      ['audience not listed', httpRequest({ headers: bearer(await token(A, { aud: ['other'] })) }), 'DENY 403', /Audiences in Jwt are not allowed/],
      ['audience missing', httpRequest({ headers: bearer(await token(A, { aud: undefined })) }), 'DENY 403', /Audiences in Jwt are not allowed/],
      ['audience as a list containing a listed one', httpRequest({ headers: bearer(await token(A, { aud: ['other', 'httpbin'], groups: 'dev' })) }), 'ALLOW'],
      ['expired within the 60 s skew', httpRequest({ headers: bearer(await token(A, { exp: NOW - 30, groups: ['dev'] })) }), 'ALLOW'],
      ['issuer not configured', httpRequest({ headers: bearer(await token({ ...A, iss: 'https://evil.example' })) }), 'DENY 401', /Jwt issuer is not configured/],
      ['in the access_token query parameter', httpRequest({ path: `/ip?access_token=${good}` }), 'ALLOW'],
      ['a good and an expired token: each must verify', httpRequest({ path: `/ip?access_token=${await token(A, { exp: NOW - 120 })}`, headers: bearer(good) }), 'DENY 401'],
      ['CORS preflight skips JWT', httpRequest({ method: 'OPTIONS', headers: { origin: 'https://x', 'access-control-request-method': 'GET', authorization: 'Bearer garbage' } }), 'DENY 403'],
      ['garbage token', httpRequest({ headers: bearer('a.b') }), 'DENY 401', /Header\.Payload\.Signature/],
    ];
    for (const [name, req, want, reason] of rows) {
      const d = decide(req);
      assert.equal(outcome(d), want, `${name}: ${d.reason}`);
      if (reason !== undefined) assert.match(d.reason, reason, name);
    }
    const d = decide(httpRequest({ headers: bearer(good) }));
    assert.ok(d.trace?.some((s) => s.step === 'jwt' && /principal https:\/\/a\.example\/alice/.test(s.message)));
  } finally {
    await srv.close();
  }
});

test('multiple issuers and custom locations (istio.io authn-policy): header with prefix, param, cookie; defaults off', async () => {
  const A: Issuer = { iss: 'https://a.example', keys: [newKey('a1')] };
  const B: Issuer = { iss: 'https://b.example', keys: [newKey('b1')] };
  const { decide } = await setup(docs(
    ra('jwt', {
      selector: { matchLabels: { app: 'httpbin' } },
      jwtRules: [
        { issuer: A.iss, jwks: JSON.stringify({ keys: A.keys.map((k) => k.jwk) }), fromHeaders: [{ name: 'x-jwt-assertion', prefix: 'Token ' }], fromParams: ['my_token'] },
        { issuer: B.iss, jwks: JSON.stringify({ keys: B.keys.map((k) => k.jwk) }), fromCookies: ['session'] },
      ],
    }),
    ap('require', { selector: { matchLabels: { app: 'httpbin' } }, rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] }),
  ));
  const a = await token(A);
  const b = await token(B);
  const rows: Array<[string, unknown, string]> = [
    ['A in its header with prefix', httpRequest({ headers: { 'x-jwt-assertion': `Token ${a}` } }), 'ALLOW'],
    ['A in its header without the prefix: no token found', httpRequest({ headers: { 'x-jwt-assertion': a } }), 'DENY 403'],
    ['A in its param', httpRequest({ path: `/ip?my_token=${a}` }), 'ALLOW'],
    ['B in its cookie', httpRequest({ headers: { cookie: `theme=dark; session=${b}` } }), 'ALLOW'],
    ['B in A\'s header: issuer B is not configured there', httpRequest({ headers: { 'x-jwt-assertion': `Token ${b}` } }), 'DENY 401'],
    ['A in Authorization: Bearer: defaults are off, no token', httpRequest({ headers: bearer(a) }), 'DENY 403'],
  ];
  for (const [name, req, want] of rows) {
    const d = decide(req);
    assert.equal(outcome(d), want, `${name}: ${d.reason}`);
  }
});

test('a token location given more than once: every copy is a token and must verify, through both paths', async () => {
  const A: Issuer = { iss: 'https://a.example', keys: [newKey('a1')] };
  const jwks = JSON.stringify({ keys: A.keys.map((k) => k.jwk) });
  const { decide, verifier, rules, engine } = await setup(docs(
    ra('jwt', {
      selector: { matchLabels: { app: 'httpbin' } },
      jwtRules: [
        { issuer: A.iss, jwks },
        { issuer: A.iss, jwks, fromHeaders: [{ name: 'x-jwt' }, { name: 'x-token', prefix: 'Token ' }], fromParams: ['tok'], fromCookies: ['session'] },
      ],
    }),
    ap('require', { selector: { matchLabels: { app: 'httpbin' } }, rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] }),
  ));
  const good = await token(A);
  const other = await token(A, { sub: 'bob' });
  const expired = await token(A, { exp: NOW - 3600 });
  const rows: Array<[string, Parameters<typeof httpRequest>[0], string, RegExp?]> = [
    // Envoy's extractor takes each value of a header as a token and every token must verify (extractor.cc, authenticator.cc).
    ['two Authorization lines, good then garbage', { headers: { authorization: [`Bearer ${good}`, 'Bearer garbage'] } }, 'DENY 401', /Header\.Payload\.Signature/],
    ['two Authorization lines, garbage then good', { headers: { authorization: ['Bearer garbage', `Bearer ${good}`] } }, 'DENY 401'],
    ['two Authorization lines, good then expired', { headers: { authorization: [`Bearer ${good}`, `Bearer ${expired}`] } }, 'DENY 401', /Jwt is expired/],
    ['the same good token twice', { headers: { authorization: [`Bearer ${good}`, `Bearer ${good}`] } }, 'ALLOW'],
    ['two good tokens of one issuer', { headers: { authorization: [`Bearer ${good}`, `Bearer ${other}`] } }, 'ALLOW'],
    ['two copies in one line, as a proxy joins them', { headers: { authorization: `Bearer ${good}, Bearer garbage` } }, 'DENY 401'],
    ['Authorization and Authorization with other casing', { headers: { Authorization: `Bearer ${good}`, authorization: 'Bearer garbage' } }, 'DENY 401'],
    ['a fromHeaders header repeated', { headers: { 'x-jwt': [good, 'garbage'] } }, 'DENY 401'],
    ['a prefixed fromHeaders header repeated', { headers: { 'x-token': [`Token ${good}`, `Token ${expired}`] } }, 'DENY 401', /Jwt is expired/],
    // Envoy checks only the first value of a parameter or cookie and hands the others to the app unchecked; here
    // every copy must verify (stricter on purpose: docs/jwt.md).
    ['access_token twice, good first', { path: `/ip?access_token=${good}&access_token=garbage` }, 'DENY 401'],
    ['a fromParams parameter twice, good first', { path: `/ip?tok=${good}&tok=${expired}` }, 'DENY 401', /Jwt is expired/],
    ['a cookie twice in one header', { headers: { cookie: `session=${good}; session=garbage` } }, 'DENY 401'],
    ['a cookie in two Cookie headers', { headers: { cookie: [`session=${good}`, 'session=garbage'] } }, 'DENY 401'],
    ['a quoted cookie', { headers: { cookie: `session="${good}"` } }, 'ALLOW'],
    // A location present with nothing usable in it is a bad token, as in Envoy, not a missing one.
    ['Authorization: "Bearer " and nothing else', { headers: { authorization: 'Bearer ' } }, 'DENY 401'],
    ['an empty access_token', { path: '/ip?access_token=' }, 'DENY 401'],
    ['Basic credentials are no token', { headers: { authorization: 'Basic YWxhZGRpbjpvcGVuc2VzYW1l' } }, 'DENY 403'],
    ['the token ends at the first character no JWS has', { headers: { authorization: `Bearer ${good};x` } }, 'ALLOW'],
  ];
  for (const [name, over, want, reason] of rows) {
    const req = httpRequest(over);
    const d = decide(req);
    assert.equal(outcome(d), want, `${name}: ${d.reason}`);
    if (reason !== undefined) assert.match(d.reason, reason, name);
    // The threadpool path reaches the same outcome on the same tokens.
    const found = extractTokens(rules, engine.prepare(parseCheckRequest(req)));
    const sync = verifier.authenticate(found, rules);
    const async = await verifier.authenticateAsync(found, rules);
    assert.equal(async.kind, sync.kind, name);
    if (sync.kind === 'rejected' && async.kind === 'rejected') assert.deepEqual([async.status, async.reason], [sync.status, sync.reason], name);
  }
});

test('key rotation at the issuer: an unknown kid triggers a refetch and the new key is used', async () => {
  const A: Issuer = { iss: 'https://a.example', keys: [newKey('old')] };
  const srv = await jwksServer([A]);
  try {
    const { decide, registry } = await setup(ra('jwt', { jwtRules: [{ issuer: A.iss, jwksUri: srv.url(0) }] }), { minRefetchMs: 0 });
    assert.equal(outcome(decide(httpRequest({ headers: bearer(await token(A)) }))), 'ALLOW');
    const fetchesBefore = srv.hits();
    A.keys.unshift(newKey('new')); // the issuer rotates: new key first, old one still published
    const fresh = await token(A);
    const first = decide(httpRequest({ headers: bearer(fresh) }));
    assert.equal(outcome(first), 'DENY 401', 'the request naming the unknown kid fails, as in Envoy');
    assert.match(first.reason, /Jwks doesn't have key to match kid or alg from Jwt/);
    await registry.sources[0]!.refresh(); // the refetch the first request started, awaited here
    assert.ok(srv.hits() > fetchesBefore, 'the unknown kid caused a fetch');
    assert.equal(outcome(decide(httpRequest({ headers: bearer(fresh) }))), 'ALLOW');
    registry.stop();
  } finally {
    await srv.close();
  }
});

test('unknown-kid refetches are rate-limited', async () => {
  const A: Issuer = { iss: 'https://a.example', keys: [newKey('k')] };
  const srv = await jwksServer([A]);
  try {
    const { decide, registry } = await setup(ra('jwt', { jwtRules: [{ issuer: A.iss, jwksUri: srv.url(0) }] }), { minRefetchMs: 60_000 });
    const before = srv.hits();
    const stranger: Issuer = { iss: A.iss, keys: [newKey('unknown')] };
    for (let i = 0; i < 20; i++) assert.equal(outcome(decide(httpRequest({ headers: bearer(await token(stranger)) }))), 'DENY 401');
    await registry.sources[0]!.refresh();
    assert.ok(srv.hits() - before <= 2, `20 tokens with unknown kids caused ${srv.hits() - before} fetches`);
    registry.stop();
  } finally {
    await srv.close();
  }
});

test('JWKS unavailable: tokens fail closed (401), requests without tokens are unaffected, last good keys kept, failures reported', async () => {
  const A: Issuer = { iss: 'https://a.example', keys: [newKey('a1')] };
  const srv = await jwksServer([A]);
  try {
    const yaml = docs(ra('jwt', { jwtRules: [{ issuer: A.iss, jwksUri: srv.url(0), timeout: '200ms' }] }));
    // Never reachable: 401 with Envoy's message.
    srv.down.value = true;
    const dead = await setup(yaml);
    const d = dead.decide(httpRequest({ headers: bearer(await token(A)) }));
    assert.equal(outcome(d), 'DENY 401');
    assert.match(d.reason, /Jwks remote fetch is failed/);
    assert.equal(outcome(dead.decide(httpRequest({}))), 'ALLOW', 'no token: the request goes on');
    assert.ok(dead.events.some((e) => e.type === 'fetch-failed' && /503/.test(e.error)));
    // Fetched once, then the server fails: the last good set stays in use.
    srv.down.value = false;
    const live = await setup(yaml);
    srv.down.value = true;
    await live.registry.sources[0]!.refresh();
    assert.equal(live.registry.sources[0]!.stats.failures, 1);
    assert.equal(outcome(live.decide(httpRequest({ headers: bearer(await token(A)) }))), 'ALLOW');
    assert.ok(live.events.some((e) => e.type === 'fetch-failed' && e.keepingLastGood));
    // Slower than the rule's timeout: unavailable.
    srv.down.value = false;
    srv.delayMs.value = 1_000;
    const slow = await setup(yaml);
    assert.match(slow.decide(httpRequest({ headers: bearer(await token(A)) })).reason, /Jwks remote fetch is failed/);
    assert.ok(slow.events.some((e) => e.type === 'fetch-failed' && /within 200 ms/.test(e.error)));
  } finally {
    await srv.close();
  }
});

test('a repeated token is served from the verified-token cache; the cache honours expiry', async () => {
  const A: Issuer = { iss: 'https://a.example', keys: [newKey('a1')] };
  const loaded = loadResources([{ file: 'p.yaml', text: ra('jwt', { jwtRules: [{ issuer: A.iss, jwks: JSON.stringify({ keys: A.keys.map((k) => k.jwk) }) }] }) }]);
  const registry = await KeyRegistry.create(loaded.resources as RequestAuthentication[]);
  let now = NOW * 1000;
  let lookups = 0;
  const verifier = new JwtAuthenticator({ keysFor: (ref) => (lookups++, registry.keysFor(ref)), now: () => now });
  const engine = new PolicyEngine(loaded.resources);
  const t = await token(A, { exp: NOW + 100 });
  const req = parseCheckRequest(httpRequest({ headers: bearer(t) }));
  assert.equal(engine.decide(req, { jwtVerifier: verifier }).decision, 'ALLOW');
  assert.equal(engine.decide(req, { jwtVerifier: verifier }).decision, 'ALLOW');
  assert.equal(lookups, 2);
  now += 200_000; // beyond exp + skew
  const late = engine.decide(req, { jwtVerifier: verifier, trace: true });
  assert.equal(outcome(late), 'DENY 401');
  assert.match(late.reason, /Jwt is expired/);
});

test('authenticateAsync (signatures on the threadpool) gives the same outcome as authenticate, one row per case, and shares the cache', async () => {
  const A: Issuer = { iss: 'https://a.example', keys: [newKey('a1')] };
  const other: Issuer = { iss: 'https://a.example', keys: [newKey('a1')] };
  const jwks = JSON.stringify({ keys: A.keys.map((k) => k.jwk) });
  const rule = { issuer: A.iss, audiences: ['httpbin'], jwks };
  const ref = { policy: 'default/jwt', index: 0, rule };
  const keys = await KeySet.fromJwks(jwks, 'inline');
  let checks = 0;
  // Counts signature checks: verification asks the key set for candidates once per check.
  const spy = Object.create(keys) as KeySet;
  Object.defineProperty(spy, 'candidates', { value: (...a: Parameters<KeySet['candidates']>) => (checks++, keys.candidates(...a)) });
  const found = (t: string) => [{ token: t, locations: ['header authorization (Bearer)'], sources: [], rules: [ref] }];
  const rows: Array<[string, Promise<string> | string, string]> = [
    ['valid', token(A), 'verified'],
    ['signed by another key with the same kid', token(other), 'rejected 401 Jwt verification fails'],
    ['expired', token(A, { exp: NOW - 3600 }), 'rejected 401 Jwt is expired'],
    ['audience not listed', token(A, { aud: 'other' }), 'rejected 403 Audiences in Jwt are not allowed'],
    ['issuer not configured', token({ ...A, iss: 'https://b.example' }), 'rejected 401 Jwt issuer is not configured'],
    ['unknown kid', new SignJWT({ iss: A.iss, sub: 'x', aud: 'httpbin' }).setProtectedHeader({ alg: 'ES256', kid: 'zz' }).sign(A.keys[0]!.privateKey), "rejected 401 Jwks doesn't have key to match kid or alg from Jwt"],
    ['malformed', 'a.b', 'rejected 401 Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
    // Envoy's order: times and audiences are checked before the signature, so a forged token says what is wrong
    // with its claims, and costs no signature check.
    ['forged and expired', token(other, { exp: NOW - 3600 }), 'rejected 401 Jwt is expired'],
    ['forged for another audience', token(other, { aud: 'other' }), 'rejected 403 Audiences in Jwt are not allowed'],
    // Token shapes jwt_verify_lib refuses, each validly signed: before, some were verified (200) and some got 403.
    ['kid not a string', signedByHand(A, { kid: 1 }, {}), 'rejected 401 Jwt header [kid] field is not a string'],
    ['alg missing', signedByHand(A, { alg: undefined }, {}), 'rejected 401 Jwt header [alg] field is required and must be a string'],
    ['iss not a string', signedByHand(A, {}, { iss: 1 }), 'rejected 401 Jwt payload [iss] field is not a string'],
    ['sub not a string', signedByHand(A, {}, { sub: { id: 'alice' } }), 'rejected 401 Jwt payload [sub] field is not a string'],
    ['jti not a string', signedByHand(A, {}, { jti: 5 }), 'rejected 401 Jwt payload [jti] field is not a string'],
    ['iat a string', signedByHand(A, {}, { iat: 'today' }), 'rejected 401 Jwt payload [iat] field is not an integer'],
    ['iat negative', signedByHand(A, {}, { iat: -1 }), 'rejected 401 Jwt payload [iat] field is not a positive 64 bit integer'],
    ['nbf a string', signedByHand(A, {}, { nbf: 'now' }), 'rejected 401 Jwt payload [nbf] field is not an integer'],
    ['nbf negative', signedByHand(A, {}, { nbf: -1 }), 'rejected 401 Jwt payload [nbf] field is not a positive 64 bit integer'],
    ['exp a string', signedByHand(A, {}, { exp: String(NOW + 60) }), 'rejected 401 Jwt payload [exp] field is not an integer'],
    ['exp beyond uint64', signedByHand(A, {}, { exp: 1e20 }), 'rejected 401 Jwt payload [exp] field is not a positive 64 bit integer'],
    ['exp negative', signedByHand(A, {}, { exp: -60 }), 'rejected 401 Jwt payload [exp] field is not a positive 64 bit integer'],
    ['aud a list with a number', signedByHand(A, {}, { aud: ['httpbin', 1] }), 'rejected 401 Jwt payload [aud] field is not a string or string list'],
    ['aud a number', signedByHand(A, {}, { aud: 1 }), 'rejected 401 Jwt payload [aud] field is not a string or string list'],
    ['fractional exp (Envoy drops the fraction)', signedByHand(A, {}, { exp: NOW + 60.5 }), 'verified'],
  ];
  for (const [name, t, want] of rows) {
    const tok = await t;
    const sync = new JwtAuthenticator({ keysFor: () => ({ keys: spy }), now: clock }).authenticate(found(tok), [ref]);
    const async = await new JwtAuthenticator({ keysFor: () => ({ keys: spy }), now: clock }).authenticateAsync(found(tok), [ref]);
    const text = (o: typeof sync) => (o.kind === 'rejected' ? `rejected ${o.status} ${o.reason}` : o.kind);
    assert.equal(text(sync), want, name);
    assert.deepEqual(async, sync, name);
  }
  // Admission on the second verification: a token verified on the threadpool, then synchronously (what a proxy's
  // decide runs), is then served from the cache, with the same request.auth view.
  const shared = new JwtAuthenticator({ keysFor: () => ({ keys: spy }), now: clock });
  const t = await token(A, { sub: 'carol' });
  checks = 0;
  const first = await shared.authenticateAsync(found(t), [ref]);
  assert.equal(checks, 1);
  const second = shared.authenticate(found(t), [ref]);
  assert.equal(checks, 2, 'seen once: not cached yet');
  const third = shared.authenticate(found(t), [ref]);
  assert.equal(await shared.authenticateAsync(found(t), [ref]).then((o) => o.kind), 'verified');
  assert.equal(checks, 2, 'admitted on its second verification');
  assert.ok(first.kind === 'verified' && second.kind === 'verified' && third.kind === 'verified');
  assert.equal(third.jwt, second.jwt, 'the same request.auth view');
  assert.equal(first.jwt.principal, 'https://a.example/carol');
  // The cached payload is handed over (a proxy's header edits read it); nothing for a token not admitted.
  assert.equal(shared.verifiedPayload(t)?.['sub'], 'carol');
  assert.equal(shared.verifiedPayload(await token(A, { sub: 'dave' })), undefined);
  // A flood of one-off tokens larger than the cache does not push out a token that is repeated.
  const small = new JwtAuthenticator({ keysFor: () => ({ keys: spy }), cacheSize: 8, now: clock });
  small.authenticate(found(t), [ref]);
  small.authenticate(found(t), [ref]);
  for (let i = 0; i < 40; i++) assert.equal(small.authenticate(found(await token(A, { sub: `one-off-${i}` })), [ref]).kind, 'verified');
  checks = 0;
  small.authenticate(found(t), [ref]);
  assert.equal(checks, 0, 'still cached after 40 one-off tokens through a cache of 8');
  // Rejected tokens never enter the cache: each attempt is checked again.
  const bad = await token(other);
  checks = 0;
  await shared.authenticateAsync(found(bad), [ref]);
  shared.authenticate(found(bad), [ref]);
  assert.equal(checks, 2);
});

test('neither jwks nor jwksUri: the keys are found by OIDC discovery at <issuer>/.well-known/openid-configuration', async () => {
  const keys = [newKey('d1')];
  let port = 0;
  const server = http.createServer((req, res) => {
    if (req.url === '/tenant/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: `http://127.0.0.1:${port}/tenant`, jwks_uri: `http://127.0.0.1:${port}/keys` }));
    } else if (req.url === '/keys') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: keys.map((k) => k.jwk) }));
    } else {
      res.writeHead(404).end();
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
  try {
    const issuer: Issuer = { iss: `http://127.0.0.1:${port}/tenant`, keys };
    const { decide } = await setup(ra('jwt', { jwtRules: [{ issuer: issuer.iss }] }));
    const ok = decide(httpRequest({ headers: bearer(await token(issuer)) }));
    assert.equal(outcome(ok), 'ALLOW', ok.reason);
    // An issuer whose discovery document is missing: its tokens fail closed, and the trace says why.
    const lost: Issuer = { iss: `http://127.0.0.1:${port}/nowhere`, keys };
    const { decide: decideLost } = await setup(ra('jwt', { jwtRules: [{ issuer: lost.iss }] }));
    const d = decideLost(httpRequest({ headers: bearer(await token(lost)) }));
    assert.equal(outcome(d), 'DENY 401');
    assert.match(d.reason, /Jwks remote fetch is failed/);
    assert.ok(d.trace?.some((s) => s.step === 'jwt' && /OIDC discovery .*openid-configuration: HTTP 404/.test(s.message)), JSON.stringify(d.trace));
  } finally {
    server.close();
  }
});
