import assert from 'node:assert/strict';
import { httpRequest } from './support/decide.ts';
import { jwt, sa, stream, taskRows, tcpTo, toHttpbin, yaml } from './support/istio-tasks-table.ts';

/**
 * The istio.io authorization tasks (content/en/docs/tasks/security/authorization/*), rebuilt as decision rows:
 * each step's resources, each request the page shows, and the outcome the page states. The YAML is our adaptation of
 * each step; requests the page only implies are marked "(implied)".
 */

// ---------------------------------------------------------------------------------------------------------------
// tasks/security/authorization/authz-http — Bookinfo in `default`, requests through the ingress gateway.
// https://istio.io/latest/docs/tasks/security/authorization/authz-http/ (index.md, snips.sh, test.sh)

const BOOKINFO_PORT = 9080;
const GATEWAY_ID = sa('istio-system', 'istio-ingressgateway-service-account');
const PRODUCTPAGE_ID = sa('default', 'bookinfo-productpage');
const REVIEWS_ID = sa('default', 'bookinfo-reviews');
const bookinfo = (app: string, from: string, method = 'GET', path = '/'): unknown =>
  httpRequest({
    ns: 'default', labels: { app, version: app === 'reviews' ? 'v3' : 'v1' }, port: BOOKINFO_PORT,
    principal: from, method, path, host: `${app}:${BOOKINFO_PORT}`,
  });

const ALLOW_NOTHING_DEFAULT = yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: allow-nothing
    namespace: default
  spec: {}
`;
const viewer = (name: string, app: string, principal?: string): string => yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: ${name}
    namespace: default
  spec:
    selector:
      matchLabels:
        app: ${app}
    action: ALLOW
    rules:
    - ${principal === undefined ? '' : `from:
      - source:
          principals: ["${principal}"]
      `}to:
      - operation:
          methods: ["GET"]
`;
const PRODUCTPAGE_VIEWER = viewer('productpage-viewer', 'productpage');
const DETAILS_VIEWER = viewer('details-viewer', 'details', PRODUCTPAGE_ID);
const REVIEWS_VIEWER = viewer('reviews-viewer', 'reviews', PRODUCTPAGE_ID);
const RATINGS_VIEWER = viewer('ratings-viewer', 'ratings', REVIEWS_ID);
const HTTP_STEP2 = stream(ALLOW_NOTHING_DEFAULT, PRODUCTPAGE_VIEWER);
const HTTP_STEP3 = stream(ALLOW_NOTHING_DEFAULT, PRODUCTPAGE_VIEWER, DETAILS_VIEWER, REVIEWS_VIEWER);
const HTTP_STEP4 = stream(ALLOW_NOTHING_DEFAULT, PRODUCTPAGE_VIEWER, DETAILS_VIEWER, REVIEWS_VIEWER, RATINGS_VIEWER);

