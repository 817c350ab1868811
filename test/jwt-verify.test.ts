import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, createPublicKey, generateKeyPairSync, randomBytes, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { SignJWT, type JWK, type ProtectedHeaderParameters } from 'jose';
import { JwksError, KeySet } from '../src/jwt/key-set.ts';
import { decodeToken, JwtError, verifyToken, verifyTokenAsync, type JwtFailure } from '../src/jwt/verify.ts';

const NOW = Math.floor(Date.now() / 1000);
const ISS = 'https://issuer.rampart.example';

const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

interface Signer {
  readonly privateKey: KeyObject;
  readonly publicJwk: JWK;
}

function es256(kid = 'es-1'): Signer {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicJwk: { ...(publicKey.export({ format: 'jwk' }) as JWK), kid, alg: 'ES256', use: 'sig' } };
}
function rsa(kid = 'rs-1', bits = 2048): Signer {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  return { privateKey, publicJwk: { ...(publicKey.export({ format: 'jwk' }) as JWK), kid } };
}
function ed(kid = 'ed-1'): Signer {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicJwk: { ...(publicKey.export({ format: 'jwk' }) as JWK), kid } };
}

const EC = es256();
const RSA = rsa();
const ED = ed();
const claims = { iss: ISS, sub: 'alice', aud: 'httpbin', exp: NOW + 3600, iat: NOW };

async function jwt(s: Signer, alg: string, payload: Record<string, unknown> = claims, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg, kid: s.publicJwk.kid as string, ...header }).sign(s.privateKey);
}

/** A token put together by hand: what an attacker can send. */
function handMade(header: Record<string, unknown>, payload: Record<string, unknown>, signature = ''): string {
  return `${b64(header)}.${b64(payload)}.${signature}`;
}

