import type { X509Certificate } from 'node:crypto';
import { certificateFacts, EKU_CLIENT_AUTH, EKU_SERVER_AUTH, issuedBy, type CertificateFacts } from './certificate.ts';
import { parseSpiffeId } from './spiffe-id.ts';
import { DEFAULT_MAX_WORKLOAD_TTL_MS } from './ca.ts';
import { SvidError, verifySvid } from './svid-verify.ts';
import type { TrustBundle } from './trust-bundle.ts';

/**
 * `rampart cert inspect`: what a certificate file holds, read as an SVID. Everything an SVID must not have is
 * reported as a warning with the rule it breaks.
 */

export interface InspectedCertificate {
  readonly role: 'leaf' | 'intermediate' | 'root';
  readonly spiffeId: string | undefined;
  readonly subject: string;
  readonly issuer: string;
  readonly serial: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly remainingMs: number;
  readonly lifetimeMs: number;
  readonly key: string;
  readonly isCA: boolean;
  readonly keyUsage: readonly string[] | undefined;
  readonly extKeyUsage: readonly string[] | undefined;
  readonly sans: readonly string[];
  readonly fingerprint256: string;
  /** Index of the certificate in the file that signed this one, 'bundle' for a root of the bundle, or undefined. */
  readonly signedBy: number | 'bundle' | 'self' | undefined;
  readonly warnings: readonly string[];
}

export interface InspectReport {
  readonly certificates: readonly InspectedCertificate[];
  /** Chain verification against the given roots: 'verified', the reason it failed, or undefined without roots. */
  readonly chain: string | undefined;
  readonly chainVerified: boolean | undefined;
  /** Subject and fingerprint of the bundle root that signed the last certificate of the file, if any. */
  readonly anchor: { readonly subject: string; readonly fingerprint256: string } | undefined;
  readonly warnings: number;
}

const EKU_NAMES: Record<string, string> = { [EKU_SERVER_AUTH]: 'serverAuth', [EKU_CLIENT_AUTH]: 'clientAuth' };

function leafWarnings(f: CertificateFacts): string[] {
  const w: string[] = [];
  if (f.uris.length === 0) w.push('no URI SAN: an SVID carries its SPIFFE ID as exactly one URI SAN');
  else if (f.uris.length > 1) w.push(`${f.uris.length} URI SANs: an SVID has exactly one`);
  for (const uri of f.uris) {
    if (!uri.startsWith('spiffe://')) {
      w.push(`URI SAN ${uri} is not a SPIFFE ID`);
      continue;
    }
    try {
      parseSpiffeId(uri);
    } catch (err) {
      w.push((err as Error).message);
    }
  }
  if (f.isCA) w.push('basic constraints CA=true: an SVID must not be a CA certificate');
  if (f.keyUsage === undefined) w.push('no key usage extension: an SVID should state digitalSignature');
  else {
    if (!f.keyUsage.includes('digitalSignature')) w.push('key usage lacks digitalSignature');
    if (f.keyUsage.includes('keyCertSign') || f.keyUsage.includes('crlSign')) w.push('key usage allows keyCertSign/cRLSign: an SVID must not sign certificates');
  }
  if (f.extKeyUsage !== undefined) {
    if (!f.extKeyUsage.includes(EKU_SERVER_AUTH)) w.push('extended key usage lacks serverAuth: it cannot serve mTLS');
    if (!f.extKeyUsage.includes(EKU_CLIENT_AUTH)) w.push('extended key usage lacks clientAuth: it cannot dial over mTLS');
  }
  if (f.subject === '' && f.uris.length > 0 && !f.sanCritical) w.push('the subject is empty but the SAN extension is not critical (RFC 5280 §4.2.1.6)');
  if (f.notAfter.getTime() - f.notBefore.getTime() > DEFAULT_MAX_WORKLOAD_TTL_MS + 300_000) w.push(`lifetime of ${Math.round((f.notAfter.getTime() - f.notBefore.getTime()) / 86_400_000)} days: workload certificates should be short-lived (Istio caps them at 90 days)`);
  return w;
}

