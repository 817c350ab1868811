import { closest } from '../resources/similar.ts';
import { RequestError } from '../errors.ts';
import { parseIp, type ParsedIp } from '../match/cidr.ts';
import { normalizePath, rejectionStatus, type PathNormalization } from '../match/path-normalize.ts';

/**
 * One request as seen by the destination's sidecar: the JSON form read by `rampart check` and the shape the proxy
 * fills in. See docs/check-request.md.
 */
export interface CheckRequest {
  readonly destination: {
    readonly namespace?: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly ip?: string;
    readonly port?: number;
  };
  readonly source?: {
    /** Verified peer identity without `spiffe://`; absent means the connection was plaintext. */
    readonly principal?: string;
    readonly ip?: string;
  };
  /** Original client IP (X-Forwarded-For / PROXY protocol); defaults to `source.ip`. */
  readonly remoteIp?: string;
  readonly sni?: string;
  /** Absent for TCP traffic. */
  readonly http?: {
    readonly method: string;
    readonly host?: string;
    /** Raw request target as sent: path and query, before normalization. */
    readonly path: string;
    readonly headers?: Readonly<Record<string, string | readonly string[]>>;
  };
  /** An already-verified JWT. */
  readonly auth?: VerifiedJwt;
}

export interface VerifiedJwt {
  /** `iss/sub`. */
  readonly principal?: string;
  readonly audiences?: readonly string[];
  readonly presenter?: string;
  readonly claims?: Readonly<Record<string, unknown>>;
}

/** The attributes a decision reads, computed once per request (parsing, lower-casing, normalization). */
export interface PreparedRequest {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly destIp: ParsedIp | undefined;
  readonly destPort: number | undefined;
  readonly sourceIp: ParsedIp | undefined;
  readonly remoteIp: ParsedIp | undefined;
  /** `spiffe://…` of the verified peer, or undefined for plaintext. */
  readonly peer: string | undefined;
  readonly sni: string | undefined;
  readonly http: PreparedHttp | undefined;
  readonly auth: PreparedAuth | undefined;
  /** Set when the proxy would reject the request before any policy (400, or 404 for a target that is no path). */
  readonly malformed: { readonly reason: string; readonly status: 400 | 404 } | undefined;
  readonly raw: CheckRequest;
}

export interface PreparedHttp {
  readonly method: string;
  /** Host as sent, lower-cased (hosts match case-insensitively). */
  readonly host: string | undefined;
  /** Normalized path without the query. */
  readonly path: string;
  readonly query: string;
  /** Lower-cased header names; repeated headers joined with `,` as Envoy does. */
  readonly headers: Readonly<Record<string, string>>;
  /**
   * The values of each header that came more than once, in order; undefined when none did (the usual case).
   * Policies match each of them on its own, as Envoy's RBAC does since the CVE-2026-26308 fix.
   */
  readonly repeated: Readonly<Record<string, readonly string[]>> | undefined;
}

export interface PreparedAuth {
  readonly iss: string | undefined;
  readonly sub: string | undefined;
  readonly principal: string;
  readonly audiences: readonly string[];
  readonly presenter: string | undefined;
  readonly claims: Readonly<Record<string, unknown>>;
  /** Claims whose string values are split on spaces for matching (`scope`, `permission` and configured ones). */
  readonly spaceDelimited: ReadonlySet<string>;
}

