import assert from 'node:assert/strict';
import type { Decision } from '../src/policy/decision.ts';
import { httpRequest } from './support/decide.ts';
import { jwt, sa, stream, taskRows, tcpTo, toHttpbin, yaml } from './support/istio-tasks-table.ts';

/**
 * The examples of istio.io's security reference pages (docs/reference/config/security/*, generated from istio/api
 * security/v1beta1/*.proto) and of the security concepts page (docs/concepts/security/), as decision rows. Where a
 * page states an outcome it is used; otherwise the row states what istiod + Envoy do with the example, and says so.
 */

const auditOf = (...refs: readonly { policy: string; rule: number }[]) => (d: Decision): void => assert.deepEqual(d.audit, refs);

// ---------------------------------------------------------------------------------------------------------------
// reference/config/security/authorization-policy — examples in the AuthorizationPolicy proto comments.
// https://istio.io/latest/docs/reference/config/security/authorization-policy/ (istio/api authorization_policy.proto)

const GOOGLE = 'https://accounts.google.com';
const GOOGLE_TOKEN = jwt({ iss: GOOGLE, sub: '1045', aud: ['httpbin'] });
const GOOGLE_RA = yaml`
  apiVersion: security.istio.io/v1
  kind: RequestAuthentication
  metadata:
    name: google
    namespace: foo
  spec:
    jwtRules:
    - issuer: "https://accounts.google.com"
      jwksUri: "https://www.googleapis.com/oauth2/v3/certs"
`;
const AP_HTTPBIN_ALLOW = stream(GOOGLE_RA, yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: httpbin
    namespace: foo
  spec:
    action: ALLOW
    rules:
    - from:
      - source:
          principals: ["cluster.local/ns/default/sa/sleep"]
      - source:
          namespaces: ["test"]
      to:
      - operation:
          methods: ["GET"]
          paths: ["/info*"]
      - operation:
          methods: ["POST"]
          paths: ["/data"]
      when:
      - key: request.auth.claims[iss]
        values: ["https://accounts.google.com"]
`);
const AP_DENY_DEV_POST = yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: httpbin
    namespace: foo
  spec:
    action: DENY
    rules:
    - from:
      - source:
          namespaces: ["dev"]
      to:
      - operation:
          methods: ["POST"]
`;
const denyPost = (ports: string): string => yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: httpbin
    namespace: foo
  spec:
    action: DENY
    rules:
    - to:
      - operation: {methods: ["POST"]${ports}}
`;
const AP_DENY_POST_8080 = denyPost(', ports: ["8080"]');
const AP_DENY_POST_ANY_PORT = denyPost('');
const AP_AUDIT = yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    namespace: ns1
    name: anyname
  spec:
    selector:
      matchLabels:
        app: myapi
    action: AUDIT
    rules:
    - to:
      - operation:
          methods: ["GET"]
          paths: ["/user/profile/*"]
`;
const AP_ALLOW_NOTHING_FOO = yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: allow-nothing
    namespace: foo
  spec:
    {}
`;
const AP_ALLOW_ALL_FOO = yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: allow-all
    namespace: foo
  spec:
    rules:
    - {}
`;
const AP_ALLOW_NOTHING_BAR_HTTPBIN = yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: allow-nothing
    namespace: bar
  spec:
    selector:
      matchLabels:
        app: httpbin
`;
const AP_ALLOW_NOTHING_V1_MESH = yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: allow-nothing
    namespace: istio-system
  spec:
    selector:
      matchLabels:
        version: v1
`;
const AP_DRY_RUN = yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: dry-run-example
    namespace: foo
    annotations:
      "istio.io/dry-run": "true"
  spec:
    selector:
      matchLabels:
        app: httpbin
    action: DENY
    rules:
    - to:
      - operation:
          paths: ["/headers"]
`;
const AP_CUSTOM_GATEWAY = yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: ext-authz
    namespace: istio-system
  spec:
    selector:
      matchLabels:
        app: istio-ingressgateway
    action: CUSTOM
    provider:
      name: "my-custom-authz"
    rules:
    - to:
      - operation:
          paths: ["/admin/*"]
`;
const MY_CUSTOM_AUTHZ_MESH = 'extensionProviders:\n- name: my-custom-authz\n  envoyExtAuthzHttp: {service: authz.example.svc.cluster.local, port: 8000}';
// The Source example lists bare `admin`/`dev`; a principal is a whole SPIFFE identity, so they are written as suffixes.
const AP_SOURCE_EXAMPLE = yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: source-example
    namespace: foo
  spec:
    rules:
    - from:
      - source:
          principals: ["*/sa/admin", "*/sa/dev"]
          namespaces: ["prod", "test"]
          notIpBlocks: ["203.0.113.4"]
`;
const AP_OPERATION_EXAMPLE = yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: operation-example
    namespace: foo
  spec:
    rules:
    - to:
      - operation:
          hosts: ["*.example.com"]
          methods: ["GET", "HEAD"]
          notPaths: ["/admin*"]
`;
const allowPaths = (...paths: readonly string[]): string => yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: path-template
    namespace: foo
  spec:
    rules:
    - to:
      - operation:
          paths: ${JSON.stringify(paths)}
`;
const GATEWAY = { app: 'istio-ingressgateway', istio: 'ingressgateway' };
const viaGateway = (path: string): unknown => httpRequest({ ns: 'istio-system', labels: GATEWAY, port: 8080, principal: null, sourceIp: '203.0.113.9', host: 'api.example.com', path });
const myapi = (method: string, path: string): unknown => httpRequest({ ns: 'ns1', labels: { app: 'myapi' }, method, path });

taskRows('reference authorization-policy', [
  // ALLOW: sleep or namespace test; GET /info* or POST /data; with a JWT from accounts.google.com.
  { name: 'ALLOW example: sleep GET /info/x with a Google JWT is allowed', yaml: AP_HTTPBIN_ALLOW, req: toHttpbin({ principal: sa('default', 'sleep'), path: '/info/x', auth: GOOGLE_TOKEN }), want: 'ALLOW', policy: 'foo/httpbin' },
  { name: 'ALLOW example: /info* is a prefix, /information is allowed', yaml: AP_HTTPBIN_ALLOW, req: toHttpbin({ principal: sa('default', 'sleep'), path: '/information', auth: GOOGLE_TOKEN }), want: 'ALLOW' },
  { name: 'ALLOW example: namespace test POST /data with a Google JWT is allowed', yaml: AP_HTTPBIN_ALLOW, req: toHttpbin({ principal: sa('test', 'client'), method: 'POST', path: '/data', auth: GOOGLE_TOKEN }), want: 'ALLOW' },
  { name: 'ALLOW example: GET /data is not an allowed operation', yaml: AP_HTTPBIN_ALLOW, req: toHttpbin({ principal: sa('default', 'sleep'), path: '/data', auth: GOOGLE_TOKEN }), want: 'DENY 403' },
  { name: 'ALLOW example: POST /info is not an allowed operation', yaml: AP_HTTPBIN_ALLOW, req: toHttpbin({ principal: sa('default', 'sleep'), method: 'POST', path: '/info', auth: GOOGLE_TOKEN }), want: 'DENY 403' },
  { name: 'ALLOW example: without a JWT the when condition fails', yaml: AP_HTTPBIN_ALLOW, req: toHttpbin({ principal: sa('default', 'sleep'), path: '/info' }), want: 'DENY 403' },
  { name: 'ALLOW example: any other source is denied', yaml: AP_HTTPBIN_ALLOW, req: toHttpbin({ principal: sa('prod', 'sleep'), path: '/info', auth: GOOGLE_TOKEN }), want: 'DENY 403' },
  // DENY POST from namespace dev.
  { name: 'DENY example: POST from dev is denied', yaml: AP_DENY_DEV_POST, req: toHttpbin({ principal: sa('dev', 'client'), method: 'POST', path: '/data' }), want: 'DENY 403', policy: 'foo/httpbin' },
  { name: 'DENY example: GET from dev is allowed', yaml: AP_DENY_DEV_POST, req: toHttpbin({ principal: sa('dev', 'client'), path: '/data' }), want: 'ALLOW' },
  { name: 'DENY example: POST from another namespace is allowed', yaml: AP_DENY_DEV_POST, req: toHttpbin({ principal: sa('prod', 'client'), method: 'POST', path: '/data' }), want: 'ALLOW' },
  { name: 'DENY example: a plaintext POST has no namespace and is not denied', yaml: AP_DENY_DEV_POST, req: toHttpbin({ principal: null, method: 'POST', path: '/data' }), want: 'ALLOW' },
  // DENY POST on port 8080, and what it does to TCP ("all TCP traffic on port 8080 would be denied").
  { name: 'DENY POST :8080: HTTP POST on 8080 is denied', yaml: AP_DENY_POST_8080, req: toHttpbin({ method: 'POST', path: '/post', port: 8080 }), want: 'DENY 403' },
  { name: 'DENY POST :8080: HTTP GET on 8080 is allowed', yaml: AP_DENY_POST_8080, req: toHttpbin({ port: 8080 }), want: 'ALLOW' },
  { name: 'DENY POST :8080: HTTP POST on 9090 is allowed', yaml: AP_DENY_POST_8080, req: toHttpbin({ method: 'POST', path: '/post', port: 9090 }), want: 'ALLOW' },
  { name: 'DENY POST :8080: every TCP connection to 8080 is denied', yaml: AP_DENY_POST_8080, req: tcpTo({ ns: 'foo', labels: { app: 'db' }, port: 8080 }), want: 'DENY reset', policy: 'foo/httpbin' },
  { name: 'DENY POST :8080: TCP to 9090 is allowed', yaml: AP_DENY_POST_8080, req: tcpTo({ ns: 'foo', labels: { app: 'db' }, port: 9090 }), want: 'ALLOW' },
  { name: 'DENY POST without ports: all TCP traffic is denied', yaml: AP_DENY_POST_ANY_PORT, req: tcpTo({ ns: 'foo', labels: { app: 'db' }, port: 9090 }), want: 'DENY reset' },
  // AUDIT marks, never decides.
  { name: 'AUDIT example: GET /user/profile/alice is allowed and marked for audit', yaml: AP_AUDIT, req: myapi('GET', '/user/profile/alice'), want: 'ALLOW', check: auditOf({ policy: 'ns1/anyname', rule: 0 }) },
  { name: 'AUDIT example: POST /user/profile/alice is allowed, not audited', yaml: AP_AUDIT, req: myapi('POST', '/user/profile/alice'), want: 'ALLOW', check: auditOf() },
  { name: 'AUDIT example: GET /user/settings is allowed, not audited', yaml: AP_AUDIT, req: myapi('GET', '/user/settings'), want: 'ALLOW', check: auditOf() },
  // Scope.
  { name: 'allow-nothing in foo denies every workload of foo', yaml: AP_ALLOW_NOTHING_FOO, req: toHttpbin({}), want: 'DENY 403' },
  { name: 'allow-nothing in foo does not touch bar', yaml: AP_ALLOW_NOTHING_FOO, req: toHttpbin({ ns: 'bar' }), want: 'ALLOW' },
  { name: 'allow-all in foo allows everything, plaintext included', yaml: AP_ALLOW_ALL_FOO, req: toHttpbin({ principal: null, method: 'DELETE', path: '/anything' }), want: 'ALLOW', policy: 'foo/allow-all' },
  { name: 'allow-nothing with selector app=httpbin in bar denies httpbin.bar', yaml: AP_ALLOW_NOTHING_BAR_HTTPBIN, req: toHttpbin({ ns: 'bar' }), want: 'DENY 403' },
  { name: 'allow-nothing with selector app=httpbin in bar spares other bar workloads', yaml: AP_ALLOW_NOTHING_BAR_HTTPBIN, req: httpRequest({ ns: 'bar', labels: { app: 'sleep', version: 'v1' } }), want: 'ALLOW' },
  { name: 'root-namespace allow-nothing for version=v1 denies v1 workloads in any namespace', yaml: AP_ALLOW_NOTHING_V1_MESH, req: toHttpbin({ ns: 'bar' }), want: 'DENY 403' },
  { name: 'root-namespace allow-nothing for version=v1 spares v2 workloads', yaml: AP_ALLOW_NOTHING_V1_MESH, req: toHttpbin({ labels: { app: 'httpbin', version: 'v2' } }), want: 'ALLOW' },
  { name: 'dry-run example: /headers is allowed, shadow denied', yaml: AP_DRY_RUN, req: toHttpbin({ path: '/headers' }), want: 'ALLOW', check: (d) => assert.deepEqual(d.dryRun, [{ action: 'DENY', result: 'denied', policy: 'foo/dry-run-example', rule: 0 }]) },
  // CUSTOM on the ingress gateway for /admin/*.
  { name: 'CUSTOM example: /admin/users is delegated; the provider denies', yaml: AP_CUSTOM_GATEWAY, mesh: MY_CUSTOM_AUTHZ_MESH, extAuthz: 'deny', req: viaGateway('/admin/users'), want: 'DENY 403', check: (d) => assert.equal(d.customProvider, 'my-custom-authz') },
  { name: 'CUSTOM example: /admin/users is delegated; the provider allows', yaml: AP_CUSTOM_GATEWAY, mesh: MY_CUSTOM_AUTHZ_MESH, extAuthz: 'allow', req: viaGateway('/admin/users'), want: 'ALLOW' },
  { name: 'CUSTOM example: /public is not delegated', yaml: AP_CUSTOM_GATEWAY, mesh: MY_CUSTOM_AUTHZ_MESH, extAuthz: 'deny', req: viaGateway('/public'), want: 'ALLOW', check: (d) => assert.equal(d.customProvider, null) },
  // Source: fields ANDed, values ORed.
  { name: 'Source example: admin in prod from an ordinary IP is allowed', yaml: AP_SOURCE_EXAMPLE, req: toHttpbin({ principal: sa('prod', 'admin'), sourceIp: '10.0.0.7' }), want: 'ALLOW' },
  { name: 'Source example: dev in test is allowed', yaml: AP_SOURCE_EXAMPLE, req: toHttpbin({ principal: sa('test', 'dev') }), want: 'ALLOW' },
  { name: 'Source example: admin in prod from 203.0.113.4 is denied', yaml: AP_SOURCE_EXAMPLE, req: toHttpbin({ principal: sa('prod', 'admin'), sourceIp: '203.0.113.4' }), want: 'DENY 403' },
  { name: 'Source example: admin in staging is denied', yaml: AP_SOURCE_EXAMPLE, req: toHttpbin({ principal: sa('staging', 'admin') }), want: 'DENY 403' },
  { name: 'Source example: reader in prod is denied', yaml: AP_SOURCE_EXAMPLE, req: toHttpbin({ principal: sa('prod', 'reader') }), want: 'DENY 403' },
  // Operation: host suffix, GET/HEAD, not /admin*.
  { name: 'Operation example: GET api.example.com/x is allowed', yaml: AP_OPERATION_EXAMPLE, req: toHttpbin({ host: 'api.example.com', path: '/x' }), want: 'ALLOW' },
  { name: 'Operation example: hosts match ignores case', yaml: AP_OPERATION_EXAMPLE, req: toHttpbin({ host: 'API.Example.COM', method: 'HEAD', path: '/x' }), want: 'ALLOW' },
  { name: 'Operation example: /admin/x is excluded', yaml: AP_OPERATION_EXAMPLE, req: toHttpbin({ host: 'api.example.com', path: '/admin/x' }), want: 'DENY 403' },
  { name: 'Operation example: another host is denied', yaml: AP_OPERATION_EXAMPLE, req: toHttpbin({ host: 'api.example.org', path: '/x' }), want: 'DENY 403' },
  { name: 'Operation example: POST is denied', yaml: AP_OPERATION_EXAMPLE, req: toHttpbin({ host: 'api.example.com', method: 'POST', path: '/x' }), want: 'DENY 403' },
  // Path templates (Operation.paths).
  { name: 'template /foo/{*} matches /foo/bar', yaml: allowPaths('/foo/{*}'), req: toHttpbin({ path: '/foo/bar' }), want: 'ALLOW' },
  { name: 'template /foo/{*} does not match /foo/bar/baz', yaml: allowPaths('/foo/{*}'), req: toHttpbin({ path: '/foo/bar/baz' }), want: 'DENY 403' },
  { name: 'template /foo/{**}/ matches /foo/bar/', yaml: allowPaths('/foo/{**}/'), req: toHttpbin({ path: '/foo/bar/' }), want: 'ALLOW' },
  { name: 'template /foo/{**}/ matches /foo//', yaml: allowPaths('/foo/{**}/'), req: toHttpbin({ path: '/foo//' }), want: 'ALLOW' },
  { name: 'template /foo/{**}/ does not match /foo/bar', yaml: allowPaths('/foo/{**}/'), req: toHttpbin({ path: '/foo/bar' }), want: 'DENY 403' },
  // The page lists /foo/bar/baz.txt as a match of /foo/{**}/, but Envoy's uri_template regex for it is
  // `/foo/[...]*/` matched in full (envoy source/extensions/path/uri_template_lib/uri_template_internal.cc): a path
  // that does not end in `/` cannot match. The row states Envoy's behaviour.
  { name: 'template /foo/{**}/ does not match /foo/bar/baz.txt (Envoy; the page says it does)', yaml: allowPaths('/foo/{**}/'), req: toHttpbin({ path: '/foo/bar/baz.txt' }), want: 'DENY 403' },
  { name: 'template /foo/{*}/bar/{**} matches /foo/buzz/bar/', yaml: allowPaths('/foo/{*}/bar/{**}'), req: toHttpbin({ path: '/foo/buzz/bar/' }), want: 'ALLOW' },
  { name: 'template /foo/{*}/bar/{**} matches /foo/buzz/bar/baz', yaml: allowPaths('/foo/{*}/bar/{**}'), req: toHttpbin({ path: '/foo/buzz/bar/baz' }), want: 'ALLOW' },
]);

// ---------------------------------------------------------------------------------------------------------------
// reference/config/security/conditions — one row pair per example of the supported `when` keys.
// https://istio.io/latest/docs/reference/config/security/conditions/
// (experimental.envoy.filters.* needs another Envoy filter's dynamic metadata, which a check request cannot carry.)

const allowWhen = (key: string, values: readonly string[], extra = ''): string => stream(
  ...(extra === '' ? [] : [extra]),
  yaml`
    apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata:
      name: condition
      namespace: foo
    spec:
      rules:
      - when:
        - key: ${key}
          values: ${JSON.stringify(values)}
  `,
);
const raFor = (issuer: string): string => yaml`
  apiVersion: security.istio.io/v1
  kind: RequestAuthentication
  metadata:
    name: jwt
    namespace: foo
  spec:
    jwtRules:
    - issuer: "${issuer}"
      jwksUri: "https://keys.example/jwks.json"
`;
const MY_SVC = 'accounts.my-svc.com';
const mySvcToken = (extra: Record<string, unknown>): ReturnType<typeof jwt> => jwt({ iss: MY_SVC, sub: '104958560606', ...extra });

taskRows('reference conditions', [
  { name: 'request.headers[User-Agent] Mozilla/*: a browser is allowed', yaml: allowWhen('request.headers[User-Agent]', ['Mozilla/*']), req: toHttpbin({ headers: { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64)' } }), want: 'ALLOW' },
  { name: 'request.headers[User-Agent] Mozilla/*: curl is denied', yaml: allowWhen('request.headers[User-Agent]', ['Mozilla/*']), req: toHttpbin({ headers: { 'user-agent': 'curl/8.5.0' } }), want: 'DENY 403' },
  { name: 'source.ip 10.1.2.3: that peer is allowed', yaml: allowWhen('source.ip', ['10.1.2.3']), req: toHttpbin({ sourceIp: '10.1.2.3' }), want: 'ALLOW' },
  { name: 'source.ip 10.1.2.3: another peer is denied', yaml: allowWhen('source.ip', ['10.1.2.3']), req: toHttpbin({ sourceIp: '10.1.2.4' }), want: 'DENY 403' },
  { name: 'remote.ip 10.1.2.3: the original client is allowed', yaml: allowWhen('remote.ip', ['10.1.2.3']), req: toHttpbin({ sourceIp: '10.0.0.5', remoteIp: '10.1.2.3' }), want: 'ALLOW' },
  { name: 'source.namespace default: a peer from default is allowed', yaml: allowWhen('source.namespace', ['default']), req: toHttpbin({ principal: sa('default', 'productpage') }), want: 'ALLOW' },
  { name: 'source.namespace default: needs mTLS, plaintext is denied', yaml: allowWhen('source.namespace', ['default']), req: toHttpbin({ principal: null }), want: 'DENY 403' },
  { name: 'source.principal productpage: that identity is allowed', yaml: allowWhen('source.principal', ['cluster.local/ns/default/sa/productpage']), req: toHttpbin({ principal: sa('default', 'productpage') }), want: 'ALLOW' },
  { name: 'source.principal productpage: plaintext is denied', yaml: allowWhen('source.principal', ['cluster.local/ns/default/sa/productpage']), req: toHttpbin({ principal: null }), want: 'DENY 403' },
  { name: 'request.auth.principal: the token of accounts.my-svc.com/104958560606 is allowed', yaml: allowWhen('request.auth.principal', ['accounts.my-svc.com/104958560606'], raFor(MY_SVC)), req: toHttpbin({ auth: mySvcToken({}) }), want: 'ALLOW' },
  { name: 'request.auth.principal: another subject is denied', yaml: allowWhen('request.auth.principal', ['accounts.my-svc.com/104958560606'], raFor(MY_SVC)), req: toHttpbin({ auth: jwt({ iss: MY_SVC, sub: '1' }) }), want: 'DENY 403' },
  { name: 'request.auth.audiences my-svc.com: a token for my-svc.com is allowed', yaml: allowWhen('request.auth.audiences', ['my-svc.com'], raFor(MY_SVC)), req: toHttpbin({ auth: mySvcToken({ aud: ['other.com', 'my-svc.com'] }) }), want: 'ALLOW' },
  { name: 'request.auth.audiences my-svc.com: a token for other.com is denied by the policy', yaml: allowWhen('request.auth.audiences', ['my-svc.com'], raFor(MY_SVC)), req: toHttpbin({ auth: mySvcToken({ aud: 'other.com' }) }), want: 'DENY 403', policy: null },
  { name: 'request.auth.presenter: the authorized presenter is allowed', yaml: allowWhen('request.auth.presenter', ['123456789012.my-svc.com'], raFor(MY_SVC)), req: toHttpbin({ auth: mySvcToken({ azp: '123456789012.my-svc.com' }) }), want: 'ALLOW' },
  { name: 'request.auth.presenter: another presenter is denied', yaml: allowWhen('request.auth.presenter', ['123456789012.my-svc.com'], raFor(MY_SVC)), req: toHttpbin({ auth: mySvcToken({ azp: 'web.my-svc.com' }) }), want: 'DENY 403' },
  { name: 'request.auth.claims[iss] *@foo.com: an issuer ending in @foo.com is allowed', yaml: allowWhen('request.auth.claims[iss]', ['*@foo.com'], raFor('builder@foo.com')), req: toHttpbin({ auth: jwt({ iss: 'builder@foo.com', sub: 'ci' }) }), want: 'ALLOW' },
  { name: 'destination.ip 10.2.0.0/16: an address in the range is allowed', yaml: allowWhen('destination.ip', ['10.1.2.3', '10.2.0.0/16']), req: toHttpbin({ destIp: '10.2.44.5' }), want: 'ALLOW' },
  { name: 'destination.ip: an address outside is denied', yaml: allowWhen('destination.ip', ['10.1.2.3', '10.2.0.0/16']), req: toHttpbin({ destIp: '10.3.0.1' }), want: 'DENY 403' },
  { name: 'destination.port 80,443: 443 is allowed', yaml: allowWhen('destination.port', ['80', '443']), req: toHttpbin({ port: 443 }), want: 'ALLOW' },
  { name: 'destination.port 80,443: 8080 is denied', yaml: allowWhen('destination.port', ['80', '443']), req: toHttpbin({ port: 8080 }), want: 'DENY 403' },
  { name: 'destination.port also applies to TCP', yaml: allowWhen('destination.port', ['80', '443']), req: tcpTo({ ns: 'foo', labels: { app: 'db' }, port: 443 }), want: 'ALLOW' },
  { name: 'connection.sni www.example.com: that SNI is allowed', yaml: allowWhen('connection.sni', ['www.example.com']), req: toHttpbin({ sni: 'www.example.com' }), want: 'ALLOW' },
  { name: 'connection.sni www.example.com: another SNI is denied', yaml: allowWhen('connection.sni', ['www.example.com']), req: toHttpbin({ sni: 'api.example.com' }), want: 'DENY 403' },
]);

// ---------------------------------------------------------------------------------------------------------------
// reference/config/security/peer_authentication — examples in the PeerAuthentication proto comments.
// https://istio.io/latest/docs/reference/config/security/peer_authentication/ (istio/api peer_authentication.proto)

const paDoc = (name: string, ns: string, body: string): string => yaml`
  apiVersion: security.istio.io/v1
  kind: PeerAuthentication
  metadata:
    name: ${name}
    namespace: ${ns}
  spec: ${body}
`;
const PA_FOO_STRICT = paDoc('default', 'foo', '{mtls: {mode: STRICT}}');
const PA_FOO_PERMISSIVE = paDoc('default', 'foo', '{mtls: {mode: PERMISSIVE}}');
const PA_FINANCE_STRICT = paDoc('finance', 'foo', '{selector: {matchLabels: {app: finance}}, mtls: {mode: STRICT}}');
const PA_FINANCE_8080_DISABLE = paDoc('default', 'foo', '{selector: {matchLabels: {app: finance}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}}}');
const PA_FINANCE_UNSET_8080_DISABLE = paDoc('finance', 'foo', '{selector: {matchLabels: {app: finance}}, mtls: {mode: UNSET}, portLevelMtls: {8080: {mode: DISABLE}}}');
const PA_MESH_STRICT = paDoc('default', 'istio-system', '{mtls: {mode: STRICT}}');
const finance = (port: number, principal: string | null = null): unknown => httpRequest({ ns: 'foo', labels: { app: 'finance' }, port, principal });

taskRows('reference peer_authentication', [
  { name: 'namespace foo STRICT: plaintext is refused', yaml: PA_FOO_STRICT, req: toHttpbin({ principal: null }), want: 'DENY refused' },
  { name: 'namespace foo STRICT: mTLS is accepted', yaml: PA_FOO_STRICT, req: toHttpbin({}), want: 'ALLOW' },
  { name: 'namespace PERMISSIVE + finance STRICT: plaintext to finance is refused', yaml: stream(PA_FOO_PERMISSIVE, PA_FINANCE_STRICT), req: finance(8080), want: 'DENY refused' },
  { name: 'namespace PERMISSIVE + finance STRICT: plaintext to httpbin is accepted', yaml: stream(PA_FOO_PERMISSIVE, PA_FINANCE_STRICT), req: toHttpbin({ principal: null }), want: 'ALLOW' },
  { name: 'finance STRICT with port 8080 DISABLE: plaintext on workload port 8080 is accepted', yaml: PA_FINANCE_8080_DISABLE, req: finance(8080), want: 'ALLOW' },
  { name: 'finance STRICT with port 8080 DISABLE: plaintext on another port is refused', yaml: PA_FINANCE_8080_DISABLE, req: finance(9090), want: 'DENY refused' },
  { name: 'finance UNSET with port 8080 DISABLE under a STRICT mesh: other ports inherit STRICT', yaml: stream(PA_MESH_STRICT, PA_FINANCE_UNSET_8080_DISABLE), req: finance(9090), want: 'DENY refused' },
  { name: 'finance UNSET with port 8080 DISABLE under a STRICT mesh: 8080 takes plaintext', yaml: stream(PA_MESH_STRICT, PA_FINANCE_UNSET_8080_DISABLE), req: finance(8080), want: 'ALLOW' },
  { name: 'finance UNSET with port 8080 DISABLE alone: other ports stay PERMISSIVE', yaml: PA_FINANCE_UNSET_8080_DISABLE, req: finance(9090), want: 'ALLOW' },
]);

// ---------------------------------------------------------------------------------------------------------------
// reference/config/security/request_authentication — examples in the RequestAuthentication proto comments.
// https://istio.io/latest/docs/reference/config/security/request_authentication/ (istio/api request_authentication.proto)

const ISSUER_FOO = jwt({ iss: 'issuer-foo', sub: 'alice' });
const ISSUER_BAR = jwt({ iss: 'issuer-bar', sub: 'bob' });
const RA_HTTPBIN_FOO = yaml`
  apiVersion: security.istio.io/v1
  kind: RequestAuthentication
  metadata:
    name: httpbin
    namespace: foo
  spec:
    selector:
      matchLabels:
        app: httpbin
    jwtRules:
    - issuer: "issuer-foo"
      jwksUri: https://example.com/.well-known/jwks.json
`;
const requirePrincipal = (name: string, ns: string, selector: boolean): string => yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: ${name}
    namespace: ${ns}
  spec:
    ${selector ? 'selector: {matchLabels: {app: httpbin}}' : ''}
    rules:
    - from:
      - source:
          requestPrincipals: ["*"]
`;
const RA_REQUIRE_HTTPBIN = stream(RA_HTTPBIN_FOO, requirePrincipal('httpbin', 'foo', true));
const RA_FOR_ALL = stream(yaml`
  apiVersion: security.istio.io/v1
  kind: RequestAuthentication
  metadata:
    name: req-authn-for-all
    namespace: istio-system
  spec:
    jwtRules:
    - issuer: "issuer-foo"
      jwksUri: https://example.com/.well-known/jwks.json
`, requirePrincipal('require-jwt-for-all', 'istio-system', false));
const RA_FOO_BAR = yaml`
  apiVersion: security.istio.io/v1
  kind: RequestAuthentication
  metadata:
    name: httpbin
    namespace: foo
  spec:
    selector:
      matchLabels:
        app: httpbin
    jwtRules:
    - issuer: "issuer-foo"
    - issuer: "issuer-bar"
`;
const RA_PER_HOST = stream(RA_FOO_BAR, yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: httpbin
    namespace: foo
  spec:
    selector:
      matchLabels:
        app: httpbin
    rules:
    - from:
      - source:
          requestPrincipals: ["issuer-foo/*"]
      to:
      - operation:
          hosts: ["example.com"]
    - from:
      - source:
          requestPrincipals: ["issuer-bar/*"]
      to:
      - operation:
          hosts: ["another-host.com"]
`);
const RA_HEALTHZ = stream(RA_FOO_BAR, yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: httpbin
    namespace: foo
  spec:
    selector:
      matchLabels:
        app: httpbin
    rules:
    - from:
      - source:
          requestPrincipals: ["*"]
    - to:
      - operation:
          paths: ["/healthz"]
`);
const RA_INGRESS = yaml`
  apiVersion: security.istio.io/v1
  kind: RequestAuthentication
  metadata:
    name: jwt-on-ingress
    namespace: istio-system
  spec:
    selector:
      matchLabels:
        app: istio-ingressgateway
    jwtRules:
    - issuer: "example.com"
      jwksUri: https://example.com/.well-known/jwks.json
  ---
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: require-jwt
    namespace: istio-system
  spec:
    selector:
      matchLabels:
        app: istio-ingressgateway
    rules:
    - from:
      - source:
          requestPrincipals: ["*"]
`;
const jwtRule = (rule: string): string => yaml`
  apiVersion: security.istio.io/v1
  kind: RequestAuthentication
  metadata:
    name: jwt-rule
    namespace: foo
  spec:
    jwtRules:
    - ${rule}
`;
const RULE_AUDIENCES = jwtRule('{issuer: "https://example.com", audiences: [bookstore_android.apps.example.com, bookstore_web.apps.example.com]}');
const RULE_IAP_HEADER = jwtRule('{issuer: "https://example.com", jwksUri: "https://example.com/.secret/jwks.json", fromHeaders: [{name: x-goog-iap-jwt-assertion}]}');
const RULE_PREFIXED_HEADER = jwtRule('{issuer: "https://example.com", jwksUri: "https://example.com/jwks.json", fromHeaders: [{name: x-jwt-assertion, prefix: "Bearer "}]}');
const RULE_PARAM = jwtRule('{issuer: "https://example.com", jwksUri: "https://example.com/jwks.json", fromParams: [my_token]}');
const RULE_COOKIE = jwtRule('{issuer: "https://example.com", jwksUri: "https://example.com/jwks.json", fromCookies: [auth-token]}');
const RULE_SPACE_DELIMITED = stream(
  jwtRule('{issuer: "https://example.com", jwksUri: "https://example.com/jwks.json", spaceDelimitedClaims: [custom_scope, roles]}'),
  allowWhen('request.auth.claims[custom_scope]', ['write']),
);
const EXAMPLE_COM = (extra: Record<string, unknown> = {}): ReturnType<typeof jwt> => jwt({ iss: 'https://example.com', sub: 'reader', ...extra });

taskRows('reference request_authentication', [
  { name: 'httpbin requires a JWT: an issuer-foo token is allowed', yaml: RA_REQUIRE_HTTPBIN, req: toHttpbin({ auth: ISSUER_FOO }), want: 'ALLOW', policy: 'foo/httpbin' },
  { name: 'httpbin requires a JWT: no token is 403', yaml: RA_REQUIRE_HTTPBIN, req: toHttpbin({}), want: 'DENY 403' },
  { name: 'httpbin requires a JWT: an issuer-bar token is rejected (401)', yaml: RA_REQUIRE_HTTPBIN, req: toHttpbin({ auth: ISSUER_BAR }), want: 'DENY 401' },
  { name: 'mesh-wide JWT requirement: a workload in bar without token is 403', yaml: RA_FOR_ALL, req: httpRequest({ ns: 'bar', labels: { app: 'reviews' } }), want: 'DENY 403' },
  { name: 'mesh-wide JWT requirement: a workload in bar with an issuer-foo token is allowed', yaml: RA_FOR_ALL, req: httpRequest({ ns: 'bar', labels: { app: 'reviews' }, auth: ISSUER_FOO }), want: 'ALLOW', policy: 'istio-system/require-jwt-for-all' },
  { name: 'per host: issuer-foo to example.com is allowed', yaml: RA_PER_HOST, req: toHttpbin({ host: 'example.com', auth: ISSUER_FOO }), want: 'ALLOW', rule: 0 },
  { name: 'per host: issuer-bar to another-host.com is allowed', yaml: RA_PER_HOST, req: toHttpbin({ host: 'another-host.com', auth: ISSUER_BAR }), want: 'ALLOW', rule: 1 },
  { name: 'per host: issuer-foo to another-host.com is denied', yaml: RA_PER_HOST, req: toHttpbin({ host: 'another-host.com', auth: ISSUER_FOO }), want: 'DENY 403' },
  { name: 'per host: no token to example.com is denied', yaml: RA_PER_HOST, req: toHttpbin({ host: 'example.com' }), want: 'DENY 403' },
  { name: 'JWT except /healthz: /healthz without token is allowed', yaml: RA_HEALTHZ, req: toHttpbin({ path: '/healthz' }), want: 'ALLOW', rule: 1 },
  { name: 'JWT except /healthz: /ip without token is denied', yaml: RA_HEALTHZ, req: toHttpbin({ path: '/ip' }), want: 'DENY 403' },
  { name: 'JWT except /healthz: /ip with a token is allowed', yaml: RA_HEALTHZ, req: toHttpbin({ path: '/ip', auth: ISSUER_BAR }), want: 'ALLOW', rule: 0 },
  { name: 'ingress JWT: no token at the gateway is 403', yaml: RA_INGRESS, req: viaGateway('/'), want: 'DENY 403' },
  { name: 'ingress JWT: an example.com token at the gateway is allowed', yaml: RA_INGRESS, req: httpRequest({ ns: 'istio-system', labels: GATEWAY, principal: null, auth: jwt({ iss: 'example.com', sub: 'dev' }) }), want: 'ALLOW' },
  // JWTRule examples.
  { name: 'audiences: a token for bookstore_web is accepted', yaml: RULE_AUDIENCES, req: toHttpbin({ auth: EXAMPLE_COM({ aud: 'bookstore_web.apps.example.com' }) }), want: 'ALLOW' },
  { name: 'audiences: a token for another audience is 403 from the JWT filter', yaml: RULE_AUDIENCES, req: toHttpbin({ auth: EXAMPLE_COM({ aud: 'bookstore_ios.apps.example.com' }) }), want: 'DENY 403', reason: /Audiences in Jwt are not allowed/ },
  { name: 'fromHeaders x-goog-iap-jwt-assertion: a verified token there is accepted', yaml: RULE_IAP_HEADER, req: toHttpbin({ headers: { 'x-goog-iap-jwt-assertion': 'tok' }, auth: EXAMPLE_COM() }), want: 'ALLOW' },
  { name: 'fromHeaders x-goog-iap-jwt-assertion: a bad token there is 401', yaml: RULE_IAP_HEADER, req: toHttpbin({ headers: { 'x-goog-iap-jwt-assertion': 'not-a-jwt' } }), want: 'DENY 401' },
  { name: 'fromHeaders x-goog-iap-jwt-assertion: Authorization is no longer read', yaml: RULE_IAP_HEADER, req: toHttpbin({ headers: { authorization: 'Bearer not-a-jwt' } }), want: 'ALLOW' },
  { name: 'fromHeaders with prefix "Bearer ": a bad prefixed token is 401', yaml: RULE_PREFIXED_HEADER, req: toHttpbin({ headers: { 'x-jwt-assertion': 'Bearer not-a-jwt' } }), want: 'DENY 401' },
  // Envoy's extractor skips a header value that lacks the prefix: no token, so the request goes on unauthenticated.
  { name: 'fromHeaders with prefix "Bearer ": a value without the prefix yields no token', yaml: RULE_PREFIXED_HEADER, req: toHttpbin({ headers: { 'x-jwt-assertion': 'not-a-jwt' } }), want: 'ALLOW' },
  { name: 'fromParams my_token: a bad token in ?my_token is 401', yaml: RULE_PARAM, req: toHttpbin({ path: '/ip?my_token=not-a-jwt' }), want: 'DENY 401' },
  { name: 'fromParams my_token: ?access_token is no longer read', yaml: RULE_PARAM, req: toHttpbin({ path: '/ip?access_token=not-a-jwt' }), want: 'ALLOW' },
  { name: 'fromCookies auth-token: a bad token in the cookie is 401', yaml: RULE_COOKIE, req: toHttpbin({ headers: { cookie: 'session=1; auth-token=not-a-jwt' } }), want: 'DENY 401' },
  { name: 'fromCookies auth-token: Authorization is no longer read', yaml: RULE_COOKIE, req: toHttpbin({ headers: { authorization: 'Bearer not-a-jwt' } }), want: 'ALLOW' },
  { name: 'spaceDelimitedClaims custom_scope: "read write admin" matches write', yaml: RULE_SPACE_DELIMITED, req: toHttpbin({ auth: EXAMPLE_COM({ custom_scope: 'read write admin' }) }), want: 'ALLOW' },
  { name: 'spaceDelimitedClaims custom_scope: "read admin" does not match write', yaml: RULE_SPACE_DELIMITED, req: toHttpbin({ auth: EXAMPLE_COM({ custom_scope: 'read admin' }) }), want: 'DENY 403' },
]);

// ---------------------------------------------------------------------------------------------------------------
// concepts/security — the policy examples of the security concepts page.
// https://istio.io/latest/docs/concepts/security/ (content/en/docs/concepts/security/index.md)

const concept = (name: string, ns: string, spec: string): string => yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: ${name}
    namespace: ${ns}
  spec: ${spec}
`;
const HTTPBIN_V1 = '{matchLabels: {app: httpbin, version: v1}}';
const C_PEER_REVIEWS = paDoc('example-peer-policy', 'foo', '{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}');
const C_PEER_NS = paDoc('example-policy', 'foo', '{mtls: {mode: STRICT}}');
const C_PEER_PORT80 = paDoc('example-workload-policy', 'foo', '{selector: {matchLabels: {app: example-app}}, portLevelMtls: {80: {mode: DISABLE}}}');
const C_MESH_UNSET = paDoc('default', 'istio-system', '{}');
const C_ALLOW_HTTPBIN = stream(GOOGLE_RA, concept('httpbin', 'foo', `{selector: ${HTTPBIN_V1}, action: ALLOW, rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}, {source: {namespaces: ["dev"]}}], to: [{operation: {methods: ["GET"]}}], when: [{key: "request.auth.claims[iss]", values: ["https://accounts.google.com"]}]}]}`));
const C_DENY_NOT_FOO = concept('httpbin-deny', 'foo', `{selector: ${HTTPBIN_V1}, action: DENY, rules: [{from: [{source: {notNamespaces: ["foo"]}}]}]}`);
const C_ALLOW_READ = concept('allow-read', 'default', '{selector: {matchLabels: {app: products}}, action: ALLOW, rules: [{to: [{operation: {methods: ["GET", "HEAD"]}}]}]}');
const C_TESTER = concept('tester', 'default', '{selector: {matchLabels: {app: products}}, action: ALLOW, rules: [{to: [{operation: {paths: ["/test/*", "*/info"]}}]}]}');
const C_PRODUCTS_RA = yaml`
  apiVersion: security.istio.io/v1
  kind: RequestAuthentication
  metadata:
    name: products-jwt
    namespace: default
  spec:
    selector:
      matchLabels:
        app: products
    jwtRules:
    - issuer: "https://accounts.google.com"
      jwksUri: "https://www.googleapis.com/oauth2/v3/certs"
