import { parseCidr } from '../match/cidr.ts';
import { isPathTemplate, validatePathTemplate } from '../match/path-template.ts';
import { classifyConditionKey, type ConditionAttribute } from './condition-key.ts';
import type { PathSegment } from './diagnostic.ts';
import { parsePortNumber } from './port-number.ts';
import type { Reporter } from './report.ts';
import { OPERATION_FIELDS, SOURCE_FIELDS, type AuthorizationAction, type AuthorizationPolicySpec, type Condition, type Operation, type ResourceMeta, type Rule, type Source } from './types.ts';
import { validateIstioAnnotations } from './validate-annotations.ts';
import type { ValidationContext } from './validate-context.ts';
import { validatePolicyScope } from './validate-selector.ts';

type Path = readonly PathSegment[];

/** CRD limits (istio/api security/v1beta1/authorization_policy.proto). */
const MAX_RULES = 512;
const MAX_FROM = 512;
/** istiod's CheckServiceAccount and the CRD (maxItems 16, maxLength 320). */
const MAX_SERVICE_ACCOUNTS = 16;
const MAX_SERVICE_ACCOUNT_LENGTH = 320;

const SOURCE_IP_FIELDS: readonly (keyof Source)[] = ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'];

/** Identity fields an ext-authz (CUSTOM) policy cannot use. */
const CUSTOM_FORBIDDEN_SOURCE: readonly (keyof Source)[] = [
  'namespaces', 'notNamespaces', 'serviceAccounts', 'notServiceAccounts', 'trustDomains', 'notTrustDomains',
  'principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals',
];

const CUSTOM_FORBIDDEN_KEYS: readonly string[] = ['source.namespace', 'source.serviceAccount', 'source.trustDomain', 'source.principal'];

/**
 * Source fields that still mean something on a plain TCP connection. istiod's own list for the DENY warning leaves
 * out trustDomains/notTrustDomains although they compile for TCP; including them avoids a false warning.
 */
const TCP_SOURCE_FIELDS: readonly (keyof Source)[] = [
  'principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'serviceAccounts', 'notServiceAccounts',
  'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks', 'trustDomains', 'notTrustDomains',
];

/** Istio's semantic checks for AuthorizationPolicy (pkg/config/validation). Reports through `r`; paths start at `spec`. */
export function validateAuthorizationPolicy(spec: AuthorizationPolicySpec, meta: ResourceMeta, r: Reporter, ctx: ValidationContext): void {
  void ctx;
  validateIstioAnnotations(r, meta, 'AuthorizationPolicy', spec.action);
  validatePolicyScope(r, spec);

  const rules = spec.rules;
  // `rules: []` is treated like an absent list: either way nothing can ever match.
  const hasRules = rules !== undefined && rules.length > 0;
  const rulesOrAction: Path = rules === undefined ? ['spec', 'action'] : ['spec', 'rules'];
  if (rules !== undefined && rules.length > MAX_RULES) {
    r.error(['spec', 'rules'], 'ERR_AUTHZ_TOO_MANY_RULES', `a policy may have at most ${MAX_RULES} rules, found ${rules.length}`);
  }

  if (spec.action === 'CUSTOM') {
    if (!hasRules) {
      r.error(rulesOrAction, 'ERR_AUTHZ_CUSTOM_NO_RULES', 'a CUSTOM policy without rules never calls its provider; add rules, or `rules: [{}]` to call it for every request');
    }
    // istiod only looks at the provider once rules are present; reporting it anyway saves a second round trip.
    if (spec.provider?.name === undefined || spec.provider.name === '') {
      const at: Path = spec.provider === undefined ? ['spec', 'provider'] : ['spec', 'provider', 'name'];
      r.error(at, 'ERR_AUTHZ_CUSTOM_NO_PROVIDER', 'a CUSTOM policy needs provider.name, the name of an extension provider in MeshConfig');
    }
  } else if (spec.provider !== undefined) {
    r.error(['spec', 'provider'], 'ERR_AUTHZ_PROVIDER_NOT_CUSTOM', `provider is only allowed with action CUSTOM, this policy's action is ${spec.action}`);
  }
  if (spec.action === 'DENY' && !hasRules) {
    r.error(rulesOrAction, 'ERR_AUTHZ_DENY_NO_RULES', 'a DENY policy without rules never denies anything; add rules, or `rules: [{}]` to deny every request');
  }

  rules?.forEach((rule, i) => validateRule(r, rule, ['spec', 'rules', i], spec.action));
}