taskRows('authz-http', [
  // Step 1: allow-nothing; the page shows "RBAC: access denied".
  { name: 'allow-nothing denies the product page', yaml: ALLOW_NOTHING_DEFAULT, req: bookinfo('productpage', GATEWAY_ID, 'GET', '/productpage'), want: 'DENY 403', policy: null },
  { name: 'allow-nothing denies productpage → details (implied)', yaml: ALLOW_NOTHING_DEFAULT, req: bookinfo('details', PRODUCTPAGE_ID, 'GET', '/details/0'), want: 'DENY 403' },
  // Step 2: productpage-viewer; the page loads, with "Error fetching product details/reviews".
  { name: 'productpage-viewer allows GET /productpage from anyone', yaml: HTTP_STEP2, req: bookinfo('productpage', GATEWAY_ID, 'GET', '/productpage'), want: 'ALLOW', policy: 'default/productpage-viewer', rule: 0 },
  { name: 'productpage-viewer does not allow POST (test.sh: METHOD=POST → 403)', yaml: HTTP_STEP2, req: bookinfo('productpage', GATEWAY_ID, 'POST', '/productpage'), want: 'DENY 403' },
  { name: 'productpage → details still denied ("Error fetching product details")', yaml: HTTP_STEP2, req: bookinfo('details', PRODUCTPAGE_ID, 'GET', '/details/0'), want: 'DENY 403' },
  { name: 'productpage → reviews still denied ("Error fetching product reviews")', yaml: HTTP_STEP2, req: bookinfo('reviews', PRODUCTPAGE_ID, 'GET', '/reviews/0'), want: 'DENY 403' },
  // Step 3: details-viewer and reviews-viewer for the productpage identity.
  { name: 'details-viewer allows GET from bookinfo-productpage', yaml: HTTP_STEP3, req: bookinfo('details', PRODUCTPAGE_ID, 'GET', '/details/0'), want: 'ALLOW', policy: 'default/details-viewer' },
  { name: 'reviews-viewer allows GET from bookinfo-productpage', yaml: HTTP_STEP3, req: bookinfo('reviews', PRODUCTPAGE_ID, 'GET', '/reviews/0'), want: 'ALLOW', policy: 'default/reviews-viewer' },
  { name: 'reviews → ratings denied ("Ratings service currently unavailable")', yaml: HTTP_STEP3, req: bookinfo('ratings', REVIEWS_ID, 'GET', '/ratings/0'), want: 'DENY 403' },
  { name: 'details-viewer admits only the productpage identity (implied)', yaml: HTTP_STEP3, req: bookinfo('details', sa('default', 'sleep'), 'GET', '/details/0'), want: 'DENY 403' },
  { name: 'details-viewer admits GET only (implied)', yaml: HTTP_STEP3, req: bookinfo('details', PRODUCTPAGE_ID, 'POST', '/details/0'), want: 'DENY 403' },
  // Step 4: ratings-viewer; black and red stars appear.
  { name: 'ratings-viewer allows GET from bookinfo-reviews', yaml: HTTP_STEP4, req: bookinfo('ratings', REVIEWS_ID, 'GET', '/ratings/0'), want: 'ALLOW', policy: 'default/ratings-viewer' },
  { name: 'the whole page works: productpage still allowed', yaml: HTTP_STEP4, req: bookinfo('productpage', GATEWAY_ID, 'GET', '/productpage'), want: 'ALLOW', policy: 'default/productpage-viewer' },
]);

// ---------------------------------------------------------------------------------------------------------------
// tasks/security/authorization/authz-tcp — tcp-echo in `foo` on 9000, 9001 (Service ports) and 9002 (pod IP only).
// https://istio.io/latest/docs/tasks/security/authorization/authz-tcp/ (snips.sh)

const TCP_ECHO = { app: 'tcp-echo', version: 'v1' };
const echo = (port: number): unknown => tcpTo({ ns: 'foo', labels: TCP_ECHO, port, principal: sa('foo', 'sleep') });
const tcpPolicy = (action: 'ALLOW' | 'DENY', operation: string): string => yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: tcp-policy
    namespace: foo
  spec:
    selector:
      matchLabels:
        app: tcp-echo
    action: ${action}
    rules:
    - to:
      - operation: ${operation}
`;
const TCP_ALLOW_PORTS = tcpPolicy('ALLOW', '{ports: ["9000", "9001"]}');
const TCP_ALLOW_GET_9000 = tcpPolicy('ALLOW', '{methods: ["GET"], ports: ["9000"]}');
const TCP_DENY_GET = tcpPolicy('DENY', '{methods: ["GET"]}');
const TCP_DENY_GET_9000 = tcpPolicy('DENY', '{methods: ["GET"], ports: ["9000"]}');

// The old version of the page: ratings-v2 talking to MongoDB on 27017.
const MONGODB = { app: 'mongodb', version: 'v1' };
const MONGO_DENY_ALL = yaml`
  apiVersion: security.istio.io/v1beta1
  kind: AuthorizationPolicy
  metadata:
    name: deny-all
    namespace: default
  spec:
    selector:
      matchLabels:
        app: mongodb
`;
const MONGO_RATINGS_V2 = yaml`
  apiVersion: security.istio.io/v1beta1
  kind: AuthorizationPolicy
  metadata:
    name: bookinfo-ratings-v2
    namespace: default
  spec:
    selector:
      matchLabels:
        app: mongodb
    rules:
    - from:
      - source:
          principals: ["cluster.local/ns/default/sa/bookinfo-ratings-v2"]
      to:
      - operation:
          ports: ["27017"]
