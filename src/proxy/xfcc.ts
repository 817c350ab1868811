import { createHash } from 'node:crypto';

/**
 * The `x-forwarded-client-cert` header an Istio sidecar sets on inbound mTLS requests (Envoy's
 * forward_client_cert_details with Hash, Subject and URI): `By=<own SPIFFE ID>;Hash=<SHA-256 of the peer's
 * certificate, hex>;Subject="";URI=<peer SPIFFE ID>`. Whatever a client sent under that name is dropped first:
 * the header is only ever what this sidecar saw on its own TLS connection.
 */
export function xfccValue(ownSpiffeId: string, peerCertDer: Uint8Array, peerSpiffeId: string, peerSubject = ''): string {
  const hash = createHash('sha256').update(peerCertDer).digest('hex');
  return `By=${ownSpiffeId};Hash=${hash};Subject="${peerSubject.replace(/["\\]/g, '\\$&')}";URI=${peerSpiffeId}`;
}
