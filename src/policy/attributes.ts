import { compileIpSet, parseCidr, type Cidr, type ParsedIp } from '../match/cidr.ts';
import { compilePathTemplate, isPathTemplate, validatePathTemplate } from '../match/path-template.ts';
import type { PreparedAuth, PreparedRequest } from './request.ts';
import { compileStringSet, emitStringSet, type StringMatchOptions, type StringTest } from './string-match.ts';
import type { TrustDomainBundle } from './trust-domain.ts';

/**
 * Compiles one attribute of an AuthorizationPolicy (a `from`/`to` field or a `when` key) into a test on a prepared
 * request, reproducing how istiod turns each attribute into Envoy RBAC matchers (pilot/pkg/security/authz/model).
 */

export type RequestTest = (r: PreparedRequest) => boolean;

export interface AttributeSpec {
  /** Canonical attribute name, e.g. `source.principal`, `request.headers[x-token]`. */
  readonly attribute: string;
  readonly httpOnly: boolean;
  /** What the request carried, for explanations. */
  readonly actual: (r: PreparedRequest) => string;
  /**
   * Compiles the values of one field into one test (any value matches). Values istiod cannot compile are returned
   * as failures, so that the caller can apply Istio's ALLOW-drops-rule / DENY-drops-value rule.
   */
  readonly compile: (values: readonly string[]) => CompiledValues;
  /**
   * For attributes whose values can fail to compile: which values would compile, building nothing lasting
   * (matchers are built on first use). Absent: every value compiles.
   */
  readonly check?: (values: readonly string[]) => ValueCheck;
}

export interface ValueCheck {
  readonly kept: readonly string[];
  readonly failures: readonly string[];
}

function checkBy(compile: (values: readonly string[]) => CompiledValues): (values: readonly string[]) => ValueCheck {
  return (values) => {
    const c = compile(values);
    return { kept: c.kept, failures: c.failures };
  };
}

function checkCidrs(values: readonly string[]): ValueCheck {
  const kept: string[] = [];
  const failures: string[] = [];
  for (const v of values) {
    if (parseCidr(v) === undefined) failures.push(`"${v}" is not an IP address or CIDR range`);
    else kept.push(v);
  }
  return { kept, failures };
}


export interface CompiledValues {
  /** Undefined when no value could be compiled. */
  readonly test: RequestTest | undefined;
  /**
   * The test as a JavaScript boolean expression over `r` (the request), `v` (a scratch variable) and `c` (the
   * constants array it appends to); absent when the test can only be called.
   */
  readonly emit?: (consts: unknown[]) => string;
  readonly kept: readonly string[];
  readonly failures: readonly string[];
}

/** Values compiled one by one (a value may fail), then ORed. */
function perValue(compileValue: (value: string) => RequestTest): (values: readonly string[]) => CompiledValues {
  return (values) => {
    const tests: RequestTest[] = [];
    const kept: string[] = [];
    const failures: string[] = [];
    for (const v of values) {
      try {
        tests.push(compileValue(v));
        kept.push(v);
      } catch (e) {
        if (!(e instanceof CompileFailure)) throw e;
        failures.push(e.message);
      }
    }
    return { test: tests.length === 0 ? undefined : orTests(tests), kept, failures };
  };
}

/** Values that cannot fail, compiled together into one string-set test on an extracted attribute. */
function stringSet(
  extract: (r: PreparedRequest) => string | undefined,
  extractSource: string,
  opts: StringMatchOptions = {},
): (values: readonly string[]) => CompiledValues {
  return (values) => {
    const t = compileStringSet(values, opts);
    return {
      test: (r) => t(extract(r)),
      emit: (consts) => `((v = ${extractSource}), ${emitStringSet(values, opts, consts)})`,
      kept: values,
      failures: [],
    };
  };
}

/**
 * `request.headers[name]`: the header's value against the policy's values, and for a header that came on several
 * lines, each line on its own, the header matching when any line does (Envoy's RBAC HeaderMatcher since the
 * CVE-2026-26308 fix, envoy.reloadable_features.rbac_match_headers_individually). So `x-role: user` and
 * `x-role: admin` as two lines meet a DENY on `values: [admin]` (the joined "user,admin" would not), an ALLOW on
 * `values: [admin]` too, and a `notValues: [admin]` in either (a NotMatcher around the same test) only when no
 * line is `admin`. One line holding "user,admin" is one value, as in Envoy.
 */
