import type { PathSegment } from './diagnostic.ts';
import type { Reporter } from './report.ts';
import type { PolicyTargetReference, WorkloadSelector } from './types.ts';

/**
 * Checks shared by the three security kinds: `selector`, `targetRef`/`targetRefs` and the rule that at most one of
 * them is set. Reproduces istiod's validateWorkloadSelector, validatePolicyTargetReference(s) and
 * validateOneOfSelectorType (pkg/config/validation/validation.go) plus the CRD schema limits that the API server
 * enforces before istiod sees the object (istio/api type/v1beta1/selector.proto, security/v1beta1/*.proto).
 */

type Path = readonly PathSegment[];

/** CRD: `matchLabels` values are limited to 63 characters (the Kubernetes label value limit). */
const MAX_LABEL_VALUE_LENGTH = 63;
/** CRD: `matchLabels` has at most 4096 entries. */
const MAX_LABELS = 4096;
/** CRD: `targetRefs` has at most 16 entries. */
const MAX_TARGET_REFS = 16;
/** CRD: `targetRef.name` is at most 253 characters. */
const MAX_TARGET_NAME_LENGTH = 253;

/** The (group, kind) pairs istiod accepts in a targetRef. An empty group means the core group. */
const ALLOWED_TARGET_KINDS: readonly { readonly group: string; readonly kind: string }[] = [
  { group: 'core', kind: 'Service' },
  { group: 'networking.istio.io', kind: 'ServiceEntry' },
  { group: 'gateway.networking.k8s.io', kind: 'Gateway' },
  { group: 'gateway.networking.k8s.io', kind: 'GatewayClass' },
];

const ALLOWED_TARGET_TEXT = 'Service, networking.istio.io/ServiceEntry, gateway.networking.k8s.io/Gateway or gateway.networking.k8s.io/GatewayClass';

/** Validates `selector.matchLabels`; warns when a selector is present but selects on no label. */
export function validateWorkloadSelector(r: Reporter, selector: WorkloadSelector | undefined, path: Path): void {
  if (selector === undefined) return;
  const labels = selector.matchLabels ?? {};
  const entries = Object.entries(labels);
  const labelsPath = [...path, 'matchLabels'];
  for (const [key, value] of entries) {
    const at = [...labelsPath, key];
    if (key === '') {
      r.error(at, 'ERR_SELECTOR_LABEL_KEY_EMPTY', 'a selector label key must not be empty');
    } else if (key.includes('*')) {
      r.error(at, 'ERR_SELECTOR_WILDCARD', `selector label key "${key}" contains "*"; selectors match labels exactly and wildcards are not supported`);
    }
    if (value.includes('*')) {
      r.error(at, 'ERR_SELECTOR_WILDCARD', `selector label value "${value}" contains "*"; selectors match labels exactly and wildcards are not supported`);
    }
    if (value.length > MAX_LABEL_VALUE_LENGTH) {
      r.error(at, 'ERR_SELECTOR_LABEL_VALUE_TOO_LONG', `selector label value is ${value.length} characters long; at most ${MAX_LABEL_VALUE_LENGTH} are allowed`);
    }
  }
  if (entries.length > MAX_LABELS) {
    r.error(labelsPath, 'ERR_SELECTOR_TOO_MANY_LABELS', `selector has ${entries.length} labels; at most ${MAX_LABELS} are allowed`);
  }
  if (entries.length === 0) {
    r.warn(path, 'WARN_SELECTOR_NO_LABELS', 'selector has no labels, so it selects every workload in its scope; remove it or add matchLabels');
  }
}

/** Validates one `targetRef` (or one `targetRefs` entry). */
export function validateTargetReference(r: Reporter, ref: PolicyTargetReference, path: Path): void {
  if (ref.name === '') {
    r.error([...path, 'name'], 'ERR_TARGET_REF_NAME_EMPTY', 'targetRef name must be set');
  } else if (ref.name.length > MAX_TARGET_NAME_LENGTH) {
    r.error([...path, 'name'], 'ERR_TARGET_REF_NAME_TOO_LONG', `targetRef name is ${ref.name.length} characters long; at most ${MAX_TARGET_NAME_LENGTH} are allowed`);
  }
  if (ref.namespace !== undefined && ref.namespace !== '') {
    r.error([...path, 'namespace'], 'ERR_TARGET_REF_NAMESPACE', 'targetRef namespace must not be set: cross-namespace references are not supported, the target is always in the policy\'s namespace');
  }
  const group = ref.group === undefined || ref.group === '' ? 'core' : ref.group;
  const allowed = ALLOWED_TARGET_KINDS.some((t) => t.group === group && t.kind === ref.kind);
  if (!allowed) {
    const written = `${ref.group ?? ''}/${ref.kind}`;
    const at = ref.kind === '' ? path : [...path, 'kind'];
    r.error(at, 'ERR_TARGET_REF_KIND', `targetRef "${written}" is not supported; the target must be a ${ALLOWED_TARGET_TEXT}`);
  }
}

export interface ScopedSpec {
  readonly selector?: WorkloadSelector;
  readonly targetRef?: PolicyTargetReference;
  readonly targetRefs?: readonly PolicyTargetReference[];
}

/**
 * Validates how an AuthorizationPolicy or RequestAuthentication picks its workloads: at most one of selector,
 * targetRef, targetRefs, each of them well formed. Warns that sidecars ignore policies with targetRef(s).
 */
export function validatePolicyScope(r: Reporter, spec: ScopedSpec): void {
  // The CRD rule counts fields that are present (has()), so `targetRefs: []` next to a selector is rejected too.
  const set: string[] = [];
  if (spec.selector !== undefined) set.push('selector');
  if (spec.targetRef !== undefined) set.push('targetRef');
  if (spec.targetRefs !== undefined) set.push('targetRefs');
  if (set.length > 1) {
    r.error(['spec', set[1]!], 'ERR_SELECTOR_EXCLUSIVE', `only one of selector, targetRef and targetRefs may be set, found ${set.join(' and ')}`);
  }
  validateWorkloadSelector(r, spec.selector, ['spec', 'selector']);
  if (spec.targetRef !== undefined) validateTargetReference(r, spec.targetRef, ['spec', 'targetRef']);
  const refs = spec.targetRefs ?? [];
  refs.forEach((ref, i) => validateTargetReference(r, ref, ['spec', 'targetRefs', i]));
  if (refs.length > MAX_TARGET_REFS) {
    r.error(['spec', 'targetRefs'], 'ERR_TARGET_REFS_TOO_MANY', `targetRefs has ${refs.length} entries; at most ${MAX_TARGET_REFS} are allowed`);
  }
  // Sidecars skip any policy that has a targetRef (pilot/pkg/model/policyattachment.go); only gateways and
  // waypoints bound by the reference enforce it. Worth saying because nothing else tells the user.
  if (spec.targetRef !== undefined || refs.length > 0) {
    const field = spec.targetRef !== undefined ? 'targetRef' : 'targetRefs';
    r.warn(['spec', field], 'WARN_TARGET_REF_SIDECAR_IGNORED', `sidecars ignore a policy with ${field}; it applies only to the referenced gateways, waypoints or services behind a waypoint`);
  }
}
