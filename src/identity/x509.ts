import { createHash, createPublicKey, generateKeyPair as generateKeyPairCb, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import * as asn from '@peculiar/asn1-x509';
import { Attributes, CertificationRequest, CertificationRequestInfo } from '@peculiar/asn1-csr';
import { RampartError } from '../errors.ts';

/**
 * X.509 building blocks over @peculiar/asn1-x509 (DER encoding) and node:crypto (keys, signatures, hashes).
 * Nothing here encodes ASN.1 by hand: the schema classes do, this module only chooses the values.
 */

import type { KeyType } from './key-types.ts';
export { KEY_TYPES, type KeyType } from './key-types.ts';

export interface KeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** Certificates, CSRs or keys that cannot be used; `code` says why. */
export class CertificateError extends RampartError {}

const generateKeyPairAsync = promisify(generateKeyPairCb);

export async function generateKeyPair(type: KeyType = 'ec-p256'): Promise<KeyPair> {
  switch (type) {
    case 'ec-p256':
      return generateKeyPairAsync('ec', { namedCurve: 'P-256' });
    case 'ec-p384':
      return generateKeyPairAsync('ec', { namedCurve: 'P-384' });
    case 'rsa-2048':
      return generateKeyPairAsync('rsa', { modulusLength: 2048 });
    case 'rsa-3072':
      return generateKeyPairAsync('rsa', { modulusLength: 3072 });
    case 'rsa-4096':
      return generateKeyPairAsync('rsa', { modulusLength: 4096 });
  }
}

export function privateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

// OIDs of the algorithms, name attributes and extended key usages used here.
const OID = {
  ecPublicKey: '1.2.840.10045.2.1',
  rsaEncryption: '1.2.840.113549.1.1.1',
  ecdsaSha256: '1.2.840.10045.4.3.2',
  ecdsaSha384: '1.2.840.10045.4.3.3',
  ecdsaSha512: '1.2.840.10045.4.3.4',
  rsaSha256: '1.2.840.113549.1.1.11',
  rsaSha384: '1.2.840.113549.1.1.12',
  rsaSha512: '1.2.840.113549.1.1.13',
  extensionRequest: '1.2.840.113549.1.9.14',
  organization: '2.5.4.10',
  commonName: '2.5.4.3',
} as const;

interface SignatureScheme {
  readonly oid: string;
  readonly hash: 'sha256' | 'sha384' | 'sha512';
  readonly keyType: 'ec' | 'rsa';
}

const SIGNATURE_SCHEMES: ReadonlyMap<string, SignatureScheme> = new Map<string, SignatureScheme>([
  [OID.ecdsaSha256, { oid: OID.ecdsaSha256, hash: 'sha256', keyType: 'ec' }],
  [OID.ecdsaSha384, { oid: OID.ecdsaSha384, hash: 'sha384', keyType: 'ec' }],
  [OID.ecdsaSha512, { oid: OID.ecdsaSha512, hash: 'sha512', keyType: 'ec' }],
  [OID.rsaSha256, { oid: OID.rsaSha256, hash: 'sha256', keyType: 'rsa' }],
  [OID.rsaSha384, { oid: OID.rsaSha384, hash: 'sha384', keyType: 'rsa' }],
  [OID.rsaSha512, { oid: OID.rsaSha512, hash: 'sha512', keyType: 'rsa' }],
]);

/** A signing key with the algorithm it signs with, fixed once (the key decides the algorithm, never the input). */
export interface Signer {
  readonly key: KeyObject;
  readonly publicKey: KeyObject;
  readonly scheme: SignatureScheme;
  readonly algorithm: asn.AlgorithmIdentifier;
}

export function signerFor(key: KeyObject): Signer {
  const type = key.asymmetricKeyType;
  let scheme: SignatureScheme | undefined;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    scheme = SIGNATURE_SCHEMES.get(curve === 'secp384r1' ? OID.ecdsaSha384 : curve === 'secp521r1' ? OID.ecdsaSha512 : OID.ecdsaSha256);
  } else if (type === 'rsa') {
    scheme = SIGNATURE_SCHEMES.get(OID.rsaSha256);
  }
  if (scheme === undefined) throw new CertificateError('ERR_KEY_UNSUPPORTED', `unsupported signing key type ${type ?? 'unknown'} (use ECDSA or RSA)`);
  // RSA signature algorithm identifiers carry an explicit NULL parameter; ECDSA ones carry none (RFC 5758, RFC 4055).
  const algorithm = new asn.AlgorithmIdentifier(scheme.keyType === 'rsa' ? { algorithm: scheme.oid, parameters: null } : { algorithm: scheme.oid });
  return { key, publicKey: createPublicKey(key), scheme, algorithm };
}

