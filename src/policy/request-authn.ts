import type { JwtRule, RequestAuthentication } from '../resources/types.ts';
import type { PreparedRequest, VerifiedJwt } from './request.ts';

/** The JWT step's outcome for one request, before authorization. */
export type JwtOutcome =
  | { readonly kind: 'none'; readonly message: string }
  | { readonly kind: 'skipped'; readonly message: string }
  | { readonly kind: 'verified'; readonly message: string; readonly jwt: VerifiedJwt; readonly spaceDelimited: ReadonlySet<string> }
  | { readonly kind: 'rejected'; readonly status: 401 | 403; readonly reason: string; readonly message: string };

const DEFAULT_SPACE_DELIMITED = ['scope', 'permission'];

/** Claims whose string value is split on spaces for matching: `scope`, `permission` and the accepting rules' own. */
export function spaceDelimitedClaims(accepted: readonly JwtRuleRef[]): ReadonlySet<string> {
  const set = new Set(DEFAULT_SPACE_DELIMITED);
  for (const ref of accepted) for (const c of ref.rule.spaceDelimitedClaims ?? []) set.add(c);
  return set;
}

export interface JwtRuleRef {
  readonly policy: string;
  readonly index: number;
  readonly rule: JwtRule;
}

export function collectJwtRules(policies: readonly RequestAuthentication[]): JwtRuleRef[] {
  const out: JwtRuleRef[] = [];
  for (const p of policies) {
    (p.spec.jwtRules ?? []).forEach((rule, index) => out.push({ policy: `${p.meta.namespace}/${p.meta.name}`, index, rule }));
  }
  return out;
}

/** CORS preflight requests bypass JWT checks (Istio sets Envoy's bypass_cors_preflight). */
export function isCorsPreflight(r: PreparedRequest): boolean {
  const h = r.http;
  return h !== undefined && h.method === 'OPTIONS' && h.headers['origin'] !== undefined && h.headers['access-control-request-method'] !== undefined;
}

/** A token found in a request, with every rule that looks where it was found. */
export interface FoundToken {
  readonly token: string;
  /** Where it was found, for messages (`header authorization (Bearer)`, `cookie session`…). */
  readonly locations: readonly string[];
  /** The same, structured: what a proxy strips when the token is not forwarded. */
  readonly sources: readonly TokenSource[];
  readonly rules: readonly JwtRuleRef[];
}

export interface TokenSource {
  readonly kind: 'header' | 'param' | 'cookie';
  /** Header names lower-case; parameter and cookie names as configured. */
  readonly name: string;
  /** The rule that looks there. */
  readonly rule: JwtRuleRef;
}

/**
 * Verifies raw tokens found in a request against the rules that found them (the jwt/ module implements it with
 * key sets; the engine stays free of I/O and keys). Returns Envoy's outcome for the request.
 */
export interface JwtVerifier {
  authenticate(tokens: readonly FoundToken[], allRules: readonly JwtRuleRef[]): JwtOutcome;
}

/**
 * Every value of a cookie: a request may carry the same name twice (two Cookie headers, or twice in one), and each
 * copy is a token to check. Quotes around a value are dropped, as Envoy's cookie parser does.
 */
function cookieValues(header: string, name: string): string[] {
  const out: string[] = [];
  for (const part of header.split(/[;,]/)) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      let v = part.slice(eq + 1).trim();
      if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
      out.push(v);
    }
  }
  return out;
}

/** RFC 4648 §5 base64url plus the dot: the characters a compact JWS is made of (Envoy's extractor alphabet). */
const TOKEN_CHAR = /[A-Za-z0-9_.-]/;
const NOT_TOKEN_CHAR = /[^A-Za-z0-9_.-]/;

/**
 * The token in a header value after `prefix`, as Envoy's extractor takes it (jwt_authn extractor.cc extractJWT):
 * undefined when the prefix is nowhere in the value (no token at this location); else the first run of token
 * characters after the prefix, or, when there is none, the whole value (which then fails as malformed: "Bearer "
 * with nothing after it is a bad token, not a missing one).
 */
function afterPrefix(value: string, prefix: string): string | undefined {
  const at = value.indexOf(prefix);
  if (at < 0) return undefined;
  const rest = value.slice(at + prefix.length);
  const start = rest.search(TOKEN_CHAR);
  if (start < 0) return value;
  const tail = rest.slice(start);
  const end = tail.search(NOT_TOKEN_CHAR);
  return end < 0 ? tail : tail.slice(0, end);
}