function validateRule(r: Reporter, rule: Rule | null, path: Path, action: AuthorizationAction): void {
  if (rule === null) {
    r.error(path, 'ERR_AUTHZ_NULL_RULE', 'a rule must not be null; use `{}` for a rule that matches every request');
    return;
  }
  if (rule.from !== undefined) {
    if (rule.from.length === 0) {
      r.error([...path, 'from'], 'ERR_AUTHZ_EMPTY_RULE_FROM', '`from` is present but empty; remove it to match any source, or list at least one source');
    }
    if (rule.from.length > MAX_FROM) {
      r.error([...path, 'from'], 'ERR_AUTHZ_TOO_MANY_FROM', `a rule may have at most ${MAX_FROM} from entries, found ${rule.from.length}`);
    }
    rule.from.forEach((entry, j) => {
      const at = [...path, 'from', j];
      if (entry.source === undefined) {
        r.error(at, 'ERR_AUTHZ_FROM_NO_SOURCE', 'a `from` entry must have a `source`');
      } else {
        validateSource(r, entry.source, [...at, 'source'], action);
      }
    });
  }
  if (rule.to !== undefined) {
    if (rule.to.length === 0) {
      r.error([...path, 'to'], 'ERR_AUTHZ_EMPTY_RULE_TO', '`to` is present but empty; remove it to match any operation, or list at least one operation');
    }
    rule.to.forEach((entry, j) => {
      const at = [...path, 'to', j];
      if (entry.operation === undefined) {
        r.error(at, 'ERR_AUTHZ_TO_NO_OPERATION', 'a `to` entry must have an `operation`');
      } else {
        validateOperation(r, entry.operation, [...at, 'operation']);
      }
    });
  }
  rule.when?.forEach((c, k) => validateCondition(r, c, [...path, 'when', k], action));
  if (action === 'DENY' && deniesAllTcp(rule)) {
    r.warn(
      path,
      'WARN_AUTHZ_DENY_ALL_TCP',
      'this DENY rule matches on HTTP attributes that plain TCP connections do not have; on TCP they are dropped and the rule denies all TCP traffic to the selected workloads; add ports to limit it',
    );
  }
}

/**
 * istiod's warning condition (ValidateAuthorizationPolicy): a source without TCP fields and no `to`, or a `to`
 * without ports. Also covers a rule made only of HTTP `when` conditions, which istiod does not warn about although
 * it widens to match-all on TCP the same way (pilot/pkg/security/authz/model).
 */
function deniesAllTcp(rule: Rule): boolean {
  const sources = (rule.from ?? []).flatMap((e) => (e.source === undefined ? [] : [e.source]));
  const operations = (rule.to ?? []).flatMap((e) => (e.operation === undefined ? [] : [e.operation]));
  const tcpInFrom = sources.some((s) => TCP_SOURCE_FIELDS.some((f) => s[f] !== undefined));
  const tcpInTo = operations.some((o) => o.ports !== undefined || o.notPorts !== undefined);
  const fromExists = sources.length > 0;
  const toExists = operations.length > 0;
  if ((fromExists && !toExists && !tcpInFrom) || (toExists && !tcpInTo)) return true;
  const when = rule.when ?? [];
  if (!fromExists && !toExists && when.length > 0) {
    return when.every((c) => {
      const k = classifyConditionKey(c.key);
      return k.ok && k.httpOnly;
    });
  }
  return false;
}