function commonWarnings(f: CertificateFacts, now: number): string[] {
  const w: string[] = [];
  if (now > f.notAfter.getTime()) w.push(`expired at ${f.notAfter.toISOString()}`);
  else if (now < f.notBefore.getTime()) w.push(`not valid before ${f.notBefore.toISOString()}`);
  if (f.publicKey.asymmetricKeyType === 'rsa' && (f.publicKey.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) w.push(`weak key (${f.keyDescription})`);
  if (f.unknownCritical.length > 0) w.push(`unknown critical extension(s) ${f.unknownCritical.join(', ')}: TLS peers will reject it`);
  return w;
}

/** Inspects the certificates of one file (leaf first, as cert-chain.pem orders them). */
export function inspectCertificates(certs: readonly X509Certificate[], bundle: TrustBundle | undefined, now = Date.now()): InspectReport {
  const facts = certs.map((c) => certificateFacts(c));
  const out: InspectedCertificate[] = facts.map((f, i) => {
    const role = !f.isCA && i === 0 ? 'leaf' : f.isCA && f.selfIssued ? 'root' : 'intermediate';
    const signer = f.selfIssued && issuedBy(certs[i]!, certs[i]!) ? 'self' : certs.findIndex((c, j) => j !== i && issuedBy(certs[i]!, c));
    const signedBy: InspectedCertificate['signedBy'] =
      signer === 'self' ? 'self' : signer >= 0 ? signer : bundle?.roots.some((r) => issuedBy(certs[i]!, r)) === true ? 'bundle' : undefined;
    const warnings = [...(role === 'leaf' ? leafWarnings(f) : []), ...commonWarnings(f, now)];
    if (role !== 'leaf' && !f.isCA) warnings.push('a certificate above the leaf is not a CA');
    if (role !== 'leaf' && f.keyUsage !== undefined && !f.keyUsage.includes('keyCertSign')) warnings.push('a CA certificate without keyCertSign cannot sign');
    if (i > 0 && !issuedBy(certs[i - 1]!, certs[i]!)) warnings.push(`did not sign certificate ${i} before it: the chain is out of order or broken`);
    return {
      role,
      spiffeId: f.uris.length === 1 && f.uris[0]!.startsWith('spiffe://') ? f.uris[0] : undefined,
      subject: f.subject,
      issuer: f.issuer,
      serial: f.serial,
      notBefore: f.notBefore.toISOString(),
      notAfter: f.notAfter.toISOString(),
      remainingMs: f.notAfter.getTime() - now,
      lifetimeMs: f.notAfter.getTime() - f.notBefore.getTime(),
      key: f.keyDescription,
      isCA: f.isCA,
      keyUsage: f.keyUsage,
      extKeyUsage: f.extKeyUsage?.map((o) => EKU_NAMES[o] ?? o),
      sans: [...f.uris.map((u) => `URI:${u}`), ...f.dnsNames.map((d) => `DNS:${d}`), ...f.ipAddresses.map((a) => `IP:${a}`), ...f.emails.map((e) => `email:${e}`), ...f.otherSans],
      fingerprint256: f.fingerprint256,
      signedBy,
      warnings,
    };
  });
  let chain: string | undefined;
  let chainVerified: boolean | undefined;
  if (bundle !== undefined && out[0]?.role === 'leaf') {
    try {
      verifySvid(certs, bundle, { role: 'client', now });
      chain = `verified: chains to a root of the bundle and is a valid SVID of trust domain ${bundle.trustDomain}`;
      chainVerified = true;
    } catch (err) {
      chain = err instanceof SvidError ? `rejected (${err.reason}): ${err.message}` : String(err);
      chainVerified = false;
    }
  }
  const last = certs[certs.length - 1];
  const root = last === undefined || out[out.length - 1]?.signedBy === 'self' ? undefined : bundle?.roots.find((r) => issuedBy(last, r));
  const anchor = root === undefined ? undefined : { subject: root.subject ?? '', fingerprint256: root.fingerprint256 };
  return { certificates: out, chain, chainVerified, anchor, warnings: out.reduce((n, c) => n + c.warnings.length, 0) + (chainVerified === false ? 1 : 0) };
}
