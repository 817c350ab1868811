import { constants, verify as cryptoVerify } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, type JWTPayload, type ProtectedHeaderParameters } from 'jose';
import { RampartError } from '../errors.ts';
import { isJwtAlgorithm, type JwtAlgorithm, type JwtKey, type KeySet } from './key-set.ts';

/**
 * JWS verification as Envoy's jwt_authn filter does it, with Envoy's failure messages. jose decodes the header and
 * the payload (no JWT parser of our own); the signature is checked with node:crypto on keys jose imported, with the
 * algorithm fixed by the key set, never by the token alone.
 */

export type JwtFailure =
  | 'too-large'
  | 'malformed'
  | 'bad-header'
  | 'bad-payload'
  | 'alg-not-allowed'
  | 'crit'
  | 'no-key'
  | 'bad-signature'
  | 'expired'
  | 'not-yet-valid'
  | 'keys-unavailable'
  | 'issuer-not-configured'
  | 'audience';

/** Envoy's texts, which clients see in the 401/403 body. */
export const ENVOY_MESSAGES: Readonly<Record<JwtFailure, string>> = {
  'too-large': 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections',
  malformed: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections',
  'bad-header': 'Jwt header is an invalid JSON',
  'bad-payload': 'Jwt payload is an invalid JSON',
  'alg-not-allowed': 'Jwt verification fails',
  crit: 'Jwt verification fails',
  'no-key': "Jwks doesn't have key to match kid or alg from Jwt",
  'bad-signature': 'Jwt verification fails',
  expired: 'Jwt is expired',
  'not-yet-valid': 'Jwt not yet valid',
  'keys-unavailable': 'Jwks remote fetch is failed',
  'issuer-not-configured': 'Jwt issuer is not configured',
  audience: 'Audiences in Jwt are not allowed',
};

export class JwtError extends RampartError {
  readonly reason: JwtFailure;
  constructor(reason: JwtFailure, detail: string) {
    super('ERR_JWT_REJECTED', `${ENVOY_MESSAGES[reason]}: ${detail}`);
    this.reason = reason;
  }
  /** The status Envoy answers with: 403 for an audience mismatch, 401 for everything else. */
  get status(): 401 | 403 {
    return this.reason === 'audience' ? 403 : 401;
  }
}

/** Envoy's default clock skew for exp/nbf; Istio does not change it. */
export const CLOCK_SKEW_SECONDS = 60;
/** Tokens longer than this are refused before any decoding (Envoy's default header limit is 60 KiB in all). */
export const MAX_TOKEN_LENGTH = 16 * 1024;

export interface DecodedJwt {
  readonly header: ProtectedHeaderParameters;
  readonly payload: JWTPayload;
  readonly alg: JwtAlgorithm;
}

function fail(reason: JwtFailure, detail: string): never {
  throw new JwtError(reason, detail);
}

/** Structure, header and payload, without the signature: what may be read of a token before trusting it. */
export function decodeToken(token: string): DecodedJwt {
  if (token.length > MAX_TOKEN_LENGTH) fail('too-large', `the token is ${token.length} characters long (at most ${MAX_TOKEN_LENGTH})`);
  const parts = token.split('.');
  if (parts.length === 5) fail('malformed', 'this is an encrypted token (JWE); only signed tokens (JWS) are accepted');
  if (parts.length !== 3) fail('malformed', `the token has ${parts.length} sections`);
  if (parts.some((p) => !/^[A-Za-z0-9_-]*$/.test(p))) fail('malformed', 'a section is not base64url');
  let header: ProtectedHeaderParameters;
  try {
    header = decodeProtectedHeader(token);
  } catch (err) {
    fail('bad-header', (err as Error).message);
  }
  let payload: JWTPayload;
  try {
    payload = decodeJwt(token);
  } catch (err) {
    fail('bad-payload', (err as Error).message);
  }
  if (!isJwtAlgorithm(header.alg)) {
    fail('alg-not-allowed', `alg ${JSON.stringify(header.alg)} is not accepted (unsigned and HMAC tokens never are)`);
  }
  // No critical extension is understood, so any is a reason to refuse (RFC 7515 §4.1.11).
  if (header.crit !== undefined) fail('crit', `critical header parameter(s) ${JSON.stringify(header.crit)} are not understood`);
  return { header, payload, alg: header.alg };
}