function validateSource(r: Reporter, src: Source, path: Path, action: AuthorizationAction): void {
  if (SOURCE_FIELDS.every((f) => (src[f] ?? []).length === 0)) {
    r.error(path, 'ERR_AUTHZ_EMPTY_SOURCE', '`source` sets no field; remove the `from` entry or set at least one field such as principals or ipBlocks');
  }
  // The CRD rule tests presence, so even an empty `principals: []` next to serviceAccounts is rejected.
  const saField = src.serviceAccounts !== undefined ? 'serviceAccounts' : src.notServiceAccounts !== undefined ? 'notServiceAccounts' : undefined;
  if (saField !== undefined) {
    const clash = (['principals', 'notPrincipals', 'namespaces', 'notNamespaces'] as const).filter((f) => src[f] !== undefined);
    if (clash.length > 0) {
      r.error([...path, saField], 'ERR_AUTHZ_SA_WITH_PRINCIPALS', `${saField} cannot be combined with ${clash.join(', ')}; express the identity one way only`);
    }
  }
  if (action === 'CUSTOM') {
    for (const f of CUSTOM_FORBIDDEN_SOURCE) {
      if ((src[f] ?? []).length > 0) {
        r.error([...path, f], 'ERR_AUTHZ_CUSTOM_UNSUPPORTED_FIELD', `${f} is not supported with action CUSTOM; the ext-authz provider receives the request, identity checks belong in the provider or in an ALLOW/DENY policy`);
      }
    }
  }
  for (const f of SOURCE_FIELDS) checkNonEmpty(r, src[f], [...path, f], f);
  for (const f of SOURCE_IP_FIELDS) checkIps(r, src[f], [...path, f], f);
  checkServiceAccounts(r, src.serviceAccounts, [...path, 'serviceAccounts'], 'serviceAccounts');
  checkServiceAccounts(r, src.notServiceAccounts, [...path, 'notServiceAccounts'], 'notServiceAccounts');
  checkTrustDomains(r, src.trustDomains, [...path, 'trustDomains'], 'trustDomains', true);
  checkTrustDomains(r, src.notTrustDomains, [...path, 'notTrustDomains'], 'notTrustDomains', true);
}

function validateOperation(r: Reporter, op: Operation, path: Path): void {
  if (OPERATION_FIELDS.every((f) => (op[f] ?? []).length === 0)) {
    r.error(path, 'ERR_AUTHZ_EMPTY_OPERATION', '`operation` sets no field; remove the `to` entry or set at least one field such as ports, methods or paths');
  }
  for (const f of OPERATION_FIELDS) checkNonEmpty(r, op[f], [...path, f], f);
  checkPorts(r, op.ports, [...path, 'ports'], 'ports');
  checkPorts(r, op.notPorts, [...path, 'notPorts'], 'notPorts');
  checkPaths(r, op.paths, [...path, 'paths'], 'paths');
  checkPaths(r, op.notPaths, [...path, 'notPaths'], 'notPaths');
}

function validateCondition(r: Reporter, c: Condition, path: Path, action: AuthorizationAction): void {
  const keyPath = [...path, 'key'];
  let attribute: ConditionAttribute | undefined;
  if (c.key === '') {
    r.error(keyPath, 'ERR_AUTHZ_WHEN_KEY_EMPTY', 'a condition needs a key such as request.headers[x-token] or source.ip');
  } else {
    const k = classifyConditionKey(c.key);
    if (k.ok) attribute = k.attribute;
    else r.error(keyPath, k.code, k.message);
    if (action === 'CUSTOM' && (CUSTOM_FORBIDDEN_KEYS.includes(c.key) || c.key.startsWith('request.auth.'))) {
      r.error(keyPath, 'ERR_AUTHZ_CUSTOM_UNSUPPORTED_KEY', `condition key "${c.key}" is not supported with action CUSTOM; identity checks belong in the provider or in an ALLOW/DENY policy`);
    }
  }
  if ((c.values ?? []).length === 0 && (c.notValues ?? []).length === 0) {
    r.error(path, 'ERR_AUTHZ_WHEN_NO_VALUES', `condition${c.key === '' ? '' : ` "${c.key}"`} needs values or notValues (at least one of them non-empty)`);
  }
  for (const field of ['values', 'notValues'] as const) {
    const list = c[field];
    const at = [...path, field];
    checkNonEmpty(r, list, at, field);
    switch (attribute) {
      case 'source.ip':
      case 'remote.ip':
      case 'destination.ip':
        checkIps(r, list, at, field);
        break;
      case 'destination.port':
        checkPorts(r, list, at, field);
        break;
      case 'source.serviceAccount':
        checkServiceAccounts(r, list, at, field);
        break;
      case 'source.trustDomain':
        // istiod checks only the wildcard position here, not the '/' it rejects in trustDomains.
        checkTrustDomains(r, list, at, field, false);
        break;
      default:
        break;
    }
  }
}

function checkNonEmpty(r: Reporter, values: readonly string[] | undefined, path: Path, field: string): void {
  values?.forEach((v, i) => {
    if (v === '') r.error([...path, i], 'ERR_AUTHZ_EMPTY_VALUE', `${field} must not contain an empty string`);
  });
}

function checkIps(r: Reporter, values: readonly string[] | undefined, path: Path, field: string): void {
  values?.forEach((v, i) => {
    if (v !== '' && parseCidr(v) === undefined) {
      r.error([...path, i], 'ERR_AUTHZ_INVALID_IP', `${field}: "${v}" is not an IP address or CIDR range (e.g. 10.1.2.3, 10.1.0.0/16, 2001:db8::/32)`);
    }
  });
}