`;
const mongo = (principal: string): unknown => tcpTo({ ns: 'default', labels: MONGODB, port: 27017, principal });

taskRows('authz-tcp', [
  { name: 'no policy: port 9000 succeeds', yaml: '', req: echo(9000), want: 'ALLOW' },
  { name: 'no policy: port 9001 succeeds', yaml: '', req: echo(9001), want: 'ALLOW' },
  { name: 'no policy: port 9002 (pod IP) succeeds', yaml: '', req: echo(9002), want: 'ALLOW' },
  { name: 'ALLOW ports 9000,9001: 9000 succeeds', yaml: TCP_ALLOW_PORTS, req: echo(9000), want: 'ALLOW', policy: 'foo/tcp-policy' },
  { name: 'ALLOW ports 9000,9001: 9001 succeeds', yaml: TCP_ALLOW_PORTS, req: echo(9001), want: 'ALLOW', policy: 'foo/tcp-policy' },
  { name: 'ALLOW ports 9000,9001: 9002 rejected', yaml: TCP_ALLOW_PORTS, req: echo(9002), want: 'DENY reset' },
  // The HTTP-only `methods` makes istiod drop the ALLOW rule for TCP: nothing is allowed any more.
  { name: 'ALLOW methods GET + port 9000: 9000 rejected', yaml: TCP_ALLOW_GET_9000, req: echo(9000), want: 'DENY reset', policy: null },
  { name: 'ALLOW methods GET + port 9000: 9001 rejected', yaml: TCP_ALLOW_GET_9000, req: echo(9001), want: 'DENY reset', policy: null },
  // A DENY rule only loses the HTTP-only condition: it denies every TCP connection.
  { name: 'DENY methods GET: 9000 rejected', yaml: TCP_DENY_GET, req: echo(9000), want: 'DENY reset', policy: 'foo/tcp-policy' },
  { name: 'DENY methods GET: 9001 rejected', yaml: TCP_DENY_GET, req: echo(9001), want: 'DENY reset', policy: 'foo/tcp-policy' },
  { name: 'DENY methods GET + port 9000: 9000 rejected', yaml: TCP_DENY_GET_9000, req: echo(9000), want: 'DENY reset', policy: 'foo/tcp-policy' },
  { name: 'DENY methods GET + port 9000: 9001 succeeds', yaml: TCP_DENY_GET_9000, req: echo(9001), want: 'ALLOW' },
  // Earlier version of the page (Bookinfo ratings-v2 → MongoDB).
  { name: 'mongodb deny-all: ratings-v2 → mongodb:27017 rejected', yaml: MONGO_DENY_ALL, req: mongo(sa('default', 'bookinfo-ratings-v2')), want: 'DENY reset' },
  { name: 'mongodb bookinfo-ratings-v2: ratings-v2 → mongodb:27017 succeeds', yaml: stream(MONGO_DENY_ALL, MONGO_RATINGS_V2), req: mongo(sa('default', 'bookinfo-ratings-v2')), want: 'ALLOW', policy: 'default/bookinfo-ratings-v2' },
  { name: 'mongodb bookinfo-ratings-v2: another identity is still rejected (implied)', yaml: stream(MONGO_DENY_ALL, MONGO_RATINGS_V2), req: mongo(sa('default', 'bookinfo-ratings-v1')), want: 'DENY reset' },
]);

// ---------------------------------------------------------------------------------------------------------------
// tasks/security/authorization/authz-jwt — httpbin in `foo`, the istio sample tokens.
// https://istio.io/latest/docs/tasks/security/authorization/authz-jwt/ (snips.sh)

const ISSUER = 'testing@secure.istio.io';
/** Payload of security/tools/jwt/samples/demo.jwt. */
const DEMO_TOKEN = jwt({ exp: 4685989700, foo: 'bar', iat: 1532389700, iss: ISSUER, sub: ISSUER });
/** Payload of security/tools/jwt/samples/groups-scope.jwt. */
const GROUPS_TOKEN = jwt({ exp: 3537391104, groups: ['group1', 'group2'], iat: 1537391104, iss: ISSUER, scope: ['scope1', 'scope2'], sub: ISSUER });
const JWT_EXAMPLE = yaml`
  apiVersion: security.istio.io/v1
  kind: RequestAuthentication
  metadata:
    name: jwt-example
    namespace: foo
  spec:
    selector:
      matchLabels:
        app: httpbin
    jwtRules:
    - issuer: "testing@secure.istio.io"
      jwksUri: "https://raw.githubusercontent.com/istio/istio/release-1.13/security/tools/jwt/samples/jwks.json"
