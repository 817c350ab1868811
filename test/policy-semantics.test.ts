import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideYaml, httpRequest, outcome, tcpRequest } from './support/decide.ts';
import { ap, docs, pa, ra } from './support/yaml.ts';

/**
 * One row per semantic rule of Istio's security plane. Sources are istio/istio paths
 * (pilot/pkg/security/authz/..., pilot/pkg/security/authn/...) or ISTIO-SEMANTICS.md sections.
 */
interface Row {
  readonly name: string;
  readonly yaml: string;
  readonly req: unknown;
  readonly want: string;
  readonly mesh?: string;
  readonly extAuthz?: 'allow' | 'deny';
  /** Deciding policy `ns/name`, when one decides. */
  readonly policy?: string;
  readonly reason?: RegExp;
}

const JWT = { principal: 'https://issuer.example/alice', claims: { iss: 'https://issuer.example', sub: 'alice', aud: ['svc'], groups: ['dev', 'ops'], scope: 'read write', roles: 'a b', nested: { level: { key: 'v1' } }, admin: true } };
const RA = ra('jwt', { jwtRules: [{ issuer: 'https://issuer.example', jwksUri: 'https://issuer.example/jwks' }] });
const RA_SPACE = ra('jwt', { jwtRules: [{ issuer: 'https://issuer.example', jwksUri: 'https://issuer.example/jwks', spaceDelimitedClaims: ['roles'] }] });
const allowFrom = (source: object): string => ap('allow', { rules: [{ from: [{ source }] }] });
const allowTo = (operation: object): string => ap('allow', { rules: [{ to: [{ operation }] }] });
const allowWhen = (key: string, values?: string[], notValues?: string[]): string =>
  ap('allow', { rules: [{ when: [{ key, ...(values ? { values } : {}), ...(notValues ? { notValues } : {}) }] }] });