function checkPorts(r: Reporter, values: readonly string[] | undefined, path: Path, field: string): void {
  values?.forEach((v, i) => {
    if (v !== '' && parsePortNumber(v) === undefined) {
      r.error([...path, i], 'ERR_AUTHZ_INVALID_PORT', `${field}: "${v}" is not a port; expected a decimal number from 0 to 65535 (ranges and names are not supported)`);
    }
  });
}

/** Service accounts are `sa` or `ns/sa`, without wildcards (pkg/config/security CheckServiceAccount). */
function checkServiceAccounts(r: Reporter, values: readonly string[] | undefined, path: Path, field: string): void {
  if (values === undefined) return;
  if (values.length > MAX_SERVICE_ACCOUNTS) {
    r.error(path, 'ERR_AUTHZ_SA_TOO_MANY', `${field} may list at most ${MAX_SERVICE_ACCOUNTS} service accounts, found ${values.length}`);
  }
  values.forEach((v, i) => {
    const at = [...path, i];
    const format = 'expected "serviceAccount" or "namespace/serviceAccount"';
    if (v === '') return; // reported by checkNonEmpty
    if (v.includes('*')) {
      r.error(at, 'ERR_AUTHZ_SA_INVALID', `${field}: "${v}" contains "*"; service accounts are matched exactly, wildcards are not supported`);
    }
    const slashes = v.split('/').length - 1;
    if (slashes > 1) {
      r.error(at, 'ERR_AUTHZ_SA_INVALID', `${field}: "${v}" has ${slashes} slashes; ${format}`);
    } else if (slashes === 1) {
      const [ns, sa] = v.split('/');
      if (ns === '') r.error(at, 'ERR_AUTHZ_SA_INVALID', `${field}: "${v}" has an empty namespace; ${format}`);
      if (sa === '') r.error(at, 'ERR_AUTHZ_SA_INVALID', `${field}: "${v}" has an empty service account name; ${format}`);
    }
    if (v.length > MAX_SERVICE_ACCOUNT_LENGTH) {
      r.error(at, 'ERR_AUTHZ_SA_INVALID', `${field}: value is ${v.length} characters long; at most ${MAX_SERVICE_ACCOUNT_LENGTH} are allowed`);
    }
  });
}

/** One `*` at most, only at the start or end (or alone); in trustDomains also no `/` (CheckTrustDomainValues). */
function checkTrustDomains(r: Reporter, values: readonly string[] | undefined, path: Path, field: string, rejectSlash: boolean): void {
  values?.forEach((v, i) => {
    if (v === '') return; // reported by checkNonEmpty
    const at = [...path, i];
    const stars = v.split('*').length - 1;
    if (stars > 1) {
      r.error(at, 'ERR_AUTHZ_TRUST_DOMAIN_INVALID', `${field}: "${v}" has ${stars} wildcards; at most one "*" is allowed, at the start or the end`);
    } else if (stars === 1 && !v.startsWith('*') && !v.endsWith('*')) {
      r.error(at, 'ERR_AUTHZ_TRUST_DOMAIN_INVALID', `${field}: "${v}" has "*" in the middle; a wildcard is only allowed at the start or the end`);
    }
    if (rejectSlash && v.includes('/')) {
      r.error(at, 'ERR_AUTHZ_TRUST_DOMAIN_INVALID', `${field}: "${v}" contains "/"; give only the trust domain (e.g. cluster.local), not a full identity`);
    }
  });
}

/**
 * istiod checks every path (pkg/config/security CheckValidPathTemplate): braces are only allowed as the template
 * operators `{*}` and `{**}`, and a path with an operator must be a valid template.
 */
function checkPaths(r: Reporter, values: readonly string[] | undefined, path: Path, field: string): void {
  values?.forEach((v, i) => {
    if (v === '') return;
    const at = [...path, i];
    if (isPathTemplate(v)) {
      const reason = validatePathTemplate(v);
      if (reason !== undefined) r.error(at, 'ERR_AUTHZ_PATH_TEMPLATE_INVALID', `${field}: "${v}" is not a valid path template: ${reason}`);
    } else if (/[{}]/.test(v)) {
      r.error(at, 'ERR_AUTHZ_PATH_TEMPLATE_INVALID', `${field}: "${v}" contains "{" or "}"; braces are only allowed as the template operators {*} and {**}`);
    }
  });
}