`;
const C_DISABLE_JWT_HEALTHZ = stream(C_PRODUCTS_RA, concept('disable-jwt-for-healthz', 'default', '{selector: {matchLabels: {app: products}}, action: ALLOW, rules: [{to: [{operation: {notPaths: ["/healthz"]}}], from: [{source: {requestPrincipals: ["*"]}}]}]}'));
const C_ENABLE_JWT_ADMIN = stream(C_PRODUCTS_RA, concept('enable-jwt-for-admin', 'default', '{selector: {matchLabels: {app: products}}, action: DENY, rules: [{to: [{operation: {paths: ["/admin"]}}], from: [{source: {notRequestPrincipals: ["*"]}}]}]}'));
const C_ALLOW_NOTHING = concept('allow-nothing', 'default', '{action: ALLOW}');
const C_DENY_ALL = concept('deny-all', 'default', '{action: DENY, rules: [{}]}');
const C_ALLOW_ALL = concept('allow-all', 'default', '{action: ALLOW, rules: [{}]}');
const C_CUSTOM_DENY_ALL = concept('ext', 'default', '{action: CUSTOM, provider: {name: my-custom-authz}, rules: [{}]}');
const C_HEADER_VERSION = concept('httpbin', 'foo', `{selector: ${HTTPBIN_V1}, action: ALLOW, rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}], to: [{operation: {methods: ["GET"]}}], when: [{key: "request.headers[version]", values: ["v1", "v2"]}]}]}`);
const C_PUBLIC = concept('httpbin', 'foo', `{selector: ${HTTPBIN_V1}, action: ALLOW, rules: [{to: [{operation: {methods: ["GET", "POST"]}}]}]}`);
const C_AUTHENTICATED = concept('httpbin', 'foo', `{selector: ${HTTPBIN_V1}, action: ALLOW, rules: [{from: [{source: {principals: ["*"]}}], to: [{operation: {methods: ["GET", "POST"]}}]}]}`);
const C_MONGODB = concept('mongodb-policy', 'default', '{selector: {matchLabels: {app: mongodb}}, action: ALLOW, rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/bookinfo-ratings-v2"]}}], to: [{operation: {ports: ["27017"]}}]}]}');
const C_HOST_PREFIX = concept('hosts', 'default', '{rules: [{to: [{operation: {hosts: ["test.abc.*"]}}]}]}');
const C_HOST_SUFFIX = concept('hosts', 'default', '{rules: [{to: [{operation: {hosts: ["*.abc.com"]}}]}]}');
// "Dependency on mutual TLS": principal/namespace fields only see mTLS peers (security advisory istio-security-2021-004).
const C_DENY_ATTACKER = concept('deny-attacker', 'foo', '{action: DENY, rules: [{from: [{source: {namespaces: ["attacker"]}}]}]}');
const C_DENY_ATTACKER_WHEN = concept('deny-attacker', 'foo', '{action: DENY, rules: [{when: [{key: source.principal, values: ["cluster.local/ns/attacker/sa/evil"]}]}]}');
const C_ALLOW_FRIEND = concept('allow-friend', 'foo', '{rules: [{from: [{source: {principals: ["cluster.local/ns/friend/sa/client"]}}]}]}');
const products = (over: Parameters<typeof httpRequest>[0] = {}): unknown => httpRequest({ ns: 'default', labels: { app: 'products' }, port: 9080, ...over });
const C_RA_ROOT = yaml`
  apiVersion: security.istio.io/v1
  kind: RequestAuthentication
  metadata:
    name: mesh-jwt
    namespace: istio-system
  spec:
    jwtRules:
    - issuer: "issuer-foo"
  ---
  apiVersion: security.istio.io/v1
  kind: RequestAuthentication
  metadata:
    name: ns-jwt
    namespace: foo
  spec:
    jwtRules:
    - issuer: "issuer-bar"
