import { httpRequest } from './support/decide.ts';
import { jwt, sa, stream, taskRows, tcpTo, toHttpbin, yaml } from './support/istio-tasks-table.ts';

/**
 * Istio's documented surprises (ISTIO-SEMANTICS.md §7, with §2/§3 details) that test/policy-semantics.test.ts does not
 * already pin down, phrased as task-style rows. Each comment names the §7 item and the Istio source behind it.
 */

const doc = (kind: string, name: string, ns: string, spec: string, meta = ''): string => yaml`
  apiVersion: security.istio.io/v1
  kind: ${kind}
  metadata:
    name: ${name}
    namespace: ${ns}${meta}
  spec: ${spec}
`;
const ap = (name: string, spec: string, ns = 'foo', meta = ''): string => doc('AuthorizationPolicy', name, ns, spec, meta);
const pa = (name: string, spec: string, ns = 'foo', meta = ''): string => doc('PeerAuthentication', name, ns, spec, meta);
const ra = (name: string, spec: string, ns = 'foo'): string => doc('RequestAuthentication', name, ns, spec);
const created = (ts: string): string => `\n    creationTimestamp: "${ts}"`;
const dryRun = (v: string): string => `\n    annotations: {"istio.io/dry-run": "${v}"}`;

const ISS = 'https://issuer.example';
const RA = ra('jwt', `{jwtRules: [{issuer: "${ISS}", jwksUri: "${ISS}/jwks"}]}`);

