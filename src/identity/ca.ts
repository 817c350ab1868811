import { createPrivateKey, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import * as asn from '@peculiar/asn1-x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import { RampartError } from '../errors.ts';
import { signBootstrapToken, UsedTokenLedger, verifyBootstrapToken, DEFAULT_BOOTSTRAP_TTL_MS } from './bootstrap-token.ts';
import { certificateFacts, issuedBy } from './certificate.ts';
import { istioSpiffeId, parseTrustDomain, type IstioIdentity, type SpiffeId } from './spiffe-id.ts';
import { SvidError, verifySvid } from './svid-verify.ts';
import { TrustBundle } from './trust-bundle.ts';
import {
  buildName,
  certificatesFromPem,
  checkWorkloadKey,
  extension,
  generateKeyPair,
  keyIdentifier,
  parseCsr,
  randomSerial,
  signCertificate,
  signerFor,
  spkiOf,
  toPem,
  type KeyType,
  type Signer,
} from './x509.ts';

/**
 * The certificate authority: signs workload CSRs into X.509-SVIDs, the way istiod's CA does (empty subject, one
 * URI SAN, CA=false, digitalSignature (+keyEncipherment for RSA), server+client auth, 128-bit random serials,
 * notBefore two minutes in the past for clock skew, TTL 24 h by default and capped), with the encoding work that
 * does not change per certificate done once.
 */

export const DEFAULT_WORKLOAD_TTL_MS = 24 * 3_600_000;
/** Istio's MAX_WORKLOAD_CERT_TTL default. */
export const DEFAULT_MAX_WORKLOAD_TTL_MS = 90 * 24 * 3_600_000;
/** Istio's ClockSkewGracePeriod: issued certificates are valid from this long before their creation. */
export const CLOCK_SKEW_GRACE_MS = 2 * 60_000;
export const DEFAULT_ROOT_TTL_MS = 10 * 365 * 24 * 3_600_000;

export class CaError extends RampartError {}

/** `90d`, `36h`, `15m`, `42s`: the largest whole unit, for messages. */
function humanDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${Math.round(ms / 1000)}s`;
}

/** The CA's signing material, as Istio's `cacerts` names it. */
export interface CaMaterial {
  /** ca-cert.pem: the certificate that signs workload certificates (a root, or an intermediate under the user's root). */
  readonly signingCert: X509Certificate;
  /** ca-key.pem */
  readonly signingKey: KeyObject;
  /** Intermediates between the signing cert and its root (not the signing cert, not the root), nearest first. */
  readonly intermediates: readonly X509Certificate[];
  /** root-cert.pem: every root workloads must trust; one or more (several during a root rotation). */
  readonly roots: readonly X509Certificate[];
}

export interface CaMaterialPem {
  readonly caCertPem: string;
  readonly caKeyPem: string;
  /** cert-chain.pem; may repeat ca-cert and the root (Istio's plug-in layout) or be empty (a self-signed root). */
  readonly certChainPem?: string;
  /** root-cert.pem; empty means the signing cert is its own root. */
  readonly rootCertPem?: string;
}

/** Reads and checks plug-in or self-signed CA material: the key fits, the chain links up to a root of root-cert.pem. */
export function caMaterialFromPem(pem: CaMaterialPem, now = Date.now()): CaMaterial {
  const signingCert = certificatesFromPem(pem.caCertPem, 'ca-cert.pem')[0]!;
  let signingKey: KeyObject;
  try {
    signingKey = createPrivateKey(pem.caKeyPem);
  } catch (err) {
    throw new CaError('ERR_CA_KEY_INVALID', `ca-key.pem cannot be read: ${(err as Error).message}`);
  }
  const chain = pem.certChainPem !== undefined && pem.certChainPem.trim() !== '' ? certificatesFromPem(pem.certChainPem, 'cert-chain.pem') : [];
  const roots = pem.rootCertPem !== undefined && pem.rootCertPem.trim() !== '' ? certificatesFromPem(pem.rootCertPem, 'root-cert.pem') : [];
  if (roots.length === 0) {
    if (!certificateFacts(signingCert).selfIssued) throw new CaError('ERR_CA_CHAIN', 'root-cert.pem is empty but ca-cert.pem is not self-signed');
    roots.push(signingCert);
  }
  const rootPrints = new Set(roots.map((r) => r.fingerprint256));
  const intermediates = chain.filter((c) => c.fingerprint256 !== signingCert.fingerprint256 && !rootPrints.has(c.fingerprint256));
  return checkCaMaterial({ signingCert, signingKey, intermediates, roots }, now);
}

export function checkCaMaterial(m: CaMaterial, now = Date.now()): CaMaterial {
  const f = certificateFacts(m.signingCert);
  if (!f.isCA) throw new CaError('ERR_CA_NOT_CA', 'ca-cert.pem is not a CA certificate (basic constraints CA=false)');
  if (f.keyUsage !== undefined && !f.keyUsage.includes('keyCertSign')) throw new CaError('ERR_CA_NOT_CA', 'ca-cert.pem may not sign certificates (no keyCertSign)');
  if (!m.signingCert.checkPrivateKey(m.signingKey)) throw new CaError('ERR_CA_KEY_MISMATCH', 'ca-key.pem does not belong to ca-cert.pem');
  if (now > f.notAfter.getTime()) throw new CaError('ERR_CA_EXPIRED', `ca-cert.pem expired at ${f.notAfter.toISOString()}`);
  // Walk signing cert → intermediates → one of the roots.
  let current = m.signingCert;
  const pool = [...m.intermediates];
  for (let depth = 0; ; depth++) {
    if (m.roots.some((r) => r.fingerprint256 === current.fingerprint256 || issuedBy(current, r))) break;
    const next = pool.find((c) => issuedBy(current, c));
    if (next === undefined || depth > 8) {
      throw new CaError('ERR_CA_CHAIN', `ca-cert.pem (${f.subject.replaceAll('\n', ', ') || 'no subject'}) does not chain to a certificate in root-cert.pem through cert-chain.pem`);
    }
    current = next;
  }
  return m;
}

export interface RootOptions {
  readonly trustDomain: string;
  readonly keyType?: KeyType;
  readonly ttlMs?: number;
  /** Organization of the root's subject; the trust domain by default, as istiod names its self-signed root. */
  readonly organization?: string;
  readonly now?: number;
}

/** A self-signed root that signs workload certificates directly (what `rampart ca init` creates). */
export async function createSelfSignedCa(options: RootOptions): Promise<CaMaterial> {
  parseTrustDomain(options.trustDomain);
  const keys = await generateKeyPair(options.keyType ?? 'ec-p256');
  const now = options.now ?? Date.now();
  const name = buildName([['O', options.organization ?? options.trustDomain]]);
  const spki = spkiOf(keys.publicKey);
  const ski = keyIdentifier(spki);
  const der = signCertificate(
    {
      serial: randomSerial(randomBytes),
      issuer: name,
      subject: name,
      notBefore: new Date(now - CLOCK_SKEW_GRACE_MS),
      notAfter: new Date(now + (options.ttlMs ?? DEFAULT_ROOT_TTL_MS)),
      spki,
      extensions: [
        extension(asn.id_ce_basicConstraints, true, new asn.BasicConstraints({ cA: true })),
        extension(asn.id_ce_keyUsage, true, new asn.KeyUsage(asn.KeyUsageFlags.keyCertSign | asn.KeyUsageFlags.cRLSign | asn.KeyUsageFlags.digitalSignature)),
        extension(asn.id_ce_subjectKeyIdentifier, false, new asn.SubjectKeyIdentifier(ski)),
      ],
    },
    signerFor(keys.privateKey),
  );
  const cert = certificatesFromPem(toPem('CERTIFICATE', der), 'the new root')[0]!;
  return { signingCert: cert, signingKey: keys.privateKey, intermediates: [], roots: [cert] };
}

/** An intermediate CA under `parent` (for plug-in setups and tests of them). */
export async function createIntermediateCa(parent: CaMaterial, options: RootOptions & { readonly commonName?: string }): Promise<CaMaterial> {
  const keys = await generateKeyPair(options.keyType ?? 'ec-p256');
  const now = options.now ?? Date.now();
  const parentAsn = AsnConvert.parse(parent.signingCert.raw, asn.Certificate);
  const spki = spkiOf(keys.publicKey);
  const parentFacts = certificateFacts(parent.signingCert);
  const der = signCertificate(
    {
      serial: randomSerial(randomBytes),
      issuer: parentAsn.tbsCertificate.subject,
      subject: buildName([['O', options.organization ?? options.trustDomain], ['CN', options.commonName ?? 'Intermediate CA']]),
      notBefore: new Date(now - CLOCK_SKEW_GRACE_MS),
      notAfter: new Date(Math.min(now + (options.ttlMs ?? DEFAULT_ROOT_TTL_MS / 2), parentFacts.notAfter.getTime())),
      spki,
      extensions: [
        extension(asn.id_ce_basicConstraints, true, new asn.BasicConstraints({ cA: true })),
        extension(asn.id_ce_keyUsage, true, new asn.KeyUsage(asn.KeyUsageFlags.keyCertSign | asn.KeyUsageFlags.cRLSign | asn.KeyUsageFlags.digitalSignature)),
        extension(asn.id_ce_subjectKeyIdentifier, false, new asn.SubjectKeyIdentifier(keyIdentifier(spki))),
        extension(asn.id_ce_authorityKeyIdentifier, false, authorityKeyId(parent.signingCert)),
      ],
    },
    signerFor(parent.signingKey),
  );
  const cert = certificatesFromPem(toPem('CERTIFICATE', der), 'the new intermediate')[0]!;
  const parentIsRoot = parent.roots.some((r) => r.fingerprint256 === parent.signingCert.fingerprint256);
  return {
    signingCert: cert,
    signingKey: keys.privateKey,
    intermediates: parentIsRoot ? [...parent.intermediates] : [parent.signingCert, ...parent.intermediates],
    roots: parent.roots,
  };
}

function authorityKeyId(issuer: X509Certificate): asn.AuthorityKeyIdentifier {
  const facts = certificateFacts(issuer);
  const id = facts.subjectKeyId !== undefined ? Buffer.from(facts.subjectKeyId, 'hex') : keyIdentifier(spkiOf(issuer.publicKey));
  return new asn.AuthorityKeyIdentifier({ keyIdentifier: new asn.KeyIdentifier(id) });
}

/** PEM texts of CA material, in Istio's `cacerts` layout. */
export function caMaterialToPem(m: CaMaterial): Required<CaMaterialPem> {
  const rootsPem = m.roots.map((r) => r.toString()).join('');
  const signingIsRoot = m.roots.some((r) => r.fingerprint256 === m.signingCert.fingerprint256);
  const chain = signingIsRoot ? [m.signingCert] : [m.signingCert, ...m.intermediates, ...signerRoots(m)];
  return {
    caCertPem: m.signingCert.toString(),
    caKeyPem: m.signingKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    certChainPem: chain.map((c) => c.toString()).join(''),
    rootCertPem: rootsPem,
  };
}

/** The root(s) of root-cert.pem that anchor the signer's chain (the signer itself when it is a self-signed root). */
export function signerRoots(m: CaMaterial): X509Certificate[] {
  const top = m.intermediates.length > 0 ? m.intermediates[m.intermediates.length - 1]! : m.signingCert;
  return m.roots.filter((r) => issuedBy(top, r)).slice(0, 1);
}

/** How a CSR is authenticated. */
export type CsrCredential =
  /** Renewal: the SVID chain the workload presented in its mTLS handshake with the CA (leaf first). */
  | { readonly kind: 'svid'; readonly chain: readonly X509Certificate[] }
  /** First issue: a bootstrap token issued for one namespace/service account. */
  | { readonly kind: 'bootstrap-token'; readonly token: string };

export interface IssueRequest {
  readonly csr: string | Uint8Array;
  /** Requested lifetime; the CA default when absent. */
  readonly ttlMs?: number;
}

export interface IssuedSvid {
  readonly spiffeId: SpiffeId;
  readonly certificate: X509Certificate;
  /** Leaf first, then the intermediates up to (not including) the root: cert-chain.pem. */
  readonly chainPem: string;
  /** The trust bundle: root-cert.pem. */
  readonly rootsPem: string;
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface CaOptions {
  readonly trustDomain: string;
  /** Trust domains whose SVIDs may renew here besides the own (meshConfig.trustDomainAliases). */
  readonly trustDomainAliases?: readonly string[];
  readonly defaultTtlMs?: number;
  readonly maxTtlMs?: number;
  /** Clock (ms since the epoch); Date.now by default. */
  readonly now?: () => number;
  /** Used bootstrap token IDs (a persisted ledger); a fresh in-memory one by default. */
  readonly usedTokens?: UsedTokenLedger;
}

/** Per-signer values that are the same in every certificate it issues, encoded once. */
interface SigningState {
  readonly material: CaMaterial;
  readonly signer: Signer;
  readonly issuerName: asn.Name;
  readonly notBeforeFloor: number;
  readonly notAfterCeiling: number;
  readonly extensionsEc: readonly asn.Extension[];
  readonly extensionsRsa: readonly asn.Extension[];
  readonly chainTailPem: string;
  readonly bundle: TrustBundle;
}

const EMPTY_NAME = new asn.Name();

function signingState(material: CaMaterial, trustDomain: string, aliases: readonly string[]): SigningState {
  const cert = AsnConvert.parse(material.signingCert.raw, asn.Certificate);
  const chainCerts = [material.signingCert, ...material.intermediates];
  const allFacts = [...chainCerts, ...signerRoots(material)].map((c) => certificateFacts(c));
  const common = [
    extension(asn.id_ce_basicConstraints, true, new asn.BasicConstraints({ cA: false })),
    extension(asn.id_ce_extKeyUsage, false, new asn.ExtendedKeyUsage([asn.id_kp_serverAuth, asn.id_kp_clientAuth])),
    extension(asn.id_ce_authorityKeyIdentifier, false, authorityKeyId(material.signingCert)),
  ];
  const ku = (flags: number): asn.Extension => extension(asn.id_ce_keyUsage, true, new asn.KeyUsage(flags));
  const signingIsRoot = material.roots.some((r) => r.fingerprint256 === material.signingCert.fingerprint256);
  return {
    material,
    signer: signerFor(material.signingKey),
    issuerName: cert.tbsCertificate.subject,
    notBeforeFloor: Math.max(...allFacts.map((f) => f.notBefore.getTime())),
    notAfterCeiling: Math.min(...allFacts.map((f) => f.notAfter.getTime())),
    extensionsEc: [ku(asn.KeyUsageFlags.digitalSignature), ...common],
    extensionsRsa: [ku(asn.KeyUsageFlags.digitalSignature | asn.KeyUsageFlags.keyEncipherment), ...common],
    chainTailPem: (signingIsRoot ? [] : chainCerts).map((c) => c.toString()).join(''),
    bundle: new TrustBundle(trustDomain, material.roots, aliases),
  };
}

export class CertificateAuthority {
  readonly trustDomain: string;
  readonly defaultTtlMs: number;
  readonly maxTtlMs: number;
  readonly #aliases: readonly string[];
  readonly #now: () => number;
  #state: SigningState;
  /** Earlier signers, still honoured for bootstrap tokens they signed. */
  #previousSigners: Signer[] = [];
  readonly #usedTokens: UsedTokenLedger;

  constructor(material: CaMaterial, options: CaOptions) {
    this.trustDomain = parseTrustDomain(options.trustDomain);
    this.#aliases = options.trustDomainAliases ?? [];
    this.#now = options.now ?? Date.now;
    this.#usedTokens = options.usedTokens ?? new UsedTokenLedger();
    this.defaultTtlMs = options.defaultTtlMs ?? DEFAULT_WORKLOAD_TTL_MS;
    this.maxTtlMs = options.maxTtlMs ?? DEFAULT_MAX_WORKLOAD_TTL_MS;
    if (!(this.defaultTtlMs > 0) || this.defaultTtlMs > this.maxTtlMs) {
      throw new CaError('ERR_CA_TTL', 'the default workload certificate TTL must be positive and no longer than the maximum');
    }
    this.#state = signingState(checkCaMaterial(material, this.#now()), this.trustDomain, this.#aliases);
  }

  get material(): CaMaterial {
    return this.#state.material;
  }

  /** The roots workloads must trust (root-cert.pem), with the CA's trust domain and aliases. */
  get trustBundle(): TrustBundle {
    return this.#state.bundle;
  }

  /**
   * Replaces the signing material (a new signer, or the same signer with a changed set of roots). Certificates
   * issued before stay valid as long as some trusted root still anchors them.
   */
  setMaterial(material: CaMaterial): void {
    const next = signingState(checkCaMaterial(material, this.#now()), this.trustDomain, this.#aliases);
    if (next.material.signingCert.fingerprint256 !== this.#state.material.signingCert.fingerprint256) {
      this.#previousSigners = [this.#state.signer, ...this.#previousSigners].slice(0, 4);
    }
    this.#state = next;
  }

  /**
   * Signs `request.csr` for `identity`. The identity comes from the caller's authentication, never from the CSR:
   * a CSR that asks for a different URI is refused rather than silently rewritten.
   */
  issue(request: IssueRequest, identity: SpiffeId): IssuedSvid {
    const st = this.#state;
    const csr = parseCsr(request.csr);
    checkWorkloadKey(csr.publicKey);
    for (const uri of csr.requestedUris) {
      if (uri !== identity.uri) throw new CaError('ERR_CSR_IDENTITY', `the CSR asks for ${uri}, but the caller is authenticated as ${identity.uri}`);
    }
    if (identity.trustDomain !== this.trustDomain) {
      throw new CaError('ERR_CSR_IDENTITY', `${identity.uri} is not in this CA's trust domain "${this.trustDomain}"`);
    }
    const ttl = request.ttlMs === undefined || request.ttlMs <= 0 ? this.defaultTtlMs : request.ttlMs;
    if (ttl > this.maxTtlMs) {
      throw new CaError('ERR_CSR_TTL', `the requested TTL (${humanDuration(ttl)}) is longer than the maximum (${humanDuration(this.maxTtlMs)})`);
    }
    const now = this.#now();
    if (now >= st.notAfterCeiling) throw new CaError('ERR_CA_EXPIRED', 'the signing certificate (or a certificate above it) has expired');
    const notBefore = Math.max(now - CLOCK_SKEW_GRACE_MS, st.notBeforeFloor);
    const notAfter = Math.min(now + ttl, st.notAfterCeiling);
    const serial = randomSerial(randomBytes);
    const der = signCertificate(
      {
        serial,
        issuer: st.issuerName,
        subject: EMPTY_NAME,
        notBefore: new Date(notBefore),
        notAfter: new Date(notAfter),
        spki: csr.spki,
        extensions: [
          ...(csr.publicKey.asymmetricKeyType === 'rsa' ? st.extensionsRsa : st.extensionsEc),
          // The subject is empty, so the SAN is critical (RFC 5280 §4.2.1.6).
          extension(asn.id_ce_subjectAltName, true, new asn.SubjectAlternativeName([new asn.GeneralName({ uniformResourceIdentifier: identity.uri })])),
        ],
      },
      st.signer,
    );
    const leafPem = toPem('CERTIFICATE', der);
    // Parsing the new certificate back costs a tenth of an issue; callers that only forward the PEM never need it.
    let certificate: X509Certificate | undefined;
    // Whole seconds: X.509 times carry no milliseconds.
    return {
      spiffeId: identity,
      get certificate(): X509Certificate {
        certificate ??= new X509Certificate(der);
        return certificate;
      },
      chainPem: leafPem + st.chainTailPem,
      rootsPem: st.bundle.pem,
      // As OpenSSL prints serials: upper-case hex without the sign byte.
      serial: Buffer.from(serial).toString('hex').toUpperCase().replace(/^00(?=[0-9A-F]{2})/, ''),
      notBefore: new Date(Math.floor(notBefore / 1000) * 1000),
      notAfter: new Date(Math.floor(notAfter / 1000) * 1000),
    };
  }

  /** Authenticates the caller, then issues for the authenticated identity. */
  async signCsr(request: IssueRequest, credential: CsrCredential): Promise<IssuedSvid> {
    const identity = await this.authenticate(credential);
    return this.issue(request, identity);
  }

  /** The identity a credential proves; throws a typed error when it proves none. */
  async authenticate(credential: CsrCredential): Promise<SpiffeId> {
    const now = this.#now();
    if (credential.kind === 'svid') {
      try {
        return verifySvid(credential.chain, this.#state.bundle, { role: 'client', now }).spiffeId;
      } catch (err) {
        if (err instanceof SvidError) throw new CaError('ERR_CSR_UNAUTHENTICATED', `renewal refused: ${err.message}`, { cause: err });
        throw err;
      }
    }
    const token = await verifyBootstrapToken(credential.token, [this.#state.signer, ...this.#previousSigners], now);
    if (!this.#usedTokens.consume(token.jti, token.expiresAtMs, now)) {
      throw new CaError('ERR_CSR_UNAUTHENTICATED', 'this bootstrap token was already used');
    }
    return token.identity;
  }

  /** A bootstrap token for one namespace/service account (what `rampart ca token` prints). */
  async bootstrapToken(namespace: string, serviceAccount: string, ttlMs = DEFAULT_BOOTSTRAP_TTL_MS): Promise<string> {
    const identity: IstioIdentity = istioSpiffeId(this.trustDomain, namespace, serviceAccount);
    return signBootstrapToken(this.#state.signer, identity, ttlMs, this.#now());
  }
}

