/**
 * The attribute names AuthorizationPolicy `when` conditions may use (Istio's pkg/config/security ValidateAttribute
 * and pilot/pkg/security/authz/model), and which of them only exist on HTTP requests.
 */

export type ConditionAttribute =
  | 'request.headers'
  | 'source.ip'
  | 'remote.ip'
  | 'source.namespace'
  | 'source.principal'
  | 'source.serviceAccount'
  | 'source.trustDomain'
  | 'request.auth.principal'
  | 'request.auth.audiences'
  | 'request.auth.presenter'
  | 'request.auth.claims'
  | 'destination.ip'
  | 'destination.port'
  | 'connection.sni'
  | 'experimental.envoy.filters';

export type ConditionKey =
  | { readonly ok: true; readonly attribute: ConditionAttribute; readonly httpOnly: boolean }
  | { readonly ok: false; readonly code: string; readonly message: string };

const EXACT: readonly ConditionAttribute[] = [
  'source.ip',
  'remote.ip',
  'source.namespace',
  'source.principal',
  'source.serviceAccount',
  'source.trustDomain',
  'request.auth.principal',
  'request.auth.audiences',
  'request.auth.presenter',
  'destination.ip',
  'destination.port',
  'connection.sni',
];

/** Map-style keys and the exact shape each must have. */
const MAPPED: readonly { readonly attribute: ConditionAttribute; readonly prefix: string; readonly shape: RegExp; readonly example: string }[] = [
  { attribute: 'request.headers', prefix: 'request.headers', shape: /^request\.headers\[[^[\]]+\]$/, example: 'request.headers[x-token]' },
  { attribute: 'request.auth.claims', prefix: 'request.auth.claims', shape: /^request\.auth\.claims(\[[^[\]]+\])+$/, example: 'request.auth.claims[groups] or request.auth.claims[a][b]' },
  {
    attribute: 'experimental.envoy.filters',
    prefix: 'experimental.envoy.filters.',
    shape: /^experimental\.envoy\.filters\.[^[\]]+\[[^[\]]+\]$/,
    example: 'experimental.envoy.filters.network.mysql_proxy[db.table]',
  },
];

function isHttpOnly(attribute: ConditionAttribute): boolean {
  return attribute === 'request.headers' || attribute.startsWith('request.auth.');
}

export function classifyConditionKey(key: string): ConditionKey {
  const exact = EXACT.find((a) => a === key);
  if (exact !== undefined) return { ok: true, attribute: exact, httpOnly: isHttpOnly(exact) };
  for (const m of MAPPED) {
    if (!key.startsWith(m.prefix)) continue;
    if (m.shape.test(key)) return { ok: true, attribute: m.attribute, httpOnly: isHttpOnly(m.attribute) };
    // Stricter than istiod: its validation only checks for some `x[y]` shape, so e.g. `request.headersfoo[x]` is
    // accepted and the rule is then silently dropped when the proxy config is built.
    return { ok: false, code: 'ERR_AUTHZ_WHEN_KEY_MALFORMED', message: `condition key "${key}" is malformed; expected the form ${m.example}` };
  }
  if (key === 'destination.namespace') {
    return { ok: false, code: 'ERR_AUTHZ_WHEN_KEY_UNSUPPORTED', message: 'condition key "destination.namespace" is not supported; the policy\'s own metadata.namespace already scopes it' };
  }
  if (key.startsWith('destination.labels')) {
    return { ok: false, code: 'ERR_AUTHZ_WHEN_KEY_UNSUPPORTED', message: `condition key "${key}" is not supported; use the policy's selector to pick workloads by label` };
  }
  if (key === 'destination.name' || key === 'destination.user') {
    return { ok: false, code: 'ERR_AUTHZ_WHEN_KEY_UNSUPPORTED', message: `condition key "${key}" was removed with the v1alpha1 API and is not supported` };
  }
  const nearMiss = EXACT.find((a) => a.toLowerCase() === key.toLowerCase())
    ?? (/^request\.header\[/i.test(key) ? 'request.headers[...]' : undefined);
  const hint = nearMiss === undefined ? '' : ` (did you mean "${nearMiss}"?)`;
  return { ok: false, code: 'ERR_AUTHZ_WHEN_KEY_UNKNOWN', message: `unknown condition key "${key}"${hint}` };
}
