import { KeyObject } from 'node:crypto';
import { importJWK, type JWK } from 'jose';
import { RampartError } from '../errors.ts';

/**
 * A JWKS turned into verification keys, each pinned to the algorithms it may verify. jose imports every key (and
 * refuses what it cannot import); the resulting KeyObjects let the verifier check signatures with node:crypto
 * synchronously. Symmetric keys, private keys, RSA keys under 2048 bits and keys that cannot be honest (an RSA
 * exponent of 1 or an even one, an EC point off its curve) are never used: each is skipped with its reason.
 */

export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

export function isJwtAlgorithm(alg: unknown): alg is JwtAlgorithm {
  return typeof alg === 'string' && (JWT_ALGORITHMS as readonly string[]).includes(alg);
}

export interface JwtKey {
  readonly kid: string | undefined;
  /** What this key may verify: the JWK's own `alg`, or every algorithm of its type when it names none. */
  readonly algorithms: readonly JwtAlgorithm[];
  readonly key: KeyObject;
  readonly description: string;
}

/** A JWKS document that cannot be used, with the reason. */
export class JwksError extends RampartError {
  constructor(message: string) {
    super('ERR_JWKS_INVALID', message);
  }
}

const RSA_ALGS: readonly JwtAlgorithm[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
const EC_ALG: Readonly<Record<string, JwtAlgorithm>> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' };
const MIN_RSA_BITS = 2048;

function allowedFor(jwk: JWK, index: number): readonly JwtAlgorithm[] {
  const where = `keys[${index}]${typeof jwk.kid === 'string' ? ` (kid ${JSON.stringify(jwk.kid)})` : ''}`;
  let byType: readonly JwtAlgorithm[];
  switch (jwk.kty) {
    case 'RSA':
      byType = RSA_ALGS;
      break;
    case 'EC': {
      const alg = typeof jwk.crv === 'string' ? EC_ALG[jwk.crv] : undefined;
      if (alg === undefined) throw new JwksError(`${where}: EC curve ${JSON.stringify(jwk.crv)} is not supported (P-256, P-384, P-521)`);
      byType = [alg];
      break;
    }
    case 'OKP':
      if (jwk.crv !== 'Ed25519') throw new JwksError(`${where}: OKP curve ${JSON.stringify(jwk.crv)} is not supported (Ed25519)`);
      byType = ['EdDSA'];
      break;
    case 'oct':
      throw new JwksError(`${where}: symmetric (oct) keys are refused: an HMAC secret published in a key set verifies nothing`);
    default:
      throw new JwksError(`${where}: key type ${JSON.stringify(jwk.kty)} is not supported`);
  }
  if (jwk.alg !== undefined) {
    if (!isJwtAlgorithm(jwk.alg) || !byType.includes(jwk.alg)) {
      throw new JwksError(`${where}: alg ${JSON.stringify(jwk.alg)} does not fit a ${jwk.kty}${jwk.crv === undefined ? '' : ` ${jwk.crv}`} key`);
    }
    return [jwk.alg];
  }
  return byType;
}

/** BoringSSL's public-key limits, which Envoy verifies with (rsa_check_public_key): larger keys cost a DoS. */
const MAX_RSA_BITS = 16384;
const MAX_RSA_EXPONENT_BITS = 33;

/**
 * An RSA key that can verify nothing honestly is refused here rather than trusted: OpenSSL imports e = 1 (under
 * which any "signature" equal to the padded digest verifies: a forged token), an even e, or a huge one. BoringSSL,
 * Envoy's library, refuses them when verifying; refusing them at import says so once, in the key set's
 * diagnostics, instead of per token.
 */
function checkRsa(key: KeyObject, i: number, jwk: JWK): void {
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS) throw new JwksError(`keys[${i}]: RSA key of ${bits} bits; at least ${MIN_RSA_BITS} are required`);
  if (bits > MAX_RSA_BITS) throw new JwksError(`keys[${i}]: RSA key of ${bits} bits; at most ${MAX_RSA_BITS} are accepted`);
  const e = key.asymmetricKeyDetails?.publicExponent;
  if (e === undefined) throw new JwksError(`keys[${i}]: RSA key without a public exponent`);
  if (e < 3n) throw new JwksError(`keys[${i}]: RSA public exponent ${e} is smaller than 3 (with e = 1 any forged signature verifies)`);
  if (e % 2n === 0n) throw new JwksError(`keys[${i}]: RSA public exponent ${e} is even (an RSA exponent must be odd)`);
  if (e >= 1n << BigInt(MAX_RSA_EXPONENT_BITS)) throw new JwksError(`keys[${i}]: RSA public exponent of ${e.toString(2).length} bits; at most ${MAX_RSA_EXPONENT_BITS} are accepted`);
  // An even modulus is no product of two odd primes; BoringSSL refuses it too.
  const n = typeof jwk.n === 'string' ? Buffer.from(jwk.n, 'base64url') : undefined;
  if (n !== undefined && n.length > 0 && (n[n.length - 1]! & 1) === 0) throw new JwksError(`keys[${i}]: RSA modulus is even`);
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];

