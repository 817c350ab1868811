import { createPrivateKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { certificateFacts } from './certificate.ts';
import { parseSpiffeId, type SpiffeId } from './spiffe-id.ts';
import { CertificateError, certificatesFromPem, privateKeyPem } from './x509.ts';

/** A workload's X.509-SVID: its key and certificate chain (leaf first, then intermediates; the roots travel apart). */
export interface Svid {
  readonly spiffeId: SpiffeId;
  readonly privateKey: KeyObject;
  readonly keyPem: string;
  readonly chain: readonly X509Certificate[];
  /** The chain as PEM, leaf first: what `cert-chain.pem` holds and what TLS presents. */
  readonly chainPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** Whether the private key belongs to the certificate. */
export function keyMatchesCertificate(key: KeyObject, cert: X509Certificate): boolean {
  return cert.checkPrivateKey(key);
}

export function svidFromParts(privateKey: KeyObject, chain: readonly X509Certificate[]): Svid {
  const leaf = chain[0];
  if (leaf === undefined) throw new CertificateError('ERR_SVID_INVALID', 'the certificate chain is empty');
  const facts = certificateFacts(leaf);
  if (facts.uris.length !== 1) throw new CertificateError('ERR_SVID_INVALID', `an SVID has exactly one URI SAN; this certificate has ${facts.uris.length}`);
  if (!keyMatchesCertificate(privateKey, leaf)) throw new CertificateError('ERR_SVID_KEY_MISMATCH', 'the private key does not belong to the leaf certificate');
  return {
    spiffeId: parseSpiffeId(facts.uris[0]!),
    privateKey,
    keyPem: privateKeyPem(privateKey),
    chain,
    chainPem: chain.map((c) => c.toString()).join(''),
    notBefore: facts.notBefore,
    notAfter: facts.notAfter,
  };
}

/** Reads `key.pem` and `cert-chain.pem` contents. */
export function svidFromPem(keyPem: string, chainPem: string): Svid {
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new CertificateError('ERR_KEY_INVALID', `the private key cannot be read: ${(err as Error).message}`);
  }
  return svidFromParts(key, certificatesFromPem(chainPem, 'the certificate chain'));
}
