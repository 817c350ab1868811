import type { PathSegment } from './diagnostic.ts';
import { forbiddenHost } from '../match/fetch-target.ts';
import { NANOS_PER_MILLISECOND, parseGoDuration } from './go-duration.ts';
import { inspectInlineJwks } from './inline-jwks.ts';
import type { Reporter } from './report.ts';
import type { JwtRule, RequestAuthenticationSpec, ResourceMeta } from './types.ts';
import { validateIstioAnnotations } from './validate-annotations.ts';
import type { ValidationContext } from './validate-context.ts';
import { validatePolicyScope } from './validate-selector.ts';

type Path = readonly PathSegment[];

/** CRD limits (istio/api security/v1beta1/request_authentication.proto). */
const MAX_JWT_RULES = 4096;
const MAX_SPACE_DELIMITED_CLAIMS = 64;
const MAX_JWKS_URI_LENGTH = 2048;

/** istiod's ValidateStrictHTTPHeaderName and the CRD pattern for outputClaimToHeaders[].header. */
const STRICT_HEADER_NAME = /^[-_A-Za-z0-9]+$/;

/** Istio's semantic checks for RequestAuthentication (pkg/config/validation). Reports through `r`; paths start at `spec`. */
export function validateRequestAuthentication(spec: RequestAuthenticationSpec, meta: ResourceMeta, r: Reporter, ctx: ValidationContext): void {
  void ctx;
  validateIstioAnnotations(r, meta, 'RequestAuthentication');
  validatePolicyScope(r, spec);
  const rules = spec.jwtRules ?? [];
  if (rules.length > MAX_JWT_RULES) {
    r.error(['spec', 'jwtRules'], 'ERR_JWT_RULES_TOO_MANY', `a RequestAuthentication may have at most ${MAX_JWT_RULES} jwtRules, found ${rules.length}`);
  }
  rules.forEach((rule, i) => validateJwtRule(r, rule, ['spec', 'jwtRules', i]));
}

function validateJwtRule(r: Reporter, rule: JwtRule, path: Path): void {
  const issuer = rule.issuer ?? '';
  const jwksUri = rule.jwksUri ?? '';
  if (issuer === '' && jwksUri === '') {
    const at = rule.issuer !== undefined ? [...path, 'issuer'] : path;
    r.error(at, 'ERR_JWT_ISSUER_REQUIRED', 'a jwt rule needs an issuer (or at least a jwksUri); without either there is nothing to verify tokens against');
  } else if (rule.issuer === '') {
    // CRD minLength: an explicit empty issuer is rejected even when jwksUri is set; omit the field instead.
    r.error([...path, 'issuer'], 'ERR_JWT_ISSUER_EMPTY', 'issuer must not be an empty string; omit the field if tokens from any issuer signed by jwksUri are accepted');
  }

  if (rule.jwksUri !== undefined && (issuer !== '' || jwksUri !== '')) checkJwksUri(r, rule.jwksUri, [...path, 'jwksUri']);
  // Without jwks or jwksUri the keys are found by OIDC discovery under the issuer: that is a fetch too.
  if (issuer !== '' && jwksUri === '' && (rule.jwks ?? '') === '') checkDiscoveryIssuer(r, issuer, [...path, 'issuer']);
  if (rule.jwks !== undefined && rule.jwksUri !== undefined) {
    r.error([...path, 'jwks'], 'ERR_JWT_JWKS_EXCLUSIVE', 'only one of jwks and jwksUri may be set');
  }
  if (rule.jwks !== undefined && rule.jwks !== '') {
    for (const p of inspectInlineJwks(rule.jwks)) {
      if (p.severity === 'error') r.error([...path, 'jwks'], p.code, p.message);
      else r.warn([...path, 'jwks'], p.code, p.message);
    }
  }

  rule.audiences?.forEach((a, i) => {
    if (a === '') r.error([...path, 'audiences', i], 'ERR_JWT_AUDIENCE_EMPTY', 'audiences must not contain an empty string');
  });
  rule.fromHeaders?.forEach((h, i) => {
    if (h.name === '') r.error([...path, 'fromHeaders', i, 'name'], 'ERR_JWT_HEADER_NAME_EMPTY', 'fromHeaders entries need a header name');
  });
  rule.fromParams?.forEach((p, i) => {
    if (p === '') r.error([...path, 'fromParams', i], 'ERR_JWT_PARAM_EMPTY', 'fromParams must not contain an empty query parameter name');
  });
  rule.fromCookies?.forEach((c, i) => {
    if (c === '') r.error([...path, 'fromCookies', i], 'ERR_JWT_COOKIE_EMPTY', 'fromCookies must not contain an empty cookie name');
  });
  rule.outputClaimToHeaders?.forEach((o, i) => {
    const at = [...path, 'outputClaimToHeaders', i];
    if (o.header === '') {
      r.error([...at, 'header'], 'ERR_JWT_CLAIM_TO_HEADER_EMPTY', 'outputClaimToHeaders entries need a header name');
    } else if (!STRICT_HEADER_NAME.test(o.header)) {
      r.error([...at, 'header'], 'ERR_JWT_CLAIM_TO_HEADER_INVALID', `"${o.header}" is not an accepted header name; use only letters, digits, "-" and "_"`);
    }
    if (o.claim === '') r.error([...at, 'claim'], 'ERR_JWT_CLAIM_TO_HEADER_EMPTY', 'outputClaimToHeaders entries need a claim name');
  });
  if (rule.timeout !== undefined) checkTimeout(r, rule.timeout, [...path, 'timeout']);

  const claims = rule.spaceDelimitedClaims ?? [];
  if (claims.length > MAX_SPACE_DELIMITED_CLAIMS) {
    r.error([...path, 'spaceDelimitedClaims'], 'ERR_JWT_SPACE_DELIMITED_CLAIMS_TOO_MANY', `spaceDelimitedClaims may list at most ${MAX_SPACE_DELIMITED_CLAIMS} claims, found ${claims.length}`);
  }
  claims.forEach((c, i) => {
    // CRD minLength on the items.
    if (c === '') r.error([...path, 'spaceDelimitedClaims', i], 'ERR_JWT_SPACE_DELIMITED_CLAIM_EMPTY', 'spaceDelimitedClaims must not contain an empty claim name');
  });
}

