import { randomBytes } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { RampartError } from '../errors.ts';
import { parseIstioIdentity, type IstioIdentity } from './spiffe-id.ts';
import type { Signer } from './x509.ts';

/**
 * Bootstrap tokens: short-lived, single-use JWS tokens the CA signs with its signing key, each naming one
 * namespace/service account. A workload without an SVID presents one with its first CSR; afterwards it renews
 * with its SVID over mTLS. jose encodes and verifies them; the algorithm is pinned by the CA key's type.
 */

export const BOOTSTRAP_ISSUER = 'rampart-ca';
export const BOOTSTRAP_AUDIENCE = 'rampart-csr';
export const DEFAULT_BOOTSTRAP_TTL_MS = 15 * 60_000;
export const MAX_BOOTSTRAP_TTL_MS = 24 * 3_600_000;

export class BootstrapTokenError extends RampartError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_BOOTSTRAP_TOKEN_INVALID', message, options);
  }
}

export function joseAlgorithm(signer: Signer): 'ES256' | 'ES384' | 'ES512' | 'RS256' {
  if (signer.scheme.keyType === 'rsa') return 'RS256';
  return signer.scheme.hash === 'sha384' ? 'ES384' : signer.scheme.hash === 'sha512' ? 'ES512' : 'ES256';
}

export async function signBootstrapToken(signer: Signer, identity: IstioIdentity, ttlMs: number, nowMs: number): Promise<string> {
  if (!(ttlMs > 0) || ttlMs > MAX_BOOTSTRAP_TTL_MS) {
    throw new BootstrapTokenError(`a bootstrap token lives between 1 ms and ${MAX_BOOTSTRAP_TTL_MS / 3_600_000} h`);
  }
  const iat = Math.floor(nowMs / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: joseAlgorithm(signer), typ: 'rampart-bootstrap+jwt' })
    .setIssuer(BOOTSTRAP_ISSUER)
    .setAudience(BOOTSTRAP_AUDIENCE)
    .setSubject(identity.uri)
    .setIssuedAt(iat)
    .setExpirationTime(iat + Math.max(1, Math.round(ttlMs / 1000)))
    .setJti(randomBytes(16).toString('hex'))
    .sign(signer.key);
}

export interface VerifiedBootstrapToken {
  readonly identity: IstioIdentity;
  readonly jti: string;
  readonly expiresAtMs: number;
}

/** Verifies a token against any of `keys` (the current signer first, then earlier ones still honoured). */
export async function verifyBootstrapToken(token: string, keys: readonly Signer[], nowMs: number): Promise<VerifiedBootstrapToken> {
  let lastError: unknown;
  for (const signer of keys) {
    try {
      const { payload } = await jwtVerify(token, signer.publicKey, {
        issuer: BOOTSTRAP_ISSUER,
        audience: BOOTSTRAP_AUDIENCE,
        algorithms: [joseAlgorithm(signer)],
        typ: 'rampart-bootstrap+jwt',
        requiredClaims: ['exp', 'iat', 'sub', 'jti'],
        currentDate: new Date(nowMs),
      });
      let identity: IstioIdentity;
      try {
        identity = parseIstioIdentity(String(payload.sub));
      } catch (err) {
        throw new BootstrapTokenError(`the bootstrap token's subject is not a workload identity: ${(err as Error).message}`);
      }
      return { identity, jti: String(payload.jti), expiresAtMs: (payload.exp ?? 0) * 1000 };
    } catch (err) {
      if (err instanceof BootstrapTokenError) throw err;
      lastError = err;
      // A signature made by another key: try the next one. Anything else (expired, wrong audience…) is final.
      if (!(err instanceof joseErrors.JWSSignatureVerificationFailed)) break;
    }
  }
  const reason =
    lastError instanceof joseErrors.JWTExpired
      ? 'it has expired'
      : lastError instanceof joseErrors.JWSSignatureVerificationFailed
        ? 'it was not signed by this CA'
        : lastError instanceof Error
          ? lastError.message
          : 'it cannot be read';
  throw new BootstrapTokenError(`bootstrap token rejected: ${reason}`, { cause: lastError });
}

/**
 * Remembers used token IDs until they expire, so a token authenticates one CSR only. `persist` is called with the
 * live entries after every change, so a CA that restarts can load them again (a token still valid must not work twice).
 */
export class UsedTokenLedger {
  readonly #used = new Map<string, number>();
  readonly #persist: ((entries: ReadonlyArray<readonly [string, number]>) => void) | undefined;

  constructor(entries: Iterable<readonly [string, number]> = [], persist?: (entries: ReadonlyArray<readonly [string, number]>) => void) {
    for (const [id, exp] of entries) this.#used.set(id, exp);
    this.#persist = persist;
  }

  /** Marks `jti` used; false when it already was. */
  consume(jti: string, expiresAtMs: number, nowMs: number): boolean {
    if (this.#used.has(jti)) return false;
    for (const [id, exp] of this.#used) if (exp < nowMs) this.#used.delete(id);
    this.#used.set(jti, expiresAtMs);
    this.#persist?.([...this.#used]);
    return true;
  }

  get size(): number {
    return this.#used.size;
  }
}
