export {
  parseSpiffeId, parseTrustDomain, formatSpiffeId, istioSpiffeId, parseIstioIdentity, toPrincipal, fromPrincipal, SpiffeIdError,
  type SpiffeId, type IstioIdentity, type SpiffeIdProblem,
} from './spiffe-id.ts';
export {
  CertificateAuthority, CaError, createSelfSignedCa, createIntermediateCa, caMaterialFromPem, caMaterialToPem, checkCaMaterial,
  DEFAULT_WORKLOAD_TTL_MS, DEFAULT_MAX_WORKLOAD_TTL_MS, DEFAULT_ROOT_TTL_MS, CLOCK_SKEW_GRACE_MS,
  type CaMaterial, type CaMaterialPem, type CaOptions, type CsrCredential, type IssueRequest, type IssuedSvid, type RootOptions,
} from './ca.ts';
export { BootstrapTokenError, DEFAULT_BOOTSTRAP_TTL_MS, MAX_BOOTSTRAP_TTL_MS } from './bootstrap-token.ts';
export { TrustBundle, normalizeFingerprint } from './trust-bundle.ts';
export { svidFromPem, svidFromParts, type Svid } from './svid.ts';
export { verifySvid, verifySvidLeaf, SvidError, type SvidRejection, type SvidRole, type IdentityExpectation, type VerifiedSvid, type VerifyOptions } from './svid-verify.ts';
export { serverTlsOptions, clientTlsOptions, verifyTlsPeer, peerChain, SESSION_TIMEOUT_SECONDS } from './tls.ts';
export {
  CertificateManager, CertificateManagerError, renewalTime,
  type CertificateEvent, type CertificateListener, type CertificateManagerOptions, type SvidRequester, type SvidResponse,
} from './cert-manager.ts';
export { certificateFacts, type CertificateFacts } from './certificate.ts';
export { inspectCertificates, type InspectReport, type InspectedCertificate } from './inspect.ts';
export { CertificateError, createCsr, generateKeyPair, parseCsr, privateKeyPem, KEY_TYPES, type KeyPair, type KeyType, type ParsedCsr } from './x509.ts';
