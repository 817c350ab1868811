import { randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import * as asn from '@peculiar/asn1-x509';
import { CertificateAuthority, createSelfSignedCa, type CaMaterial } from '../../src/identity/ca.ts';
import { istioSpiffeId, parseSpiffeId } from '../../src/identity/spiffe-id.ts';
import { svidFromParts, type Svid } from '../../src/identity/svid.ts';
import {
  buildName,
  certificatesFromPem,
  createCsr,
  extension,
  generateKeyPair,
  keyIdentifier,
  privateKeyPem,
  randomSerial,
  signCertificate,
  signerFor,
  spkiOf,
  toPem,
  type KeyType,
} from '../../src/identity/x509.ts';

/**
 * Certificates for identity tests: SVIDs the real CA issues, and leaves it would never issue (forgeLeaf), signed
 * with a CA's material directly so that every field can be wrong on purpose.
 */

/** What a TLS endpoint presents: a private key and a chain, leaf first (an Svid has both). */
export interface Credentials {
  readonly keyPem: string;
  readonly chainPem: string;
}

/** A CA with a new self-signed ECDSA root. */
export async function newCa(trustDomain = 'cluster.local', options: { readonly aliases?: readonly string[] } = {}): Promise<CertificateAuthority> {
  const material = await createSelfSignedCa({ trustDomain });
  return new CertificateAuthority(material, { trustDomain, ...(options.aliases === undefined ? {} : { trustDomainAliases: options.aliases }) });
}

export interface IssueOptions {
  readonly keyType?: KeyType;
  readonly ttlMs?: number;
}

/** An SVID for spiffe://<ca trust domain>/ns/<ns>/sa/<sa>, through the CA's real issue path (key, CSR, issue). */
export async function issueSvid(ca: CertificateAuthority, ns: string, sa: string, opts: IssueOptions = {}): Promise<Svid> {
  const keys = await generateKeyPair(opts.keyType ?? 'ec-p256');
  const id = istioSpiffeId(ca.trustDomain, ns, sa);
  const issued = ca.issue({ csr: createCsr(keys, id.uri), ...(opts.ttlMs === undefined ? {} : { ttlMs: opts.ttlMs }) }, id);
  return svidFromParts(keys.privateKey, certificatesFromPem(issued.chainPem, 'the issued chain'));
}

export interface ForgeOptions {
  /** The CA material whose signingCert names the issuer and whose signingKey signs. */
  readonly issuer: CaMaterial;
  /** URI SANs, in order; default one Istio SPIFFE ID in cluster.local. */
  readonly uris?: readonly string[];
  /** DNS SANs, after the URIs. With neither URIs nor DNS names the SAN extension is left out. */
  readonly dnsNames?: readonly string[];
  /** Subject; empty by default (as Istio issues), which makes the SAN critical. */
  readonly subject?: ReadonlyArray<readonly ['O' | 'CN', string]>;
  /** Basic constraints cA; default false. null leaves basic constraints out. */
  readonly isCA?: boolean | null;
  /** Key usage bits (asn.KeyUsageFlags); default digitalSignature. null leaves the extension out. */
  readonly keyUsage?: number | null;
  /** Extended key usage OIDs; default serverAuth + clientAuth. null leaves the extension out. */
  readonly extKeyUsage?: readonly string[] | null;
  /** Default two minutes ago. */
  readonly notBefore?: Date;
  /** Default one hour from now. */
  readonly notAfter?: Date;
  readonly keyType?: KeyType;
  /** Signs with this key instead of issuer.signingKey (the issuer name stays the issuer's): a bad signature. */
  readonly signWith?: KeyObject;
  /** Extensions added after the others (e.g. an unknown critical one; build them with x509's `extension`). */
  readonly extraExtensions?: readonly asn.Extension[];
  /** Certificates presented after the leaf; default the issuer's signing certificate and intermediates unless it is a root. */
  readonly chainTail?: readonly X509Certificate[];
}

export interface ForgedLeaf extends Credentials {
  readonly privateKey: KeyObject;
  readonly certificate: X509Certificate;
  /** Leaf first, as presented. */
  readonly chain: readonly X509Certificate[];
  /** The leaf as an Svid when svidFromParts accepts it (exactly one URI SAN that parses as a SPIFFE ID). */
  readonly svid: Svid | undefined;
}

const MINUTE = 60_000;

/** A leaf certificate the real CA would never issue. Every extension is chosen by `options`; nothing is checked. */
export async function forgeLeaf(options: ForgeOptions): Promise<ForgedLeaf> {
  const keys = await generateKeyPair(options.keyType ?? 'ec-p256');
  const now = Date.now();
  const issuerCert = AsnConvert.parse(options.issuer.signingCert.raw, asn.Certificate);
  const uris = options.uris ?? [istioSpiffeId('cluster.local', 'default', 'forged').uri];
  const dnsNames = options.dnsNames ?? [];
  const subject = buildName(options.subject ?? []);
  const extensions: asn.Extension[] = [];
  const isCA = options.isCA === undefined ? false : options.isCA;
  if (isCA !== null) extensions.push(extension(asn.id_ce_basicConstraints, true, new asn.BasicConstraints({ cA: isCA })));
  const keyUsage = options.keyUsage === undefined ? asn.KeyUsageFlags.digitalSignature : options.keyUsage;
  if (keyUsage !== null) extensions.push(extension(asn.id_ce_keyUsage, true, new asn.KeyUsage(keyUsage)));
  const eku = options.extKeyUsage === undefined ? [asn.id_kp_serverAuth, asn.id_kp_clientAuth] : options.extKeyUsage;
  if (eku !== null) extensions.push(extension(asn.id_ce_extKeyUsage, false, new asn.ExtendedKeyUsage([...eku])));
  const issuerSki = issuerSubjectKeyId(options.issuer.signingCert);
  extensions.push(extension(asn.id_ce_authorityKeyIdentifier, false, new asn.AuthorityKeyIdentifier({ keyIdentifier: new asn.KeyIdentifier(issuerSki) })));
  const names = [
    ...uris.map((u) => new asn.GeneralName({ uniformResourceIdentifier: u })),
    ...dnsNames.map((d) => new asn.GeneralName({ dNSName: d })),
  ];
  if (names.length > 0) {
    extensions.push(extension(asn.id_ce_subjectAltName, subject.length === 0, new asn.SubjectAlternativeName(names)));
  }
  extensions.push(...(options.extraExtensions ?? []));
  const der = signCertificate(
    {
      serial: randomSerial(randomBytes),
      issuer: issuerCert.tbsCertificate.subject,
      subject,
      notBefore: options.notBefore ?? new Date(now - 2 * MINUTE),
      notAfter: options.notAfter ?? new Date(now + 60 * MINUTE),
      spki: spkiOf(keys.publicKey),
      extensions,
    },
    signerFor(options.signWith ?? options.issuer.signingKey),
  );
  const certificate = new X509Certificate(der);
  const issuerIsRoot = options.issuer.roots.some((r) => r.fingerprint256 === options.issuer.signingCert.fingerprint256);
  const tail = options.chainTail ?? (issuerIsRoot ? [] : [options.issuer.signingCert, ...options.issuer.intermediates]);
  const chain = [certificate, ...tail];
  return {
    keyPem: privateKeyPem(keys.privateKey),
    chainPem: toPem('CERTIFICATE', der) + tail.map((c) => c.toString()).join(''),
    privateKey: keys.privateKey,
    certificate,
    chain,
    svid: asSvid(keys.privateKey, chain, uris),
  };
}

function asSvid(key: KeyObject, chain: readonly X509Certificate[], uris: readonly string[]): Svid | undefined {
  if (uris.length !== 1) return undefined;
  try {
    parseSpiffeId(uris[0]!);
  } catch {
    return undefined;
  }
  return svidFromParts(key, chain);
}

function issuerSubjectKeyId(cert: X509Certificate): Buffer {
  const parsed = AsnConvert.parse(cert.raw, asn.Certificate);
  const ext = parsed.tbsCertificate.extensions?.find((e) => e.extnID === asn.id_ce_subjectKeyIdentifier);
  if (ext !== undefined) return Buffer.from(AsnConvert.parse(ext.extnValue.buffer, asn.SubjectKeyIdentifier).buffer);
  return keyIdentifier(spkiOf(cert.publicKey));
}