const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Validates the JSON shape of a check request, naming the offending field. */
export function parseCheckRequest(value: unknown): CheckRequest {
  const obj = (v: unknown, path: string): Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new RequestError(path, 'must be an object');
    return v as Record<string, unknown>;
  };
  const optString = (o: Record<string, unknown>, key: string, path: string): void => {
    if (o[key] !== undefined && typeof o[key] !== 'string') throw new RequestError(`${path}.${key}`, 'must be a string');
  };
  // Unknown fields are errors everywhere, as in resources: "heders" would otherwise drop every header silently.
  const fields = (o: Record<string, unknown>, path: string, known: readonly string[]): void => {
    for (const k of Object.keys(o)) {
      if (known.includes(k)) continue;
      const hint = closest(k, known);
      throw new RequestError(path === '' ? k : `${path}.${k}`, `unknown field${hint === undefined ? '' : ` (did you mean "${hint}"?)`}; expected one of ${known.join(', ')}`);
    }
  };
  if (Array.isArray(value)) throw new RequestError('request', 'is a list: rampart check decides one request; run a list of requests with their expected decisions as a suite (rampart test)');
  const top = obj(value, 'request');
  fields(top, '', ['destination', 'source', 'remoteIp', 'sni', 'http', 'auth']);
  const dest = obj(top['destination'] ?? {}, 'destination');
  fields(dest, 'destination', ['namespace', 'labels', 'ip', 'port']);
  optString(dest, 'namespace', 'destination');
  optString(dest, 'ip', 'destination');
  if (dest['labels'] !== undefined) {
    const labels = obj(dest['labels'], 'destination.labels');
    for (const [k, v] of Object.entries(labels)) if (typeof v !== 'string') throw new RequestError(`destination.labels.${k}`, 'must be a string');
  }
  const port = dest['port'];
  if (port !== undefined && (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535)) {
    throw new RequestError('destination.port', 'must be an integer from 0 to 65535');
  }
  if (top['source'] !== undefined) {
    const src = obj(top['source'], 'source');
    fields(src, 'source', ['principal', 'ip']);
    optString(src, 'principal', 'source');
    optString(src, 'ip', 'source');
    if (typeof src['principal'] === 'string' && src['principal'].startsWith('spiffe://')) {
      throw new RequestError('source.principal', 'write the principal without "spiffe://", as policies do');
    }
  }
  optString(top, 'remoteIp', 'request');
  optString(top, 'sni', 'request');
  for (const [k, path] of [['ip', 'destination.ip']] as const) {
    const v = dest[k];
    if (typeof v === 'string' && parseIp(v) === undefined) throw new RequestError(path, `"${v}" is not an IP address`);
  }
  const src = top['source'] as Record<string, unknown> | undefined;
  if (typeof src?.['ip'] === 'string' && parseIp(src['ip']) === undefined) throw new RequestError('source.ip', `"${src['ip']}" is not an IP address`);
  if (typeof top['remoteIp'] === 'string' && parseIp(top['remoteIp']) === undefined) throw new RequestError('remoteIp', `"${top['remoteIp']}" is not an IP address`);
  if (top['http'] !== undefined) {
    const http = obj(top['http'], 'http');
    fields(http, 'http', ['method', 'host', 'path', 'headers']);
    if (typeof http['method'] !== 'string' || http['method'] === '') throw new RequestError('http.method', 'is required');
    if (typeof http['path'] !== 'string' || http['path'] === '') throw new RequestError('http.path', 'is required (the raw request target, e.g. "/ip?x=1")');
    optString(http, 'host', 'http');
    if (http['headers'] !== undefined) {
      const headers = obj(http['headers'], 'http.headers');
      for (const [k, v] of Object.entries(headers)) {
        const ok = typeof v === 'string' || (Array.isArray(v) && v.every((x) => typeof x === 'string'));
        if (!ok) throw new RequestError(`http.headers.${k}`, 'must be a string or a list of strings');
      }
    }
  }
  if (top['auth'] !== undefined) {
    const auth = obj(top['auth'], 'auth');
    fields(auth, 'auth', ['principal', 'audiences', 'presenter', 'claims']);
    optString(auth, 'principal', 'auth');
    optString(auth, 'presenter', 'auth');
    const aud = auth['audiences'];
    if (aud !== undefined && !(Array.isArray(aud) && aud.every((x) => typeof x === 'string'))) {
      throw new RequestError('auth.audiences', 'must be a list of strings');
    }
    if (auth['claims'] !== undefined) obj(auth['claims'], 'auth.claims');
    if (auth['principal'] === undefined && auth['claims'] === undefined) {
      throw new RequestError('auth', 'needs a principal ("iss/sub") or claims with iss and sub');
    }
  }
  return top as unknown as CheckRequest;
}