export class KeySet {
  readonly keys: readonly JwtKey[];
  /** Keys that were skipped, with the reason (a set with some unusable keys still serves the others). */
  readonly skipped: readonly string[];

  private constructor(keys: readonly JwtKey[], skipped: readonly string[]) {
    this.keys = keys;
    this.skipped = skipped;
  }

  /** Parses and imports a JWKS (`{"keys": [...]}`) given as JSON text or a parsed object. */
  static async fromJwks(input: string | unknown, source: string): Promise<KeySet> {
    let doc: unknown = input;
    if (typeof input === 'string') {
      try {
        doc = JSON.parse(input);
      } catch (err) {
        throw new JwksError(`${source}: not JSON (${(err as Error).message})`);
      }
    }
    if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { keys?: unknown }).keys)) {
      throw new JwksError(`${source}: a JWKS is an object with a "keys" array`);
    }
    const entries = (doc as { keys: unknown[] }).keys;
    const keys: JwtKey[] = [];
    const skipped: string[] = [];
    for (const [i, raw] of entries.entries()) {
      try {
        if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new JwksError(`keys[${i}]: not an object`);
        const jwk = raw as JWK;
        if (jwk.use !== undefined && jwk.use !== 'sig') throw new JwksError(`keys[${i}]: use ${JSON.stringify(jwk.use)} is not "sig"`);
        const algorithms = allowedFor(jwk, i);
        // Only the public members are imported, so a key set that leaks a private key never signs anything here.
        const pub: Record<string, unknown> = { ...jwk };
        for (const m of PRIVATE_MEMBERS) delete pub[m];
        delete pub['key_ops'];
        delete pub['ext'];
        let imported: Awaited<ReturnType<typeof importJWK>>;
        try {
          imported = await importJWK(pub as JWK, algorithms[0], { extractable: true });
        } catch (err) {
          // OpenSSL refuses an EC point off its curve, or coordinates of the wrong size, at import: say which.
          if (jwk.kty === 'EC') throw new JwksError(`keys[${i}]: the EC point (x, y) is not a point of ${String(jwk.crv)} (${(err as Error).message})`);
          if (jwk.kty === 'OKP') throw new JwksError(`keys[${i}]: x is not an Ed25519 public key (${(err as Error).message})`);
          throw err;
        }
        const key = imported instanceof Uint8Array ? undefined : KeyObject.from(imported);
        if (key === undefined || key.type !== 'public') throw new JwksError(`keys[${i}]: not a public key`);
        if (key.asymmetricKeyType === 'rsa') checkRsa(key, i, jwk);
        const kid = typeof jwk.kid === 'string' ? jwk.kid : undefined;
        keys.push({ kid, algorithms, key, description: `${jwk.kty}${jwk.crv === undefined ? '' : ` ${jwk.crv}`}${kid === undefined ? '' : ` kid ${JSON.stringify(kid)}`}` });
      } catch (err) {
        skipped.push(err instanceof JwksError ? err.message : `keys[${i}]: ${(err as Error).message}`);
      }
    }
    if (keys.length === 0) {
      throw new JwksError(`${source}: no usable key${skipped.length > 0 ? ` (${skipped.join('; ')})` : ' (the "keys" array is empty)'}`);
    }
    return new KeySet(keys, skipped);
  }

  /** Candidate keys for a token: same kid when the token names one, and able to verify its algorithm. */
  candidates(kid: string | undefined, alg: JwtAlgorithm): JwtKey[] {
    return this.keys.filter((k) => k.algorithms.includes(alg) && (kid === undefined || k.kid === kid));
  }

  hasKid(kid: string): boolean {
    return this.keys.some((k) => k.kid === kid);
  }
}
