import { X509Certificate, type KeyObject } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import * as asn from '@peculiar/asn1-x509';
import { CertificateError, describeKey } from './x509.ts';

/**
 * What a certificate says, read once: Node's X509Certificate for the basics and the signature, asn1-x509 for the
 * extensions Node reports loosely (key usage bits, basic constraints, every SAN kind, criticality).
 */

export type KeyUsageName = asn.KeyUsageType;

export const EKU_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
export const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

export interface CertificateFacts {
  readonly x509: X509Certificate;
  readonly der: Buffer;
  readonly subject: string;
  readonly issuer: string;
  /** Upper-case hex without separators. */
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Basic constraints cA; false when the extension is absent. */
  readonly isCA: boolean;
  readonly pathLen: number | undefined;
  /** Key usage bits; undefined when the extension is absent. */
  readonly keyUsage: readonly KeyUsageName[] | undefined;
  /** Extended key usage OIDs; undefined when the extension is absent. */
  readonly extKeyUsage: readonly string[] | undefined;
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly emails: readonly string[];
  /** SAN entries of other kinds (directory names, other names…), described. */
  readonly otherSans: readonly string[];
  readonly sanCritical: boolean;
  readonly subjectKeyId: string | undefined;
  readonly authorityKeyId: string | undefined;
  readonly publicKey: KeyObject;
  readonly keyDescription: string;
  /** SHA-256 of the DER, colon-separated upper-case hex (as openssl prints it). */
  readonly fingerprint256: string;
  readonly selfIssued: boolean;
  /** Extension OIDs marked critical that Rampart does not understand. */
  readonly unknownCritical: readonly string[];
}

const KNOWN_EXTENSIONS = new Set<string>([
  asn.id_ce_basicConstraints,
  asn.id_ce_keyUsage,
  asn.id_ce_extKeyUsage,
  asn.id_ce_subjectAltName,
  asn.id_ce_subjectKeyIdentifier,
  asn.id_ce_authorityKeyIdentifier,
  asn.id_ce_nameConstraints,
  asn.id_ce_certificatePolicies,
]);

const KEY_USAGE_ORDER: readonly KeyUsageName[] = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'crlSign',
  'encipherOnly',
  'decipherOnly',
];

function hex(b: ArrayBuffer): string {
  return Buffer.from(b).toString('hex').toUpperCase();
}

const cache = new WeakMap<X509Certificate, CertificateFacts>();

/** Reads a certificate (DER bytes or a parsed X509Certificate). */
export function certificateFacts(input: Uint8Array | X509Certificate): CertificateFacts {
  const x509 = input instanceof X509Certificate ? input : new X509Certificate(input);
  const hit = cache.get(x509);
  if (hit !== undefined) return hit;
  const der = x509.raw;
  let cert: asn.Certificate;
  try {
    cert = AsnConvert.parse(der, asn.Certificate);
  } catch (err) {
    throw new CertificateError('ERR_CERTIFICATE_INVALID', `certificate cannot be parsed: ${(err as Error).message}`);
  }
  let isCA = false;
  let pathLen: number | undefined;
  let keyUsage: KeyUsageName[] | undefined;
  let extKeyUsage: string[] | undefined;
  const uris: string[] = [];
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  const emails: string[] = [];
  const otherSans: string[] = [];
  let sanCritical = false;
  let subjectKeyId: string | undefined;
  let authorityKeyId: string | undefined;
  const unknownCritical: string[] = [];
  for (const ext of cert.tbsCertificate.extensions ?? []) {
    const value = ext.extnValue.buffer;
    switch (ext.extnID) {
      case asn.id_ce_basicConstraints: {
        const bc = AsnConvert.parse(value, asn.BasicConstraints);
        isCA = bc.cA;
        pathLen = bc.pathLenConstraint;
        break;
      }
      case asn.id_ce_keyUsage: {
        const bits = AsnConvert.parse(value, asn.KeyUsage).toNumber();
        keyUsage = KEY_USAGE_ORDER.filter((_, i) => (bits & (1 << i)) !== 0);
        break;
      }
      case asn.id_ce_extKeyUsage:
        extKeyUsage = [...AsnConvert.parse(value, asn.ExtendedKeyUsage)];
        break;
      case asn.id_ce_subjectAltName:
        sanCritical = ext.critical;
        for (const name of AsnConvert.parse(value, asn.SubjectAlternativeName)) {
          if (name.uniformResourceIdentifier !== undefined) uris.push(name.uniformResourceIdentifier);
          else if (name.dNSName !== undefined) dnsNames.push(name.dNSName);
          else if (name.iPAddress !== undefined) ipAddresses.push(name.iPAddress);
          else if (name.rfc822Name !== undefined) emails.push(name.rfc822Name);
          else if (name.otherName !== undefined) otherSans.push(`otherName ${name.otherName.typeId}`);
          else if (name.directoryName !== undefined) otherSans.push('directoryName');
          else if (name.registeredID !== undefined) otherSans.push(`registeredID ${name.registeredID}`);
          else otherSans.push('unsupported name form');
        }
        break;
      case asn.id_ce_subjectKeyIdentifier:
        subjectKeyId = hex(AsnConvert.parse(value, asn.SubjectKeyIdentifier).buffer);
        break;
      case asn.id_ce_authorityKeyIdentifier: {
        const id = AsnConvert.parse(value, asn.AuthorityKeyIdentifier).keyIdentifier;
        if (id !== undefined) authorityKeyId = hex(id.buffer);
        break;
      }
      default:
        if (ext.critical && !KNOWN_EXTENSIONS.has(ext.extnID)) unknownCritical.push(ext.extnID);
    }
  }
  const facts: CertificateFacts = {
    x509,
    der,
    subject: x509.subject ?? '',
    issuer: x509.issuer ?? '',
    serial: x509.serialNumber.toUpperCase(),
    notBefore: cert.tbsCertificate.validity.notBefore.getTime(),
    notAfter: cert.tbsCertificate.validity.notAfter.getTime(),
    isCA,
    pathLen,
    keyUsage,
    extKeyUsage,
    uris,
    dnsNames,
    ipAddresses,
    emails,
    otherSans,
    sanCritical,
    subjectKeyId,
    authorityKeyId,
    publicKey: x509.publicKey,
    keyDescription: describeKey(x509.publicKey),
    fingerprint256: x509.fingerprint256,
    selfIssued: Buffer.compare(Buffer.from(AsnConvert.serialize(cert.tbsCertificate.subject)), Buffer.from(AsnConvert.serialize(cert.tbsCertificate.issuer))) === 0,
    unknownCritical,
  };
  cache.set(x509, facts);
  return facts;
}

/** Whether `issuer` signed `cert` (names chain and the signature verifies). */
export function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}
