import { RampartError } from '../errors.ts';

/**
 * SPIFFE IDs as the SPIFFE ID specification defines them (spiffe://<trust-domain>/<path>), and Istio's workload form
 * spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
 */

export type SpiffeIdProblem =
  | 'empty'
  | 'scheme'
  | 'trust-domain-missing'
  | 'trust-domain-chars'
  | 'trust-domain-length'
  | 'port-or-userinfo'
  | 'query-or-fragment'
  | 'empty-segment'
  | 'dot-segment'
  | 'trailing-slash'
  | 'path-chars'
  | 'too-long'
  | 'not-istio-form'
  | 'kubernetes-name';

/** Input that is not a valid SPIFFE ID; `problem` says which rule it breaks. */
export class SpiffeIdError extends RampartError {
  readonly problem: SpiffeIdProblem;
  readonly value: string;
  constructor(problem: SpiffeIdProblem, value: string, message: string) {
    super('ERR_SPIFFE_ID_INVALID', `invalid SPIFFE ID ${JSON.stringify(value)}: ${message}`);
    this.problem = problem;
    this.value = value;
  }
}

const SCHEME = 'spiffe://';
/** The specification caps a SPIFFE ID at 2048 bytes and a trust domain at 255 characters. */
const MAX_ID_BYTES = 2048;
const MAX_TRUST_DOMAIN = 255;
const TRUST_DOMAIN_CHAR = /^[a-z0-9._-]$/;
const PATH_CHAR = /^[a-zA-Z0-9._-]$/;

export interface SpiffeId {
  readonly trustDomain: string;
  /** The path with its leading slash (`/ns/foo/sa/bar`), or '' for a trust domain's own ID. */
  readonly path: string;
  /** `spiffe://<trust-domain><path>`. */
  readonly uri: string;
}

export interface IstioIdentity extends SpiffeId {
  readonly namespace: string;
  readonly serviceAccount: string;
}

function fail(problem: SpiffeIdProblem, value: string, message: string): never {
  throw new SpiffeIdError(problem, value, message);
}

/** Checks a trust domain name; returns it unchanged. */
export function parseTrustDomain(td: string, whole: string = td): string {
  if (td === '') fail('trust-domain-missing', whole, 'the trust domain is missing');
  if (td.length > MAX_TRUST_DOMAIN) fail('trust-domain-length', whole, `the trust domain is longer than ${MAX_TRUST_DOMAIN} characters`);
  for (const ch of td) {
    if (ch === ':' || ch === '@') fail('port-or-userinfo', whole, 'a SPIFFE ID has no port or user info');
    if (!TRUST_DOMAIN_CHAR.test(ch)) {
      fail('trust-domain-chars', whole, `the trust domain may only hold lowercase letters, digits, ".", "-" and "_" (found ${JSON.stringify(ch)})`);
    }
  }
  return td;
}

function checkPath(path: string, whole: string): void {
  if (path === '') return;
  if (path.endsWith('/')) fail('trailing-slash', whole, 'the path must not end with "/"');
  for (const seg of path.slice(1).split('/')) {
    if (seg === '') fail('empty-segment', whole, 'the path has an empty segment ("//")');
    if (seg === '.' || seg === '..') fail('dot-segment', whole, `the path has a "${seg}" segment`);
    for (const ch of seg) {
      if (!PATH_CHAR.test(ch)) {
        fail('path-chars', whole, `path segments may only hold letters, digits, ".", "-" and "_" (found ${JSON.stringify(ch)})`);
      }
    }
  }
}

/** Parses `spiffe://trust-domain/path` strictly per the SPIFFE ID specification. */
export function parseSpiffeId(value: string): SpiffeId {
  if (value === '') fail('empty', value, 'the value is empty');
  if (Buffer.byteLength(value, 'utf8') > MAX_ID_BYTES) fail('too-long', value, `longer than ${MAX_ID_BYTES} bytes`);
  if (!value.startsWith(SCHEME)) fail('scheme', value, 'it must start with "spiffe://" (lowercase scheme)');
  const rest = value.slice(SCHEME.length);
  if (rest.includes('?') || rest.includes('#')) fail('query-or-fragment', value, 'a SPIFFE ID has no query or fragment');
  const slash = rest.indexOf('/');
  const trustDomain = parseTrustDomain(slash < 0 ? rest : rest.slice(0, slash), value);
  const path = slash < 0 ? '' : rest.slice(slash);
  checkPath(path, value);
  return { trustDomain, path, uri: value };
}

/** Builds and validates `spiffe://<trustDomain>/<segments…>`. */
export function formatSpiffeId(trustDomain: string, ...segments: readonly string[]): SpiffeId {
  return parseSpiffeId(`${SCHEME}${trustDomain}${segments.map((s) => `/${s}`).join('')}`);
}

/** Kubernetes names: a namespace is a DNS-1123 label, a service account a DNS-1123 subdomain. */
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * Istio's workload identity for a namespace and service account, which must be Kubernetes names (a `/` would
 * silently change the ID's shape). An `@` in the trust domain becomes `.`, as istiod does when it generates IDs.
 */
export function istioSpiffeId(trustDomain: string, namespace: string, serviceAccount: string): IstioIdentity {
  const whole = `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
  if (!DNS1123_LABEL.test(namespace)) {
    fail('kubernetes-name', whole, `namespace ${JSON.stringify(namespace)} is not a Kubernetes name (lowercase letters, digits and "-", at most 63)`);
  }
  if (serviceAccount.length > 253 || !DNS1123_SUBDOMAIN.test(serviceAccount)) {
    fail('kubernetes-name', whole, `service account ${JSON.stringify(serviceAccount)} is not a Kubernetes name (lowercase letters, digits, "-" and ".")`);
  }
  const id = formatSpiffeId(trustDomain.replaceAll('@', '.'), 'ns', namespace, 'sa', serviceAccount);
  return { ...id, namespace, serviceAccount };
}

/** Parses an ID that must have Istio's form: exactly `/ns/<namespace>/sa/<service-account>` after the trust domain. */
export function parseIstioIdentity(value: string): IstioIdentity {
  const id = parseSpiffeId(value);
  const parts = id.path.split('/');
  if (parts.length !== 5 || parts[1] !== 'ns' || parts[3] !== 'sa') {
    fail('not-istio-form', value, 'an Istio workload identity has the path /ns/<namespace>/sa/<service-account>');
  }
  return { ...id, namespace: parts[2]!, serviceAccount: parts[4]! };
}

/** The form policies use: the URI without `spiffe://` (`cluster.local/ns/foo/sa/bar`). */
export function toPrincipal(id: SpiffeId): string {
  return id.uri.slice(SCHEME.length);
}

/** The inverse of toPrincipal, validated. */
export function fromPrincipal(principal: string): SpiffeId {
  if (principal.startsWith(SCHEME)) fail('scheme', principal, 'a principal is written without "spiffe://"');
  return parseSpiffeId(`${SCHEME}${principal}`);
}