`;
const requireJwt = (when: string): string => yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: require-jwt
    namespace: foo
  spec:
    selector:
      matchLabels:
        app: httpbin
    action: ALLOW
    rules:
    - from:
      - source:
          requestPrincipals: ["testing@secure.istio.io/testing@secure.istio.io"]
      ${when}
`;
const JWT_STEP2 = stream(JWT_EXAMPLE, requireJwt(''));
const JWT_STEP3 = stream(JWT_EXAMPLE, requireJwt('when: [{key: "request.auth.claims[groups]", values: ["group1"]}]'));
const headers = (bearer?: string): { headers: Record<string, string> } => ({ headers: bearer === undefined ? {} : { authorization: `Bearer ${bearer}` } });

taskRows('authz-jwt', [
  { name: 'no policy: sleep → httpbin /ip is 200', yaml: '', req: toHttpbin({ principal: sa('foo', 'sleep') }), want: 'ALLOW' },
  // "Bearer invalidToken": the engine cannot verify raw tokens and fails closed with 401, which is also Istio's answer.
  { name: 'RequestAuthentication: an invalid token (raw) is 401', yaml: JWT_EXAMPLE, req: toHttpbin({ path: '/headers', ...headers('invalidToken') }), want: 'DENY 401', policy: null },
  // The same step modelled as a verified token whose issuer no rule accepts (the engine's stand-in for "invalid").
  { name: 'RequestAuthentication: an invalid token (issuer not configured) is 401', yaml: JWT_EXAMPLE, req: toHttpbin({ path: '/headers', ...headers('invalidToken'), auth: jwt({ iss: 'invalid.example', sub: 'x' }) }), want: 'DENY 401' },
  { name: 'RequestAuthentication: no token is 200', yaml: JWT_EXAMPLE, req: toHttpbin({ path: '/headers' }), want: 'ALLOW' },
  { name: 'require-jwt: the demo token is 200', yaml: JWT_STEP2, req: toHttpbin({ path: '/headers', ...headers('demo'), auth: DEMO_TOKEN }), want: 'ALLOW', policy: 'foo/require-jwt' },
  { name: 'require-jwt: no token is 403', yaml: JWT_STEP2, req: toHttpbin({ path: '/headers' }), want: 'DENY 403', policy: null },
  { name: 'require-jwt + groups claim: the groups token is 200', yaml: JWT_STEP3, req: toHttpbin({ path: '/headers', ...headers('groups'), auth: GROUPS_TOKEN }), want: 'ALLOW', policy: 'foo/require-jwt' },
  { name: 'require-jwt + groups claim: the demo token (no groups) is 403', yaml: JWT_STEP3, req: toHttpbin({ path: '/headers', ...headers('demo'), auth: DEMO_TOKEN }), want: 'DENY 403' },
]);

// ---------------------------------------------------------------------------------------------------------------
// tasks/security/authorization/authz-deny — explicit deny on httpbin in `foo`.
// https://istio.io/latest/docs/tasks/security/authorization/authz-deny/ (snips.sh)

const denyGet = (when: string): string => yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: deny-method-get
    namespace: foo
  spec:
    selector:
      matchLabels:
        app: httpbin
    action: DENY
    rules:
    - to:
      - operation:
          methods: ["GET"]
      ${when}
`;
const DENY_GET = denyGet('');
const DENY_GET_UNLESS_ADMIN = denyGet('when: [{key: "request.headers[x-token]", notValues: ["admin"]}]');
const ALLOW_PATH_IP = yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: allow-path-ip
    namespace: foo
  spec:
    selector:
      matchLabels:
        app: httpbin
    action: ALLOW
    rules:
    - to:
      - operation:
          paths: ["/ip"]
`;
const token = (v: string): { headers: Record<string, string> } => ({ headers: { 'x-token': v } });

