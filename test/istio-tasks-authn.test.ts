import { httpRequest } from './support/decide.ts';
import { jwt, sa, stream, taskRows, toHttpbin, yaml, type Outcome, type TaskRow } from './support/istio-tasks-table.ts';

/**
 * The istio.io authentication tasks (content/en/docs/tasks/security/authentication/*) as decision rows.
 *
 * The pages' request matrices send `curl http://httpbin.<to>:8000/ip` from `sleep.<from>`: sleep in foo and bar has a
 * sidecar (auto mTLS: it sends Istio mTLS to sidecar endpoints whose mode is not DISABLE), sleep in legacy has none
 * (plaintext). Rows are for destinations with a sidecar only: httpbin.legacy has no proxy, so nothing of Istio's
 * inbound side decides those requests (the pages show 200 for them throughout). httpbin's workload port is 8080
 * (samples/httpbin: Service port 8000 → targetPort 8080; older revisions of the pages used 80).
 */

const from = (ns: 'foo' | 'bar' | 'legacy'): string | null => (ns === 'legacy' ? null : sa(ns, 'sleep'));

/** One row per (from, to) pair of the page's matrix; `want` lists the outcomes in the page's order. */
function matrix(step: string, yamlText: string, want: Readonly<Record<string, Outcome>>, clientPlaintext: readonly string[] = []): TaskRow[] {
  return Object.entries(want).map(([pair, outcome]) => {
    const [src, dst] = pair.split('→') as ['foo' | 'bar' | 'legacy', string];
    const plaintext = src === 'legacy' || clientPlaintext.includes(pair);
    return {
      name: `${step}: sleep.${src} → httpbin.${dst} ${outcome === 'ALLOW' ? '200' : outcome === 'DENY refused' ? 'fails (curl exit 56)' : outcome}`,
      yaml: yamlText,
      req: toHttpbin({ ns: dst, principal: plaintext ? null : from(src) }),
      want: outcome,
    };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// tasks/security/authentication/authn-policy
// https://istio.io/latest/docs/tasks/security/authentication/authn-policy/ (snips.sh, index.md)

const MESH_STRICT = yaml`
  apiVersion: security.istio.io/v1
  kind: PeerAuthentication
  metadata:
    name: default
    namespace: istio-system
  spec:
    mtls:
      mode: STRICT
`;
const FOO_STRICT = yaml`
  apiVersion: security.istio.io/v1
  kind: PeerAuthentication
  metadata:
    name: default
    namespace: foo
  spec:
    mtls:
      mode: STRICT
`;
const BAR_HTTPBIN_STRICT = yaml`
  apiVersion: security.istio.io/v1
  kind: PeerAuthentication
  metadata:
    name: httpbin
    namespace: bar
  spec:
    selector:
      matchLabels:
        app: httpbin
    mtls:
      mode: STRICT
`;
// portLevelMtls names the workload port (8080), not the Service port (8000) the DestinationRule uses.
const BAR_HTTPBIN_STRICT_8080_DISABLE = yaml`
  apiVersion: security.istio.io/v1
  kind: PeerAuthentication
  metadata:
    name: httpbin
    namespace: bar
  spec:
    selector:
      matchLabels:
        app: httpbin
    mtls:
      mode: STRICT
    portLevelMtls:
      8080:
        mode: DISABLE
`;
const FOO_OVERWRITE_DISABLE = yaml`
  apiVersion: security.istio.io/v1
  kind: PeerAuthentication
  metadata:
    name: overwrite-example
    namespace: foo
  spec:
    selector:
      matchLabels:
        app: httpbin
    mtls:
      mode: DISABLE
`;

const ALL_200 = { 'foo→foo': 'ALLOW', 'foo→bar': 'ALLOW', 'bar→foo': 'ALLOW', 'bar→bar': 'ALLOW', 'legacy→foo': 'ALLOW', 'legacy→bar': 'ALLOW' } as const;

taskRows('authn-policy', [
  ...matrix('setup, no PeerAuthentication', '', ALL_200),
  ...matrix('mesh-wide STRICT', MESH_STRICT, { ...ALL_200, 'legacy→foo': 'DENY refused', 'legacy→bar': 'DENY refused' }),
  ...matrix('namespace foo STRICT', FOO_STRICT, { ...ALL_200, 'legacy→foo': 'DENY refused' }),
  ...matrix('workload httpbin.bar STRICT', stream(FOO_STRICT, BAR_HTTPBIN_STRICT), { ...ALL_200, 'legacy→foo': 'DENY refused', 'legacy→bar': 'DENY refused' }),
  // The DestinationRule for httpbin.bar disables TLS on Service port 8000, so sleep.foo and sleep.bar send plaintext too.
  ...matrix(
    'workload httpbin.bar STRICT, port 8080 DISABLE',
    stream(FOO_STRICT, BAR_HTTPBIN_STRICT_8080_DISABLE),
    { ...ALL_200, 'legacy→foo': 'DENY refused' },
    ['foo→bar', 'bar→bar'],
  ),
  // Policy precedence: the workload policy (DISABLE) overrides the namespace one (STRICT).
  { name: 'policy precedence: sleep.legacy → httpbin.foo 200', yaml: stream(FOO_STRICT, FOO_OVERWRITE_DISABLE), req: toHttpbin({ ns: 'foo', principal: null }), want: 'ALLOW' },
  { name: 'policy precedence: the other namespace policy still applies to sleep.legacy → httpbin.bar workload (implied)', yaml: stream(FOO_STRICT, FOO_OVERWRITE_DISABLE, BAR_HTTPBIN_STRICT), req: toHttpbin({ ns: 'bar', principal: null }), want: 'DENY refused' },
]);

// End-user authentication on the ingress gateway: RequestAuthentication `jwt-example` in istio-system selecting
// istio=ingressgateway; requests from outside the mesh (plaintext) to /headers and /ip.
const GATEWAY = { app: 'istio-ingressgateway', istio: 'ingressgateway' };
const ISSUER = 'testing@secure.istio.io';
const DEMO_TOKEN = jwt({ exp: 4685989700, foo: 'bar', iat: 1532389700, iss: ISSUER, sub: ISSUER });
const GATEWAY_JWT = yaml`
  apiVersion: security.istio.io/v1
  kind: RequestAuthentication
  metadata:
    name: jwt-example
    namespace: istio-system
  spec:
    selector:
      matchLabels:
        istio: ingressgateway
    jwtRules:
    - issuer: "testing@secure.istio.io"
      jwksUri: "https://raw.githubusercontent.com/istio/istio/release-1.10/security/tools/jwt/samples/jwks.json"
`;
const frontendIngress = (to: string): string => yaml`
  apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata:
    name: frontend-ingress
    namespace: istio-system
  spec:
    selector:
      matchLabels:
        istio: ingressgateway
    action: DENY
    rules:
    - from:
      - source:
          notRequestPrincipals: ["*"]
      ${to}
`;
const REQUIRE_TOKEN = stream(GATEWAY_JWT, frontendIngress(''));
const REQUIRE_TOKEN_HEADERS = stream(GATEWAY_JWT, frontendIngress('to: [{operation: {paths: ["/headers"]}}]'));
const viaGateway = (path: string, extra: { bearer?: string; auth?: unknown } = {}): unknown =>
  httpRequest({
    ns: 'istio-system', labels: GATEWAY, port: 8080, principal: null, sourceIp: '203.0.113.9', host: 'httpbin.example.com', path,
    headers: extra.bearer === undefined ? {} : { authorization: `Bearer ${extra.bearer}` },
    ...(extra.auth === undefined ? {} : { auth: extra.auth }),
  });

taskRows('authn-policy end-user authentication', [
  { name: 'no RequestAuthentication: /headers through the gateway is 200', yaml: '', req: viaGateway('/headers'), want: 'ALLOW' },
  { name: 'RequestAuthentication: no token is 200', yaml: GATEWAY_JWT, req: viaGateway('/headers'), want: 'ALLOW' },
  { name: 'RequestAuthentication: "Bearer deadbeef" is 401', yaml: GATEWAY_JWT, req: viaGateway('/headers', { bearer: 'deadbeef' }), want: 'DENY 401' },
  { name: 'RequestAuthentication: the demo token is 200', yaml: GATEWAY_JWT, req: viaGateway('/headers', { bearer: 'demo', auth: DEMO_TOKEN }), want: 'ALLOW' },
  // gen-jwt.py --expire 5: 200 while valid, 401 once expired. An expired token cannot be passed as a verified `auth`;
  // as a raw token the engine fails closed with 401, which is what Envoy answers for an expired one.
  { name: 'RequestAuthentication: a short-lived token is 200 while valid', yaml: GATEWAY_JWT, req: viaGateway('/headers', { bearer: 'short', auth: jwt({ iss: ISSUER, sub: ISSUER, exp: 4685989700 }) }), want: 'ALLOW' },
  { name: 'RequestAuthentication: the same token is 401 after it expires', yaml: GATEWAY_JWT, req: viaGateway('/headers', { bearer: 'eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2ln' }), want: 'DENY 401' },
  { name: 'RequestAuthentication applies to the gateway only: httpbin ignores "Bearer deadbeef" (implied)', yaml: GATEWAY_JWT, req: toHttpbin({ path: '/headers', headers: { authorization: 'Bearer deadbeef' } }), want: 'ALLOW' },
  { name: 'require a valid token: no token is 403', yaml: REQUIRE_TOKEN, req: viaGateway('/headers'), want: 'DENY 403', policy: 'istio-system/frontend-ingress' },
  { name: 'require a valid token: the demo token is 200 (implied)', yaml: REQUIRE_TOKEN, req: viaGateway('/headers', { bearer: 'demo', auth: DEMO_TOKEN }), want: 'ALLOW' },
  { name: 'require a valid token: an invalid token is still 401, before authorization (implied)', yaml: REQUIRE_TOKEN, req: viaGateway('/headers', { bearer: 'deadbeef' }), want: 'DENY 401' },
  { name: 'require valid tokens per path: /headers without token is 403', yaml: REQUIRE_TOKEN_HEADERS, req: viaGateway('/headers'), want: 'DENY 403', policy: 'istio-system/frontend-ingress' },
  { name: 'require valid tokens per path: /ip without token is 200', yaml: REQUIRE_TOKEN_HEADERS, req: viaGateway('/ip'), want: 'ALLOW' },
  { name: 'require valid tokens per path: /headers with the demo token is 200 (implied)', yaml: REQUIRE_TOKEN_HEADERS, req: viaGateway('/headers', { bearer: 'demo', auth: DEMO_TOKEN }), want: 'ALLOW' },
]);

// ---------------------------------------------------------------------------------------------------------------
// tasks/security/authentication/mtls-migration — foo and bar with sidecars, sleep in legacy without; lock down foo,
// then the whole mesh.
// https://istio.io/latest/docs/tasks/security/authentication/mtls-migration/ (index.md, snips.sh)

const FOO_STRICT_MIGRATION = yaml`
  apiVersion: security.istio.io/v1beta1
  kind: PeerAuthentication
  metadata:
    name: default
    namespace: foo
  spec:
    mtls:
      mode: STRICT
`;
const MESH_STRICT_MIGRATION = yaml`
  apiVersion: security.istio.io/v1beta1
  kind: PeerAuthentication
  metadata:
    name: default
    namespace: istio-system
  spec:
    mtls:
      mode: STRICT
`;

taskRows('mtls-migration', [
  ...matrix('set up, PERMISSIVE by default', '', ALL_200),
  ...matrix('lock down foo', FOO_STRICT_MIGRATION, { ...ALL_200, 'legacy→foo': 'DENY refused' }),
  // "both the foo and bar namespaces enforce mutual TLS only traffic, so you should see requests from sleep.legacy failing for both"
  ...matrix('lock down the mesh', stream(FOO_STRICT_MIGRATION, MESH_STRICT_MIGRATION), { ...ALL_200, 'legacy→foo': 'DENY refused', 'legacy→bar': 'DENY refused' }),
  { name: 'lock down the mesh: the mesh policy alone refuses sleep.legacy → httpbin.bar', yaml: MESH_STRICT_MIGRATION, req: toHttpbin({ ns: 'bar', principal: null }), want: 'DENY refused' },
]);
