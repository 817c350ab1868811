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
  | 'header-base64'
  | 'bad-header'
  | 'alg-missing'
  | 'alg-not-allowed'
  | 'kid-not-string'
  | 'payload-base64'
  | 'bad-payload'
  | 'iss-not-string'
  | 'sub-not-string'
  | 'iat-not-integer'
  | 'iat-out-of-range'
  | 'nbf-not-integer'
  | 'nbf-out-of-range'
  | 'exp-not-integer'
  | 'exp-out-of-range'
  | 'jti-not-string'
  | 'aud-not-string'
  | 'signature-base64'
  | 'crit'
  | 'no-key'
  | 'bad-signature'
  | 'expired'
  | 'not-yet-valid'
  | 'keys-unavailable'
  | 'issuer-not-configured'
  | 'audience';

/**
 * Envoy's texts, which clients see in the 401/403 body: jwt_verify_lib's status strings (src/status.cc), so a
 * client or a test written against Istio reads the same reason here.
 */
export const ENVOY_MESSAGES: Readonly<Record<JwtFailure, string>> = {
  'too-large': 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections',
  malformed: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections',
  'header-base64': 'Jwt header is an invalid Base64url encoded',
  'bad-header': 'Jwt header is an invalid JSON',
  'alg-missing': 'Jwt header [alg] field is required and must be a string',
  'alg-not-allowed': 'Jwt header [alg] is not supported',
  'kid-not-string': 'Jwt header [kid] field is not a string',
  'payload-base64': 'Jwt payload is an invalid Base64url encoded',
  'bad-payload': 'Jwt payload is an invalid JSON',
  'iss-not-string': 'Jwt payload [iss] field is not a string',
  'sub-not-string': 'Jwt payload [sub] field is not a string',
  'iat-not-integer': 'Jwt payload [iat] field is not an integer',
  'iat-out-of-range': 'Jwt payload [iat] field is not a positive 64 bit integer',
  'nbf-not-integer': 'Jwt payload [nbf] field is not an integer',
  'nbf-out-of-range': 'Jwt payload [nbf] field is not a positive 64 bit integer',
  'exp-not-integer': 'Jwt payload [exp] field is not an integer',
  'exp-out-of-range': 'Jwt payload [exp] field is not a positive 64 bit integer',
  'jti-not-string': 'Jwt payload [jti] field is not a string',
  'aud-not-string': 'Jwt payload [aud] field is not a string or string list',
  'signature-base64': 'Jwt signature is an invalid Base64url encoded',
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

const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** A base64url section as jwt_verify_lib accepts it: the alphabet only, and a length a decoder can complete. */
function isBase64url(section: string): boolean {
  return section.length % 4 !== 1 && BASE64URL.test(section);
}

/** Algorithms jwt_verify_lib implements (src/jwt.cc isImplemented); any other `alg` is "not supported". */
const ENVOY_ALGORITHMS: ReadonlySet<string> = new Set(['ES256', 'ES384', 'ES512', 'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA']);

/** 2^64: jwt_verify_lib's StructUtils::GetUInt64 refuses a number at or above it (and below 0). */
const UINT64_LIMIT = 18446744073709551616;

type TimeClaim = 'iat' | 'nbf' | 'exp';

function checkTimeClaim(payload: JWTPayload, claim: TimeClaim): void {
  const v = (payload as Record<string, unknown>)[claim];
  if (v === undefined) return;
  // A JSON number of any kind passes Envoy's type check; a string, null, boolean, object or list does not.
  if (typeof v !== 'number') fail(`${claim}-not-integer`, `"${claim}" is ${describeJson(v)}, not a number of seconds`);
  if (!(v >= 0 && v < UINT64_LIMIT)) fail(`${claim}-out-of-range`, `"${claim}" is ${v}`);
}

function checkStringClaim(payload: JWTPayload, claim: 'iss' | 'sub' | 'jti'): void {
  const v = (payload as Record<string, unknown>)[claim];
  if (v !== undefined && typeof v !== 'string') fail(`${claim}-not-string`, `"${claim}" is ${describeJson(v)}`);
}

function describeJson(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'an object' : `the ${typeof v} ${JSON.stringify(v)?.slice(0, 40)}`;
}

/**
 * The shape checks of jwt_verify_lib's Jwt::parseFromString, in its order: three non-empty sections; the header
 * base64url, JSON, `alg` a string Envoy implements, `kid` a string when present; the payload base64url and JSON,
 * `iss`/`sub`/`jti` strings, `iat`/`nbf`/`exp` numbers in [0, 2^64), `aud` a string or a list of strings; the
 * signature base64url. A token failing any of them is malformed (401) before any key is looked at: none of them
 * is read as "absent".
 */
function checkHeader(header: ProtectedHeaderParameters): JwtAlgorithm {
  const alg: unknown = header.alg;
  if (typeof alg !== 'string') fail('alg-missing', alg === undefined ? 'the header has no "alg"' : `"alg" is ${describeJson(alg)}`);
  if (!ENVOY_ALGORITHMS.has(alg)) fail('alg-not-allowed', `alg ${JSON.stringify(alg.slice(0, 40))} is not a JWS algorithm Envoy implements (unsigned tokens never are)`);
  const kid: unknown = header.kid;
  if (kid !== undefined && typeof kid !== 'string') fail('kid-not-string', `"kid" is ${describeJson(kid)}`);
  // HMAC is implemented by Envoy but needs a symmetric key, and key sets here never hold one (key-set.ts).
  if (!isJwtAlgorithm(alg)) fail('no-key', `${alg} needs a symmetric key; published key sets only verify asymmetric signatures here`);
  // No critical extension is understood, so any is a reason to refuse (RFC 7515 §4.1.11).
  if (header.crit !== undefined) fail('crit', `critical header parameter(s) ${JSON.stringify(header.crit)} are not understood`);
  return alg;
}

function checkPayload(payload: JWTPayload): void {
  checkStringClaim(payload, 'iss');
  checkStringClaim(payload, 'sub');
  checkTimeClaim(payload, 'iat');
  checkTimeClaim(payload, 'nbf');
  checkTimeClaim(payload, 'exp');
  checkStringClaim(payload, 'jti');
  const aud: unknown = payload.aud;
  if (aud !== undefined && typeof aud !== 'string' && !(Array.isArray(aud) && aud.every((a) => typeof a === 'string'))) {
    fail('aud-not-string', `"aud" is ${describeJson(aud)}${Array.isArray(aud) ? ' with an element that is not a string' : ''}`);
  }
}

/** Structure, header and payload, without the signature: what may be read of a token before trusting it. */
export function decodeToken(token: string, headers?: HeaderCache): DecodedJwt {
  if (token.length > MAX_TOKEN_LENGTH) fail('too-large', `the token is ${token.length} characters long (at most ${MAX_TOKEN_LENGTH})`);
  const parts = token.split('.');
  if (parts.length === 5) fail('malformed', 'this is an encrypted token (JWE); only signed tokens (JWS) are accepted');
  if (parts.length !== 3) fail('malformed', `the token has ${parts.length} sections`);
  const [h, p, s] = parts as [string, string, string];
  if (h === '' || p === '' || s === '') fail('malformed', `the ${h === '' ? 'header' : p === '' ? 'payload' : 'signature'} section is empty`);
  let header = headers?.get(h);
  let alg: JwtAlgorithm;
  if (header === undefined) {
    if (!isBase64url(h)) fail('header-base64', 'the header section is not base64url');
    try {
      header = decodeProtectedHeader(token);
    } catch (err) {
      fail('bad-header', (err as Error).message);
    }
    alg = checkHeader(header);
  } else {
    alg = header.alg as JwtAlgorithm;
  }
  if (!isBase64url(p)) fail('payload-base64', 'the payload section is not base64url');
  let payload: JWTPayload;
  try {
    payload = decodeJwt(token);
  } catch (err) {
    fail('bad-payload', (err as Error).message);
  }
  checkPayload(payload);
  if (!isBase64url(s)) fail('signature-base64', 'the signature section is not base64url');
  // Only headers that passed every check are remembered.
  headers?.set(h, header);
  return { header, payload, alg };
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

/**
 * exp and nbf against the clock, with Envoy's skew. Fractions are dropped, as Envoy's integer conversion does. An
 * `exp` of 0 is expired here, while jwt_verify_lib reads 0 as "no expiry": a deliberate, stricter choice (a token
 * that says it expired at the epoch is not taken as valid forever).
 */
function when(seconds: number): string {
  const ms = Math.trunc(seconds) * 1000;
  // Dates past year 275760 have no ISO form; such a claim is still a valid uint64 to Envoy.
  return Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : `${Math.trunc(seconds)} s after the epoch`;
}

export function checkTimes(decoded: DecodedJwt, nowSeconds: number): DecodedJwt {
  const { exp, nbf } = decoded.payload;
  if (nbf !== undefined && nowSeconds + CLOCK_SKEW_SECONDS < Math.trunc(nbf)) {
    fail('not-yet-valid', `not valid before ${when(nbf)} (${CLOCK_SKEW_SECONDS} s of clock skew allowed)`);
  }
  if (exp !== undefined && nowSeconds > Math.trunc(exp) + CLOCK_SKEW_SECONDS) {
    fail('expired', `expired at ${when(exp)} (${CLOCK_SKEW_SECONDS} s of clock skew allowed)`);
  }
  return decoded;
}

/**
 * Verifies time and signature of a token against a key set, in Envoy's order (time first, as jwt_verify_lib's
 * verifyJwt: an expired token is "Jwt is expired" whatever its signature). `nowSeconds` is the clock; exp and nbf
 * allow CLOCK_SKEW_SECONDS. Issuer and audiences are the caller's business (they depend on the rule).
 */
export function verifyToken(token: string, keys: KeySet, nowSeconds: number, decoded: DecodedJwt = decodeToken(token)): DecodedJwt {
  checkTimes(decoded, nowSeconds);
  return verifySignature(token, keys, decoded);
}

/** The signature alone (the caller checked the times). */
export function verifySignature(token: string, keys: KeySet, decoded: DecodedJwt): DecodedJwt {
  const c = signatureCheck(token, keys, decoded);
  if (!c.candidates.some((k) => signatureValid(decoded.alg, k, c.signingInput, c.signature))) badSignature(decoded.alg, c.candidates);
  return decoded;
}

/** verifyToken with the signature checked on the threadpool; rejects with the same JwtErrors. */
export async function verifyTokenAsync(token: string, keys: KeySet, nowSeconds: number, decoded: DecodedJwt = decodeToken(token)): Promise<DecodedJwt> {
  checkTimes(decoded, nowSeconds);
  return verifySignatureAsync(token, keys, decoded);
}

/** verifySignature on the threadpool. */
export async function verifySignatureAsync(token: string, keys: KeySet, decoded: DecodedJwt): Promise<DecodedJwt> {
  const c = signatureCheck(token, keys, decoded);
  for (const k of c.candidates) {
    if (await signatureValidAsync(decoded.alg, k, c.signingInput, c.signature)) return decoded;
  }
  badSignature(decoded.alg, c.candidates);
}

/** The token's audiences as a list (`aud` may be a string or a list). */
export function audiencesOf(payload: JWTPayload): string[] {
  const aud = payload.aud;
  if (typeof aud === 'string') return [aud];
  if (Array.isArray(aud)) return aud.filter((a): a is string => typeof a === 'string');
  return [];
}