taskRows('authz-deny', [
  { name: 'no policy: /ip is 200', yaml: '', req: toHttpbin({}), want: 'ALLOW' },
  { name: 'deny-method-get: GET /get is 403', yaml: DENY_GET, req: toHttpbin({ path: '/get' }), want: 'DENY 403', policy: 'foo/deny-method-get', rule: 0 },
  { name: 'deny-method-get: POST /post is 200', yaml: DENY_GET, req: toHttpbin({ method: 'POST', path: '/post' }), want: 'ALLOW' },
  { name: 'deny unless x-token admin: GET /get with admin is 200', yaml: DENY_GET_UNLESS_ADMIN, req: toHttpbin({ path: '/get', ...token('admin') }), want: 'ALLOW' },
  { name: 'deny unless x-token admin: GET /get with guest is 403', yaml: DENY_GET_UNLESS_ADMIN, req: toHttpbin({ path: '/get', ...token('guest') }), want: 'DENY 403', policy: 'foo/deny-method-get' },
  { name: 'deny unless x-token admin: GET /get without the header is 403 (implied: notValues matches absence)', yaml: DENY_GET_UNLESS_ADMIN, req: toHttpbin({ path: '/get' }), want: 'DENY 403', policy: 'foo/deny-method-get' },
  { name: 'DENY before ALLOW: GET /ip with guest is 403', yaml: stream(DENY_GET_UNLESS_ADMIN, ALLOW_PATH_IP), req: toHttpbin({ path: '/ip', ...token('guest') }), want: 'DENY 403', policy: 'foo/deny-method-get' },
  { name: 'DENY before ALLOW: GET /ip with admin is 200', yaml: stream(DENY_GET_UNLESS_ADMIN, ALLOW_PATH_IP), req: toHttpbin({ path: '/ip', ...token('admin') }), want: 'ALLOW', policy: 'foo/allow-path-ip' },
  { name: 'DENY before ALLOW: GET /get with admin is 403 (no ALLOW rule)', yaml: stream(DENY_GET_UNLESS_ADMIN, ALLOW_PATH_IP), req: toHttpbin({ path: '/get', ...token('admin') }), want: 'DENY 403', policy: null },
]);

// ---------------------------------------------------------------------------------------------------------------
// tasks/security/authorization/authz-ingress — IP allow/deny lists on the ingress gateway (a selector policy in the root
// namespace, decided like a sidecar). ipBlocks is the packet's source (the client only when the load balancer preserves
// it); remoteIpBlocks is the original client from X-Forwarded-For (numTrustedProxies) or the PROXY protocol.
// https://istio.io/latest/docs/tasks/security/authorization/authz-ingress/ (index.md, snips.sh)

const GATEWAY = { app: 'istio-ingressgateway', istio: 'ingressgateway' };
const CLIENT_IP = '192.168.10.15';
const LB_IP = '10.0.0.5';
const ingressPolicy = (action: 'ALLOW' | 'DENY', field: 'ipBlocks' | 'remoteIpBlocks', blocks: readonly string[]): string => yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: ingress-policy
    namespace: istio-system
  spec:
    selector:
      matchLabels:
        app: istio-ingressgateway
    action: ${action}
    rules:
    - from:
      - source:
          ${field}: ${JSON.stringify(blocks)}