`;

taskRows('concepts/security', [
  // Peer authentication.
  { name: 'example-peer-policy: reviews refuses plaintext', yaml: C_PEER_REVIEWS, req: httpRequest({ ns: 'foo', labels: { app: 'reviews' }, principal: null }), want: 'DENY refused' },
  { name: 'example-peer-policy: other workloads of foo stay PERMISSIVE', yaml: C_PEER_REVIEWS, req: httpRequest({ ns: 'foo', labels: { app: 'ratings' }, principal: null }), want: 'ALLOW' },
  { name: 'example-policy: every workload of foo refuses plaintext', yaml: C_PEER_NS, req: httpRequest({ ns: 'foo', labels: { app: 'ratings' }, principal: null }), want: 'DENY refused' },
  { name: 'example-workload-policy: port 80 of example-app takes plaintext', yaml: stream(C_PEER_NS, C_PEER_PORT80), req: httpRequest({ ns: 'foo', labels: { app: 'example-app' }, port: 80, principal: null }), want: 'ALLOW' },
  { name: 'example-workload-policy: other ports use the namespace mode', yaml: stream(C_PEER_NS, C_PEER_PORT80), req: httpRequest({ ns: 'foo', labels: { app: 'example-app' }, port: 9090, principal: null }), want: 'DENY refused' },
  { name: 'a mesh-wide policy with the mode unset means PERMISSIVE', yaml: C_MESH_UNSET, req: toHttpbin({ principal: null }), want: 'ALLOW' },
  {
    name: 'several workload-specific policies: the oldest is used',
    yaml: stream(
      paDoc('newer', 'foo', '{selector: {matchLabels: {app: httpbin}}, mtls: {mode: PERMISSIVE}}').replace('namespace: foo', 'namespace: foo\n  creationTimestamp: "2024-05-02T00:00:00Z"'),
      paDoc('older', 'foo', '{selector: {matchLabels: {version: v1}}, mtls: {mode: STRICT}}').replace('namespace: foo', 'namespace: foo\n  creationTimestamp: "2024-05-01T00:00:00Z"'),
    ),
    req: toHttpbin({ principal: null }), want: 'DENY refused',
  },
  // Request authentication: matching policies are combined.
  { name: 'RequestAuthentications of the root namespace and the workload namespace are combined: issuer-foo accepted', yaml: C_RA_ROOT, req: toHttpbin({ auth: ISSUER_FOO }), want: 'ALLOW' },
  { name: 'RequestAuthentications combined: issuer-bar accepted', yaml: C_RA_ROOT, req: toHttpbin({ auth: ISSUER_BAR }), want: 'ALLOW' },
  { name: 'RequestAuthentications combined: a third issuer is rejected', yaml: C_RA_ROOT, req: toHttpbin({ auth: jwt({ iss: 'issuer-baz', sub: 'x' }) }), want: 'DENY 401' },
  { name: 'RequestAuthentications combined: requests without token are accepted', yaml: C_RA_ROOT, req: toHttpbin({}), want: 'ALLOW' },
  // Authorization.
  { name: 'httpbin ALLOW: sleep of default, GET, Google JWT is allowed', yaml: C_ALLOW_HTTPBIN, req: toHttpbin({ principal: sa('default', 'sleep'), auth: GOOGLE_TOKEN }), want: 'ALLOW' },
  { name: 'httpbin ALLOW: namespace dev, GET, Google JWT is allowed', yaml: C_ALLOW_HTTPBIN, req: toHttpbin({ principal: sa('dev', 'tester'), auth: GOOGLE_TOKEN }), want: 'ALLOW' },
  { name: 'httpbin ALLOW: POST is denied', yaml: C_ALLOW_HTTPBIN, req: toHttpbin({ principal: sa('default', 'sleep'), method: 'POST', auth: GOOGLE_TOKEN }), want: 'DENY 403' },
  { name: 'httpbin ALLOW: without a JWT is denied', yaml: C_ALLOW_HTTPBIN, req: toHttpbin({ principal: sa('default', 'sleep') }), want: 'DENY 403' },
  { name: 'httpbin ALLOW: httpbin v2 is not selected', yaml: C_ALLOW_HTTPBIN, req: toHttpbin({ labels: { app: 'httpbin', version: 'v2' }, principal: sa('prod', 'x') }), want: 'ALLOW' },
  { name: 'httpbin-deny: a source outside foo is denied', yaml: C_DENY_NOT_FOO, req: toHttpbin({ principal: sa('bar', 'sleep') }), want: 'DENY 403', policy: 'foo/httpbin-deny' },
  { name: 'httpbin-deny: a source in foo is allowed', yaml: C_DENY_NOT_FOO, req: toHttpbin({ principal: sa('foo', 'sleep') }), want: 'ALLOW' },
  { name: 'httpbin-deny: plaintext has no namespace, so notNamespaces matches and it is denied', yaml: C_DENY_NOT_FOO, req: toHttpbin({ principal: null }), want: 'DENY 403' },
  { name: 'httpbin-deny over an allow: deny wins', yaml: stream(C_DENY_NOT_FOO, C_PUBLIC), req: toHttpbin({ principal: sa('bar', 'sleep') }), want: 'DENY 403', policy: 'foo/httpbin-deny' },
  { name: 'allow-read: GET is allowed', yaml: C_ALLOW_READ, req: products({}), want: 'ALLOW' },
  { name: 'allow-read: HEAD is allowed', yaml: C_ALLOW_READ, req: products({ method: 'HEAD' }), want: 'ALLOW' },
  { name: 'allow-read: POST is denied', yaml: C_ALLOW_READ, req: products({ method: 'POST' }), want: 'DENY 403' },
  { name: 'tester: /test/* prefix', yaml: C_TESTER, req: products({ path: '/test/a/b' }), want: 'ALLOW' },
  { name: 'tester: */info suffix', yaml: C_TESTER, req: products({ path: '/svc/v1/info' }), want: 'ALLOW' },
  { name: 'tester: /testing is neither', yaml: C_TESTER, req: products({ path: '/testing' }), want: 'DENY 403' },
  { name: 'value matching: test.abc.* matches test.abc.com.cn', yaml: C_HOST_PREFIX, req: products({ host: 'test.abc.com.cn' }), want: 'ALLOW' },
  { name: 'value matching: test.abc.* does not match prod.abc.com', yaml: C_HOST_PREFIX, req: products({ host: 'prod.abc.com' }), want: 'DENY 403' },
  { name: 'value matching: *.abc.com matches test.eng.abc.com', yaml: C_HOST_SUFFIX, req: products({ host: 'test.eng.abc.com' }), want: 'ALLOW' },
  { name: 'disable-jwt-for-healthz: /api with a JWT is allowed', yaml: C_DISABLE_JWT_HEALTHZ, req: products({ path: '/api', auth: GOOGLE_TOKEN }), want: 'ALLOW' },
  { name: 'disable-jwt-for-healthz: /api without JWT is denied', yaml: C_DISABLE_JWT_HEALTHZ, req: products({ path: '/api' }), want: 'DENY 403' },
  // The page says this policy "excludes /healthz from JWT authentication", but as the only ALLOW policy its single
  // rule cannot match /healthz, so istiod's default deny applies; the two-rule form of the RequestAuthentication
  // reference page (above) is what admits /healthz.
  { name: 'disable-jwt-for-healthz alone: /healthz is denied (no rule admits it)', yaml: C_DISABLE_JWT_HEALTHZ, req: products({ path: '/healthz' }), want: 'DENY 403', policy: null },
  { name: 'enable-jwt-for-admin: /admin without JWT is denied', yaml: C_ENABLE_JWT_ADMIN, req: products({ path: '/admin' }), want: 'DENY 403', policy: 'default/enable-jwt-for-admin' },
  { name: 'enable-jwt-for-admin: /admin with a JWT is allowed', yaml: C_ENABLE_JWT_ADMIN, req: products({ path: '/admin', auth: GOOGLE_TOKEN }), want: 'ALLOW' },
  { name: 'enable-jwt-for-admin: /other without JWT is allowed', yaml: C_ENABLE_JWT_ADMIN, req: products({ path: '/other' }), want: 'ALLOW' },
  { name: 'allow-nothing: everything is denied', yaml: C_ALLOW_NOTHING, req: products({}), want: 'DENY 403' },
  { name: 'allow-nothing plus allow-all: allowed (ALLOW policies add up)', yaml: stream(C_ALLOW_NOTHING, C_ALLOW_ALL), req: products({}), want: 'ALLOW', policy: 'default/allow-all' },
  { name: 'deny-all beats allow-all', yaml: stream(C_DENY_ALL, C_ALLOW_ALL), req: products({}), want: 'DENY 403', policy: 'default/deny-all' },
  { name: 'allow-all can still be denied by CUSTOM', yaml: stream(C_CUSTOM_DENY_ALL, C_ALLOW_ALL), mesh: MY_CUSTOM_AUTHZ_MESH, extAuthz: 'deny', req: products({}), want: 'DENY 403' },
  { name: 'custom condition: version v2 header is allowed', yaml: C_HEADER_VERSION, req: toHttpbin({ principal: sa('default', 'sleep'), headers: { version: 'v2' } }), want: 'ALLOW' },
  { name: 'custom condition: version v3 header is denied', yaml: C_HEADER_VERSION, req: toHttpbin({ principal: sa('default', 'sleep'), headers: { version: 'v3' } }), want: 'DENY 403' },
  { name: 'custom condition: no version header is denied', yaml: C_HEADER_VERSION, req: toHttpbin({ principal: sa('default', 'sleep') }), want: 'DENY 403' },
  { name: 'unauthenticated access: plaintext GET is allowed', yaml: C_PUBLIC, req: toHttpbin({ principal: null }), want: 'ALLOW' },
  { name: 'unauthenticated access: PUT is not listed', yaml: C_PUBLIC, req: toHttpbin({ method: 'PUT' }), want: 'DENY 403' },
  { name: 'authenticated only: an mTLS peer is allowed', yaml: C_AUTHENTICATED, req: toHttpbin({ method: 'POST' }), want: 'ALLOW' },
  { name: 'authenticated only: plaintext is denied', yaml: C_AUTHENTICATED, req: toHttpbin({ principal: null }), want: 'DENY 403' },
  { name: 'mongodb-policy: ratings-v2 on 27017 is allowed', yaml: C_MONGODB, req: tcpTo({ ns: 'default', labels: { app: 'mongodb' }, port: 27017, principal: sa('default', 'bookinfo-ratings-v2') }), want: 'ALLOW' },
  { name: 'mongodb-policy: another identity is rejected', yaml: C_MONGODB, req: tcpTo({ ns: 'default', labels: { app: 'mongodb' }, port: 27017, principal: sa('default', 'reviews') }), want: 'DENY reset' },
  { name: 'mongodb-policy: another port is rejected', yaml: C_MONGODB, req: tcpTo({ ns: 'default', labels: { app: 'mongodb' }, port: 27018, principal: sa('default', 'bookinfo-ratings-v2') }), want: 'DENY reset' },
  // Dependency on mutual TLS under PERMISSIVE: positive identity matches never see plaintext.
  { name: 'mTLS dependency: DENY namespaces attacker denies the attacker over mTLS', yaml: C_DENY_ATTACKER, req: toHttpbin({ principal: sa('attacker', 'evil') }), want: 'DENY 403' },
  { name: 'mTLS dependency: the same attacker in plaintext bypasses the DENY (PERMISSIVE)', yaml: C_DENY_ATTACKER, req: toHttpbin({ principal: null }), want: 'ALLOW' },
  { name: 'mTLS dependency: source.principal DENY is bypassed by plaintext too', yaml: C_DENY_ATTACKER_WHEN, req: toHttpbin({ principal: null }), want: 'ALLOW' },
  { name: 'mTLS dependency: with STRICT the plaintext attempt is refused', yaml: stream(C_PEER_NS, C_DENY_ATTACKER), req: toHttpbin({ principal: null }), want: 'DENY refused' },
  { name: 'mTLS dependency: an ALLOW on principals rejects a plaintext friend', yaml: C_ALLOW_FRIEND, req: toHttpbin({ principal: null }), want: 'DENY 403' },
]);
