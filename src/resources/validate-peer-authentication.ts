import type { Reporter } from './report.ts';
import type { PeerAuthenticationSpec, ResourceMeta } from './types.ts';
import type { ValidationContext } from './validate-context.ts';

/** Istio's semantic checks for PeerAuthentication (pkg/config/validation). Reports through `r`; paths start at `spec`. */
export function validatePeerAuthentication(spec: PeerAuthenticationSpec, meta: ResourceMeta, r: Reporter, ctx: ValidationContext): void {
  void spec;
  void meta;
  void r;
  void ctx;
}