`;
/** curl $INGRESS_HOST/headers from outside: plaintext to the gateway, the client seen directly. */
const direct = (ip: string): unknown =>
  httpRequest({ ns: 'istio-system', labels: GATEWAY, port: 8080, principal: null, sourceIp: ip, host: 'httpbin.example.com', path: '/headers' });
/** The same behind a proxying load balancer: the packet comes from the LB, the client IP from XFF / PROXY protocol. */
const proxied = (client: string): unknown =>
  httpRequest({ ns: 'istio-system', labels: GATEWAY, port: 8080, principal: null, sourceIp: LB_IP, remoteIp: client, host: 'httpbin.example.com', path: '/headers' });
const ALLOW_LIST = ['1.2.3.4', '5.6.7.0/24'];

taskRows('authz-ingress', [
  { name: 'no policy: /headers through the gateway is 200', yaml: '', req: direct(CLIENT_IP), want: 'ALLOW' },
  { name: 'ipBlocks allow list without the client is 403', yaml: ingressPolicy('ALLOW', 'ipBlocks', ALLOW_LIST), req: direct(CLIENT_IP), want: 'DENY 403' },
  { name: 'ipBlocks allow list: an address in 5.6.7.0/24 is 200 (implied)', yaml: ingressPolicy('ALLOW', 'ipBlocks', ALLOW_LIST), req: direct('5.6.7.8'), want: 'ALLOW', policy: 'istio-system/ingress-policy' },
  { name: 'ipBlocks allow list with $CLIENT_IP is 200', yaml: ingressPolicy('ALLOW', 'ipBlocks', [...ALLOW_LIST, CLIENT_IP]), req: direct(CLIENT_IP), want: 'ALLOW', policy: 'istio-system/ingress-policy' },
  { name: 'ipBlocks deny list with $CLIENT_IP is 403', yaml: ingressPolicy('DENY', 'ipBlocks', [CLIENT_IP]), req: direct(CLIENT_IP), want: 'DENY 403', policy: 'istio-system/ingress-policy' },
  { name: 'ipBlocks deny list: another client IP (via a proxy service) is 200', yaml: ingressPolicy('DENY', 'ipBlocks', [CLIENT_IP]), req: direct('203.0.113.50'), want: 'ALLOW' },
  { name: 'remoteIpBlocks allow list without the client is 403', yaml: ingressPolicy('ALLOW', 'remoteIpBlocks', ALLOW_LIST), req: proxied(CLIENT_IP), want: 'DENY 403' },
  { name: 'remoteIpBlocks allow list with $CLIENT_IP is 200', yaml: ingressPolicy('ALLOW', 'remoteIpBlocks', [...ALLOW_LIST, CLIENT_IP]), req: proxied(CLIENT_IP), want: 'ALLOW', policy: 'istio-system/ingress-policy' },
  { name: 'remoteIpBlocks deny list with $CLIENT_IP is 403', yaml: ingressPolicy('DENY', 'remoteIpBlocks', [CLIENT_IP]), req: proxied(CLIENT_IP), want: 'DENY 403', policy: 'istio-system/ingress-policy' },
  { name: 'behind a proxy, ipBlocks sees the load balancer, not the client (implied)', yaml: ingressPolicy('ALLOW', 'ipBlocks', [...ALLOW_LIST, CLIENT_IP]), req: proxied(CLIENT_IP), want: 'DENY 403' },
  { name: 'the gateway policy does not apply to the httpbin sidecar (implied)', yaml: ingressPolicy('ALLOW', 'ipBlocks', ALLOW_LIST), req: toHttpbin({ principal: GATEWAY_ID, sourceIp: '10.0.0.20', path: '/headers' }), want: 'ALLOW', policy: null },
]);

// ---------------------------------------------------------------------------------------------------------------
// tasks/security/authorization/authz-custom — CUSTOM action with the sample ext-authz server (allows requests that carry
// `x-ext-authz: allow`). `extAuthz` stands for what the sample server answers for the row's header.
// https://istio.io/latest/docs/tasks/security/authorization/authz-custom/ (index.md, snips.sh)

const EXT_AUTHZ_MESH = yaml`
  apiVersion: v1
  kind: ConfigMap
  metadata:
    name: istio
    namespace: istio-system
  data:
    mesh: |-
      extensionProviders:
      - name: "sample-ext-authz-grpc"
        envoyExtAuthzGrpc:
          service: "ext-authz.foo.svc.cluster.local"
          port: "9000"
      - name: "sample-ext-authz-http"
        envoyExtAuthzHttp:
          service: "ext-authz.foo.svc.cluster.local"
          port: "8000"
          includeRequestHeadersInCheck: ["x-ext-authz"]
`;
const extAuthz = (provider: string): string => yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: ext-authz
    namespace: foo
  spec:
    selector:
      matchLabels:
        app: httpbin
    action: CUSTOM
    provider:
      name: ${provider}
    rules:
    - to:
      - operation:
          paths: ["/headers"]
`;
const GRPC = extAuthz('sample-ext-authz-grpc');
const HTTP = extAuthz('sample-ext-authz-http');
const extHeader = (v: string): { headers: Record<string, string> } => ({ headers: { 'x-ext-authz': v } });
const delegatedTo = (provider: string | null) => (d: { customProvider: string | null }): void => assert.equal(d.customProvider, provider);