taskRows('edge cases', [
  // §7.5: an explicit empty rule list is still an active ALLOW layer that matches nothing.
  { name: '§7.5 ALLOW with rules: [] denies everything', yaml: ap('none', '{action: ALLOW, rules: []}'), req: toHttpbin({}), want: 'DENY 403' },
  // §7.4/§7.5: the requireJWT pattern on a TCP port: the only ALLOW rule is HTTP-only, istiod drops it (model.go),
  // the ALLOW layer stays: every TCP connection is refused.
  { name: '§7.4 requestPrincipals ALLOW on a TCP workload rejects every connection', yaml: stream(RA, ap('require-jwt', '{rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]}')), req: tcpTo({ ns: 'foo', labels: { app: 'db' }, port: 5432 }), want: 'DENY reset' },
  // §7.4: the requireJWT DENY pattern (notRequestPrincipals) loses its only condition on TCP and denies all TCP.
  { name: '§7.4 notRequestPrincipals DENY on a TCP workload denies every connection', yaml: ap('require-jwt', '{action: DENY, rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]}'), req: tcpTo({ ns: 'foo', labels: { app: 'db' }, port: 5432 }), want: 'DENY reset' },
  // §3.1: RequestAuthentication never applies to TCP; L4 rules still decide.
  { name: 'a RequestAuthentication does not affect TCP connections', yaml: stream(RA, ap('l4', '{rules: [{from: [{source: {principals: ["cluster.local/ns/foo/sa/sleep"]}}]}]}')), req: tcpTo({ ns: 'foo', labels: { app: 'db' }, port: 5432 }), want: 'ALLOW' },
  // §7.6: notValues on a claim matches when there is no token at all (no metadata → NOT(match) is true).
  { name: '§7.6 claim notValues matches a request without JWT', yaml: stream(RA, ap('deny', '{action: DENY, rules: [{when: [{key: "request.auth.claims[role]", notValues: ["admin"]}]}]}')), req: toHttpbin({}), want: 'DENY 403' },
  { name: '§7.6 claim notValues: the admin token passes', yaml: stream(RA, ap('deny', '{action: DENY, rules: [{when: [{key: "request.auth.claims[role]", notValues: ["admin"]}]}]}')), req: toHttpbin({ auth: jwt({ iss: ISS, sub: 'a', role: 'admin' }) }), want: 'ALLOW' },
  // §7.7 / §3.1: RequestAuthentication selectors in the root namespace reach every namespace (unlike PeerAuthentication).
  { name: '§7.7 a root-namespace selector RequestAuthentication applies in foo', yaml: ra('jwt', `{selector: {matchLabels: {app: httpbin}}, jwtRules: [{issuer: "${ISS}"}]}`, 'istio-system'), req: toHttpbin({ auth: jwt({ iss: 'https://other.example', sub: 'a' }) }), want: 'DENY 401' },
  // §7.10: `*` needs both iss and sub non-empty (generator.go matchAny = regex ".+").
  { name: '§7.10 requestPrincipals * does not match a token with an empty sub', yaml: stream(RA, ap('need-jwt', '{rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]}')), req: toHttpbin({ auth: { principal: `${ISS}/`, claims: { iss: ISS, sub: '' } } }), want: 'DENY 403' },
  // §7.10: the value is split at its last `/`: `https://issuer.example*` becomes iss "https:/" + sub prefix "issuer.example".
  { name: '§7.10 requestPrincipals https://issuer.example* splits inside the scheme and never matches', yaml: stream(RA, ap('need-jwt', `{rules: [{from: [{source: {requestPrincipals: ["${ISS}*"]}}]}]}`)), req: toHttpbin({ auth: jwt({ iss: ISS, sub: 'alice' }) }), want: 'DENY 403' },
  { name: '§7.10 requestPrincipals https://issuer.example/* matches any subject of that issuer', yaml: stream(RA, ap('need-jwt', `{rules: [{from: [{source: {requestPrincipals: ["${ISS}/*"]}}]}]}`)), req: toHttpbin({ auth: jwt({ iss: ISS, sub: 'alice' }) }), want: 'ALLOW' },
  // §7.11: `permission` is space-delimited by default, like `scope`.
  { name: '§7.11 the permission claim is split on spaces by default', yaml: stream(RA, ap('perm', '{rules: [{when: [{key: "request.auth.claims[permission]", values: ["orders:write"]}]}]}')), req: toHttpbin({ auth: jwt({ iss: ISS, sub: 'a', permission: 'orders:read orders:write' }) }), want: 'ALLOW' },
  // §3.3: two rules for one issuer, one with audiences and one without: a token satisfying either is accepted.
  { name: '§3.3 same issuer with and without audiences: any audience is accepted', yaml: ra('jwt', `{jwtRules: [{issuer: "${ISS}", jwksUri: "${ISS}/jwks", audiences: [svc-a]}, {issuer: "${ISS}", jwksUri: "${ISS}/jwks"}]}`), req: toHttpbin({ auth: jwt({ iss: ISS, sub: 'a', aud: 'svc-z' }) }), want: 'ALLOW' },
  // §7.14: CORS preflight skips the JWT filter only; authorization still runs.
  { name: '§7.14 a CORS preflight still goes through authorization', yaml: stream(RA, ap('require-jwt', '{action: DENY, rules: [{from: [{source: {notRequestPrincipals: ["*"]}}]}]}')), req: toHttpbin({ method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } }), want: 'DENY 403' },
  // §7.13 / §2.2: portLevelMtls keys are workload ports; a key naming the Service port (8000) never applies to
  // traffic that reaches the container on 8080.
  { name: '§7.13 portLevelMtls keyed on the Service port does not cover the workload port', yaml: pa('httpbin', '{selector: {matchLabels: {app: httpbin}}, mtls: {mode: STRICT}, portLevelMtls: {8000: {mode: DISABLE}}}'), req: toHttpbin({ principal: null, port: 8080 }), want: 'DENY refused' },
  // §7.13 / §2.2: the oldest mesh-level policy wins too.
  { name: '§7.13 two mesh-wide PeerAuthentications: the oldest wins', yaml: stream(pa('b-newer', '{mtls: {mode: STRICT}}', 'istio-system', created('2024-03-02T00:00:00Z')), pa('a-older', '{mtls: {mode: PERMISSIVE}}', 'istio-system', created('2024-03-01T00:00:00Z'))), req: toHttpbin({ principal: null }), want: 'ALLOW' },
  { name: '§7.13 two mesh-wide PeerAuthentications: the oldest wins (other order)', yaml: stream(pa('a-newer', '{mtls: {mode: PERMISSIVE}}', 'istio-system', created('2024-03-02T00:00:00Z')), pa('b-older', '{mtls: {mode: STRICT}}', 'istio-system', created('2024-03-01T00:00:00Z'))), req: toHttpbin({ principal: null }), want: 'DENY refused' },
  // §7.15: a dry-run ALLOW beside an enforced ALLOW does not widen it; "false" is enforced.
  { name: '§7.15 a dry-run allow-all does not widen an enforced ALLOW', yaml: stream(ap('only-a', '{rules: [{to: [{operation: {paths: ["/a"]}}]}]}'), ap('shadow-all', '{rules: [{}]}', 'foo', dryRun('true'))), req: toHttpbin({ path: '/b' }), want: 'DENY 403' },
  { name: '§7.15 istio.io/dry-run "false" is enforced', yaml: ap('deny', '{action: DENY, rules: [{}]}', 'foo', dryRun('false')), req: toHttpbin({}), want: 'DENY 403', policy: 'foo/deny' },
  // §7.8: a peer whose certificate literally says cluster.local stays matched while cluster.local is an alias.
  { name: '§7.8 cluster.local as an alias keeps matching literal cluster.local peers', yaml: ap('allow', '{rules: [{from: [{source: {principals: ["cluster.local/ns/foo/sa/sleep"]}}]}]}'), mesh: 'trustDomain: new-td\ntrustDomainAliases: [cluster.local]', req: toHttpbin({ principal: sa('foo', 'sleep') }), want: 'ALLOW' },
  // §3.2: Envoy's JWT extractor looks for a header location's prefix anywhere in the value, not only at its start
  // (envoyproxy/envoy source/extensions/filters/http/jwt_authn/extractor.cc ExtractorImpl::extract: `value_str.find(
  // value_prefix)`, then the token starts at the first base64url character after it). Istio passes `prefix` through
  // as `value_prefix`, and the default location is Authorization with prefix "Bearer ". So such a value carries a token,
  // and a token that cannot be verified is 401.
  { name: '§3.2 fromHeaders prefix found after other text still yields a token (401 when it is bad)', yaml: ra('jwt', `{jwtRules: [{issuer: "${ISS}", jwksUri: "${ISS}/jwks", fromHeaders: [{name: x-jwt-assertion, prefix: "Bearer "}]}]}`), req: toHttpbin({ headers: { 'x-jwt-assertion': 'Token Bearer not-a-jwt' } }), want: 'DENY 401' },
  { name: '§3.2 Authorization with "Bearer " after other text still yields a token (401 when it is bad)', yaml: RA, req: toHttpbin({ headers: { authorization: 'Token Bearer not-a-jwt' } }), want: 'DENY 401' },
  // §2.3: namespaces * needs an identity; the HTTP request in plaintext under PERMISSIVE with a namespace DENY.
  { name: '§2.3 DENY namespaces ["*"] denies every mTLS peer but not plaintext', yaml: ap('deny-mesh', '{action: DENY, rules: [{from: [{source: {namespaces: ["*"]}}]}]}'), req: httpRequest({ ns: 'foo', labels: { app: 'web' }, principal: null }), want: 'ALLOW' },
]);