/**
 * Each line of a header as sent. The prepared view joins repeated headers with "," (as Envoy does for matching);
 * token locations must see every copy, since Envoy's extractor takes each value of a header as a token of its own
 * and every token must verify: two Authorization headers can never lend a bad token the standing of a good one.
 */
function headerCopies(r: PreparedRequest, name: string): readonly string[] {
  const raw = r.raw.http?.headers;
  if (raw === undefined) return [];
  const out: string[] = [];
  for (const k in raw) {
    if (k.toLowerCase() !== name) continue;
    const v = raw[k]!;
    if (typeof v === 'string') out.push(v);
    else out.push(...(v as readonly string[]));
  }
  return out;
}

const NO_PARAMS: Pick<URLSearchParams, 'getAll'> = { getAll: () => [] };

/**
 * The last extraction per prepared request: deciding extracts the tokens, and a proxy forwarding the allowed
 * request needs the same list for its header edits. A prepared request is not changed once made.
 */
const lastExtraction = new WeakMap<PreparedRequest, { readonly rules: readonly JwtRuleRef[]; readonly found: FoundToken[] }>();

/** The tokens every rule finds in the request, grouped by token value (same order as the rules). */
export function extractTokens(rules: readonly JwtRuleRef[], r: PreparedRequest): FoundToken[] {
  const h = r.http;
  if (h === undefined) return [];
  const last = lastExtraction.get(r);
  if (last !== undefined && last.rules === rules) return last.found;
  const found = extractTokensOnce(rules, r, h);
  lastExtraction.set(r, { rules, found });
  return found;
}

/**
 * Each copy of a location is a token: every value of a repeated header (as Envoy), every value of a repeated query
 * parameter and every cookie of the name. Envoy reads only the first value of a parameter or cookie and forwards the
 * others unchecked to the app, which may well read another copy; here every copy must verify, so a request with a
 * second, bad copy gets 401 (a deliberate, stricter choice; docs/jwt.md). A location present with an empty value
 * is a token too (it fails as malformed), as in Envoy, except for an empty cookie.
 */
function extractTokensOnce(rules: readonly JwtRuleRef[], r: PreparedRequest, h: NonNullable<PreparedRequest['http']>): FoundToken[] {
  const byToken = new Map<string, { locations: string[]; sources: TokenSource[]; rules: JwtRuleRef[] }>();
  const add = (token: string, location: string, ref: JwtRuleRef, kind: TokenSource['kind'], name: string): void => {
    let e = byToken.get(token);
    if (e === undefined) byToken.set(token, (e = { locations: [], sources: [], rules: [] }));
    if (!e.locations.includes(location)) e.locations.push(location);
    e.sources.push({ kind, name, rule: ref });
    if (!e.rules.includes(ref)) e.rules.push(ref);
  };
  const fromHeader = (name: string, prefix: string | undefined, location: string, ref: JwtRuleRef): void => {
    // Most requests lack the header: the joined view says so without looking at the raw lines.
    if (h.headers[name] === undefined) return;
    for (const v of headerCopies(r, name)) {
      if (prefix === undefined || prefix === '') {
        add(v, location, ref, 'header', name);
        continue;
      }
      // "Bearer A, Bearer B" in one line is what any proxy may make of two lines (RFC 9110 §5.3), and an app may
      // read either: each element is a copy. A token never holds a comma, so a single token is unaffected.
      for (const element of v.includes(',') ? v.split(',') : [v]) {
        const t = afterPrefix(element, prefix);
        if (t !== undefined) add(t, location, ref, 'header', name);
      }
    }
  };
  // Most requests have no query: skip building URLSearchParams for them (it was most of this function's cost).
  const params = h.query === '' || h.query === '?' ? NO_PARAMS : new URLSearchParams(h.query.startsWith('?') ? h.query.slice(1) : h.query);
  const cookies = h.headers['cookie'];
  for (const ref of rules) {
    const rule = ref.rule;
    const custom = (rule.fromHeaders?.length ?? 0) + (rule.fromParams?.length ?? 0) + (rule.fromCookies?.length ?? 0) > 0;
    if (!custom) {
      fromHeader('authorization', 'Bearer ', 'header authorization (Bearer)', ref);
      for (const q of params.getAll('access_token')) add(q, 'query parameter access_token', ref, 'param', 'access_token');
      continue;
    }
    for (const fh of rule.fromHeaders ?? []) {
      fromHeader(fh.name.toLowerCase(), fh.prefix, `header ${fh.name}${fh.prefix === undefined ? '' : ` (prefix "${fh.prefix}")`}`, ref);
    }
    for (const p of rule.fromParams ?? []) {
      for (const q of params.getAll(p)) add(q, `query parameter ${p}`, ref, 'param', p);
    }
    if (cookies !== undefined) {
      for (const c of rule.fromCookies ?? []) {
        for (const v of cookieValues(cookies, c)) if (v !== '') add(v, `cookie ${c}`, ref, 'cookie', c);
      }
    }
  }
  return [...byToken].map(([token, e]) => ({ token, locations: e.locations, sources: e.sources, rules: e.rules }));
}