taskRows('authz-custom', [
  { name: 'no policy: /ip is 200', yaml: '', req: toHttpbin({}), want: 'ALLOW', mesh: EXT_AUTHZ_MESH },
  { name: 'grpc provider: /headers with x-ext-authz deny is denied by ext_authz', yaml: GRPC, mesh: EXT_AUTHZ_MESH, extAuthz: 'deny', req: toHttpbin({ path: '/headers', ...extHeader('deny') }), want: 'DENY 403', policy: 'foo/ext-authz', check: delegatedTo('sample-ext-authz-grpc') },
  { name: 'grpc provider: /headers with x-ext-authz allow is allowed', yaml: GRPC, mesh: EXT_AUTHZ_MESH, extAuthz: 'allow', req: toHttpbin({ path: '/headers', ...extHeader('allow') }), want: 'ALLOW', check: delegatedTo('sample-ext-authz-grpc') },
  // The authorizer would deny this request, but /ip does not match the CUSTOM rule: it is never asked.
  { name: 'grpc provider: /ip is 200 and does not call the authorizer', yaml: GRPC, mesh: EXT_AUTHZ_MESH, extAuthz: 'deny', req: toHttpbin({ path: '/ip' }), want: 'ALLOW', check: delegatedTo(null) },
  { name: 'http provider: /headers with x-ext-authz deny is denied', yaml: HTTP, mesh: EXT_AUTHZ_MESH, extAuthz: 'deny', req: toHttpbin({ path: '/headers', ...extHeader('deny') }), want: 'DENY 403', check: delegatedTo('sample-ext-authz-http') },
  { name: 'http provider: /headers with x-ext-authz allow is allowed', yaml: HTTP, mesh: EXT_AUTHZ_MESH, extAuthz: 'allow', req: toHttpbin({ path: '/headers', ...extHeader('allow') }), want: 'ALLOW', check: delegatedTo('sample-ext-authz-http') },
  // "you must define the external authorizer ... in the mesh config": without it istiod fails closed.
  { name: 'provider not defined in the mesh config: /headers is denied even if it would allow (implied)', yaml: GRPC, extAuthz: 'allow', req: toHttpbin({ path: '/headers', ...extHeader('allow') }), want: 'DENY 403', reason: /not defined in meshConfig\.extensionProviders/ },
  { name: 'provider not defined in the mesh config: /ip is untouched (implied)', yaml: GRPC, extAuthz: 'allow', req: toHttpbin({ path: '/ip' }), want: 'ALLOW' },
]);

// ---------------------------------------------------------------------------------------------------------------
// tasks/security/authorization/authz-dry-run — a dry-run DENY on /headers: never enforced, reported as shadow result
// ("shadow denied, matched policy ns[foo]-policy[deny-path-headers]-rule[0]").
// https://istio.io/latest/docs/tasks/security/authorization/authz-dry-run/ (snips.sh)

const DRY_RUN_DENY = yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: deny-path-headers
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

taskRows('authz-dry-run', [
  { name: 'no policy: /ip is 200', yaml: '', req: toHttpbin({}), want: 'ALLOW' },
  {
    name: 'dry-run DENY: /headers is 200 and the shadow engine reports denied by deny-path-headers rule 0',
    yaml: DRY_RUN_DENY, req: toHttpbin({ path: '/headers', headers: { 'x-b3-sampled': '1' } }), want: 'ALLOW', policy: null,
    check: (d) => assert.deepEqual(d.dryRun, [{ action: 'DENY', result: 'denied', policy: 'foo/deny-path-headers', rule: 0 }]),
  },
  {
    name: 'dry-run DENY: /ip is 200 and the shadow result is allowed (implied)',
    yaml: DRY_RUN_DENY, req: toHttpbin({ path: '/ip' }), want: 'ALLOW',
    check: (d) => assert.deepEqual(d.dryRun, [{ action: 'DENY', result: 'allowed', policy: null, rule: null }]),
  },
  // Summary: "Remove the dry-run annotation completely; or change the value of the dry-run annotation to false".
  { name: 'annotation removed: /headers is now denied', yaml: DRY_RUN_DENY.replace(/\n {2}annotations:\n.*\n/, '\n'), req: toHttpbin({ path: '/headers' }), want: 'DENY 403', policy: 'foo/deny-path-headers', check: (d) => assert.deepEqual(d.dryRun, []) },
  { name: 'annotation set to "false": /headers is now denied', yaml: DRY_RUN_DENY.replace('"istio.io/dry-run": "true"', '"istio.io/dry-run": "false"'), req: toHttpbin({ path: '/headers' }), want: 'DENY 403', policy: 'foo/deny-path-headers' },
]);

