import type { X509Certificate } from 'node:crypto';
import { RampartError } from '../errors.ts';
import { certificateFacts, EKU_CLIENT_AUTH, EKU_SERVER_AUTH, issuedBy, type CertificateFacts } from './certificate.ts';
import { parseSpiffeId, SpiffeIdError, toPrincipal, type SpiffeId } from './spiffe-id.ts';
import type { TrustBundle } from './trust-bundle.ts';

/**
 * X.509-SVID verification: the chain ends at a root of the trust bundle, and the leaf is a workload certificate
 * with exactly one SPIFFE ID of an accepted trust domain. Chain building can be left to the TLS stack (which has
 * already done it when a handshake succeeded); the SPIFFE checks are always done here.
 */

export type SvidRejection =
  | 'no-certificate'
  | 'untrusted'
  | 'expired'
  | 'not-yet-valid'
  | 'no-uri-san'
  | 'multiple-uri-sans'
  | 'not-spiffe'
  | 'invalid-spiffe-id'
  | 'foreign-trust-domain'
  | 'ca-certificate'
  | 'key-usage'
  | 'extended-key-usage'
  | 'unknown-critical-extension'
  | 'unexpected-identity';

/** A peer certificate that is not an acceptable SVID; `reason` says which rule it breaks. */
export class SvidError extends RampartError {
  readonly reason: SvidRejection;
  constructor(reason: SvidRejection, message: string) {
    super('ERR_SVID_REJECTED', message);
    this.reason = reason;
  }
}

/** Which side of a connection presented the SVID: a client certificate needs clientAuth, a server one serverAuth. */
export type SvidRole = 'client' | 'server';

/** What a client expects of the server it dials (SVIDs carry no DNS names, so the hostname cannot be checked). */
export interface IdentityExpectation {
  /** Accepted SPIFFE IDs (URI form) or principals (`td/ns/x/sa/y`). */
  readonly ids?: readonly string[];
  /**
   * Accepted service accounts as `<namespace>/<service-account>`, in any accepted trust domain (the form a service
   * registry knows a destination by). With `ids`, either may match; both empty or absent: any accepted identity.
   */
  readonly serviceAccounts?: readonly string[];
}

export interface VerifiedSvid {
  readonly spiffeId: SpiffeId;
  /** The policy form of the ID (`cluster.local/ns/foo/sa/bar`), what becomes `source.principal`. */
  readonly principal: string;
  readonly leaf: CertificateFacts;
  readonly notAfter: Date;
}

export interface VerifyOptions {
  readonly role: SvidRole;
  /** Milliseconds since the epoch; defaults to now. */
  readonly now?: number;
  /** The chain was already verified against the bundle's roots (by the TLS handshake). */
  readonly chainVerified?: boolean;
  readonly expect?: IdentityExpectation;
}

const MAX_CHAIN = 8;

function reject(reason: SvidRejection, message: string): never {
  throw new SvidError(reason, message);
}

function checkWindow(f: CertificateFacts, now: number, what: string): void {
  if (now > f.notAfter.getTime()) reject('expired', `${what} expired at ${f.notAfter.toISOString()}`);
  if (now < f.notBefore.getTime()) reject('not-yet-valid', `${what} is not valid before ${f.notBefore.toISOString()}`);
}

/** Builds the path leaf → … → a bundle root from the presented certificates; returns nothing, throws when there is none. */
function verifyChain(presented: readonly X509Certificate[], bundle: TrustBundle, now: number): void {
  const leaf = presented[0]!;
  const pool = presented.slice(1);
  let current = leaf;
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    const anchor = bundle.roots.find((root) => issuedBy(current, root));
    if (anchor !== undefined) {
      checkWindow(certificateFacts(anchor), now, 'the root certificate');
      return;
    }
    // A presented copy of a bundle root was handled above; anything else must be an intermediate CA.
    const next = pool.find((c) => c !== current && issuedBy(current, c));
    if (next === undefined) break;
    const f = certificateFacts(next);
    if (!f.isCA) reject('untrusted', `chain certificate ${f.subject || f.fingerprint256} is not a CA`);
    if (f.keyUsage !== undefined && !f.keyUsage.includes('keyCertSign')) reject('untrusted', `chain certificate ${f.subject} may not sign certificates`);
    if (f.pathLen !== undefined && depth > f.pathLen) reject('untrusted', `chain certificate ${f.subject} allows a path length of ${f.pathLen}`);
    checkWindow(f, now, `intermediate ${f.subject}`);
    current = next;
  }
  reject('untrusted', 'the certificate does not chain to a root of the trust bundle');
}

