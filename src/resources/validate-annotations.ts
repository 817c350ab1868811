import type { Reporter } from './report.ts';
import type { AuthorizationAction, Kind, ResourceMeta } from './types.ts';

/**
 * istiod's metadata checks that run before every kind's own validation (validateMetadata and
 * checkDryRunAnnotation in pkg/config/validation/validation.go).
 */

export const DRY_RUN_ANNOTATION = 'istio.io/dry-run';

/** Annotations istiod reserves for its own generated objects or for testing its webhook; users may not set them. */
const RESERVED_ANNOTATIONS = [
  'internal.istio.io/webhook-always-reject',
  'internal.istio.io/parent-namespace',
  'internal.istio.io/parents',
] as const;

/** The spellings Go's strconv.ParseBool accepts, which is how istiod reads the dry-run annotation. */
const GO_BOOLEANS = ['1', 't', 'T', 'TRUE', 'true', 'True', '0', 'f', 'F', 'FALSE', 'false', 'False'];

/** Parses a boolean the way Go's strconv.ParseBool does; `undefined` when it would fail. */
export function parseGoBool(text: string): boolean | undefined {
  if (!GO_BOOLEANS.includes(text)) return undefined;
  return ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(text);
}

export function validateIstioAnnotations(r: Reporter, meta: ResourceMeta, kind: Kind, action?: AuthorizationAction): void {
  const annotations = meta.annotations;
  const dryRun = annotations[DRY_RUN_ANNOTATION];
  if (dryRun !== undefined) {
    const at = ['metadata', 'annotations', DRY_RUN_ANNOTATION];
    if (kind !== 'AuthorizationPolicy') {
      r.error(at, 'ERR_DRY_RUN_UNSUPPORTED', `the ${DRY_RUN_ANNOTATION} annotation is only supported on AuthorizationPolicy; remove it from this ${kind}`);
    } else if (action !== 'ALLOW' && action !== 'DENY') {
      // Validation rejects it; if it got in anyway, a dry-run CUSTOM policy would still call the ext-authz provider.
      r.error(at, 'ERR_DRY_RUN_ACTION', `the ${DRY_RUN_ANNOTATION} annotation is only supported with action ALLOW or DENY, not ${action ?? 'ALLOW'}`);
    } else if (parseGoBool(dryRun) === undefined) {
      r.error(at, 'ERR_DRY_RUN_VALUE', `the ${DRY_RUN_ANNOTATION} annotation must be a boolean such as "true" or "false", got "${dryRun}"`);
    }
  }
  for (const name of RESERVED_ANNOTATIONS) {
    if (annotations[name] !== undefined) {
      r.error(['metadata', 'annotations', name], 'ERR_ANNOTATION_RESERVED', `the ${name} annotation is reserved for Istio's internal use and may not be set`);
    }
  }
}
