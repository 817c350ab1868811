import { X509Certificate } from 'node:crypto';
import type { ConnectionOptions, DetailedPeerCertificate, PeerCertificate, TLSSocket, TlsOptions } from 'node:tls';
import { certificateFacts, type CertificateFacts } from './certificate.ts';
import type { Svid } from './svid.ts';
import { SvidError, verifySvid, verifySvidLeaf, type IdentityExpectation, type SvidRejection, type VerifiedSvid } from './svid-verify.ts';
import type { TrustBundle } from './trust-bundle.ts';

/**
 * mTLS with SVIDs on node:tls. OpenSSL builds and checks the chain against the bundle's roots; Rampart adds the
 * SPIFFE checks on the leaf (one SPIFFE URI SAN, accepted trust domain, not a CA, key usages) and, on clients, the
 * expected identity of the server in place of the hostname check SVIDs cannot pass.
 */

/**
 * Resumed sessions skip certificate verification, so a session must not outlive the trust it was made under:
 * keep it short, and rotate ticket keys when the bundle changes (see rotateSessionTickets).
 */
export const SESSION_TIMEOUT_SECONDS = 300;

/** Leaf facts by fingerprint: a peer presents the same SVID on every connection until it rotates. */
const leafCache = new Map<string, CertificateFacts>();
const LEAF_CACHE_MAX = 4096;

function leafFacts(fingerprint256: string, raw: Buffer): CertificateFacts {
  let facts = leafCache.get(fingerprint256);
  if (facts === undefined) {
    facts = certificateFacts(new X509Certificate(raw));
    if (leafCache.size >= LEAF_CACHE_MAX) leafCache.delete(leafCache.keys().next().value!);
    leafCache.set(fingerprint256, facts);
  }
  return facts;
}

/** OpenSSL verification errors that have a rule of their own. */
const OPENSSL_REASONS: Readonly<Record<string, SvidRejection>> = {
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not-yet-valid',
  UNHANDLED_CRITICAL_EXTENSION: 'unknown-critical-extension',
};

/** Options for a TLS server that requires a client SVID. Check each connection with verifyTlsPeer. */
export function serverTlsOptions(svid: Svid, bundle: TrustBundle): TlsOptions {
  return {
    key: svid.keyPem,
    cert: svid.chainPem,
    ca: bundle.pem,
    // Ask for a certificate but let the handshake finish, so the reason for a rejection can be logged
    // (a Node server with rejectUnauthorized drops the client without saying why); verifyTlsPeer fails closed.
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
    sessionTimeout: SESSION_TIMEOUT_SECONDS,
  };
}

/** Options for a TLS client presenting `svid` and accepting only a server SVID that meets `expect`. */
export function clientTlsOptions(svid: Svid, bundle: TrustBundle, expect: IdentityExpectation = {}): ConnectionOptions {
  return { ...serverCheckingTlsOptions(bundle, expect), key: svid.keyPem, cert: svid.chainPem };
}

/**
 * Options for a TLS client with no SVID of its own yet (a workload's first CSR), still accepting only a server SVID
 * that meets `expect`.
 */
export function serverCheckingTlsOptions(bundle: TrustBundle, expect: IdentityExpectation = {}): ConnectionOptions {
  return {
    ca: bundle.pem,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    // Node calls this only after the chain verified; returning an Error aborts the handshake with it.
    checkServerIdentity: (_host: string, cert: PeerCertificate): Error | undefined => {
      try {
        verifySvidLeaf(leafFacts(cert.fingerprint256, cert.raw), bundle, { role: 'server', expect });
        return undefined;
      } catch (err) {
        return err instanceof Error ? err : new Error(String(err));
      }
    },
  };
}

/**
 * The verified identity of the peer on a connected TLS socket (server side: the client's; client side: the
 * server's). Throws SvidError with the reason when the peer did not present an acceptable SVID.
 */
export function verifyTlsPeer(socket: TLSSocket, bundle: TrustBundle, role: 'client' | 'server' = 'client', expect?: IdentityExpectation): VerifiedSvid {
  // Not getPeerX509Certificate, though it is 20x cheaper: on Node 20 it disturbs the socket's peer chain (a second
  // call, or getPeerCertificate(true) afterwards, misses certificates), which would break peerChain.
  const cert = legacyPeer(socket);
  if (cert === undefined) throw new SvidError('no-certificate', 'the peer presented no certificate');
  if (!socket.authorized) {
    const code = String(socket.authorizationError ?? 'unknown');
    // OpenSSL's purpose check fails for a key usage or extended key usage that does not fit the role: name the rule
    // as verifySvid does (chain first, so an untrusted chain stays 'untrusted'). Never accepts: it throws either way.
    if (code === 'INVALID_PURPOSE') verifySvid(peerChain(socket), bundle, { role });
    throw new SvidError(OPENSSL_REASONS[code] ?? 'untrusted', `certificate verification failed: ${code}`);
  }
  return verifySvidLeaf(leafFacts(cert.fingerprint256, cert.raw), bundle, { role, ...(expect === undefined ? {} : { expect }) });
}

function legacyPeer(socket: TLSSocket): { readonly fingerprint256: string; readonly raw: Buffer } | undefined {
  const cert = socket.getPeerCertificate(false) as PeerCertificate | Record<string, never> | undefined;
  return cert !== undefined && 'raw' in cert && cert.raw !== undefined ? (cert as PeerCertificate) : undefined;
}

/**
 * The peer's chain, leaf first, as the TLS stack built it: what the peer presented, completed by Node with issuers
 * from the local trust store (so it usually ends with the bundle root). For logging and CSR renewal authentication.
 */
export function peerChain(socket: TLSSocket): X509Certificate[] {
  const out: X509Certificate[] = [];
  let cert = socket.getPeerCertificate(true) as DetailedPeerCertificate | Record<string, never> | undefined;
  const seen = new Set<string>();
  while (cert !== undefined && 'raw' in cert && cert.raw !== undefined && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    out.push(new X509Certificate(cert.raw));
    cert = cert.issuerCertificate;
  }
  return out;
}