/** A validly signed ES256 token with any header, signed with node:crypto (jose refuses to sign some of these). */
function signedByHand(header: Record<string, unknown>, payload: Record<string, unknown>): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${cryptoSign('sha256', Buffer.from(input), { key: EC.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

let keysCache: KeySet | undefined;
async function keys(): Promise<KeySet> {
  keysCache ??= await KeySet.fromJwks({ keys: [EC.publicJwk, RSA.publicJwk, ED.publicJwk] }, 'test jwks');
  return keysCache;
}

async function rejects(token: string | Promise<string>, reason: JwtFailure, detail?: RegExp, envoy?: string): Promise<void> {
  const t = await token;
  const ks = await keys();
  const check = (err: unknown): boolean => {
    assert.ok(err instanceof JwtError, String(err));
    assert.equal(err.reason, reason, err.message);
    assert.equal(err.status, 401, err.message);
    if (detail !== undefined) assert.match(err.message, detail);
    // The client reads Envoy's own text (jwt_verify_lib status.cc), written out here rather than taken from the code.
    if (envoy !== undefined) assert.ok(err.message.startsWith(`${envoy}: `), `${err.message} should start with ${envoy}`);
    return true;
  };
  assert.throws(() => verifyToken(t, ks, NOW), check);
  // The threadpool path must refuse every attack for the same reason (a throw before the await becomes a rejection).
  await assert.rejects(async () => verifyTokenAsync(t, ks, NOW), check);
}

test('valid tokens of every supported algorithm verify', async () => {
  const ks = await keys();
  const cases: Array<[Signer, string]> = [[EC, 'ES256'], [RSA, 'RS256'], [RSA, 'RS384'], [RSA, 'RS512'], [RSA, 'PS256'], [RSA, 'PS384'], [RSA, 'PS512'], [ED, 'EdDSA']];
  for (const [s, alg] of cases) {
    const t = await jwt(s, alg);
    const d = verifyToken(t, ks, NOW);
    assert.equal(d.payload.sub, 'alice', alg);
    assert.equal(d.alg, alg);
    assert.equal((await verifyTokenAsync(t, ks, NOW)).payload.sub, 'alice', `${alg} on the threadpool`);
  }
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const ks384 = await KeySet.fromJwks({ keys: [{ ...(p384.publicKey.export({ format: 'jwk' }) as JWK), kid: 'p384' }] }, 'p384');
  assert.equal(verifyToken(await jwt({ privateKey: p384.privateKey, publicJwk: { kid: 'p384' } }, 'ES384'), ks384, NOW).alg, 'ES384');
});

test('without kid, every key able to verify the algorithm is tried', async () => {
  const ks = await keys();
  const t = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256' }).sign(RSA.privateKey);
  assert.equal(verifyToken(t, ks, NOW).payload.sub, 'alice');
  assert.equal((await verifyTokenAsync(t, ks, NOW)).payload.sub, 'alice');
});

test('headers are remembered only once they pass every check, and a remembered header is used as is', async () => {
  const cache = new Map<string, ProtectedHeaderParameters>();
  const good = await jwt(EC, 'ES256');
  const seg = good.slice(0, good.indexOf('.'));
  assert.equal(decodeToken(good, cache).header.kid, 'es-1');
  assert.deepEqual([...cache.keys()], [seg]);
  // A refused header (alg none, crit) never enters the cache.
  assert.throws(() => decodeToken(handMade({ alg: 'none' }, claims, 'x'), cache), (e: unknown) => e instanceof JwtError && e.reason === 'alg-not-allowed');
  assert.throws(() => decodeToken(handMade({ alg: 'ES256', crit: ['exp'], exp: 1 }, claims, 'x'), cache), (e: unknown) => e instanceof JwtError && e.reason === 'crit');
  assert.equal(cache.size, 1);
  // The payload is always decoded afresh: a second token with the same header has its own claims.
  const other = await jwt(EC, 'ES256', { ...claims, sub: 'bob' });
  assert.equal(other.slice(0, other.indexOf('.')), seg);
  assert.equal(decodeToken(other, cache).payload.sub, 'bob');
});

// One row per attack; each must fail for the stated reason.
const attacks: Array<{ name: string; token: () => Promise<string> | string; reason: JwtFailure; detail?: RegExp; envoy?: string }> = [
  // Unsigned: Envoy's parser skips the empty third section, so the token does not have three sections.
  { name: 'alg none, empty signature', token: () => handMade({ alg: 'none' }, claims), reason: 'malformed', envoy: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections' },
  { name: 'alg none with a signature', token: () => handMade({ alg: 'none' }, claims, 'x'), reason: 'alg-not-allowed', envoy: 'Jwt header [alg] is not supported' },
  { name: 'alg None (casing)', token: () => handMade({ alg: 'None', kid: 'es-1' }, claims, 'x'), reason: 'alg-not-allowed' },
  { name: 'alg NONE (casing)', token: () => handMade({ alg: 'NONE' }, claims, 'x'), reason: 'alg-not-allowed' },
  {
    name: 'HS256 signed with the RSA public key (key confusion)',
    token: () => {
      const pem = createPublicKey(RSA.privateKey).export({ format: 'pem', type: 'spki' });
      const input = `${b64({ alg: 'HS256', kid: 'rs-1' })}.${b64(claims)}`;
      return `${input}.${createHmac('sha256', pem).update(input).digest('base64url')}`;
    },
    // Envoy implements HS256 but finds no symmetric key: key sets here never hold one.
    reason: 'no-key',
    envoy: "Jwks doesn't have key to match kid or alg from Jwt",
  },
  { name: 'unknown kid', token: () => jwt({ ...EC, publicJwk: { kid: 'nope' } }, 'ES256'), reason: 'no-key', detail: /kid "nope"/ },
  { name: 'kid with path traversal', token: () => jwt({ ...EC, publicJwk: { kid: '../../etc/passwd' } }, 'ES256'), reason: 'no-key' },
  { name: 'kid with injection text', token: () => jwt({ ...EC, publicJwk: { kid: "' OR 1=1 --" } }, 'ES256'), reason: 'no-key' },
  {
    name: 'embedded jwk header (attacker key)',
    token: async () => {
      const evil = es256('es-1');
      return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'es-1', jwk: evil.publicJwk }).sign(evil.privateKey);
    },
    reason: 'bad-signature',
  },
  {
    name: 'jku header pointing elsewhere',
    token: async () => {
      const evil = es256('es-1');
      return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'es-1', jku: 'https://evil.example/jwks' }).sign(evil.privateKey);
    },
    reason: 'bad-signature',
  },
  { name: 'unknown crit (validly signed)', token: () => signedByHand({ alg: 'ES256', kid: 'es-1', crit: ['exp-ext'], 'exp-ext': 1 }, claims), reason: 'crit' },
  { name: 'expired beyond the skew', token: () => jwt(EC, 'ES256', { ...claims, exp: NOW - 61 }), reason: 'expired' },
  { name: 'not yet valid beyond the skew', token: () => jwt(EC, 'ES256', { ...claims, nbf: NOW + 61 }), reason: 'not-yet-valid' },
  { name: 'malformed base64url in the payload', token: async () => (await jwt(EC, 'ES256')).replace('.', '.*'), reason: 'payload-base64', envoy: 'Jwt payload is an invalid Base64url encoded' },
  { name: 'malformed base64url in the header', token: async () => `*${await jwt(EC, 'ES256')}`, reason: 'header-base64', envoy: 'Jwt header is an invalid Base64url encoded' },
  { name: 'malformed base64url in the signature', token: async () => `${await jwt(EC, 'ES256')}*`, reason: 'signature-base64', envoy: 'Jwt signature is an invalid Base64url encoded' },
  { name: 'a section of impossible base64 length', token: async () => `${await jwt(EC, 'ES256')}AAA`, reason: 'signature-base64' },
  { name: 'empty payload section', token: async () => { const [h, , sig] = (await jwt(EC, 'ES256')).split('.'); return `${h}..${sig}`; }, reason: 'malformed' },
  // Shape rules of jwt_verify_lib's Jwt::parseFromString (src/jwt.cc, struct_utils.cc), every token validly signed so
  // that only the shape can refuse it: each of these verified before, some with no error at all.
  { name: 'alg missing', token: () => signedByHand({ kid: 'es-1' }, claims), reason: 'alg-missing', envoy: 'Jwt header [alg] field is required and must be a string' },
  { name: 'alg not a string', token: () => signedByHand({ alg: ['ES256'], kid: 'es-1' }, claims), reason: 'alg-missing', envoy: 'Jwt header [alg] field is required and must be a string' },
  { name: 'kid not a string', token: () => signedByHand({ alg: 'ES256', kid: 1 }, claims), reason: 'kid-not-string', envoy: 'Jwt header [kid] field is not a string' },
  { name: 'iss not a string', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, iss: ['https://issuer.rampart.example'] }), reason: 'iss-not-string', envoy: 'Jwt payload [iss] field is not a string' },
  { name: 'sub not a string', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, sub: 42 }), reason: 'sub-not-string', envoy: 'Jwt payload [sub] field is not a string' },
  { name: 'sub null', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, sub: null }), reason: 'sub-not-string' },
  { name: 'jti not a string', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, jti: 7 }), reason: 'jti-not-string', envoy: 'Jwt payload [jti] field is not a string' },
  { name: 'exp a string', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, exp: 'tomorrow' }), reason: 'exp-not-integer', envoy: 'Jwt payload [exp] field is not an integer' },
  { name: 'exp a numeric string', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, exp: String(NOW + 3600) }), reason: 'exp-not-integer' },
  { name: 'exp null', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, exp: null }), reason: 'exp-not-integer' },
  { name: 'exp negative', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, exp: -1 }), reason: 'exp-out-of-range', envoy: 'Jwt payload [exp] field is not a positive 64 bit integer' },
  { name: 'exp at 2^64 (past what Envoy parses; read as "never" before)', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, exp: 2 ** 64 }), reason: 'exp-out-of-range' },
  { name: 'exp 1e300', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, exp: 1e300 }), reason: 'exp-out-of-range' },
  { name: 'nbf a boolean', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, nbf: true }), reason: 'nbf-not-integer', envoy: 'Jwt payload [nbf] field is not an integer' },
  { name: 'nbf negative', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, nbf: -100 }), reason: 'nbf-out-of-range', envoy: 'Jwt payload [nbf] field is not a positive 64 bit integer' },
  { name: 'iat a string', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, iat: 'yesterday' }), reason: 'iat-not-integer', envoy: 'Jwt payload [iat] field is not an integer' },
  { name: 'iat an object', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, iat: { at: NOW } }), reason: 'iat-not-integer' },
  { name: 'iat negative', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, iat: -1 }), reason: 'iat-out-of-range', envoy: 'Jwt payload [iat] field is not a positive 64 bit integer' },
  { name: 'aud a number', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, aud: 7 }), reason: 'aud-not-string', envoy: 'Jwt payload [aud] field is not a string or string list' },
  { name: 'aud a list with a number', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, aud: ['httpbin', 7] }), reason: 'aud-not-string', envoy: 'Jwt payload [aud] field is not a string or string list' },
  { name: 'aud an object', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, aud: { httpbin: true } }), reason: 'aud-not-string' },
  // exp 0 is "no expiry" to jwt_verify_lib; here it is expired (a deliberate, stricter choice: docs/jwt.md).
  { name: 'exp 0', token: () => signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, exp: 0 }), reason: 'expired', envoy: 'Jwt is expired' },
  { name: 'two segments', token: async () => (await jwt(EC, 'ES256')).split('.').slice(0, 2).join('.'), reason: 'malformed' },
  { name: 'four segments', token: async () => `${await jwt(EC, 'ES256')}.x`, reason: 'malformed' },
  { name: 'JWE compact (five segments)', token: () => 'eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d', reason: 'malformed', detail: /encrypted/ },
  { name: 'header not JSON', token: () => `${b64('not json')}.${b64(claims)}.x`, reason: 'bad-header' },
  { name: 'payload not JSON', token: () => `${b64({ alg: 'ES256', kid: 'es-1' })}.${b64('[1,')}.x`, reason: 'bad-payload' },
  { name: 'ECDSA signature r = s = 0', token: () => handMade({ alg: 'ES256', kid: 'es-1' }, claims, Buffer.alloc(64).toString('base64url')), reason: 'bad-signature' },
  { name: 'signature of another payload', token: async () => { const [h, , s] = (await jwt(EC, 'ES256')).split('.'); return `${h}.${b64({ ...claims, sub: 'admin' })}.${s}`; }, reason: 'bad-signature' },
  { name: 'RS256 token signed with a key of the right kid but wrong type (ES256 key)', token: () => jwt({ ...RSA, publicJwk: { kid: 'es-1' } }, 'RS256'), reason: 'no-key' },
  { name: 'oversized token', token: () => handMade({ alg: 'ES256' }, { ...claims, pad: 'x'.repeat(20_000) }, 'x'), reason: 'too-large' },
  {
    name: 'ES256 token whose kid names an EdDSA key',
    token: () => jwt({ ...EC, publicJwk: { kid: 'ed-1' } }, 'ES256'),
    reason: 'no-key',
  },
];