/** "ECDSA P-256", "RSA 2048"… */
export function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec') {
    const curve = d?.namedCurve;
    return `ECDSA ${curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : curve === 'secp521r1' ? 'P-521' : (curve ?? '?')}`;
  }
  if (key.asymmetricKeyType === 'rsa') return `RSA ${d?.modulusLength ?? '?'}`;
  return key.asymmetricKeyType?.toUpperCase() ?? 'unknown';
}

/** Workload keys Rampart accepts in CSRs: ECDSA P-256/P-384 or RSA of at least 2048 bits. */
export function checkWorkloadKey(key: KeyObject): void {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec' && (d?.namedCurve === 'prime256v1' || d?.namedCurve === 'secp384r1')) return;
  if (key.asymmetricKeyType === 'rsa' && (d?.modulusLength ?? 0) >= 2048) return;
  throw new CertificateError('ERR_CSR_KEY_WEAK', `the CSR's key (${describeKey(key)}) is not accepted; use ECDSA P-256/P-384 or RSA of 2048 bits or more`);
}

function toArrayBuffer(b: Uint8Array): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

export function spkiOf(publicKey: KeyObject): asn.SubjectPublicKeyInfo {
  return AsnConvert.parse(publicKey.export({ type: 'spki', format: 'der' }), asn.SubjectPublicKeyInfo);
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits, as Go's x509 and OpenSSL compute it. */
export function keyIdentifier(spki: asn.SubjectPublicKeyInfo): Buffer {
  return createHash('sha1').update(new Uint8Array(spki.subjectPublicKey)).digest();
}

export function extension(id: string, critical: boolean, value: object): asn.Extension {
  return new asn.Extension({ extnID: id, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

/** A Name of simple attributes, in order; e.g. [['O', 'cluster.local']]. */
export function buildName(attrs: ReadonlyArray<readonly ['O' | 'CN', string]>): asn.Name {
  return new asn.Name(
    attrs.map(
      ([k, v]) =>
        new asn.RelativeDistinguishedName([
          new asn.AttributeTypeAndValue({ type: k === 'O' ? OID.organization : OID.commonName, value: new asn.AttributeValue({ utf8String: v }) }),
        ]),
    ),
  );
}

/** 128 random bits as a positive DER INTEGER (Istio's genSerialNum draws from [0, 2^128)). */
export function randomSerial(random: (n: number) => Buffer): ArrayBuffer {
  const bytes = random(16);
  // A leading zero byte keeps the INTEGER positive without dropping entropy; leading zeros beyond one are not DER.
  const serial = bytes[0]! >= 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes;
  let start = 0;
  while (start < serial.length - 1 && serial[start] === 0 && serial[start + 1]! < 0x80) start++;
  return toArrayBuffer(serial.subarray(start));
}

export interface TbsInput {
  readonly serial: ArrayBuffer;
  readonly issuer: asn.Name;
  readonly subject: asn.Name;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spki: asn.SubjectPublicKeyInfo;
  readonly extensions: readonly asn.Extension[];
}

/** Encodes and signs a certificate; returns its DER. */
export function signCertificate(input: TbsInput, signer: Signer): Buffer {
  const tbs = new asn.TBSCertificate({
    version: asn.Version.v3,
    serialNumber: input.serial,
    signature: signer.algorithm,
    issuer: input.issuer,
    validity: new asn.Validity({ notBefore: input.notBefore, notAfter: input.notAfter }),
    subject: input.subject,
    subjectPublicKeyInfo: input.spki,
    extensions: new asn.Extensions([...input.extensions]),
  });
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
  const signature = sign(signer.scheme.hash, tbsDer, signer.key);
  const cert = new asn.Certificate({ tbsCertificate: tbs, signatureAlgorithm: signer.algorithm, signatureValue: toArrayBuffer(signature) });
  return Buffer.from(AsnConvert.serialize(cert));
}

// ---- PEM ----

export interface PemBlock {
  readonly label: string;
  readonly der: Buffer;
}

export function toPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** Every PEM block in `text`, in order. Text between blocks (comments, `openssl x509 -text` output) is ignored. */
export function fromPem(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    const body = m[2]!.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw new CertificateError('ERR_PEM_INVALID', `the ${m[1]} PEM block is not valid base64`);
    out.push({ label: m[1]!, der: Buffer.from(body, 'base64') });
  }
  return out;
}

/** The certificates of a PEM bundle, in order; an error when there is none or a block is not a certificate. */
export function certificatesFromPem(text: string, what: string): X509Certificate[] {
  const blocks = fromPem(text).filter((b) => b.label === 'CERTIFICATE');
  if (blocks.length === 0) throw new CertificateError('ERR_PEM_NO_CERTIFICATE', `${what} holds no PEM certificate`);
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b.der);
    } catch (err) {
      throw new CertificateError('ERR_CERTIFICATE_INVALID', `${what}: certificate #${i + 1} cannot be parsed (${(err as Error).message})`);
    }
  });
}

