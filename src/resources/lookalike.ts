import type { PathSegment } from './diagnostic.ts';
import { isPlainObject } from './decode.ts';
import { closest, editDistance } from './similar.ts';
import { SECURITY_GROUP } from './types.ts';

/**
 * Documents that are not Istio security resources but look like one. Skipping them with a notice would be a
 * fail-open: a policy written `kind: AuthorisationPolicy` would vanish and the traffic it guards would flow. So a
 * near-miss kind or group, an Istio security kind in another group, a removed Istio security API, or a spec shaped
 * like a security resource's is an error; only documents plainly of another kind are skipped.
 */

export const SECURITY_KINDS = ['AuthorizationPolicy', 'PeerAuthentication', 'RequestAuthentication'] as const;

export interface Lookalike {
  readonly severity: 'error' | 'warning';
  readonly path: readonly PathSegment[];
  readonly code: string;
  readonly message: string;
}

/** Security APIs Istio served once and removed in 1.6: YAML written for them is enforced by nothing now. */
const REMOVED: Readonly<Record<string, { readonly kinds: readonly string[]; readonly use: string }>> = {
  'authentication.istio.io': { kinds: ['Policy', 'MeshPolicy'], use: 'PeerAuthentication (mTLS) and RequestAuthentication (JWT)' },
  'rbac.istio.io': { kinds: ['ServiceRole', 'ServiceRoleBinding', 'RbacConfig', 'ClusterRbacConfig'], use: 'AuthorizationPolicy' },
};

/** Other projects' kinds of the same name: not a typo, but not enforced here either. */
const FOREIGN_GROUPS: Readonly<Record<string, string>> = {
  'policy.linkerd.io': "Linkerd's",
};

/** Spec fields only Istio's security kinds have, or that together make an authorization rule set. */
const SECURITY_SPEC_FIELDS = ['jwtRules', 'mtls', 'portLevelMtls', 'rules', 'action', 'provider'] as const;

/** Edits that still count as a typo of a kind (18 letters and more) or of the group. */
const KIND_DISTANCE = 3;
const GROUP_DISTANCE = 3;

export function securityLookalike(value: Record<string, unknown>): Lookalike | undefined {
  const apiVersion = typeof value['apiVersion'] === 'string' ? value['apiVersion'] : '';
  const kind = typeof value['kind'] === 'string' ? value['kind'] : '';
  const [group, version] = apiVersion.includes('/') ? (apiVersion.split('/', 2) as [string, string]) : ['', apiVersion];
  const exactKind = (SECURITY_KINDS as readonly string[]).includes(kind);
  const foreign = FOREIGN_GROUPS[group];
  const versionPart = version === '' ? 'v1' : version;

  const removed = REMOVED[group];
  if (removed !== undefined && removed.kinds.includes(kind)) {
    return err(['kind'], 'ERR_KIND_REMOVED', `${apiVersion} ${kind} was removed in Istio 1.6 and is enforced by nothing; write ${removed.use} (${SECURITY_GROUP}/v1)`);
  }
  if (foreign !== undefined) {
    if (exactKind || closest(kind, SECURITY_KINDS, KIND_DISTANCE) !== undefined) {
      return {
        severity: 'warning',
        path: ['apiVersion'],
        code: 'WARN_FOREIGN_POLICY',
        message: `${foreign} ${kind} (${apiVersion}) is not enforced: Rampart reads Istio's ${SECURITY_GROUP} resources`,
      };
    }
    return undefined;
  }
  if (group === SECURITY_GROUP && !exactKind) {
    const hint = closest(kind, SECURITY_KINDS, 8);
    const what = kind === '' ? 'needs a kind' : `has no kind "${kind}"`;
    const tail = hint === undefined ? `; its kinds are ${SECURITY_KINDS.join(', ')}` : hint.toLowerCase() === kind.toLowerCase() ? ` (kinds are case-sensitive: "${hint}")` : ` (did you mean "${hint}"?)`;
    return err(['kind'], 'ERR_KIND_UNKNOWN', `${SECURITY_GROUP} ${what}${tail}`);
  }
  if (exactKind && group !== SECURITY_GROUP) {
    const written = apiVersion === '' ? 'no apiVersion' : `apiVersion "${apiVersion}"`;
    return err(['apiVersion'], 'ERR_API_GROUP', `${kind} with ${written} is not an Istio security resource (did you mean "${SECURITY_GROUP}/${versionPart}"?)`);
  }
  if (!exactKind && kind !== '') {
    const hint = closest(kind, SECURITY_KINDS, KIND_DISTANCE);
    if (hint !== undefined) return err(['kind'], 'ERR_KIND_UNKNOWN', `unknown kind "${kind}" (did you mean "${hint}"?)`);
  }
  const nearGroup = group !== '' && group !== SECURITY_GROUP && editDistance(group.toLowerCase(), SECURITY_GROUP) <= GROUP_DISTANCE;
  if (nearGroup) {
    return err(['apiVersion'], 'ERR_API_GROUP', `unknown API group "${group}" (did you mean "${SECURITY_GROUP}/${versionPart}"?)`);
  }
  // The shape of the spec, for documents whose kind and group say nothing either way: none at all, the core group,
  // or one of Istio's. Other projects' groups are left alone (Kubernetes' Ingress has spec.rules, too).
  const spec = value['spec'];
  const neutralGroup = group === '' || group.endsWith('istio.io');
  if ((kind === '' || neutralGroup) && isPlainObject(spec)) {
    const fields = SECURITY_SPEC_FIELDS.filter((f) => f in spec);
    if (fields.length > 0) {
      const what = kind === '' ? 'a document without kind' : `${apiVersion || '(no apiVersion)'} ${kind}`;
      return err(kind === '' ? [] : ['kind'], 'ERR_KIND_LOOKALIKE', `${what} has ${fields.map((f) => `spec.${f}`).join(', ')} like an Istio security resource but is not one; write apiVersion ${SECURITY_GROUP}/v1 and one of the kinds ${SECURITY_KINDS.join(', ')}`);
    }
  }
  return undefined;
}

function err(path: readonly PathSegment[], code: string, message: string): Lookalike {
  return { severity: 'error', path, code, message };
}
