import { compileIpSet, parseCidr, type ParsedIp } from '../match/cidr.ts';
import { compilePathTemplate, isPathTemplate, validatePathTemplate } from '../match/path-template.ts';
import type { PreparedAuth, PreparedRequest } from './request.ts';
import { compileStringMatch, compileStringSet, type StringTest } from './string-match.ts';
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
  /** Compiles one value; throws CompileFailure when the value cannot be compiled (as istiod's generators error). */
  readonly compileValue: (value: string) => RequestTest;
  /**
   * Some attributes compile all values together (Istio's "extended" generators); they fail or succeed as a whole.
   * Absent means values are compiled one by one.
   */
  readonly compileValues?: (values: readonly string[]) => RequestTest;
}

export class CompileFailure extends Error {}

export interface CompileEnv {
  readonly bundle: TrustDomainBundle;
  /** Namespace of the policy (bare `serviceAccounts` values are relative to it). */
  readonly policyNamespace: string;
}

const NONE = '(absent)';
const quote = (s: string | undefined): string => (s === undefined ? NONE : JSON.stringify(s));
const peerText = (r: PreparedRequest): string =>
  r.peer === undefined ? '(no peer identity: plaintext connection)' : JSON.stringify(r.peer.slice('spiffe://'.length));
const ipText = (ip: ParsedIp | undefined): string => (ip === undefined ? NONE : ip.text);
const noJwt = '(no verified JWT)';

function ipTest(value: string, get: (r: PreparedRequest) => ParsedIp | undefined): RequestTest {
  const cidr = parseCidr(value);
  if (cidr === undefined) throw new CompileFailure(`"${value}" is not an IP address or CIDR range`);
  const set = compileIpSet([cidr]);
  return (r) => {
    const ip = get(r);
    return ip !== undefined && set.contains(ip);
  };
}

function portTest(value: string): RequestTest {
  if (!/^[0-9]+$/.test(value) || Number(value) > 65535) throw new CompileFailure(`"${value}" is not a port number`);
  const port = Number(value);
  return (r) => r.destPort === port;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function namespaceTest(value: string): RequestTest {
  if (!value.includes('*')) {
    const needle = `/ns/${value}/`;
    return (r) => r.peer !== undefined && r.peer.includes(needle);
  }
  const re = new RegExp(`^.*/ns/${value.split('*').map(escapeRegex).join('.*')}/.*$`, 's');
  return (r) => r.peer !== undefined && re.test(r.peer);
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
export function attribute(key: string, env: CompileEnv): AttributeSpec {
  switch (key) {
    case 'source.principal':
      return {
        attribute: key, httpOnly: false, actual: peerText,
        compileValue: (v) => {
          const t = compileStringMatch(v, { prefix: v === '*' ? '' : 'spiffe://' });
          return (r) => t(r.peer);
        },
      };
    case 'source.namespace':
      return { attribute: key, httpOnly: false, actual: peerText, compileValue: namespaceTest };
    case 'source.serviceAccount':
      return { attribute: key, httpOnly: false, actual: peerText, compileValue: (v) => serviceAccountTest(v, env) };
    case 'source.trustDomain':
      return { attribute: key, httpOnly: false, actual: peerText, compileValue: trustDomainTest };
    case 'source.ip':
      return { attribute: key, httpOnly: false, actual: (r) => ipText(r.sourceIp), compileValue: (v) => ipTest(v, (r) => r.sourceIp) };
    case 'remote.ip':
      return { attribute: key, httpOnly: false, actual: (r) => ipText(r.remoteIp), compileValue: (v) => ipTest(v, (r) => r.remoteIp) };
    case 'destination.ip':
      return { attribute: key, httpOnly: false, actual: (r) => ipText(r.destIp), compileValue: (v) => ipTest(v, (r) => r.destIp) };
    case 'destination.port':
      return { attribute: key, httpOnly: false, actual: (r) => (r.destPort === undefined ? NONE : String(r.destPort)), compileValue: portTest };
    case 'connection.sni':
      return {
        attribute: key, httpOnly: false, actual: (r) => quote(r.sni),
        compileValue: (v) => {
          const t = compileStringMatch(v);
          return (r) => t(r.sni);
        },
      };
    case 'request.auth.principal':
      return {
        attribute: key, httpOnly: true,
        actual: (r) => (r.auth === undefined ? noJwt : `iss=${quote(r.auth.iss)} sub=${quote(r.auth.sub)}`),
        compileValue: requestPrincipalTest,
        compileValues: (vs) => orTests(vs.map(requestPrincipalTest)),
      };
    case 'request.auth.audiences':
      return claimAttribute(key, ['aud']);
    case 'request.auth.presenter':
      return claimAttribute(key, ['azp']);
    case 'request.host':
      return {
        attribute: ':authority', httpOnly: true, actual: (r) => quote(r.http?.host),
        compileValue: (v) => {
          const t = compileStringMatch(v, { ignoreCase: true, star: 'present' });
          return (r) => r.http !== undefined && t(r.http.host);
        },
      };
    case 'request.method':
      return {
        attribute: ':method', httpOnly: true, actual: (r) => quote(r.http?.method),
        compileValue: (v) => {
          const t = compileStringMatch(v, { star: 'present' });
          return (r) => r.http !== undefined && t(r.http.method);
        },
      };
    case 'request.path':
      return {
        attribute: ':path', httpOnly: true, actual: (r) => quote(r.http?.path),
        compileValue: (v) => {
          if (isPathTemplate(v)) {
            const why = validatePathTemplate(v);
            if (why !== undefined) throw new CompileFailure(`"${v}" is not a valid path template: ${why}`);
          }
          const t = isPathTemplate(v) ? compilePathTemplate(v) : compileStringMatch(v);
          return (r) => r.http !== undefined && t(r.http.path);
        },
      };
  }
  if (key.startsWith('request.headers')) {
    const name = bracketName(key.slice('request.headers'.length));
    if (name === undefined) throw new CompileFailure(`expected request.headers[<name>], got ${key}`);
    const lower = name.toLowerCase();
    return {
      attribute: key, httpOnly: true, actual: (r) => quote(r.http?.headers[lower]),
      compileValue: (v) => {
        const t = compileStringMatch(v, { star: 'present' });
        return (r) => r.http !== undefined && t(r.http.headers[lower]);
      },
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
      compileValue: () => () => false,
    };
  }
  throw new CompileFailure(`unknown attribute ${key}`);
}

function bracketName(s: string): string | undefined {
  return s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : undefined;
}

function claimAttribute(key: string, path: readonly string[]): AttributeSpec {
  const compileValues = (vs: readonly string[]): RequestTest => {
    const t = compileStringSet(vs);
    return (r) => r.auth !== undefined && claimMatches(r.auth, path, t);
  };
  return {
    attribute: key, httpOnly: true, actual: (r) => claimText(r, path),
    compileValue: (v) => compileValues([v]),
    compileValues,
  };
}

export function orTests(tests: readonly RequestTest[]): RequestTest {
  if (tests.length === 1) return tests[0]!;
  return (r) => {
    for (let i = 0; i < tests.length; i++) if (tests[i]!(r)) return true;
    return false;
  };
}
