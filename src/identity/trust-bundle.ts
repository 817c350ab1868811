import type { X509Certificate } from 'node:crypto';
import { certificateFacts } from './certificate.ts';
import { parseTrustDomain } from './spiffe-id.ts';
import { CertificateError, certificatesFromPem } from './x509.ts';

/**
 * The roots a workload trusts, and the trust domains whose identities it accepts (its own plus aliases, as
 * meshConfig.trustDomainAliases). Several roots at once are what makes a root rotation possible without a failed
 * request: new root trusted alongside the old, then made the signer, then the old one retired.
 * Immutable; each change gives a new bundle.
 */
export class TrustBundle {
  readonly trustDomain: string;
  readonly aliases: readonly string[];
  readonly roots: readonly X509Certificate[];
  /** The roots as one PEM string, in order (what TLS `ca` and root-cert.pem hold). */
  readonly pem: string;

  constructor(trustDomain: string, roots: readonly X509Certificate[], aliases: readonly string[] = []) {
    parseTrustDomain(trustDomain);
    for (const a of aliases) parseTrustDomain(a);
    if (roots.length === 0) throw new CertificateError('ERR_TRUST_BUNDLE_EMPTY', 'a trust bundle needs at least one root certificate');
    const seen = new Set<string>();
    const unique: X509Certificate[] = [];
    for (const root of roots) {
      const facts = certificateFacts(root);
      if (!facts.isCA) throw new CertificateError('ERR_TRUST_BUNDLE_NOT_CA', `trust bundle certificate ${facts.subject || facts.fingerprint256} is not a CA certificate`);
      if (!seen.has(facts.fingerprint256)) {
        seen.add(facts.fingerprint256);
        unique.push(root);
      }
    }
    this.trustDomain = trustDomain;
    this.aliases = [...new Set(aliases.filter((a) => a !== trustDomain))];
    this.roots = unique;
    this.pem = unique.map((r) => r.toString()).join('');
  }

  static fromPem(trustDomain: string, pem: string, aliases: readonly string[] = []): TrustBundle {
    return new TrustBundle(trustDomain, certificatesFromPem(pem, 'the trust bundle'), aliases);
  }

  /** Whether identities of `trustDomain` are accepted. */
  accepts(trustDomain: string): boolean {
    return trustDomain === this.trustDomain || this.aliases.includes(trustDomain);
  }

  fingerprints(): string[] {
    return this.roots.map((r) => r.fingerprint256);
  }

  /** Whether `cert` is one of the roots (same bytes). */
  has(cert: X509Certificate): boolean {
    return this.roots.some((r) => r.fingerprint256 === cert.fingerprint256);
  }

  withRoots(...roots: X509Certificate[]): TrustBundle {
    return new TrustBundle(this.trustDomain, [...this.roots, ...roots], this.aliases);
  }

  withoutRoots(...fingerprints: string[]): TrustBundle {
    const drop = new Set(fingerprints.map(normalizeFingerprint));
    return new TrustBundle(
      this.trustDomain,
      this.roots.filter((r) => !drop.has(r.fingerprint256)),
      this.aliases,
    );
  }

  withAliases(aliases: readonly string[]): TrustBundle {
    return new TrustBundle(this.trustDomain, this.roots, aliases);
  }

  /** Same roots and trust domains. */
  equals(other: TrustBundle): boolean {
    return (
      this.pem === other.pem &&
      this.trustDomain === other.trustDomain &&
      this.aliases.length === other.aliases.length &&
      this.aliases.every((a) => other.aliases.includes(a))
    );
  }
}

/** Accepts `AB:CD…`, `abcd…` or `sha256:…` spellings of a SHA-256 fingerprint. */
export function normalizeFingerprint(text: string): string {
  const hex = text.replace(/^sha256:/i, '').replace(/:/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) throw new CertificateError('ERR_FINGERPRINT_INVALID', `"${text}" is not a SHA-256 fingerprint (64 hex digits)`);
  return hex.match(/../g)!.join(':');
}