/** Computes every attribute once so that deciding is lookups and comparisons only. */
export function prepareRequest(req: CheckRequest, normalization: PathNormalization): PreparedRequest {
  const sourceIp = req.source?.ip === undefined ? undefined : parseIp(req.source.ip);
  const remoteIp = req.remoteIp === undefined ? sourceIp : parseIp(req.remoteIp);
  let malformed: { reason: string; status: 400 | 404 } | undefined;
  let http: PreparedHttp | undefined;
  if (req.http !== undefined) {
    const headers: Record<string, string> = Object.create(null) as Record<string, string>;
    let repeated: Record<string, string[]> | undefined;
    for (const [name, value] of Object.entries(req.http.headers ?? {})) {
      if (!HEADER_NAME.test(name)) malformed ??= { reason: `invalid header name ${JSON.stringify(name)}`, status: 400 };
      const lower = name.toLowerCase();
      const values = typeof value === 'string' ? [value] : (value as readonly string[]);
      if (values.length === 0) continue;
      const joined = values.length === 1 ? values[0]! : values.join(',');
      const before = headers[lower];
      headers[lower] = before === undefined ? joined : `${before},${joined}`;
      if (before !== undefined || values.length > 1) {
        repeated ??= Object.create(null) as Record<string, string[]>;
        const list = (repeated[lower] ??= []);
        if (before !== undefined && list.length === 0) list.push(...splitBack(req.http.headers ?? {}, lower, name));
        list.push(...values);
      }
    }
    const method = req.http.method;
    // Envoy's codec rejects methods that are not upper-case tokens (the HTTP/1 parser is case-sensitive).
    if (!/^[A-Z]+$/.test(method)) malformed ??= { reason: `invalid method ${JSON.stringify(method)}`, status: 400 };
    const host = req.http.host ?? headers['host'] ?? headers[':authority'];
    if (host !== undefined) headers['host'] ??= host;
    headers[':method'] = method;
    const n = normalizePath(req.http.path, normalization);
    let path = req.http.path;
    let query = '';
    if (n.ok) {
      path = n.path;
      query = n.query;
    } else {
      malformed ??= { reason: n.reason, status: rejectionStatus(n) };
    }
    headers[':path'] = path + query;
    if (host !== undefined) headers[':authority'] = host;
    http = { method, host: host?.toLowerCase(), path, query, headers, repeated };
  }
  return {
    namespace: req.destination.namespace ?? 'default',
    // Frozen (the caller's object when it is frozen already, else a copy): the engine remembers workload views by
    // the identity of frozen label sets, so a sidecar passing its own frozen labels skips the lookup key.
    labels: frozenLabels(req.destination.labels),
    destIp: req.destination.ip === undefined ? undefined : parseIp(req.destination.ip),
    destPort: req.destination.port,
    sourceIp,
    remoteIp,
    peer: req.source?.principal === undefined || req.source.principal === '' ? undefined : `spiffe://${req.source.principal}`,
    sni: req.sni,
    http,
    auth: undefined,
    malformed,
    raw: req,
  };
}

/** The values of `lower` given under names before `current` (another casing of the same header). */
function splitBack(headers: Readonly<Record<string, string | readonly string[]>>, lower: string, current: string): string[] {
  const out: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (name === current) break;
    if (name.toLowerCase() === lower) out.push(...(typeof value === 'string' ? [value] : value));
  }
  return out;
}

const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});

/** Frozen copies of callers' label objects, reused while the object still holds the same labels. */
const labelCopies = new WeakMap<object, Readonly<Record<string, string>>>();

function frozenLabels(labels: Readonly<Record<string, string>> | undefined): Readonly<Record<string, string>> {
  if (labels === undefined) return NO_LABELS;
  if (Object.isFrozen(labels)) return labels;
  const copy = labelCopies.get(labels);
  if (copy !== undefined && sameLabels(copy, labels)) return copy;
  const made = Object.freeze({ ...labels });
  labelCopies.set(labels, made);
  return made;
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  let n = 0;
  for (const k in b) {
    if (a[k] !== b[k]) return false;
    n++;
  }
  let m = 0;
  for (const _ in a) m++;
  return n === m;
}

/** Builds the request.auth.* attributes from a verified token; iss/sub come from the claims, else from the principal. */
export function prepareAuth(jwt: VerifiedJwt, spaceDelimited: ReadonlySet<string>): PreparedAuth {
  const claims = jwt.claims ?? {};
  let iss = typeof claims['iss'] === 'string' ? claims['iss'] : undefined;
  let sub = typeof claims['sub'] === 'string' ? claims['sub'] : undefined;
  if ((iss === undefined || sub === undefined) && jwt.principal !== undefined) {
    const i = jwt.principal.lastIndexOf('/');
    if (i >= 0) {
      iss ??= jwt.principal.slice(0, i);
      sub ??= jwt.principal.slice(i + 1);
    }
  }
  const aud = claims['aud'];
  const audiences = jwt.audiences ?? (typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : []);
  const azp = claims['azp'];
  return {
    iss,
    sub,
    principal: jwt.principal ?? `${iss ?? ''}/${sub ?? ''}`,
    audiences,
    presenter: jwt.presenter ?? (typeof azp === 'string' ? azp : undefined),
    claims: { ...claims, ...(iss === undefined ? {} : { iss }), ...(sub === undefined ? {} : { sub }), aud: audiences, ...(azp === undefined && jwt.presenter !== undefined ? { azp: jwt.presenter } : {}) },
    spaceDelimited,
  };
}