const rows: Row[] = [
  // ---- actions and special forms (ISTIO-SEMANTICS §4.2, §4.3; builder.go)
  { name: 'no policy at all allows', yaml: pa('x', { mtls: { mode: 'PERMISSIVE' } }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'empty spec is allow-nothing', yaml: ap('none', {}), req: httpRequest({}), want: 'DENY 403' },
  { name: 'ALLOW with an empty rule allows all', yaml: ap('all', { rules: [{}] }), req: httpRequest({}), want: 'ALLOW', policy: 'foo/all' },
  { name: 'DENY with an empty rule denies all', yaml: ap('deny', { action: 'DENY', rules: [{}] }), req: httpRequest({}), want: 'DENY 403', policy: 'foo/deny' },
  { name: 'DENY beats ALLOW', yaml: docs(ap('all', { rules: [{}] }), ap('deny', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/ip'] } }] }] })), req: httpRequest({}), want: 'DENY 403', policy: 'foo/deny' },
  { name: 'ALLOW policies are ORed', yaml: docs(ap('a', { rules: [{ to: [{ operation: { paths: ['/a'] } }] }] }), ap('b', { rules: [{ to: [{ operation: { paths: ['/ip'] } }] }] })), req: httpRequest({}), want: 'ALLOW', policy: 'foo/b' },
  { name: 'a null rule is skipped, the others count', yaml: ap('a', { rules: [{ to: [{ operation: { paths: ['/nope'] } }] }, { to: [{ operation: { paths: ['/ip'] } }] }] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'AUDIT never changes the decision', yaml: ap('audit', { action: 'AUDIT', rules: [{}] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'policy of another namespace does not apply', yaml: ap('none', {}, 'bar'), req: httpRequest({}), want: 'ALLOW' },
  { name: 'selector must be a subset of the workload labels', yaml: ap('none', { selector: { matchLabels: { app: 'other' } } }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'matching selector applies', yaml: ap('none', { selector: { matchLabels: { app: 'httpbin' } } }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'root namespace policy applies mesh-wide', yaml: ap('none', {}, 'istio-system'), req: httpRequest({}), want: 'DENY 403' },
  { name: 'root namespace selector policy applies in every namespace', yaml: ap('none', { selector: { matchLabels: { app: 'httpbin' } } }, 'istio-system'), req: httpRequest({}), want: 'DENY 403' },
  { name: 'custom root namespace from mesh config', yaml: ap('none', {}, 'mesh-root'), req: httpRequest({}), want: 'DENY 403', mesh: 'rootNamespace: mesh-root' },
  { name: 'targetRef policies never apply to sidecars', yaml: ap('none', { targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'gw' }] }), req: httpRequest({}), want: 'ALLOW' },

  // ---- from.source (generator.go)
  { name: 'principals exact', yaml: allowFrom({ principals: ['cluster.local/ns/foo/sa/sleep'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'principals exact miss', yaml: allowFrom({ principals: ['cluster.local/ns/foo/sa/other'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'principals prefix', yaml: allowFrom({ principals: ['cluster.local/ns/foo/*'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'principals suffix', yaml: allowFrom({ principals: ['*/sa/sleep'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'principals * needs a peer identity', yaml: allowFrom({ principals: ['*'] }), req: httpRequest({ principal: null }), want: 'DENY 403' },
  { name: 'principals * matches any identity', yaml: allowFrom({ principals: ['*'] }), req: httpRequest({ principal: 'td/ns/x/sa/y' }), want: 'ALLOW' },
  { name: 'a * inside a value is literal', yaml: allowFrom({ principals: ['cluster.local/ns/*/sa/sleep'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'notPrincipals matches plaintext (attribute absent)', yaml: ap('deny', { action: 'DENY', rules: [{ from: [{ source: { notPrincipals: ['*'] } }] }] }), req: httpRequest({ principal: null }), want: 'DENY 403' },
  { name: 'notPrincipals excludes listed identity', yaml: allowFrom({ notPrincipals: ['cluster.local/ns/foo/sa/sleep'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'namespaces exact is a whole segment', yaml: allowFrom({ namespaces: ['fo'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'namespaces exact', yaml: allowFrom({ namespaces: ['foo'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'namespaces wildcard', yaml: allowFrom({ namespaces: ['f*'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'namespaces * needs mTLS', yaml: allowFrom({ namespaces: ['*'] }), req: httpRequest({ principal: null }), want: 'DENY 403' },
  { name: 'notNamespaces matches plaintext', yaml: allowFrom({ notNamespaces: ['bar'] }), req: httpRequest({ principal: null }), want: 'ALLOW' },
  { name: 'serviceAccounts ns/sa', yaml: allowFrom({ serviceAccounts: ['foo/sleep'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'serviceAccounts bare sa is in the policy namespace', yaml: allowFrom({ serviceAccounts: ['sleep'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'serviceAccounts do not prefix-match', yaml: allowFrom({ serviceAccounts: ['foo/sleep'] }), req: httpRequest({ principal: 'cluster.local/ns/foo/sa/sleep-2' }), want: 'DENY 403' },
  { name: 'serviceAccounts match any trust domain', yaml: allowFrom({ serviceAccounts: ['foo/sleep'] }), req: httpRequest({ principal: 'other.td/ns/foo/sa/sleep' }), want: 'ALLOW' },
  { name: 'trustDomains exact', yaml: allowFrom({ trustDomains: ['cluster.local'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'trustDomains miss', yaml: allowFrom({ trustDomains: ['other.td'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'trustDomains wildcard stays inside the segment', yaml: allowFrom({ trustDomains: ['*.local'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'requestPrincipals * needs a verified JWT', yaml: docs(RA, allowFrom({ requestPrincipals: ['*'] })), req: httpRequest({}), want: 'DENY 403' },
  { name: 'requestPrincipals * with a verified JWT', yaml: docs(RA, allowFrom({ requestPrincipals: ['*'] })), req: httpRequest({ auth: JWT }), want: 'ALLOW' },
  { name: 'requestPrincipals iss/*', yaml: docs(RA, allowFrom({ requestPrincipals: ['https://issuer.example/*'] })), req: httpRequest({ auth: JWT }), want: 'ALLOW' },
  { name: 'requestPrincipals */sub', yaml: docs(RA, allowFrom({ requestPrincipals: ['*/alice'] })), req: httpRequest({ auth: JWT }), want: 'ALLOW' },
  { name: 'requestPrincipals exact split at the last /', yaml: docs(RA, allowFrom({ requestPrincipals: ['https://issuer.example/alice'] })), req: httpRequest({ auth: JWT }), want: 'ALLOW' },
  { name: 'requestPrincipals exact miss', yaml: docs(RA, allowFrom({ requestPrincipals: ['https://issuer.example/bob'] })), req: httpRequest({ auth: JWT }), want: 'DENY 403' },
  { name: 'notRequestPrincipals * denies requests without JWT', yaml: docs(RA, ap('deny', { action: 'DENY', rules: [{ from: [{ source: { notRequestPrincipals: ['*'] } }] }] })), req: httpRequest({}), want: 'DENY 403' },
  { name: 'ipBlocks CIDR', yaml: allowFrom({ ipBlocks: ['10.0.0.0/24'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'ipBlocks single IP miss', yaml: allowFrom({ ipBlocks: ['10.0.0.8'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'notIpBlocks', yaml: allowFrom({ notIpBlocks: ['10.0.0.0/8'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'ipBlocks IPv6', yaml: allowFrom({ ipBlocks: ['2001:db8::/32'] }), req: httpRequest({ sourceIp: '2001:db8::1' }), want: 'ALLOW' },
  { name: 'remoteIpBlocks uses the original client IP', yaml: allowFrom({ remoteIpBlocks: ['203.0.113.0/24'] }), req: httpRequest({ remoteIp: '203.0.113.7' }), want: 'ALLOW' },
  { name: 'remoteIpBlocks defaults to the direct peer', yaml: allowFrom({ remoteIpBlocks: ['203.0.113.0/24'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'fields in one source are ANDed', yaml: allowFrom({ principals: ['cluster.local/ns/foo/sa/sleep'], ipBlocks: ['192.168.0.0/16'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'from entries are ORed', yaml: ap('allow', { rules: [{ from: [{ source: { namespaces: ['bar'] } }, { source: { namespaces: ['foo'] } }] }] }), req: httpRequest({}), want: 'ALLOW' },

  // ---- to.operation
  { name: 'hosts exact ignores case', yaml: allowTo({ hosts: ['HTTPBIN.foo:8000'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'hosts include the port as sent', yaml: allowTo({ hosts: ['httpbin.foo'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'hosts prefix', yaml: allowTo({ hosts: ['httpbin.*'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'hosts suffix', yaml: allowTo({ hosts: ['*:8000'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'notHosts', yaml: allowTo({ notHosts: ['httpbin.foo:8000'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'ports match the workload port', yaml: allowTo({ ports: ['8000'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'ports miss', yaml: allowTo({ ports: ['9000'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'notPorts', yaml: allowTo({ notPorts: ['8000'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'methods exact', yaml: allowTo({ methods: ['GET', 'HEAD'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'methods are case-sensitive', yaml: allowTo({ methods: ['get'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'notMethods', yaml: allowTo({ notMethods: ['GET'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'paths exact ignores the query', yaml: allowTo({ paths: ['/ip'] }), req: httpRequest({ path: '/ip?x=1' }), want: 'ALLOW' },
  { name: 'paths are case-sensitive', yaml: allowTo({ paths: ['/IP'] }), req: httpRequest({}), want: 'DENY 403' },
  { name: 'paths prefix', yaml: allowTo({ paths: ['/api/*'] }), req: httpRequest({ path: '/api/v1/users' }), want: 'ALLOW' },
  { name: 'paths suffix', yaml: allowTo({ paths: ['*/info'] }), req: httpRequest({ path: '/svc/info' }), want: 'ALLOW' },
  { name: 'paths * matches any path', yaml: allowTo({ paths: ['*'] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'paths and notPaths together are ANDed', yaml: allowTo({ paths: ['/admin*'], notPaths: ['/admin/public'] }), req: httpRequest({ path: '/admin/public' }), want: 'DENY 403' },
  { name: 'paths are matched after normalization', yaml: ap('deny', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }), req: httpRequest({ path: '/public/../admin' }), want: 'DENY 403' },
  { name: 'path template {*} is one segment', yaml: allowTo({ paths: ['/foo/{*}/bar'] }), req: httpRequest({ path: '/foo/x/bar' }), want: 'ALLOW' },
  { name: 'path template {*} is not two segments', yaml: allowTo({ paths: ['/foo/{*}/bar'] }), req: httpRequest({ path: '/foo/x/y/bar' }), want: 'DENY 403' },
  { name: 'path template {**} needs the trailing slash', yaml: allowTo({ paths: ['/allow/admin/{**}'] }), req: httpRequest({ path: '/allow/admin' }), want: 'DENY 403' },
  { name: 'path template {**} spans segments', yaml: allowTo({ paths: ['/allow/admin/{**}'] }), req: httpRequest({ path: '/allow/admin/foo/temp.txt' }), want: 'ALLOW' },
  { name: 'to entries are ORed', yaml: ap('allow', { rules: [{ to: [{ operation: { paths: ['/a'] } }, { operation: { methods: ['GET'] } }] }] }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'from and to are ANDed', yaml: ap('allow', { rules: [{ from: [{ source: { namespaces: ['foo'] } }], to: [{ operation: { methods: ['POST'] } }] }] }), req: httpRequest({}), want: 'DENY 403' },

  // ---- when conditions (ISTIO-SEMANTICS §4.7)
  { name: 'when request.headers value', yaml: allowWhen('request.headers[x-token]', ['admin']), req: httpRequest({ headers: { 'x-token': 'admin' } }), want: 'ALLOW' },
  { name: 'when request.headers name is case-insensitive', yaml: allowWhen('request.headers[X-Token]', ['admin']), req: httpRequest({ headers: { 'x-token': 'admin' } }), want: 'ALLOW' },
  { name: 'when request.headers value is case-sensitive', yaml: allowWhen('request.headers[x-token]', ['admin']), req: httpRequest({ headers: { 'x-token': 'Admin' } }), want: 'DENY 403' },
  { name: 'when request.headers * is presence, empty value included', yaml: allowWhen('request.headers[x-token]', ['*']), req: httpRequest({ headers: { 'x-token': '' } }), want: 'ALLOW' },
  { name: 'when notValues matches an absent header', yaml: allowWhen('request.headers[x-token]', undefined, ['guest']), req: httpRequest({}), want: 'ALLOW' },
  { name: 'when values and notValues are ANDed', yaml: allowWhen('request.headers[x-token]', ['a*'], ['admin']), req: httpRequest({ headers: { 'x-token': 'admin' } }), want: 'DENY 403' },
  // ---- a header on several lines: each line matched on its own, the header matching when any line does (Envoy's RBAC
  // HeaderMatcher since CVE-2026-26308, rbac_match_headers_individually). The joined "user,admin" would miss both.
  { name: 'repeated header: a DENY on one line\'s value is not escaped by adding a line', yaml: docs(ap('all', { rules: [{}] }), ap('deny', { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-role]', values: ['admin'] }] }] })), req: httpRequest({ headers: { 'x-role': ['user', 'admin'] } }), want: 'DENY 403', policy: 'foo/deny' },
  { name: 'repeated header: the DENY holds whichever line comes first', yaml: docs(ap('all', { rules: [{}] }), ap('deny', { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-role]', values: ['admin'] }] }] })), req: httpRequest({ headers: { 'x-role': ['admin', 'user'] } }), want: 'DENY 403' },
  { name: 'repeated header: a DENY prefix matches a line, not the joined value', yaml: docs(ap('all', { rules: [{}] }), ap('deny', { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-role]', values: ['adm*'] }] }] })), req: httpRequest({ headers: { 'x-role': ['user', 'admin'] } }), want: 'DENY 403' },
  { name: 'repeated header: two lines under different casings are one header', yaml: docs(ap('all', { rules: [{}] }), ap('deny', { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-role]', values: ['admin'] }] }] })), req: httpRequest({ headers: { 'X-Role': 'user', 'x-role': 'admin' } }), want: 'DENY 403' },
  { name: 'repeated header: a DENY with notValues denies only when no line has the value', yaml: docs(ap('all', { rules: [{}] }), ap('deny', { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-role]', notValues: ['admin'] }] }] })), req: httpRequest({ headers: { 'x-role': ['user', 'admin'] } }), want: 'ALLOW' },
  { name: 'repeated header: the same DENY with notValues when no line has it', yaml: docs(ap('all', { rules: [{}] }), ap('deny', { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-role]', notValues: ['admin'] }] }] })), req: httpRequest({ headers: { 'x-role': ['user', 'guest'] } }), want: 'DENY 403' },
  { name: 'repeated header: an ALLOW on a value is met when any line has it', yaml: allowWhen('request.headers[x-role]', ['admin']), req: httpRequest({ headers: { 'x-role': ['user', 'admin'] } }), want: 'ALLOW' },
  { name: 'repeated header: an ALLOW on the joined text no longer matches', yaml: allowWhen('request.headers[x-role]', ['user,admin']), req: httpRequest({ headers: { 'x-role': ['user', 'admin'] } }), want: 'DENY 403' },
  { name: 'repeated header: an ALLOW with notValues needs every line to differ', yaml: allowWhen('request.headers[x-role]', undefined, ['admin']), req: httpRequest({ headers: { 'x-role': ['user', 'admin'] } }), want: 'DENY 403' },
  { name: 'one line holding "user,admin" is one value, as in Envoy', yaml: allowWhen('request.headers[x-role]', ['user,admin']), req: httpRequest({ headers: { 'x-role': 'user,admin' } }), want: 'ALLOW' },
  { name: 'repeated header: * (presence) is met', yaml: allowWhen('request.headers[x-role]', ['*']), req: httpRequest({ headers: { 'x-role': ['', 'x'] } }), want: 'ALLOW' },
  { name: 'when conditions are ANDed', yaml: ap('allow', { rules: [{ when: [{ key: 'request.headers[a]', values: ['1'] }, { key: 'request.headers[b]', values: ['2'] }] }] }), req: httpRequest({ headers: { a: '1' } }), want: 'DENY 403' },
  { name: 'when source.ip', yaml: allowWhen('source.ip', ['10.0.0.0/16']), req: httpRequest({}), want: 'ALLOW' },
  { name: 'when remote.ip', yaml: allowWhen('remote.ip', ['198.51.100.1']), req: httpRequest({ remoteIp: '198.51.100.1' }), want: 'ALLOW' },
  { name: 'when destination.ip', yaml: allowWhen('destination.ip', ['10.1.0.0/16']), req: httpRequest({ destIp: '10.1.2.3' }), want: 'ALLOW' },
  { name: 'when destination.port', yaml: allowWhen('destination.port', ['8000']), req: httpRequest({}), want: 'ALLOW' },
  { name: 'when connection.sni', yaml: allowWhen('connection.sni', ['outbound_.8000_._.httpbin.foo.svc.cluster.local']), req: httpRequest({ sni: 'outbound_.8000_._.httpbin.foo.svc.cluster.local' }), want: 'ALLOW' },
  { name: 'when source.namespace', yaml: allowWhen('source.namespace', ['foo']), req: httpRequest({}), want: 'ALLOW' },
  { name: 'when source.principal', yaml: allowWhen('source.principal', ['cluster.local/ns/foo/sa/sleep']), req: httpRequest({}), want: 'ALLOW' },
  { name: 'when source.serviceAccount', yaml: allowWhen('source.serviceAccount', ['foo/sleep']), req: httpRequest({}), want: 'ALLOW' },
  { name: 'when source.trustDomain', yaml: allowWhen('source.trustDomain', ['cluster.local']), req: httpRequest({}), want: 'ALLOW' },
  { name: 'when request.auth.principal', yaml: docs(RA, allowWhen('request.auth.principal', ['https://issuer.example/alice'])), req: httpRequest({ auth: JWT }), want: 'ALLOW' },
  { name: 'when request.auth.audiences', yaml: docs(RA, allowWhen('request.auth.audiences', ['svc'])), req: httpRequest({ auth: JWT }), want: 'ALLOW' },
  { name: 'when request.auth.presenter absent', yaml: docs(RA, allowWhen('request.auth.presenter', ['*'])), req: httpRequest({ auth: JWT }), want: 'DENY 403' },
  { name: 'when request.auth.claims list element', yaml: docs(RA, allowWhen('request.auth.claims[groups]', ['ops'])), req: httpRequest({ auth: JWT }), want: 'ALLOW' },
  { name: 'when request.auth.claims nested', yaml: docs(RA, allowWhen('request.auth.claims[nested][level][key]', ['v1'])), req: httpRequest({ auth: JWT }), want: 'ALLOW' },
  { name: 'when claim missing fails values', yaml: docs(RA, allowWhen('request.auth.claims[missing]', ['*'])), req: httpRequest({ auth: JWT }), want: 'DENY 403' },
  { name: 'when claim missing satisfies notValues', yaml: docs(RA, allowWhen('request.auth.claims[missing]', undefined, ['x'])), req: httpRequest({ auth: JWT }), want: 'ALLOW' },
  { name: 'scope is split on spaces', yaml: docs(RA, allowWhen('request.auth.claims[scope]', ['write'])), req: httpRequest({ auth: JWT }), want: 'ALLOW' },
  { name: 'other claims are not split by default', yaml: docs(RA, allowWhen('request.auth.claims[roles]', ['b'])), req: httpRequest({ auth: JWT }), want: 'DENY 403' },
  { name: 'spaceDelimitedClaims splits more claims', yaml: docs(RA_SPACE, allowWhen('request.auth.claims[roles]', ['b'])), req: httpRequest({ auth: JWT }), want: 'ALLOW' },
  { name: 'non-string claims never match strings', yaml: docs(RA, allowWhen('request.auth.claims[admin]', ['true'])), req: httpRequest({ auth: JWT }), want: 'DENY 403' },
  { name: 'request.auth.* is empty without a RequestAuthentication', yaml: allowWhen('request.auth.claims[groups]', ['ops']), req: httpRequest({ auth: JWT }), want: 'DENY 403' },

  // ---- HTTP-only fields on TCP (§4.8; model.go checkError)
  { name: 'TCP: ALLOW rule with methods is dropped, allow-nothing remains', yaml: ap('allow', { rules: [{ to: [{ operation: { methods: ['GET'], ports: ['9000'] } }] }] }), req: tcpRequest({}), want: 'DENY reset' },
  { name: 'TCP: ALLOW rule with only L4 fields applies', yaml: ap('allow', { rules: [{ to: [{ operation: { ports: ['9000'] } }] }] }), req: tcpRequest({}), want: 'ALLOW' },
  { name: 'TCP: another ALLOW rule still allows', yaml: ap('allow', { rules: [{ to: [{ operation: { methods: ['GET'] } }] }, { from: [{ source: { namespaces: ['foo'] } }] }] }), req: tcpRequest({}), want: 'ALLOW' },
  { name: 'TCP: DENY with only HTTP fields denies everything', yaml: ap('deny', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'] } }] }] }), req: tcpRequest({}), want: 'DENY reset' },
  { name: 'TCP: DENY keeps its L4 fields (other port passes)', yaml: ap('deny', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'], ports: ['9001'] } }] }] }), req: tcpRequest({}), want: 'ALLOW' },
  { name: 'TCP: DENY with HTTP when on its port denies', yaml: ap('deny', { action: 'DENY', rules: [{ to: [{ operation: { ports: ['9000'] } }], when: [{ key: 'request.headers[x]', values: ['y'] }] }] }), req: tcpRequest({}), want: 'DENY reset' },
  { name: 'TCP: requestPrincipals in DENY widen to all sources', yaml: ap('deny', { action: 'DENY', rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] }), req: tcpRequest({}), want: 'DENY reset' },
  { name: 'HTTP: same DENY does not match without JWT', yaml: ap('deny', { action: 'DENY', rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] }), req: httpRequest({}), want: 'ALLOW' },

  // ---- dry-run (§4.9)
  { name: 'dry-run ALLOW alone does not create default deny', yaml: ap('none', {}, 'foo', { annotations: { 'istio.io/dry-run': 'true' } }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'dry-run DENY is not enforced', yaml: ap('deny', { action: 'DENY', rules: [{}] }, 'foo', { annotations: { 'istio.io/dry-run': 'true' } }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'dry-run accepts Go booleans like 1', yaml: ap('deny', { action: 'DENY', rules: [{}] }, 'foo', { annotations: { 'istio.io/dry-run': '1' } }), req: httpRequest({}), want: 'ALLOW' },

  // ---- CUSTOM (§4.2)
  { name: 'CUSTOM with an undefined provider fails closed', yaml: ap('ext', { action: 'CUSTOM', provider: { name: 'nope' }, rules: [{}] }), req: httpRequest({}), want: 'DENY 403', extAuthz: 'allow' },
  { name: 'CUSTOM provider deny is final', yaml: ap('ext', { action: 'CUSTOM', provider: { name: 'authz' }, rules: [{}] }), req: httpRequest({}), want: 'DENY 403', mesh: 'extensionProviders: [{name: authz, envoyExtAuthzHttp: {service: a.b, port: 80}}]', extAuthz: 'deny' },
  { name: 'CUSTOM provider allow still goes through DENY', yaml: docs(ap('ext', { action: 'CUSTOM', provider: { name: 'authz' }, rules: [{}] }), ap('deny', { action: 'DENY', rules: [{}] })), req: httpRequest({}), want: 'DENY 403', policy: 'foo/deny', mesh: 'extensionProviders: [{name: authz, envoyExtAuthzHttp: {service: a.b, port: 80}}]', extAuthz: 'allow' },
  { name: 'CUSTOM provider allow then no ALLOW policy allows', yaml: ap('ext', { action: 'CUSTOM', provider: { name: 'authz' }, rules: [{}] }), req: httpRequest({}), want: 'ALLOW', mesh: 'extensionProviders: [{name: authz, envoyExtAuthzHttp: {service: a.b, port: 80}}]', extAuthz: 'allow' },
  { name: 'CUSTOM rules that miss do not call the provider', yaml: ap('ext', { action: 'CUSTOM', provider: { name: 'authz' }, rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }), req: httpRequest({}), want: 'ALLOW', mesh: 'extensionProviders: [{name: authz, envoyExtAuthzHttp: {service: a.b, port: 80}}]', extAuthz: 'deny' },
  { name: 'CUSTOM with unknown answer fails closed', yaml: ap('ext', { action: 'CUSTOM', provider: { name: 'authz' }, rules: [{}] }), req: httpRequest({}), want: 'DENY 403', mesh: 'extensionProviders: [{name: authz, envoyExtAuthzHttp: {service: a.b, port: 80}}]', reason: /delegated to CUSTOM provider "authz"/ },

  // ---- trust domain migration (§1.2; trustdomain/bundle.go)
  { name: 'cluster.local in a policy means the trust domain', yaml: allowFrom({ principals: ['cluster.local/ns/foo/sa/sleep'] }), req: httpRequest({ principal: 'new-td/ns/foo/sa/sleep' }), want: 'ALLOW', mesh: 'trustDomain: new-td' },
  { name: 'aliases are accepted', yaml: allowFrom({ principals: ['new-td/ns/foo/sa/sleep'] }), req: httpRequest({ principal: 'old-td/ns/foo/sa/sleep' }), want: 'ALLOW', mesh: 'trustDomain: new-td\ntrustDomainAliases: [old-td]' },
  { name: 'a literal cluster.local peer is not matched after migration', yaml: allowFrom({ principals: ['cluster.local/ns/foo/sa/sleep'] }), req: httpRequest({ principal: 'cluster.local/ns/foo/sa/sleep' }), want: 'DENY 403', mesh: 'trustDomain: new-td' },
  { name: 'a foreign trust domain stays as written', yaml: allowFrom({ principals: ['other/ns/foo/sa/sleep'] }), req: httpRequest({ principal: 'new-td/ns/foo/sa/sleep' }), want: 'DENY 403', mesh: 'trustDomain: new-td' },
  { name: 'trustDomains values expand to aliases', yaml: allowFrom({ trustDomains: ['new-td'] }), req: httpRequest({ principal: 'old-td/ns/foo/sa/sleep' }), want: 'ALLOW', mesh: 'trustDomain: new-td\ntrustDomainAliases: [old-td]' },

  // ---- PeerAuthentication (§2)
  { name: 'STRICT refuses plaintext at the connection', yaml: pa('default', { mtls: { mode: 'STRICT' } }), req: httpRequest({ principal: null }), want: 'DENY refused' },
  { name: 'STRICT accepts mTLS', yaml: pa('default', { mtls: { mode: 'STRICT' } }), req: httpRequest({}), want: 'ALLOW' },
  { name: 'PERMISSIVE accepts plaintext', yaml: pa('default', { mtls: { mode: 'PERMISSIVE' } }), req: httpRequest({ principal: null }), want: 'ALLOW' },
  { name: 'mesh-wide STRICT from the root namespace', yaml: pa('default', { mtls: { mode: 'STRICT' } }, 'istio-system'), req: httpRequest({ principal: null }), want: 'DENY refused' },
  { name: 'namespace overrides mesh', yaml: docs(pa('default', { mtls: { mode: 'STRICT' } }, 'istio-system'), pa('default', { mtls: { mode: 'PERMISSIVE' } })), req: httpRequest({ principal: null }), want: 'ALLOW' },
  { name: 'UNSET inherits from the namespace', yaml: docs(pa('ns', { mtls: { mode: 'STRICT' } }), pa('wl', { selector: { matchLabels: { app: 'httpbin' } }, mtls: { mode: 'UNSET' } })), req: httpRequest({ principal: null }), want: 'DENY refused' },
  { name: 'workload overrides namespace', yaml: docs(pa('ns', { mtls: { mode: 'STRICT' } }), pa('wl', { selector: { matchLabels: { app: 'httpbin' } }, mtls: { mode: 'PERMISSIVE' } })), req: httpRequest({ principal: null }), want: 'ALLOW' },
  { name: 'portLevelMtls overrides for its port', yaml: pa('wl', { selector: { matchLabels: { app: 'httpbin' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { 8000: { mode: 'PERMISSIVE' } } }), req: httpRequest({ principal: null }), want: 'ALLOW' },
  { name: 'portLevelMtls does not touch other ports', yaml: pa('wl', { selector: { matchLabels: { app: 'httpbin' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { 9000: { mode: 'DISABLE' } } }), req: httpRequest({ principal: null }), want: 'DENY refused' },
  { name: 'root-namespace selector PeerAuthentication is ignored', yaml: pa('wl', { selector: { matchLabels: { app: 'httpbin' } }, mtls: { mode: 'STRICT' } }, 'istio-system'), req: httpRequest({ principal: null }), want: 'ALLOW' },
  { name: 'two namespace policies: the oldest wins', yaml: docs(pa('newer', { mtls: { mode: 'PERMISSIVE' } }, 'foo', { creationTimestamp: '2024-02-01T00:00:00Z' }), pa('older', { mtls: { mode: 'STRICT' } }, 'foo', { creationTimestamp: '2024-01-01T00:00:00Z' })), req: httpRequest({ principal: null }), want: 'DENY refused' },
  { name: 'DISABLE: no peer identity, so principals cannot match', yaml: docs(pa('default', { mtls: { mode: 'DISABLE' } }), allowFrom({ principals: ['cluster.local/ns/foo/sa/sleep'] })), req: httpRequest({}), want: 'DENY 403' },

  // ---- RequestAuthentication outcomes (§3.3)
  { name: 'no token passes authentication', yaml: RA, req: httpRequest({}), want: 'ALLOW' },
  { name: 'issuer not configured is 401 even when allowed', yaml: docs(RA, ap('all', { rules: [{}] })), req: httpRequest({ auth: { principal: 'https://evil.example/alice' } }), want: 'DENY 401', reason: /issuer/ },
  { name: 'audience not accepted is 403 from the JWT filter', yaml: ra('jwt', { jwtRules: [{ issuer: 'https://issuer.example', jwksUri: 'https://issuer.example/jwks', audiences: ['other'] }] }), req: httpRequest({ auth: JWT }), want: 'DENY 403', reason: /Audiences in Jwt are not allowed/ },
  { name: 'audience accepted by one of two rules', yaml: ra('jwt', { jwtRules: [{ issuer: 'https://issuer.example', jwksUri: 'https://issuer.example/jwks', audiences: ['other'] }, { issuer: 'https://issuer.example', jwksUri: 'https://issuer.example/jwks', audiences: ['svc'] }] }), req: httpRequest({ auth: JWT }), want: 'ALLOW' },
  { name: 'CORS preflight skips JWT checks', yaml: docs(RA, ap('all', { rules: [{}] })), req: httpRequest({ method: 'OPTIONS', headers: { origin: 'https://a', 'access-control-request-method': 'GET' }, auth: { principal: 'https://evil.example/alice' } }), want: 'ALLOW' },
  { name: 'a raw token that cannot be verified fails closed', yaml: RA, req: httpRequest({ headers: { authorization: 'Bearer abc.def.ghi' } }), want: 'DENY 401' },
  { name: 'custom token location disables Authorization: Bearer', yaml: ra('jwt', { jwtRules: [{ issuer: 'https://issuer.example', jwksUri: 'https://issuer.example/jwks', fromHeaders: [{ name: 'x-jwt' }] }] }), req: httpRequest({ headers: { authorization: 'Bearer abc.def.ghi' } }), want: 'ALLOW' },
  { name: 'access_token query parameter is a default location', yaml: RA, req: httpRequest({ path: '/ip?access_token=abc' }), want: 'DENY 401' },

  // ---- normalization and malformed requests (§5)
  { name: '%00 in the path is rejected with 400', yaml: RA, req: httpRequest({ path: '/a%00b' }), want: 'DENY 400' },
  { name: 'a lower-case method is rejected with 400', yaml: RA, req: httpRequest({ method: 'get' }), want: 'DENY 400' },
  { name: 'BASE does not merge slashes', yaml: ap('deny', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }), req: httpRequest({ path: '//admin' }), want: 'ALLOW' },
  { name: 'MERGE_SLASHES merges them', yaml: ap('deny', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }), req: httpRequest({ path: '//admin' }), want: 'DENY 403', mesh: 'pathNormalization: {normalization: MERGE_SLASHES}' },
  { name: 'BASE keeps %2F encoded', yaml: ap('deny', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin/x'] } }] }] }), req: httpRequest({ path: '/admin%2Fx' }), want: 'ALLOW' },
  { name: 'DECODE_AND_MERGE_SLASHES decodes %2F', yaml: ap('deny', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin/x'] } }] }] }), req: httpRequest({ path: '/admin%2Fx' }), want: 'DENY 403', mesh: 'pathNormalization: {normalization: DECODE_AND_MERGE_SLASHES}' },
  { name: 'NONE matches the path as received', yaml: ap('deny', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }), req: httpRequest({ path: '/x/../admin' }), want: 'ALLOW', mesh: 'pathNormalization: {normalization: NONE}' },
];

for (const row of rows) {
  test(`semantics: ${row.name}`, () => {
    const d = decideYaml(row.yaml, row.req, {
      ...(row.mesh === undefined ? {} : { mesh: row.mesh }),
      decide: row.extAuthz === undefined ? {} : { extAuthz: row.extAuthz },
    });
    assert.equal(outcome(d), row.want, `reason: ${d.reason}`);
    // The generated matcher (decision) and the field closures (explanation) must agree on every rule.
    for (const step of d.trace) for (const p of step.policies ?? []) for (const rule of p.rules) {
      assert.equal(rule.matched, rule.mismatches.length === 0, `${p.policy} rule ${rule.rule}: ${rule.mismatches.join('; ')}`);
    }
    if (row.policy !== undefined) assert.equal(d.policy, row.policy);
    if (row.reason !== undefined) assert.match(d.reason, row.reason);
  });
}

test('explain: a near miss names the rule, the field, the value and the expected values', () => {
  const d = decideYaml(ap('allow-bar', { rules: [{ from: [{ source: { principals: ['cluster.local/ns/bar/*'] } }] }] }), httpRequest({}));
  assert.equal(outcome(d), 'DENY 403');
  const allow = d.trace.find((s) => s.step === 'allow');
  assert.ok(allow?.policies);
  assert.deepEqual(allow.policies[0]!.rules[0]!.mismatches, ['from[0].source.principals: "cluster.local/ns/foo/sa/sleep" not in ["cluster.local/ns/bar/*"]']);
});

test('explain: the trace lists the TCP-dropped rule and the conditions removed from DENY', () => {
  const yaml = docs(
    ap('allow', { rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }),
    ap('deny', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST'], ports: ['9001'] } }] }] }),
  );
  const d = decideYaml(yaml, tcpRequest({}));
  assert.equal(outcome(d), 'DENY reset');
  const allow = d.trace.find((s) => s.step === 'allow')!.policies![0]!;
  assert.match(allow.skipped[0]!.reason, /HTTP-only/);
  const deny = d.trace.find((s) => s.step === 'deny')!.policies![0]!;
  assert.match(deny.rules[0]!.removed[0]!, /methods/);
});

test('audit and dry-run results are reported without changing the decision', () => {
  const yaml = docs(
    ap('audit', { action: 'AUDIT', rules: [{ to: [{ operation: { paths: ['/ip'] } }] }] }),
    ap('shadow-deny', { action: 'DENY', rules: [{}] }, 'foo', { annotations: { 'istio.io/dry-run': 'true' } }),
  );
  const d = decideYaml(yaml, httpRequest({}));
  assert.equal(d.decision, 'ALLOW');
  assert.deepEqual(d.audit, [{ policy: 'foo/audit', rule: 0 }]);
  assert.deepEqual(d.dryRun, [{ action: 'DENY', result: 'denied', policy: 'foo/shadow-deny', rule: 0 }]);
});

test('without the trace option a decision carries no trace', async () => {
  const { PolicyEngine } = await import('../src/policy/engine.ts');
  const { loadResources } = await import('../src/resources/load.ts');
  const engine = new PolicyEngine(loadResources([{ file: 'a.yaml', text: ap('all', { rules: [{}] }) }]).resources);
  const d = engine.decide(engine.prepare(httpRequest({}) as never));
  assert.equal(d.decision, 'ALLOW');
  assert.equal(d.trace.length, 0);
});

test('dry-run: a value Go cannot parse is rejected by validation; a resource built in code is then enforced', async () => {
  const { loadResources } = await import('../src/resources/load.ts');
  const { PolicyEngine } = await import('../src/policy/engine.ts');
  const yaml = ap('deny', { action: 'DENY', rules: [{}] }, 'foo', { annotations: { 'istio.io/dry-run': 'yes' } });
  const loaded = loadResources([{ file: 'p.yaml', text: yaml }]);
  assert.equal(loaded.resources.length, 0);
  assert.ok(loaded.diagnostics.some((d) => d.severity === 'error' && d.path.includes('istio.io/dry-run')));
  // istiod (authz/builder isDryRun) logs the parse error and enforces the policy when such a resource reaches it.
  const ok = loadResources([{ file: 'p.yaml', text: ap('deny', { action: 'DENY', rules: [{}] }) }]).resources[0]!;
  const forced = { ...ok, meta: { ...ok.meta, annotations: { 'istio.io/dry-run': 'yes' } } };
  const engine = new PolicyEngine([forced]);
  const d = engine.decide(engine.prepare(httpRequest({}) as never), { trace: true });
  assert.equal(outcome(d), 'DENY 403');
});

test('decisions made by a policy layer without a trace are shared, frozen objects', async () => {
  const { PolicyEngine } = await import('../src/policy/engine.ts');
  const { loadResources } = await import('../src/resources/load.ts');
  const engine = new PolicyEngine(loadResources([{ file: 'a.yaml', text: ap('all', { rules: [{ to: [{ operation: { paths: ['/ip'] } }] }] }) }]).resources);
  const a = engine.decide(engine.prepare(httpRequest({}) as never));
  const b = engine.decide(engine.prepare(httpRequest({}) as never));
  assert.equal(a, b);
  assert.ok(Object.isFrozen(a));
  const denied = engine.decide(engine.prepare(httpRequest({ path: '/other' }) as never));
  assert.equal(outcome(denied), 'DENY 403');
  assert.notEqual(denied, a);
  const traced = engine.decide(engine.prepare(httpRequest({}) as never), { trace: true });
  assert.notEqual(traced, a);
  assert.ok(traced.trace.length > 0);
});

test('generated matchers treat policy text as data: quotes, backslashes and line separators match literally', () => {
  const nasty = 'a"); throw new Error("injected"); ("\\\u2028*/`x`';
  const yaml = ap('allow', { rules: [{ to: [{ operation: { paths: [`/p/${nasty}`, `*${nasty}`] } }], when: [{ key: 'request.headers[x-q]', values: [nasty, `${nasty}*`] }] }] });
  const hit = decideYaml(yaml, httpRequest({ path: '/p/q', headers: { 'x-q': nasty } }));
  assert.equal(outcome(hit), 'DENY 403');
  const headerOnly = decideYaml(ap('allow', { rules: [{ when: [{ key: 'request.headers[x-q]', values: [`${nasty}*`] }] }] }), httpRequest({ headers: { 'x-q': `${nasty}zz` } }));
  assert.equal(outcome(headerOnly), 'ALLOW');
  const allowed = decideYaml(
    ap('allow', { rules: [{ when: [{ key: 'request.headers[x-tok]', values: [nasty] }] }] }),
    httpRequest({ headers: { 'x-tok': nasty } }),
  );
  assert.equal(outcome(allowed), 'ALLOW');
  const other = decideYaml(
    ap('allow', { rules: [{ when: [{ key: 'request.headers[x-tok]', values: [nasty] }] }] }),
    httpRequest({ headers: { 'x-tok': 'a' } }),
  );
  assert.equal(outcome(other), 'DENY 403');
});
