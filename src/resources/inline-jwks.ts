/**
 * Structural checks of an inline JWKS (`jwtRules[].jwks`) at load time. Key material is not decoded here; this only
 * answers "will the proxy see a key set at all" and "does it carry secrets it should not".
 */

export interface JwksProblem {
  readonly severity: 'error' | 'warning';
  readonly code: string;
  readonly message: string;
}

/** Key types istiod's JWK parser (lestrrat-go/jwx) and Envoy's jwt_verify_lib know. */
const KEY_TYPES = ['RSA', 'EC', 'OKP', 'oct'] as const;

/** Members that only a private key has (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2). */
const PRIVATE_MEMBERS: Readonly<Record<string, readonly string[]>> = {
  RSA: ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth'],
  EC: ['d'],
  OKP: ['d'],
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function inspectInlineJwks(text: string): JwksProblem[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    return [{ severity: 'error', code: 'ERR_JWT_JWKS_INVALID', message: `jwks is not valid JSON (${why}); expected a JWK set like {"keys": [{"kty": "RSA", ...}]}` }];
  }
  if (!isObject(doc)) {
    return [{ severity: 'error', code: 'ERR_JWT_JWKS_INVALID', message: 'jwks must be a JSON object with a "keys" list (a JWK set)' }];
  }
  const keys = doc['keys'];
  if (keys === undefined) {
    // Stricter than istiod, whose JWK parser also takes a bare key: Envoy reads inline JWKS as a key set only and
    // would fail every token.
    const hint = 'kty' in doc ? '; this looks like a single JWK, wrap it as {"keys": [ ... ]}' : '';
    return [{ severity: 'error', code: 'ERR_JWT_JWKS_INVALID', message: `jwks has no "keys" list${hint}` }];
  }
  if (!Array.isArray(keys)) {
    return [{ severity: 'error', code: 'ERR_JWT_JWKS_INVALID', message: 'jwks "keys" must be a list of JWK objects' }];
  }
  const problems: JwksProblem[] = [];
  if (keys.length === 0) {
    problems.push({ severity: 'warning', code: 'WARN_JWT_JWKS_NO_KEYS', message: 'jwks has an empty "keys" list; every token presented for this rule will be rejected' });
  }
  keys.forEach((key: unknown, i) => {
    if (!isObject(key)) {
      problems.push({ severity: 'error', code: 'ERR_JWT_JWKS_INVALID', message: `jwks key #${i} is not a JSON object` });
      return;
    }
    const kty = key['kty'];
    if (typeof kty !== 'string' || kty === '') {
      problems.push({ severity: 'error', code: 'ERR_JWT_JWKS_INVALID', message: `jwks key #${i} has no "kty" (key type)` });
      return;
    }
    if (!(KEY_TYPES as readonly string[]).includes(kty)) {
      problems.push({ severity: 'error', code: 'ERR_JWT_JWKS_INVALID', message: `jwks key #${i} has unsupported kty "${kty}"; expected one of ${KEY_TYPES.join(', ')}` });
      return;
    }
    if (kty === 'oct') {
      problems.push({
        severity: 'warning',
        code: 'WARN_JWT_JWKS_PRIVATE_KEY',
        message: `jwks key #${i} is a symmetric (oct) key: the secret is stored in plain config and anyone who can read it can mint tokens; prefer an asymmetric public key`,
      });
      return;
    }
    const secret = (PRIVATE_MEMBERS[kty] ?? []).filter((m) => m in key);
    if (secret.length > 0) {
      problems.push({
        severity: 'warning',
        code: 'WARN_JWT_JWKS_PRIVATE_KEY',
        message: `jwks key #${i} contains private key material (${secret.map((m) => `"${m}"`).join(', ')}); only the public key is needed to verify tokens, remove the private members`,
      });
    }
    if (kty === 'RSA' && typeof key['e'] === 'string') {
      const why = weakRsaExponent(key['e']);
      if (why !== undefined) {
        problems.push({ severity: 'warning', code: 'WARN_JWT_JWKS_KEY_UNUSABLE', message: `jwks key #${i} is never used to verify: its RSA public exponent ${why}` });
      }
    }
  });
  return problems;
}

/** The reason the sidecar's key set skips an RSA exponent (jwt/key-set.ts, BoringSSL's limits), or undefined. */
function weakRsaExponent(e: string): string | undefined {
  const bytes = Buffer.from(e, 'base64url');
  let value = 0n;
  for (const b of bytes) value = (value << 8n) | BigInt(b);
  if (value < 3n) return `is ${value} (smaller than 3: with e = 1 any forged signature verifies)`;
  if (value % 2n === 0n) return `is ${value}, an even number`;
  if (value >= 1n << 33n) return `has ${value.toString(2).length} bits (at most 33)`;
  return undefined;
}