const HASH: Readonly<Record<JwtAlgorithm, string | null>> = {
  RS256: 'sha256', RS384: 'sha384', RS512: 'sha512',
  PS256: 'sha256', PS384: 'sha384', PS512: 'sha512',
  ES256: 'sha256', ES384: 'sha384', ES512: 'sha512',
  EdDSA: null,
};

function signatureValid(alg: JwtAlgorithm, key: JwtKey, signingInput: Buffer, signature: Buffer): boolean {
  const k = key.key;
  try {
    if (alg.startsWith('PS')) {
      return cryptoVerify(HASH[alg], signingInput, { key: k, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, signature);
    }
    if (alg.startsWith('ES')) {
      // JWS carries ECDSA signatures as r || s (IEEE P1363), not DER.
      return cryptoVerify(HASH[alg], signingInput, { key: k, dsaEncoding: 'ieee-p1363' }, signature);
    }
    return cryptoVerify(HASH[alg], signingInput, k, signature);
  } catch {
    return false;
  }
}

/**
 * Verifies signature and time of a token against a key set. `nowSeconds` is the clock; exp and nbf allow
 * CLOCK_SKEW_SECONDS. Issuer and audiences are the caller's business (they depend on the rule).
 */
export function verifyToken(token: string, keys: KeySet, nowSeconds: number, decoded: DecodedJwt = decodeToken(token)): DecodedJwt {
  const kid = typeof decoded.header.kid === 'string' ? decoded.header.kid : undefined;
  const candidates = keys.candidates(kid, decoded.alg);
  if (candidates.length === 0) {
    fail('no-key', kid === undefined ? `no key of the set verifies ${decoded.alg}` : `no key with kid ${JSON.stringify(kid.slice(0, 64))} verifies ${decoded.alg}`);
  }
  const dot = token.lastIndexOf('.');
  const signingInput = Buffer.from(token.slice(0, dot), 'ascii');
  const signature = Buffer.from(token.slice(dot + 1), 'base64url');
  if (!candidates.some((k) => signatureValid(decoded.alg, k, signingInput, signature))) {
    fail('bad-signature', `the ${decoded.alg} signature does not verify with ${candidates.length === 1 ? candidates[0]!.description : `any of ${candidates.length} keys`}`);
  }
  const { exp, nbf } = decoded.payload;
  if (exp !== undefined && (typeof exp !== 'number' || !Number.isFinite(exp))) fail('bad-payload', '"exp" is not a number');
  if (nbf !== undefined && (typeof nbf !== 'number' || !Number.isFinite(nbf))) fail('bad-payload', '"nbf" is not a number');
  if (exp !== undefined && nowSeconds > exp + CLOCK_SKEW_SECONDS) {
    fail('expired', `expired at ${new Date(exp * 1000).toISOString()} (${CLOCK_SKEW_SECONDS} s of clock skew allowed)`);
  }
  if (nbf !== undefined && nowSeconds + CLOCK_SKEW_SECONDS < nbf) {
    fail('not-yet-valid', `not valid before ${new Date(nbf * 1000).toISOString()} (${CLOCK_SKEW_SECONDS} s of clock skew allowed)`);
  }
  return decoded;
}

/** The token's audiences as a list (`aud` may be a string or a list). */
export function audiencesOf(payload: JWTPayload): string[] {
  const aud = payload.aud;
  if (typeof aud === 'string') return [aud];
  if (Array.isArray(aud)) return aud.filter((a): a is string => typeof a === 'string');
  return [];
}
