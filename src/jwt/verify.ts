import { constants, verify as cryptoVerify, type KeyObject, type VerifyKeyObjectInput } from 'node:crypto';
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

/**
 * Decoded headers by their base64url text. A signer's tokens share one header (alg, kid, typ), so a new token from
 * a known issuer decodes only its payload. The header is still jose's decoding of exactly that text.
 */
export interface HeaderCache {
  get(segment: string): ProtectedHeaderParameters | undefined;
  set(segment: string, header: ProtectedHeaderParameters): void;
}

const JWS_SHAPE = /^[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;

/** Structure, header and payload, without the signature: what may be read of a token before trusting it. */
export function decodeToken(token: string, headers?: HeaderCache): DecodedJwt {
  if (token.length > MAX_TOKEN_LENGTH) fail('too-large', `the token is ${token.length} characters long (at most ${MAX_TOKEN_LENGTH})`);
  if (!JWS_SHAPE.test(token)) {
    const parts = token.split('.');
    if (parts.length === 5) fail('malformed', 'this is an encrypted token (JWE); only signed tokens (JWS) are accepted');
    if (parts.length !== 3) fail('malformed', `the token has ${parts.length} sections`);
    fail('malformed', 'a section is not base64url');
  }
  const segment = token.slice(0, token.indexOf('.'));
  let header = headers?.get(segment);
  if (header === undefined) {
    try {
      header = decodeProtectedHeader(token);
    } catch (err) {
      fail('bad-header', (err as Error).message);
    }
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
  // Only headers that passed every check are remembered.
  headers?.set(segment, header);
  return { header, payload, alg: header.alg };
}

const HASH: Readonly<Record<JwtAlgorithm, string | null>> = {
  RS256: 'sha256', RS384: 'sha384', RS512: 'sha512',
  PS256: 'sha256', PS384: 'sha384', PS512: 'sha512',
  ES256: 'sha256', ES384: 'sha384', ES512: 'sha512',
  EdDSA: null,
};

/** node:crypto's arguments for a JWS algorithm: the digest and the key with its padding or signature encoding. */
function verifyArgs(alg: JwtAlgorithm, key: JwtKey): [string | null, KeyObject | VerifyKeyObjectInput] {
  const k = key.key;
  if (alg.startsWith('PS')) return [HASH[alg], { key: k, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }];
  // JWS carries ECDSA signatures as r || s (IEEE P1363), not DER.
  if (alg.startsWith('ES')) return [HASH[alg], { key: k, dsaEncoding: 'ieee-p1363' }];
  return [HASH[alg], k];
}

function signatureValid(alg: JwtAlgorithm, key: JwtKey, signingInput: Buffer, signature: Buffer): boolean {
  const [hash, k] = verifyArgs(alg, key);
  try {
    return cryptoVerify(hash, signingInput, k, signature);
  } catch {
    return false;
  }
}

/** The same check on libuv's threadpool, leaving the event loop free (and the other core busy) meanwhile. */
function signatureValidAsync(alg: JwtAlgorithm, key: JwtKey, signingInput: Buffer, signature: Buffer): Promise<boolean> {
  const [hash, k] = verifyArgs(alg, key);
  return new Promise((resolve) => {
    try {
      cryptoVerify(hash, signingInput, k, signature, (err, ok) => resolve(err === null && ok));
    } catch {
      resolve(false);
    }
  });
}

interface SignatureCheck {
  readonly candidates: readonly JwtKey[];
  readonly signingInput: Buffer;
  readonly signature: Buffer;
}

function signatureCheck(token: string, keys: KeySet, decoded: DecodedJwt): SignatureCheck {
  const kid = typeof decoded.header.kid === 'string' ? decoded.header.kid : undefined;
  const candidates = keys.candidates(kid, decoded.alg);
  if (candidates.length === 0) {
    fail('no-key', kid === undefined ? `no key of the set verifies ${decoded.alg}` : `no key with kid ${JSON.stringify(kid.slice(0, 64))} verifies ${decoded.alg}`);
  }
  const dot = token.lastIndexOf('.');
  return { candidates, signingInput: Buffer.from(token.slice(0, dot), 'latin1'), signature: Buffer.from(token.slice(dot + 1), 'base64url') };
}

function badSignature(alg: JwtAlgorithm, candidates: readonly JwtKey[]): never {
  fail('bad-signature', `the ${alg} signature does not verify with ${candidates.length === 1 ? candidates[0]!.description : `any of ${candidates.length} keys`}`);
}

function checkTimes(decoded: DecodedJwt, nowSeconds: number): DecodedJwt {
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

/**
 * Verifies signature and time of a token against a key set. `nowSeconds` is the clock; exp and nbf allow
 * CLOCK_SKEW_SECONDS. Issuer and audiences are the caller's business (they depend on the rule).
 */
export function verifyToken(token: string, keys: KeySet, nowSeconds: number, decoded: DecodedJwt = decodeToken(token)): DecodedJwt {
  const c = signatureCheck(token, keys, decoded);
  if (!c.candidates.some((k) => signatureValid(decoded.alg, k, c.signingInput, c.signature))) badSignature(decoded.alg, c.candidates);
  return checkTimes(decoded, nowSeconds);
}

/** verifyToken with the signature checked on the threadpool; rejects with the same JwtErrors. */
export async function verifyTokenAsync(token: string, keys: KeySet, nowSeconds: number, decoded: DecodedJwt = decodeToken(token)): Promise<DecodedJwt> {
  const c = signatureCheck(token, keys, decoded);
  let ok = false;
  for (const k of c.candidates) {
    if (await signatureValidAsync(decoded.alg, k, c.signingInput, c.signature)) {
      ok = true;
      break;
    }
  }
  if (!ok) badSignature(decoded.alg, c.candidates);
  return checkTimes(decoded, nowSeconds);
}

/** The token's audiences as a list (`aud` may be a string or a list). */
export function audiencesOf(payload: JWTPayload): string[] {
  const aud = payload.aud;
  if (typeof aud === 'string') return [aud];
  if (Array.isArray(aud)) return aud.filter((a): a is string => typeof a === 'string');
  return [];
}
