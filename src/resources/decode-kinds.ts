import {
  decodeBoolean,
  decodeEnum,
  decodeList,
  decodeObject,
  decodeString,
  decodeStringList,
  decodeStringMap,
  isPlainObject,
  type Path,
} from './decode.ts';
import type { Reporter } from './report.ts';
import {
  OPERATION_FIELDS,
  SOURCE_FIELDS,
  type AuthorizationAction,
  type AuthorizationPolicySpec,
  type ClaimToHeader,
  type Condition,
  type JwtHeader,
  type JwtRule,
  type MtlsMode,
  type Operation,
  type PeerAuthenticationSpec,
  type PolicyTargetReference,
  type RequestAuthenticationSpec,
  type Rule,
  type Source,
  type WorkloadSelector,
} from './types.ts';

/** Drops keys whose value is undefined so decoded objects only carry what was written. */
function compact<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

export function decodeSelector(r: Reporter, value: unknown, path: Path): WorkloadSelector | undefined {
  const o = decodeObject(r, value, path, ['matchLabels']);
  if (o === undefined) return undefined;
  return compact({ matchLabels: decodeStringMap(r, o['matchLabels'], [...path, 'matchLabels']) });
}

export function decodeTargetRef(r: Reporter, value: unknown, path: Path): PolicyTargetReference | undefined {
  const o = decodeObject(r, value, path, ['group', 'kind', 'name', 'namespace']);
  if (o === undefined) return undefined;
  return compact({
    group: decodeString(r, o['group'], [...path, 'group']),
    kind: decodeString(r, o['kind'], [...path, 'kind']) ?? '',
    name: decodeString(r, o['name'], [...path, 'name']) ?? '',
    namespace: decodeString(r, o['namespace'], [...path, 'namespace']),
  });
}

function decodeTargetRefs(r: Reporter, value: unknown, path: Path): PolicyTargetReference[] | undefined {
  const list = decodeList(r, value, path);
  if (list === undefined) return undefined;
  const out: PolicyTargetReference[] = [];
  list.forEach((item, i) => {
    const t = decodeTargetRef(r, item, [...path, i]);
    if (t !== undefined) out.push(t);
  });
  return out;
}

function decodeFields<F extends string>(r: Reporter, o: Record<string, unknown>, path: Path, fields: readonly F[]): Partial<Record<F, string[]>> {
  const out: Partial<Record<F, string[]>> = {};
  for (const f of fields) {
    const v = decodeStringList(r, o[f], [...path, f]);
    if (v !== undefined) out[f] = v;
  }
  return out;
}

function decodeRule(r: Reporter, value: unknown, path: Path): Rule | null {
  if (value === null) return null;
  const o = decodeObject(r, value, path, ['from', 'to', 'when']);
  if (o === undefined) return {};
  const rule: { from?: { source?: Source }[]; to?: { operation?: Operation }[]; when?: Condition[] } = {};
  const from = decodeList(r, o['from'], [...path, 'from']);
  if (from !== undefined) {
    rule.from = from.map((entry, i) => {
      const p = [...path, 'from', i];
      const e = decodeObject(r, entry, p, ['source']);
      if (e === undefined || e['source'] === undefined || e['source'] === null) return {};
      const s = decodeObject(r, e['source'], [...p, 'source'], SOURCE_FIELDS);
      return s === undefined ? {} : { source: decodeFields(r, s, [...p, 'source'], SOURCE_FIELDS) };
    });
  }
  const to = decodeList(r, o['to'], [...path, 'to']);
  if (to !== undefined) {
    rule.to = to.map((entry, i) => {
      const p = [...path, 'to', i];
      const e = decodeObject(r, entry, p, ['operation']);
      if (e === undefined || e['operation'] === undefined || e['operation'] === null) return {};
      const op = decodeObject(r, e['operation'], [...p, 'operation'], OPERATION_FIELDS);
      return op === undefined ? {} : { operation: decodeFields(r, op, [...p, 'operation'], OPERATION_FIELDS) };
    });
  }
  const when = decodeList(r, o['when'], [...path, 'when']);
  if (when !== undefined) {
    rule.when = [];
    when.forEach((c, i) => {
      const p = [...path, 'when', i];
      const co = decodeObject(r, c, p, ['key', 'values', 'notValues']);
      if (co === undefined) {
        rule.when!.push({ key: '' });
        return;
      }
      rule.when!.push(compact({
        key: decodeString(r, co['key'], [...p, 'key']) ?? '',
        values: decodeStringList(r, co['values'], [...p, 'values']),
        notValues: decodeStringList(r, co['notValues'], [...p, 'notValues']),
      }));
    });
  }
  return rule;
}