function headerValues(lower: string): (values: readonly string[]) => CompiledValues {
  const opts: StringMatchOptions = { star: 'present' };
  return (values) => {
    const t = compileStringSet(values, opts);
    const test = (r: PreparedRequest): boolean => {
      const lines = r.http?.repeated?.[lower];
      if (lines === undefined) return t(r.http?.headers[lower]);
      for (const line of lines) if (t(line)) return true;
      return false;
    };
    const name = JSON.stringify(lower);
    return {
      test,
      emit: (consts) => {
        consts.push(test);
        const i = consts.length - 1;
        return `(r.http !== undefined && r.http.repeated !== undefined && r.http.repeated[${name}] !== undefined ? c[${i}](r) : ((v = (r.http === undefined ? undefined : r.http.headers[${name}])), ${emitStringSet(values, opts, consts)}))`;
      },
      kept: values,
      failures: [],
    };
  };
}

/** IP and CIDR values: the good ones become one range set; the others are failures. */
function ipSet(get: (r: PreparedRequest) => ParsedIp | undefined, getSource: string): (values: readonly string[]) => CompiledValues {
  return (values) => {
    const cidrs: Cidr[] = [];
    const kept: string[] = [];
    const failures: string[] = [];
    for (const v of values) {
      const c = parseCidr(v);
      if (c === undefined) failures.push(`"${v}" is not an IP address or CIDR range`);
      else {
        cidrs.push(c);
        kept.push(v);
      }
    }
    if (cidrs.length === 0) return { test: undefined, kept, failures };
    const set = compileIpSet(cidrs);
    return {
      test: (r) => {
        const ip = get(r);
        return ip !== undefined && set.contains(ip);
      },
      emit: (consts) => {
        consts.push(set);
        return `(${getSource} !== undefined && c[${consts.length - 1}].contains(${getSource}))`;
      },
      kept, failures,
    };
  };
}

/**
 * A value or attribute istiod cannot compile. Thrown and caught within compilation only; not an Error subclass, so
 * that compiling a large mesh (where every HTTP-only ALLOW rule fails on TCP) does not capture stack traces.
 */
export class CompileFailure {
  readonly message: string;
  constructor(message: string) {
    this.message = message;
  }
}

export interface CompileEnv {
  readonly bundle: TrustDomainBundle;
  /** Namespace of the policy (bare `serviceAccounts` values are relative to it). */
  readonly policyNamespace: string;
  /** Attribute specs shared across the policies of one snapshot (keyed by attribute name). */
  readonly attributes?: Map<string, AttributeSpec>;
}

const NONE = '(absent)';
const quote = (s: string | undefined): string => (s === undefined ? NONE : JSON.stringify(s));
const peerText = (r: PreparedRequest): string =>
  r.peer === undefined ? '(no peer identity: plaintext connection)' : JSON.stringify(r.peer.slice('spiffe://'.length));
/** The namespace a namespaces rule compares, with the principal it was read from (the match is on /ns/<v>/ in it). */
const namespaceText = (r: PreparedRequest): string => {
  if (r.peer === undefined) return '(no peer identity: plaintext connection)';
  const principal = r.peer.slice('spiffe://'.length);
  const ns = /\/ns\/([^/]*)\//.exec(r.peer)?.[1];
  return ns === undefined ? `(no namespace in ${JSON.stringify(principal)})` : `${JSON.stringify(ns)} (of ${JSON.stringify(principal)})`;
};
const ipText = (ip: ParsedIp | undefined): string => (ip === undefined ? NONE : ip.text);
const noJwt = '(no verified JWT)';