function jwtIssuer(jwt: VerifiedJwt): string | undefined {
  const iss = jwt.claims?.['iss'];
  if (typeof iss === 'string') return iss;
  if (jwt.principal === undefined) return undefined;
  const i = jwt.principal.lastIndexOf('/');
  return i < 0 ? undefined : jwt.principal.slice(0, i);
}

function jwtAudiences(jwt: VerifiedJwt): string[] {
  if (jwt.audiences !== undefined) return [...jwt.audiences];
  const aud = jwt.claims?.['aud'];
  if (typeof aud === 'string') return [aud];
  if (Array.isArray(aud)) return aud.filter((a): a is string => typeof a === 'string');
  return [];
}

/**
 * The RequestAuthentication step with an already-verified token (`auth` of a check request). Issuer and audience
 * are still checked against the workload's rules, with Envoy's outcomes: an issuer no rule accepts is 401, an
 * audience no rule accepts is 403. A raw token without `auth` cannot be verified here: it fails closed.
 */
export function authenticate(rules: readonly JwtRuleRef[], r: PreparedRequest, verifier?: JwtVerifier): JwtOutcome {
  const supplied = r.raw.auth;
  if (rules.length === 0) {
    return {
      kind: 'none',
      message: supplied === undefined
        ? 'no RequestAuthentication applies: request.auth.* is empty'
        : 'no RequestAuthentication applies: the supplied token is not validated and request.auth.* stays empty',
    };
  }
  if (r.http === undefined) return { kind: 'none', message: 'TCP traffic: JWT authentication does not apply' };
  if (isCorsPreflight(r)) return { kind: 'skipped', message: 'CORS preflight request: JWT checks are bypassed' };
  if (supplied === undefined) {
    // One scan of the request's token locations (any custom location turns off the defaults for its rule).
    const tokens = extractTokens(rules, r);
    if (tokens.length === 0) {
      return { kind: 'none', message: `no token in any location of ${rules.length} JWT rule(s): the request goes on without request.auth.* (authorization decides)` };
    }
    if (verifier !== undefined) return verifier.authenticate(tokens, rules);
    return {
      kind: 'rejected', status: 401,
      reason: 'Jwt verification fails',
      message: `a token was found (${tokens[0]!.locations[0]}) but raw token verification is not available here; pass the verified token as "auth" (failing closed)`,
    };
  }
  const iss = jwtIssuer(supplied);
  // A rule without issuer (jwksUri only) does not check `iss` in Envoy.
  const byIssuer = rules.filter((ref) => ref.rule.issuer === undefined || ref.rule.issuer === '' || ref.rule.issuer === iss);
  if (byIssuer.length === 0) {
    return {
      kind: 'rejected', status: 401, reason: 'Jwt issuer is not configured',
      message: `token issuer ${JSON.stringify(iss ?? '')} is not accepted by any rule (issuers: ${rules.map((x) => JSON.stringify(x.rule.issuer ?? '')).join(', ')})`,
    };
  }
  const aud = jwtAudiences(supplied);
  const accepted = byIssuer.filter((ref) => {
    const want = ref.rule.audiences ?? [];
    return want.length === 0 || want.some((a) => aud.includes(a));
  });
  if (accepted.length === 0) {
    return {
      kind: 'rejected', status: 403, reason: 'Audiences in Jwt are not allowed',
      message: `token audiences ${JSON.stringify(aud)} match none of ${JSON.stringify(byIssuer.flatMap((x) => x.rule.audiences ?? []))}`,
    };
  }
  const spaceDelimited = spaceDelimitedClaims(accepted);
  const first = accepted[0]!;
  return {
    kind: 'verified', jwt: supplied, spaceDelimited,
    message: `token of issuer ${JSON.stringify(iss ?? '')} accepted by ${first.policy} jwtRules[${first.index}]`,
  };
}