export function decodeAuthorizationPolicy(r: Reporter, spec: unknown): AuthorizationPolicySpec {
  const path = ['spec'];
  const o = decodeObject(r, spec ?? {}, path, ['selector', 'targetRef', 'targetRefs', 'rules', 'action', 'provider']) ?? {};
  const rules = decodeList(r, o['rules'], [...path, 'rules']);
  const provider = decodeObject(r, o['provider'], [...path, 'provider'], ['name']);
  return compact({
    selector: decodeSelector(r, o['selector'], [...path, 'selector']),
    targetRef: decodeTargetRef(r, o['targetRef'], [...path, 'targetRef']),
    targetRefs: decodeTargetRefs(r, o['targetRefs'], [...path, 'targetRefs']),
    rules: rules?.map((rule, i) => decodeRule(r, rule, [...path, 'rules', i])),
    action: decodeEnum<AuthorizationAction>(r, o['action'], [...path, 'action'], ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM']) ?? 'ALLOW',
    provider: provider === undefined ? undefined : compact({ name: decodeString(r, provider['name'], [...path, 'provider', 'name']) }),
  });
}

const MODES: readonly MtlsMode[] = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'];

function decodeMtls(r: Reporter, value: unknown, path: Path): { mode: MtlsMode } | undefined {
  if (value === null) return { mode: 'UNSET' };
  const o = decodeObject(r, value, path, ['mode']);
  if (o === undefined) return undefined;
  return { mode: decodeEnum(r, o['mode'], [...path, 'mode'], MODES) ?? 'UNSET' };
}

export function decodePeerAuthentication(r: Reporter, spec: unknown): PeerAuthenticationSpec {
  const path = ['spec'];
  const o = decodeObject(r, spec ?? {}, path, ['selector', 'mtls', 'portLevelMtls']) ?? {};
  let portLevelMtls: Record<string, { mode: MtlsMode }> | undefined;
  const plm = o['portLevelMtls'];
  if (plm !== undefined && plm !== null) {
    if (!isPlainObject(plm)) {
      r.error([...path, 'portLevelMtls'], 'ERR_FIELD_TYPE', 'must be a mapping of port to {mode}');
    } else {
      portLevelMtls = {};
      for (const [port, v] of Object.entries(plm)) {
        const m = decodeMtls(r, v, [...path, 'portLevelMtls', port]);
        if (m !== undefined) portLevelMtls[port] = m;
      }
    }
  }
  return compact({
    selector: decodeSelector(r, o['selector'], [...path, 'selector']),
    mtls: o['mtls'] === undefined ? undefined : decodeMtls(r, o['mtls'], [...path, 'mtls']),
    portLevelMtls,
  });
}

function decodeJwtRule(r: Reporter, value: unknown, path: Path): JwtRule | undefined {
  const o = decodeObject(r, value, path, [
    'issuer', 'audiences', 'jwksUri', 'jwks', 'fromHeaders', 'fromParams', 'fromCookies', 'outputPayloadToHeader',
    'forwardOriginalToken', 'outputClaimToHeaders', 'timeout', 'spaceDelimitedClaims',
  ]);
  if (o === undefined) return undefined;
  const headers = decodeList(r, o['fromHeaders'], [...path, 'fromHeaders']);
  const claimHeaders = decodeList(r, o['outputClaimToHeaders'], [...path, 'outputClaimToHeaders']);
  let timeout: string | undefined;
  if (typeof o['timeout'] === 'number') timeout = `${o['timeout']}s`;
  else timeout = decodeString(r, o['timeout'], [...path, 'timeout']);
  return compact({
    issuer: decodeString(r, o['issuer'], [...path, 'issuer']),
    audiences: decodeStringList(r, o['audiences'], [...path, 'audiences']),
    jwksUri: decodeString(r, o['jwksUri'], [...path, 'jwksUri']),
    jwks: decodeString(r, o['jwks'], [...path, 'jwks']),
    fromHeaders: headers?.map((h, i): JwtHeader => {
      const p = [...path, 'fromHeaders', i];
      const ho = decodeObject(r, h, p, ['name', 'prefix']);
      if (ho === undefined) return { name: '' };
      return compact({ name: decodeString(r, ho['name'], [...p, 'name']) ?? '', prefix: decodeString(r, ho['prefix'], [...p, 'prefix']) });
    }),
    fromParams: decodeStringList(r, o['fromParams'], [...path, 'fromParams']),
    fromCookies: decodeStringList(r, o['fromCookies'], [...path, 'fromCookies']),
    outputPayloadToHeader: decodeString(r, o['outputPayloadToHeader'], [...path, 'outputPayloadToHeader']),
    forwardOriginalToken: decodeBoolean(r, o['forwardOriginalToken'], [...path, 'forwardOriginalToken']),
    outputClaimToHeaders: claimHeaders?.map((h, i): ClaimToHeader => {
      const p = [...path, 'outputClaimToHeaders', i];
      const ho = decodeObject(r, h, p, ['header', 'claim']);
      if (ho === undefined) return { header: '', claim: '' };
      return { header: decodeString(r, ho['header'], [...p, 'header']) ?? '', claim: decodeString(r, ho['claim'], [...p, 'claim']) ?? '' };
    }),
    timeout,
    spaceDelimitedClaims: decodeStringList(r, o['spaceDelimitedClaims'], [...path, 'spaceDelimitedClaims']),
  });
}

export function decodeRequestAuthentication(r: Reporter, spec: unknown): RequestAuthenticationSpec {
  const path = ['spec'];
  const o = decodeObject(r, spec ?? {}, path, ['selector', 'targetRef', 'targetRefs', 'jwtRules']) ?? {};
  const rules = decodeList(r, o['jwtRules'], [...path, 'jwtRules']);
  const jwtRules: JwtRule[] | undefined = rules === undefined ? undefined : [];
  rules?.forEach((rule, i) => {
    const jr = decodeJwtRule(r, rule, [...path, 'jwtRules', i]);
    if (jr !== undefined) jwtRules!.push(jr);
    else if (rule === null) r.error([...path, 'jwtRules', i], 'ERR_JWT_RULE_NULL', 'jwt rule must not be null');
  });
  return compact({
    selector: decodeSelector(r, o['selector'], [...path, 'selector']),
    targetRef: decodeTargetRef(r, o['targetRef'], [...path, 'targetRef']),
    targetRefs: decodeTargetRefs(r, o['targetRefs'], [...path, 'targetRefs']),
    jwtRules,
  });
}