function portTest(value: string): RequestTest {
  if (!/^[0-9]+$/.test(value) || Number(value) > 65535) throw new CompileFailure(`"${value}" is not a port number`);
  const port = Number(value);
  return (r) => r.destPort === port;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * istiod matches namespaces with the regex ".*" + "/ns/<v>/" + ".*" (a star in the value becoming ".*"). With
 * dotAll, such a regex matches exactly when the middle part occurs somewhere, so exact values are a substring test
 * and wildcard values an unanchored search.
 */
function namespaceSet(values: readonly string[]): CompiledValues {
  const needles = values.filter((v) => !v.includes('*')).map((v) => `/ns/${v}/`);
  const wild = values.filter((v) => v.includes('*')).map((v) => new RegExp(`/ns/${v.split('*').map(escapeRegex).join('.*')}/`, 's'));
  const test: RequestTest = (r) => {
    const p = r.peer;
    if (p === undefined) return false;
    for (const n of needles) if (p.includes(n)) return true;
    for (const re of wild) if (re.test(p)) return true;
    return false;
  };
  return {
    test,
    emit: (consts) => {
      const parts = needles.map((n) => `v.includes(${JSON.stringify(n)})`);
      for (const re of wild) {
        consts.push(re);
        parts.push(`c[${consts.length - 1}].test(v)`);
      }
      return `((v = r.peer), (v !== undefined && (${parts.join(' || ')})))`;
    },
    kept: values,
    failures: [],
  };
}

function serviceAccountTest(value: string, env: CompileEnv): RequestTest {
  const slash = value.indexOf('/');
  const ns = slash < 0 ? env.policyNamespace : value.slice(0, slash);
  const sa = slash < 0 ? value : value.slice(slash + 1);
  const re = new RegExp(`^spiffe://.+/ns/${escapeRegex(ns)}/(.+/|)sa/${escapeRegex(sa)}(/.+)?$`, 's');
  return (r) => r.peer !== undefined && re.test(r.peer);
}

function trustDomainTest(value: string): RequestTest {
  if (value === '*') return (r) => r.peer !== undefined && r.peer.startsWith('spiffe://');
  if (!value.includes('*')) {
    const prefix = `spiffe://${value}/`;
    return (r) => r.peer !== undefined && r.peer.startsWith(prefix);
  }
  const star = value.indexOf('*');
  const re = new RegExp(`^spiffe://${escapeRegex(value.slice(0, star))}[^/]*${escapeRegex(value.slice(star + 1))}/.*$`, 's');
  return (r) => r.peer !== undefined && re.test(r.peer);
}

/** `requestPrincipals` split at the last `/` into iss and sub matchers (generator.go requestPrincipalGenerator). */
function requestPrincipalTest(value: string): RequestTest {
  const idx = value.lastIndexOf('/');
  const found = idx >= 0;
  const iss = found ? value.slice(0, idx) : value;
  const sub = found ? value.slice(idx + 1) : '';
  const any: StringTest = (v) => v !== undefined && v.length > 0;
  let mi: StringTest;
  let ms: StringTest;
  const exact = (x: string): StringTest => (v) => v === x;
  if (value === '*') {
    mi = any;
    ms = any;
  } else if (value.startsWith('*')) {
    if (found) {
      const sfx = iss.slice(1);
      mi = iss === '*' ? any : (v) => v !== undefined && v.endsWith(sfx);
      ms = exact(sub);
    } else {
      const sfx = value.slice(1);
      mi = any;
      ms = (v) => v !== undefined && v.endsWith(sfx);
    }
  } else if (value.endsWith('*')) {
    if (found) {
      mi = exact(iss);
      const pfx = sub.slice(0, -1);
      ms = sub === '*' ? any : (v) => v !== undefined && v.startsWith(pfx);
    } else {
      const pfx = value.slice(0, -1);
      mi = (v) => v !== undefined && v.startsWith(pfx);
      ms = any;
    }
  } else {
    mi = exact(iss);
    ms = exact(sub);
  }
  return (r) => r.auth !== undefined && mi(r.auth.iss) && ms(r.auth.sub);
}

/** A claim matches a string value, or any string element of a list value; space-delimited claims are split. */
function claimMatches(auth: PreparedAuth, path: readonly string[], test: StringTest): boolean {
  let v: unknown = auth.claims;
  for (const key of path) {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
    v = (v as Record<string, unknown>)[key];
  }
  if (typeof v === 'string') {
    const last = path[path.length - 1];
    if (path.length === 1 && last !== undefined && auth.spaceDelimited.has(last) && v.includes(' ')) {
      for (const part of v.split(' ')) if (part !== '' && test(part)) return true;
      return false;
    }
    return test(v);
  }
  if (Array.isArray(v)) {
    for (const el of v) if (typeof el === 'string' && test(el)) return true;
  }
  return false;
}

function claimText(r: PreparedRequest, path: readonly string[]): string {
  if (r.auth === undefined) return noJwt;
  let v: unknown = r.auth.claims;
  for (const key of path) {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return NONE;
    v = (v as Record<string, unknown>)[key];
  }
  return v === undefined ? NONE : JSON.stringify(v);
}

/** Splits `[a][b]` into `['a','b']`; malformed nesting falls back to the whole bracket content (util.go). */
export function claimPath(bracketed: string): string[] | undefined {
  const out: string[] = [];
  let i = 0;
  while (i < bracketed.length) {
    if (bracketed[i] !== '[') break;
    const end = bracketed.indexOf(']', i + 1);
    const nextOpen = bracketed.indexOf('[', i + 1);
    if (end < 0 || (nextOpen >= 0 && nextOpen < end)) break;
    out.push(bracketed.slice(i + 1, end));
    i = end + 1;
  }
  if (i === bracketed.length && out.length > 0) return out;
  if (bracketed.startsWith('[') && bracketed.endsWith(']')) return [bracketed.slice(1, -1)];
  return undefined;
}

/** The attribute behind a `from.source` / `to.operation` field. */
export function fieldAttribute(field: string, env: CompileEnv): AttributeSpec {
  switch (field) {
    case 'principals': case 'notPrincipals': return attribute('source.principal', env);
    case 'requestPrincipals': case 'notRequestPrincipals': return attribute('request.auth.principal', env);
    case 'namespaces': case 'notNamespaces': return attribute('source.namespace', env);
    case 'serviceAccounts': case 'notServiceAccounts': return attribute('source.serviceAccount', env);
    case 'trustDomains': case 'notTrustDomains': return attribute('source.trustDomain', env);
    case 'ipBlocks': case 'notIpBlocks': return attribute('source.ip', env);
    case 'remoteIpBlocks': case 'notRemoteIpBlocks': return attribute('remote.ip', env);
    case 'hosts': case 'notHosts': return attribute('request.host', env);
    case 'ports': case 'notPorts': return attribute('destination.port', env);
    case 'methods': case 'notMethods': return attribute('request.method', env);
    case 'paths': case 'notPaths': return attribute('request.path', env);
    default: throw new CompileFailure(`unknown field ${field}`);
  }
}

/** The attribute behind a `when` key (or a field's canonical attribute). */
/**
 * The attribute behind a `when` key (or a field's canonical attribute). Specs that do not depend on the policy are
 * shared by every policy of the snapshot.
 */
export function attribute(key: string, env: CompileEnv): AttributeSpec {
  if (key === 'source.serviceAccount') return buildAttribute(key, env);
  const cache = env.attributes;
  let spec = cache?.get(key);
  if (spec === undefined) {
    spec = buildAttribute(key, env);
    cache?.set(key, spec);
  }
  return spec;
}

function buildAttribute(key: string, env: CompileEnv): AttributeSpec {
  switch (key) {
    case 'source.principal':
      return {
        attribute: key, httpOnly: false, actual: peerText,
        compile: stringSet((r) => r.peer, 'r.peer', { prefix: 'spiffe://' }),
      };
    case 'source.namespace':
      return { attribute: key, httpOnly: false, actual: namespaceText, compile: namespaceSet };
    case 'source.serviceAccount':
      return { attribute: key, httpOnly: false, actual: peerText, compile: perValue((v) => serviceAccountTest(v, env)) };
    case 'source.trustDomain':
      return { attribute: key, httpOnly: false, actual: peerText, compile: perValue(trustDomainTest) };
    case 'source.ip':
      return { attribute: key, httpOnly: false, actual: (r) => ipText(r.sourceIp), compile: ipSet((r) => r.sourceIp, 'r.sourceIp'), check: checkCidrs };
    case 'remote.ip':
      return { attribute: key, httpOnly: false, actual: (r) => ipText(r.remoteIp), compile: ipSet((r) => r.remoteIp, 'r.remoteIp'), check: checkCidrs };
    case 'destination.ip':
      return { attribute: key, httpOnly: false, actual: (r) => ipText(r.destIp), compile: ipSet((r) => r.destIp, 'r.destIp'), check: checkCidrs };
    case 'destination.port':
      return { attribute: key, httpOnly: false, actual: (r) => (r.destPort === undefined ? NONE : String(r.destPort)), compile: perValue(portTest), check: checkBy(perValue(portTest)) };
    case 'connection.sni':
      return {
        attribute: key, httpOnly: false, actual: (r) => quote(r.sni),
        compile: stringSet((r) => r.sni, 'r.sni'),
      };
    case 'request.auth.principal':
      return {
        attribute: key, httpOnly: true,
        actual: (r) => (r.auth === undefined ? noJwt : `iss=${quote(r.auth.iss)} sub=${quote(r.auth.sub)}`),
        compile: (vs) => ({ test: orTests(vs.map(requestPrincipalTest)), kept: vs, failures: [] }),
      };
    case 'request.auth.audiences':
      return claimAttribute(key, ['aud']);
    case 'request.auth.presenter':
      return claimAttribute(key, ['azp']);
    case 'request.host':
      return {
        attribute: ':authority', httpOnly: true, actual: (r) => quote(r.http?.host),
        compile: stringSet((r) => r.http?.host, '(r.http === undefined ? undefined : r.http.host)', { ignoreCase: true, star: 'present' }),
      };
    case 'request.method':
      return {
        attribute: ':method', httpOnly: true, actual: (r) => quote(r.http?.method),
        compile: stringSet((r) => r.http?.method, '(r.http === undefined ? undefined : r.http.method)', { star: 'present' }),
      };
    case 'request.path':
      return {
        attribute: ':path', httpOnly: true, actual: (r) => quote(r.http?.path),
        check: (vs) => {
          const kept: string[] = [];
          const failures: string[] = [];
          for (const v of vs) {
            const why = isPathTemplate(v) ? validatePathTemplate(v) : undefined;
            if (why === undefined) kept.push(v);
            else failures.push(`"${v}" is not a valid path template: ${why}`);
          }
          return { kept, failures };
        },
        compile: (vs) => {
          const plain = vs.filter((v) => !isPathTemplate(v));
          const templates = perValue((v) => {
            const why = validatePathTemplate(v);
            if (why !== undefined) throw new CompileFailure(`"${v}" is not a valid path template: ${why}`);
            const t = compilePathTemplate(v);
            return (r) => r.http !== undefined && t(r.http.path);
          })(vs.filter(isPathTemplate));
          const tests: RequestTest[] = [];
          if (plain.length > 0) {
            const t = compileStringSet(plain);
            tests.push((r) => t(r.http?.path));
          }
          if (templates.test !== undefined) tests.push(templates.test);
          const test = tests.length === 0 ? undefined : orTests(tests);
          const emit = templates.kept.length > 0 || plain.length === 0
            ? undefined
            : (consts: unknown[]): string => `((v = (r.http === undefined ? undefined : r.http.path)), ${emitStringSet(plain, {}, consts)})`;
          return { test, ...(emit === undefined ? {} : { emit }), kept: [...plain, ...templates.kept], failures: templates.failures };
        },
      };
  }
  if (key.startsWith('request.headers')) {
    const name = bracketName(key.slice('request.headers'.length));
    if (name === undefined) throw new CompileFailure(`expected request.headers[<name>], got ${key}`);
    const lower = name.toLowerCase();
    return {
      attribute: key, httpOnly: true,
      actual: (r) => {
        const values = r.http?.repeated?.[lower];
        return values === undefined ? quote(r.http?.headers[lower]) : `${values.length} lines ${JSON.stringify(values)}`;
      },
      compile: headerValues(lower),
    };
  }
  if (key.startsWith('request.auth.claims')) {
    const path = claimPath(key.slice('request.auth.claims'.length));
    if (path === undefined) throw new CompileFailure(`expected request.auth.claims[<name>]…, got ${key}`);
    return claimAttribute(key, path);
  }
  if (key.startsWith('experimental.envoy.filters.')) {
    // Dynamic metadata of other Envoy filters does not exist here: positive matches fail, negated ones succeed.
    return {
      attribute: key, httpOnly: false, actual: () => '(no Envoy filter metadata in Rampart)',
      compile: (vs) => ({ test: () => false, kept: vs, failures: [] }),
    };
  }
  throw new CompileFailure(`unknown attribute ${key}`);
}

function bracketName(s: string): string | undefined {
  return s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : undefined;
}

function claimAttribute(key: string, path: readonly string[]): AttributeSpec {
  return {
    attribute: key, httpOnly: true, actual: (r) => claimText(r, path),
    compile: (vs) => {
      const t = compileStringSet(vs);
      return { test: (r) => r.auth !== undefined && claimMatches(r.auth, path, t), kept: vs, failures: [] };
    },
  };
}

export function orTests(tests: readonly RequestTest[]): RequestTest {
  if (tests.length === 1) return tests[0]!;
  return (r) => {
    for (let i = 0; i < tests.length; i++) if (tests[i]!(r)) return true;
    return false;
  };
}