for (const a of attacks) {
  test(`attack: ${a.name} → ${a.reason}`, async () => {
    await rejects(a.token(), a.reason, a.detail, a.envoy);
  });
}

test('exp and nbf within the 60 s skew are accepted', async () => {
  const ks = await keys();
  // Envoy reads any JSON number in range and drops the fraction; so a fractional exp or iat is not malformed.
  assert.equal(verifyToken(signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, exp: NOW + 0.5, iat: NOW - 0.25 }), ks, NOW).payload.sub, 'alice');
  assert.equal(verifyToken(signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, exp: 2 ** 63 }), ks, NOW).payload.sub, 'alice', 'a large exp within uint64');
  assert.throws(() => verifyToken(signedByHand({ alg: 'ES256', kid: 'es-1' }, { ...claims, nbf: 2 ** 63 }), ks, NOW), (e: unknown) => e instanceof JwtError && e.reason === 'not-yet-valid' && /s after the epoch/.test(e.message));
  assert.ok(verifyToken(await jwt(EC, 'ES256', { ...claims, exp: NOW - 59 }), ks, NOW));
  assert.ok(verifyToken(await jwt(EC, 'ES256', { ...claims, nbf: NOW + 59 }), ks, NOW));
});

test('a token signed by hand with node:crypto in IEEE P1363 form verifies (no jose on the signing side)', async () => {
  const input = `${b64({ alg: 'ES256', kid: 'es-1' })}.${b64(claims)}`;
  const sig = cryptoSign('sha256', Buffer.from(input), { key: EC.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  assert.equal(verifyToken(`${input}.${sig}`, await keys(), NOW).payload.sub, 'alice');
  // The same signature DER-encoded is not a JWS signature.
  const der = cryptoSign('sha256', Buffer.from(input), EC.privateKey).toString('base64url');
  assert.throws(() => verifyToken(`${input}.${der}`, keysCache!, NOW), (e: unknown) => e instanceof JwtError && e.reason === 'bad-signature');
});

test('key sets: unusable keys are skipped with a reason, an unusable set is an error', async () => {
  const small = rsa('small', 1024);
  const hmac: JWK = { kty: 'oct', k: 'c2VjcmV0', kid: 'hs' };
  const ks = await KeySet.fromJwks({ keys: [EC.publicJwk, small.publicJwk, hmac, { kty: 'EC', crv: 'secp256k1', x: 'a', y: 'b' }, { ...RSA.publicJwk, alg: 'ES256' }, 'x'] }, 'mixed');
  assert.equal(ks.keys.length, 1);
  assert.equal(ks.skipped.length, 5);
  assert.match(ks.skipped.join('\n'), /1024 bits/);
  assert.match(ks.skipped.join('\n'), /symmetric \(oct\) keys are refused/);
  assert.match(ks.skipped.join('\n'), /secp256k1/);
  assert.match(ks.skipped.join('\n'), /alg "ES256" does not fit a RSA key/);
  // A 1024-bit RSA token finds no usable key.
  await assert.rejects(KeySet.fromJwks({ keys: [small.publicJwk] }, 'small only'), (e: unknown) => e instanceof JwksError && /no usable key/.test(e.message));
  for (const bad of ['not json', '{"keys": 3}', '[]', '{}']) {
    await assert.rejects(KeySet.fromJwks(bad, 'bad'), JwksError, bad);
  }
  await assert.rejects(KeySet.fromJwks({ keys: [] }, 'empty'), /empty/);
});

test('a key set that leaks a private key only ever uses the public part', async () => {
  const leaked = (EC.privateKey.export({ format: 'jwk' }) as JWK);
  const ks = await KeySet.fromJwks({ keys: [{ ...leaked, kid: 'es-1' }] }, 'leaky');
  assert.equal(ks.keys[0]!.key.type, 'public');
  assert.equal(verifyToken(await jwt(EC, 'ES256'), ks, NOW).payload.sub, 'alice');
});

test('a JWK with alg pins it: an RS256-only key refuses a PS256 token', async () => {
  const ks = await KeySet.fromJwks({ keys: [{ ...RSA.publicJwk, alg: 'RS256' }] }, 'pinned');
  assert.ok(verifyToken(await jwt(RSA, 'RS256'), ks, NOW));
  assert.throws(() => verifyToken('', ks, NOW), (e: unknown) => e instanceof JwtError && e.reason === 'malformed');
  await assert.rejects(async () => verifyToken(await jwt(RSA, 'PS256'), ks, NOW), (e: unknown) => e instanceof JwtError && e.reason === 'no-key');
});

/** RSA modulus bytes with its lowest bit set or cleared, for keys that only need to import. */
function modulus(bytes: number, odd: boolean): string {
  const n = randomBytes(bytes);
  n[0]! |= 0x80;
  n[n.length - 1] = odd ? n[n.length - 1]! | 1 : n[n.length - 1]! & 0xfe;
  return n.toString('base64url');
}

// One row per key rule: a key that cannot be honest is skipped with its reason, and the others still serve.
const badKeys: Array<{ name: string; jwk: () => JWK; reason: RegExp }> = [
  { name: 'RSA exponent 1', jwk: () => ({ ...RSA.publicJwk, kid: 'bad', e: 'AQ' }), reason: /exponent 1 is smaller than 3/ },
  { name: 'RSA exponent 2', jwk: () => ({ ...RSA.publicJwk, kid: 'bad', e: 'Ag' }), reason: /exponent 2 is smaller than 3/ },
  { name: 'RSA exponent even', jwk: () => ({ ...RSA.publicJwk, kid: 'bad', e: 'AQAA' }), reason: /exponent 65536 is even/ },
  { name: 'RSA exponent of 41 bits', jwk: () => ({ ...RSA.publicJwk, kid: 'bad', e: Buffer.from([1, 0, 0, 0, 0, 1]).toString('base64url') }), reason: /exponent of 41 bits; at most 33/ },
  { name: 'RSA modulus even', jwk: () => ({ kty: 'RSA', kid: 'bad', n: modulus(256, false), e: 'AQAB' }), reason: /modulus is even/ },
  { name: 'RSA modulus over 16384 bits', jwk: () => ({ kty: 'RSA', kid: 'bad', n: modulus(2056, true), e: 'AQAB' }), reason: /16448 bits; at most 16384/ },
  {
    name: 'EC point off the curve',
    jwk: () => {
      const y = Buffer.from(EC.publicJwk.y as string, 'base64url');
      y[31]! ^= 1;
      return { ...EC.publicJwk, kid: 'bad', y: y.toString('base64url') };
    },
    reason: /EC point \(x, y\) is not a point of P-256/,
  },
  { name: 'EC coordinates of another curve\'s size', jwk: () => ({ ...EC.publicJwk, kid: 'bad', crv: 'P-384', alg: 'ES384' }), reason: /not a point of P-384/ },
  { name: 'EC alg that does not fit the curve', jwk: () => ({ ...EC.publicJwk, kid: 'bad', alg: 'ES384' }), reason: /alg "ES384" does not fit a EC P-256 key/ },
  { name: 'OKP key with an ECDSA alg', jwk: () => ({ ...ED.publicJwk, kid: 'bad', alg: 'ES256' }), reason: /alg "ES256" does not fit a OKP Ed25519 key/ },
  { name: 'Ed25519 x of the wrong length', jwk: () => ({ ...ED.publicJwk, kid: 'bad', x: 'AAAA' }), reason: /not an Ed25519 public key/ },
  { name: 'RSA key with an EdDSA alg', jwk: () => ({ ...RSA.publicJwk, kid: 'bad', alg: 'EdDSA' }), reason: /alg "EdDSA" does not fit a RSA key/ },
];

for (const k of badKeys) {
  test(`key set: ${k.name} is skipped with a reason`, async () => {
    const ks = await KeySet.fromJwks({ keys: [EC.publicJwk, k.jwk()] }, 'test');
    assert.deepEqual(ks.keys.map((x) => x.kid), ['es-1']);
    assert.equal(ks.skipped.length, 1);
    assert.match(ks.skipped[0]!, /^keys\[1\]/);
    assert.match(ks.skipped[0]!, k.reason);
    await assert.rejects(KeySet.fromJwks({ keys: [k.jwk()] }, 'only'), (e: unknown) => e instanceof JwksError && k.reason.test(e.message));
  });
}

test('an RSA key with exponent 1 would verify a forged token; it is never used', async () => {
  // With e = 1, "signature^e mod n" is the signature itself: the PKCS #1 v1.5 block of the digest verifies.
  const weak: JWK = { ...RSA.publicJwk, kid: 'weak', e: 'AQ' };
  const input = `${b64({ alg: 'RS256', kid: 'weak' })}.${b64({ ...claims, sub: 'admin' })}`;
  const digestInfo = Buffer.concat([Buffer.from('3031300d060960864801650304020105000420', 'hex'), createHash('sha256').update(input).digest()]);
  const block = Buffer.concat([Buffer.from([0, 1]), Buffer.alloc(256 - 3 - digestInfo.length, 0xff), Buffer.from([0]), digestInfo]);
  const forged = `${input}.${block.toString('base64url')}`;
  // The danger is real: node:crypto alone accepts the forgery with that key.
  assert.equal(cryptoVerify('sha256', Buffer.from(input), createPublicKey({ key: weak, format: 'jwk' }), block), true);
  const ks = await KeySet.fromJwks({ keys: [EC.publicJwk, weak] }, 'weak');
  assert.match(ks.skipped.join('\n'), /exponent 1/);
  assert.throws(() => verifyToken(forged, ks, NOW), (e: unknown) => e instanceof JwtError && e.reason === 'no-key' && e.status === 401);
  await assert.rejects(async () => verifyTokenAsync(forged, ks, NOW), (e: unknown) => e instanceof JwtError && e.reason === 'no-key');
});