// ---------------------------------------------------------------------------------------------------------------
// tasks/security/authorization/authz-td-migration — policy written for old-td; the mesh moves to new-td, with and
// without trustDomainAliases. Workloads are restarted after the change, so their identities carry the new domain.
// https://istio.io/latest/docs/tasks/security/authorization/authz-td-migration/ (index.md, snips.sh)

const tdPolicy = (principal: string): string => yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: service-httpbin.default.svc.cluster.local
    namespace: default
  spec:
    rules:
    - from:
      - source:
          principals:
          - ${principal}
      to:
      - operation:
          methods:
          - GET
    selector:
      matchLabels:
        app: httpbin
`;
const OLD_TD_POLICY = tdPolicy('old-td/ns/sleep-allow/sa/sleep');
const CLUSTER_LOCAL_POLICY = tdPolicy('cluster.local/ns/sleep-allow/sa/sleep');
const OLD_TD = 'trustDomain: old-td';
const NEW_TD = 'trustDomain: new-td';
const NEW_TD_ALIASED = 'trustDomain: new-td\ntrustDomainAliases:\n  - old-td';
const sleepIn = (ns: string, td: string): unknown => toHttpbin({ ns: 'default', principal: sa(ns, 'sleep', td) });
const TD_POLICY_ID = 'default/service-httpbin.default.svc.cluster.local';

taskRows('authz-td-migration', [
  { name: 'old-td: sleep in default is 403', yaml: OLD_TD_POLICY, mesh: OLD_TD, req: sleepIn('default', 'old-td'), want: 'DENY 403' },
  { name: 'old-td: sleep in sleep-allow is 200', yaml: OLD_TD_POLICY, mesh: OLD_TD, req: sleepIn('sleep-allow', 'old-td'), want: 'ALLOW', policy: TD_POLICY_ID },
  { name: 'new-td without aliases: sleep in default is 403', yaml: OLD_TD_POLICY, mesh: NEW_TD, req: sleepIn('default', 'new-td'), want: 'DENY 403' },
  { name: 'new-td without aliases: sleep in sleep-allow is 403', yaml: OLD_TD_POLICY, mesh: NEW_TD, req: sleepIn('sleep-allow', 'new-td'), want: 'DENY 403' },
  { name: 'new-td with alias old-td: sleep in default is 403', yaml: OLD_TD_POLICY, mesh: NEW_TD_ALIASED, req: sleepIn('default', 'new-td'), want: 'DENY 403' },
  { name: 'new-td with alias old-td: sleep in sleep-allow is 200', yaml: OLD_TD_POLICY, mesh: NEW_TD_ALIASED, req: sleepIn('sleep-allow', 'new-td'), want: 'ALLOW', policy: TD_POLICY_ID },
  // Best practices: cluster.local in a policy points at the current trust domain (and its aliases).
  { name: 'best practice: cluster.local policy under old-td admits old-td/ns/sleep-allow/sa/sleep', yaml: CLUSTER_LOCAL_POLICY, mesh: OLD_TD, req: sleepIn('sleep-allow', 'old-td'), want: 'ALLOW', policy: TD_POLICY_ID },
  { name: 'best practice: cluster.local policy after moving to new-td admits new-td/ns/sleep-allow/sa/sleep without aliases', yaml: CLUSTER_LOCAL_POLICY, mesh: NEW_TD, req: sleepIn('sleep-allow', 'new-td'), want: 'ALLOW', policy: TD_POLICY_ID },
  { name: 'best practice: cluster.local policy still rejects sleep in default', yaml: CLUSTER_LOCAL_POLICY, mesh: NEW_TD, req: sleepIn('default', 'new-td'), want: 'DENY 403' },
]);