/** istiod's ParseJwksURI (pkg/config/security) plus the CRD's length limit and http/https scheme rule. */
function checkJwksUri(r: Reporter, uri: string, path: Path): void {
  if (uri.length > MAX_JWKS_URI_LENGTH) {
    r.error(path, 'ERR_JWT_JWKS_URI_TOO_LONG', `jwksUri is ${uri.length} characters long; at most ${MAX_JWKS_URI_LENGTH} are allowed`);
    return;
  }
  const invalid = (why: string): void => r.error(path, 'ERR_JWT_JWKS_URI_INVALID', `jwksUri "${uri}" ${why}; expected an http:// or https:// URL such as https://example.com/.well-known/jwks.json`);
  if (uri === '') return invalid('is empty');
  // WHATWG URL parsing silently trims the text and drops tabs and newlines; Go's url.Parse rejects control characters.
  if (/[\u0000-\u001f\u007f]/.test(uri) || uri !== uri.trim()) return invalid('contains control characters or surrounding whitespace');
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return invalid('is not a valid URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return invalid(`has scheme "${url.protocol.replace(/:$/, '')}"`);
  const forbidden = forbiddenHost(url.hostname);
  if (forbidden !== undefined) {
    r.error(path, 'ERR_JWT_JWKS_URI_FORBIDDEN', `jwksUri "${uri}" is never fetched: ${forbidden}; keys are not read from link-local or metadata addresses`);
    return;
  }
  // Istio accepts plain http; keys fetched over it can be swapped in transit, so say so (loopback excepted).
  const loopback = url.hostname === 'localhost' || url.hostname === '[::1]' || url.hostname.startsWith('127.');
  if (url.protocol === 'http:' && !loopback) {
    r.warn(path, 'WARN_JWKS_URI_PLAINTEXT', `jwksUri "${uri}" is plain http: anyone on the path can replace the keys and mint accepted tokens; use https`);
  }
}

/** The issuer URL that OIDC discovery would fetch from must not be a link-local or metadata address either. */
function checkDiscoveryIssuer(r: Reporter, issuer: string, path: Path): void {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    return;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return;
  const forbidden = forbiddenHost(url.hostname);
  if (forbidden !== undefined) {
    r.error(path, 'ERR_JWT_ISSUER_FORBIDDEN', `issuer "${issuer}" has neither jwks nor jwksUri, so its keys would be discovered at ${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration, which is never fetched: ${forbidden}; set jwks or a jwksUri elsewhere`);
  }
}

/** istiod's ValidateDuration (pkg/config/validation/agent) and the CRD rule `duration(self) >= duration('1ms')`. */
function checkTimeout(r: Reporter, text: string, path: Path): void {
  const nanos = parseGoDuration(text);
  if (nanos === undefined) {
    r.error(path, 'ERR_JWT_TIMEOUT_INVALID', `timeout "${text}" is not a duration; write it like 5s, 1.5s, 100ms or 1m30s`);
  } else if (nanos < NANOS_PER_MILLISECOND) {
    r.error(path, 'ERR_JWT_TIMEOUT_TOO_SHORT', `timeout "${text}" is shorter than the minimum of 1ms`);
  } else if (nanos % NANOS_PER_MILLISECOND !== 0n) {
    r.error(path, 'ERR_JWT_TIMEOUT_PRECISION', `timeout "${text}" is not a whole number of milliseconds; only millisecond precision is supported`);
  }
}