/** The leaf's SPIFFE checks; shared by every entry point. */
export function verifySvidLeaf(leaf: CertificateFacts, bundle: TrustBundle, options: VerifyOptions): VerifiedSvid {
  const now = options.now ?? Date.now();
  if (leaf.uris.length === 0) reject('no-uri-san', 'the certificate has no URI SAN, so it carries no SPIFFE ID');
  if (leaf.uris.length > 1) reject('multiple-uri-sans', `an SVID has exactly one URI SAN; this one has ${leaf.uris.length} (${leaf.uris.join(', ')})`);
  const uri = leaf.uris[0]!;
  if (!uri.startsWith('spiffe://')) reject('not-spiffe', `the URI SAN ${JSON.stringify(uri)} is not a SPIFFE ID`);
  let spiffeId: SpiffeId;
  try {
    spiffeId = parseSpiffeId(uri);
  } catch (err) {
    if (err instanceof SpiffeIdError) reject('invalid-spiffe-id', err.message);
    throw err;
  }
  if (!bundle.accepts(spiffeId.trustDomain)) {
    const accepted = [bundle.trustDomain, ...bundle.aliases].join(', ');
    reject('foreign-trust-domain', `trust domain "${spiffeId.trustDomain}" is not accepted here (accepted: ${accepted})`);
  }
  if (leaf.isCA) reject('ca-certificate', 'the certificate is a CA certificate (basic constraints CA=true); an SVID must not be');
  if (leaf.keyUsage !== undefined) {
    if (!leaf.keyUsage.includes('digitalSignature')) reject('key-usage', 'key usage lacks digitalSignature');
    if (leaf.keyUsage.includes('keyCertSign') || leaf.keyUsage.includes('crlSign')) reject('key-usage', 'key usage allows signing certificates or CRLs');
  }
  if (leaf.extKeyUsage !== undefined) {
    const needed = options.role === 'client' ? EKU_CLIENT_AUTH : EKU_SERVER_AUTH;
    if (!leaf.extKeyUsage.includes(needed)) {
      reject('extended-key-usage', `extended key usage lacks ${options.role === 'client' ? 'clientAuth' : 'serverAuth'}, needed by a TLS ${options.role}`);
    }
  }
  if (leaf.unknownCritical.length > 0) reject('unknown-critical-extension', `unknown critical extension ${leaf.unknownCritical.join(', ')}`);
  checkWindow(leaf, now, 'the certificate');
  const ids = options.expect?.ids ?? [];
  const accounts = options.expect?.serviceAccounts ?? [];
  if (ids.length > 0 || accounts.length > 0) {
    const principal = toPrincipal(spiffeId);
    const parts = spiffeId.path.split('/');
    const account = parts.length === 5 && parts[1] === 'ns' && parts[3] === 'sa' ? `${parts[2]}/${parts[4]}` : undefined;
    if (!ids.some((id) => id === spiffeId.uri || id === principal) && (account === undefined || !accounts.includes(account))) {
      const wanted = [...ids, ...accounts.map((a) => `service account ${a}`)];
      reject('unexpected-identity', `the peer is ${spiffeId.uri}, expected ${wanted.join(' or ')}`);
    }
  }
  return { spiffeId, principal: toPrincipal(spiffeId), leaf, notAfter: leaf.notAfter };
}

/** Verifies a presented chain (leaf first). */
export function verifySvid(chain: readonly X509Certificate[], bundle: TrustBundle, options: VerifyOptions): VerifiedSvid {
  if (chain.length === 0) reject('no-certificate', 'no certificate was presented');
  const now = options.now ?? Date.now();
  if (options.chainVerified !== true) verifyChain(chain, bundle, now);
  return verifySvidLeaf(certificateFacts(chain[0]!), bundle, { ...options, now });
}