// ---- CSRs ----

export interface ParsedCsr {
  readonly publicKey: KeyObject;
  readonly spki: asn.SubjectPublicKeyInfo;
  /** URIs the CSR asks for in its subjectAltName extension request. */
  readonly requestedUris: readonly string[];
}

/** Parses a PEM or DER CSR and checks its self-signature with the algorithm its own key implies. */
export function parseCsr(input: string | Uint8Array): ParsedCsr {
  let der: Uint8Array;
  if (typeof input === 'string') {
    const block = fromPem(input).find((b) => b.label === 'CERTIFICATE REQUEST' || b.label === 'NEW CERTIFICATE REQUEST');
    if (block === undefined) throw new CertificateError('ERR_CSR_INVALID', 'no PEM "CERTIFICATE REQUEST" block found');
    der = block.der;
  } else {
    der = input;
  }
  let req: CertificationRequest;
  let publicKey: KeyObject;
  try {
    req = AsnConvert.parse(der, CertificationRequest);
    publicKey = createPublicKey({ key: Buffer.from(AsnConvert.serialize(req.certificationRequestInfo.subjectPKInfo)), format: 'der', type: 'spki' });
  } catch (err) {
    throw new CertificateError('ERR_CSR_INVALID', `the CSR cannot be parsed: ${(err as Error).message}`);
  }
  const scheme = SIGNATURE_SCHEMES.get(req.signatureAlgorithm.algorithm);
  if (scheme === undefined || scheme.keyType !== publicKey.asymmetricKeyType) {
    throw new CertificateError('ERR_CSR_SIGNATURE', `the CSR's signature algorithm ${req.signatureAlgorithm.algorithm} does not fit its ${describeKey(publicKey)} key`);
  }
  const raw = req.certificationRequestInfoRaw;
  if (raw === undefined || !verify(scheme.hash, new Uint8Array(raw), publicKey, new Uint8Array(req.signature))) {
    throw new CertificateError('ERR_CSR_SIGNATURE', "the CSR's signature does not verify with its own key");
  }
  const requestedUris: string[] = [];
  for (const attr of req.certificationRequestInfo.attributes ?? []) {
    if (attr.type !== OID.extensionRequest) continue;
    for (const value of attr.values) {
      for (const ext of AsnConvert.parse(value, asn.Extensions)) {
        if (ext.extnID !== asn.id_ce_subjectAltName) continue;
        for (const name of AsnConvert.parse(ext.extnValue, asn.SubjectAlternativeName)) {
          if (name.uniformResourceIdentifier !== undefined) requestedUris.push(name.uniformResourceIdentifier);
        }
      }
    }
  }
  return { publicKey, spki: req.certificationRequestInfo.subjectPKInfo, requestedUris };
}

/** A CSR for `uri` signed by `keys` (PEM). The subject is empty, as Istio's agent sends it. */
export function createCsr(keys: KeyPair, uri: string): string {
  const signer = signerFor(keys.privateKey);
  const san = new asn.Extensions([extension(asn.id_ce_subjectAltName, true, new asn.SubjectAlternativeName([new asn.GeneralName({ uniformResourceIdentifier: uri })]))]);
  const attr = new asn.Attribute({ type: OID.extensionRequest, values: [AsnConvert.serialize(san)] });
  const info = new CertificationRequestInfo({ subject: new asn.Name(), subjectPKInfo: spkiOf(keys.publicKey), attributes: new Attributes([attr]) });
  const signature = sign(signer.scheme.hash, Buffer.from(AsnConvert.serialize(info)), signer.key);
  const req = new CertificationRequest({ certificationRequestInfo: info, signatureAlgorithm: signer.algorithm, signature: toArrayBuffer(signature) });
  return toPem('CERTIFICATE REQUEST', Buffer.from(AsnConvert.serialize(req)));
}
