/**
 * Generators for the policy benchmarks: the workload under test with its ten applicable AuthorizationPolicies,
 * filler policies that make the mesh 1,000 or 100,000 policies large without applying to that workload, and the
 * request that every decision benchmark evaluates. Everything is deterministic: the same size gives the same text.
 */
import { compileIpSet, parseCidr, parseIp } from '../src/match/cidr.ts';
import type { CheckRequest } from '../src/policy/request.ts';
import type { Workload } from '../src/policy/selection.ts';
import { loadResources } from '../src/resources/load.ts';

export const ROOT_NAMESPACE = 'istio-system';

/** The destination every decision benchmark asks about. */
export const BENCH_WORKLOAD: Workload = Object.freeze({
  namespace: 'shop',
  labels: Object.freeze({ app: 'checkout', version: 'v1' }),
});

/** What every measured decision must be; a benchmark that gets anything else is measuring the wrong thing. */
export const EXPECTED = Object.freeze({ decision: 'ALLOW', policy: 'shop/allow-frontend-orders', rule: 1 });

/** The number of AuthorizationPolicies that apply to BENCH_WORKLOAD, in every mesh size. */
export const APPLICABLE_POLICIES = 10;

export interface FixtureOptions {
  /** Include ipBlocks rules (needs src/match/cidr.ts and the validator to accept CIDRs). */
  readonly ipBlocks: boolean;
}

/**
 * The request under test: a POST from the frontend's service account over mTLS to the checkout service. It passes
 * every DENY rule and is allowed by the second rule of the last ALLOW policy, so no evaluation ends early.
 */
export function benchRequest(): CheckRequest {
  return {
    destination: { namespace: BENCH_WORKLOAD.namespace, labels: { ...BENCH_WORKLOAD.labels }, ip: '10.20.0.15', port: 8080 },
    source: { principal: 'cluster.local/ns/frontend/sa/web', ip: '10.10.3.7' },
    http: {
      method: 'POST',
      host: 'checkout.shop.svc.cluster.local',
      path: '/api/v2/orders/12345?expand=items',
      headers: {
        'x-tenant': 'acme',
        'Content-Type': 'application/json; charset=utf-8',
        'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36',
        'x-request-id': '4f1c2a9e-7d3b-4c61-9a0e-2b8f5d6c7e10',
        accept: 'application/json',
      },
    },
  };
}

const HEADER = (name: string, namespace: string): string =>
  `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ${name}\n  namespace: ${namespace}\n`;

/**
 * The ten policies that apply to BENCH_WORKLOAD, in load order: one root-namespace DENY, two namespace DENYs, seven
 * ALLOWs. Comments say where the request stops matching each rule; the evaluation order is DENY (root first, then
 * namespace) and then ALLOW, so the request is only decided by the last policy.
 */
export function applicablePolicyDocs(opts: FixtureOptions): string[] {
  const ip = opts.ipBlocks;
  return [
    // Root namespace, no selector: applies to every workload of the mesh.
    HEADER('deny-blocked-sources', ROOT_NAMESPACE) + `spec:
  action: DENY
  rules:
${ip ? `  - from:                                   # source IP not in the blocked ranges
    - source:
        ipBlocks: ["203.0.113.0/24", "198.51.100.0/24"]
` : ''}  - from:                                   # peer namespace is frontend (regex for sandbox-*)
    - source:
        namespaces: ["quarantine", "sandbox-*"]
  - to:                                     # port matches, header absent
    - operation:
        ports: ["8080", "8443"]
    when:
    - key: request.headers[x-debug-bypass]
      values: ["*"]
`,
    HEADER('deny-admin-paths', 'shop') + `spec:
  selector:
    matchLabels:
      app: checkout
  action: DENY
  rules:
  - to:                                     # port and method match, no path does (prefix, prefix, suffix)
    - operation:
        ports: ["8080", "8443"]
        methods: ["POST", "PUT", "PATCH", "DELETE"]
        paths: ["/admin/*", "/internal/*", "*/debug"]
  - from:                                   # frontend is one of the listed namespaces
    - source:
        notNamespaces: ["shop", "frontend", "mobile-bff", "payments", "${ROOT_NAMESPACE}"]
`,
    HEADER('deny-legacy-clients', 'shop') + `spec:
  action: DENY
  rules:
  - from:                                   # other principals
    - source:
        principals: ["cluster.local/ns/frontend/sa/legacy-web", "cluster.local/ns/frontend/sa/web-v0"]
    to:
    - operation:
        ports: ["8080"]
        methods: ["POST"]
  - to:                                     # other host
    - operation:
        hosts: ["checkout.legacy.example.com"]
        ports: ["8080"]
  - to:                                     # user-agent has none of these prefixes
    - operation:
        ports: ["8080"]
    when:
    - key: request.headers[user-agent]
      values: ["curl/*", "python-requests/*", "Go-http-client/*"]
`,
    HEADER('allow-health', 'shop') + `spec:
  selector:
    matchLabels:
      app: checkout
  action: ALLOW
  rules:
  - to:                                     # POST is not GET/HEAD
    - operation:
        methods: ["GET", "HEAD"]
        paths: ["/healthz", "/readyz", "/livez"]
`,
    HEADER('allow-monitoring', 'shop') + `spec:
  action: ALLOW
  rules:
  - from:                                   # other principal
    - source:
        principals: ["cluster.local/ns/monitoring/sa/prometheus"]
    to:
    - operation:
        ports: ["15090", "15020"]
        paths: ["/metrics", "/stats/prometheus"]
  - from:                                   # other namespace${ip ? ' and range' : ''}
    - source:
        namespaces: ["monitoring"]
${ip ? '        ipBlocks: ["10.99.0.0/16"]\n' : ''}`,
    HEADER('allow-payments-callback', 'shop') + `spec:
  selector:
    matchLabels:
      app: checkout
  action: ALLOW
  rules:
  - from:                                   # principal prefix does not match
    - source:
        principals: ["cluster.local/ns/payments/sa/*"]
    to:
    - operation:
        hosts: ["checkout.shop.svc.cluster.local"]
        paths: ["/callbacks/*"]
  - from:                                   # principal suffix does not match
    - source:
        principals: ["*/sa/payments-gateway"]
`,
    HEADER('allow-admin-team', 'shop') + `spec:
  selector:
    matchLabels:
      app: checkout
      version: v1
  action: ALLOW
  rules:
  - from:                                   # no JWT on the request
    - source:
        requestPrincipals: ["https://idp.example.com/*"]
    to:
    - operation:
        paths: ["/api/*"]
  - when:                                   # header absent
    - key: request.headers[x-admin-token]
      values: ["*"]
`,
    HEADER('allow-internal-readonly', 'shop') + `spec:
  action: ALLOW
  rules:
  - from:                                   # namespace matches, POST is not a read
    - source:
        namespaces: ["frontend", "mobile-bff", "reporting"]
    to:
    - operation:
        methods: ["GET", "HEAD", "OPTIONS"]
  - from:                                   # other namespace
    - source:
        namespaces: ["reporting"]
`,
    HEADER('allow-partner-api', 'shop') + `spec:
  selector:
    matchLabels:
      app: checkout
  action: ALLOW
  rules:
  - from:                                   # other principal
    - source:
        principals: ["cluster.local/ns/partners/sa/*"]
    to:
    - operation:
        hosts: ["api.partner.example.com"]
  - to:                                     # host suffix matches, path does not
    - operation:
        hosts: ["*.shop.svc.cluster.local"]
        paths: ["/partner/*"]
    when:
    - key: request.headers[x-tenant]
      values: ["acme"]
`,
    HEADER('allow-frontend-orders', 'shop') + `spec:
  selector:
    matchLabels:
      app: checkout
  action: ALLOW
  rules:
  - from:                                   # other namespace
    - source:
        namespaces: ["mobile-bff"]
    to:
    - operation:
        paths: ["/api/v1/*"]
  - from:                                   # every field matches: the request is allowed here
    - source:
        principals: ["cluster.local/ns/frontend/sa/web", "cluster.local/ns/frontend/sa/web-canary"]
${ip ? '        ipBlocks: ["10.10.0.0/16", "10.11.0.0/16"]\n' : ''}    to:
    - operation:
        hosts: ["checkout.shop.svc.cluster.local", "checkout.shop"]
        methods: ["POST", "PUT"]
        paths: ["/api/v2/orders/*", "*/cart"]
    when:
    - key: request.headers[x-tenant]
      values: ["acme", "globex"]
    - key: request.headers[content-type]
      values: ["application/json*"]
`,
  ];
}

/** Mesh-wide STRICT mTLS, so that every decision also resolves the mTLS mode of the port. */
export const MESH_PEER_AUTHENTICATION = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: ${ROOT_NAMESPACE}
spec:
  mtls:
    mode: STRICT
`;

export interface GeneratedMesh {
  /** One multi-document YAML stream. */
  readonly text: string;
  readonly authorizationPolicies: number;
  readonly namespaces: number;
  /** Filler policies in the workload's own namespace (non-matching selectors). */
  readonly sameNamespaceFillers: number;
  /** Filler policies in the root namespace (non-matching selectors). */
  readonly rootFillers: number;
  /**
   * One workload per distinct (namespace, selector) in the mesh, BENCH_WORKLOAD first: compiling each workload's view
   * compiles every policy of the mesh at least once.
   */
  readonly workloads: readonly Workload[];
}

interface Filler {
  readonly doc: string;
  readonly workload: Workload;
}

/**
 * Filler policy number `i` of `count`: one in a hundred goes to the workload's namespace and one in a thousand to
 * the root namespace, both with selectors that do not select BENCH_WORKLOAD; the rest spread ten per namespace over
 * `team-*` namespaces. The six templates mix actions and fields as real meshes do.
 */
function filler(i: number, teamNamespaces: number, opts: FixtureOptions): Filler {
  let ns: string;
  let labels: Record<string, string> | undefined;
  if (i % 100 === 42) {
    ns = BENCH_WORKLOAD.namespace;
    labels = i % 200 === 42 ? { app: `svc-${i % 400}`, version: 'v1' } : { app: `svc-${i % 400}` };
  } else if (i % 1000 === 999) {
    ns = ROOT_NAMESPACE;
    labels = { app: `gateway-${i % 20}` };
  } else {
    ns = `team-${i % teamNamespaces}`;
    labels = i % 7 === 0 ? undefined : { app: `app-${i % 5}` };
  }
  const selector = labels === undefined
    ? ''
    : `  selector:\n    matchLabels:\n${Object.entries(labels).map(([k, v]) => `      ${k}: ${v}\n`).join('')}`;
  const other = `team-${(i * 7 + 3) % teamNamespaces}`;
  let body: string;
  switch (i % 6) {
    case 0:
      body = `  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/${ns}/sa/svc-${i % 50}", "cluster.local/ns/${other}/sa/client"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/api/v${i % 3}/items/*", "/api/v${i % 3}/items"]
`;
      break;
    case 1:
      body = `  action: DENY
  rules:
  - from:
    - source:
        notNamespaces: ["${ns}", "${ROOT_NAMESPACE}"]
    to:
    - operation:
        ports: ["8080"]
        paths: ["/admin/*", "*/private"]
`;
      break;
    case 2:
      body = `  action: ALLOW
  rules:
  - from:
    - source:
        namespaces: ["${other}", "team-*-ops"]
    to:
    - operation:
        hosts: ["svc-${i}.${ns}.svc.cluster.local", "svc-${i}.${ns}"]
        methods: ["GET", "POST"]
`;
      break;
    case 3:
      body = `  action: ALLOW
  rules:
  - to:
    - operation:
        paths: ["/tenant/${i % 100}/*"]
    when:
    - key: request.headers[x-tenant]
      values: ["tenant-${i % 100}"]
`;
      break;
    case 4:
      body = opts.ipBlocks
        ? `  action: DENY
  rules:
  - from:
    - source:
        ipBlocks: ["192.0.2.${i % 256}/32", "100.64.0.0/10"]
`
        : `  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/${ns}/sa/blocked-${i % 100}"]
`;
      break;
    default:
      body = `  action: ALLOW
  rules:
  - from:
    - source:
        requestPrincipals: ["https://issuer-${i % 20}.example.com/*"]
    to:
    - operation:
        ports: ["8080"]
        paths: ["/v1/*"]
    when:
    - key: request.auth.claims[groups]
      values: ["admins", "ops-${i % 10}"]
`;
  }
  return { doc: `${HEADER(`filler-${i}`, ns)}spec:\n${selector}${body}`, workload: { namespace: ns, labels: labels ?? {} } };
}

function workloadKey(w: Workload): string {
  return `${w.namespace}\u0000${Object.entries(w.labels).map(([k, v]) => `${k}=${v}`).sort().join('\u0000')}`;
}

/** A mesh of `total` AuthorizationPolicies (at least APPLICABLE_POLICIES) plus the mesh-wide PeerAuthentication. */
export function generateMesh(total: number, opts: FixtureOptions): GeneratedMesh {
  if (total < APPLICABLE_POLICIES) throw new RangeError(`a mesh needs at least ${APPLICABLE_POLICIES} policies`);
  const fillers = total - APPLICABLE_POLICIES;
  const teamNamespaces = Math.max(1, Math.ceil(fillers / 10));
  const docs = [MESH_PEER_AUTHENTICATION, ...applicablePolicyDocs(opts)];
  const workloads = new Map<string, Workload>([[workloadKey(BENCH_WORKLOAD), BENCH_WORKLOAD]]);
  const namespaces = new Set([ROOT_NAMESPACE, BENCH_WORKLOAD.namespace]);
  let sameNamespaceFillers = 0;
  let rootFillers = 0;
  for (let i = 0; i < fillers; i++) {
    const f = filler(i, teamNamespaces, opts);
    docs.push(f.doc);
    namespaces.add(f.workload.namespace);
    if (f.workload.namespace === BENCH_WORKLOAD.namespace) sameNamespaceFillers++;
    if (f.workload.namespace === ROOT_NAMESPACE) rootFillers++;
    const key = workloadKey(f.workload);
    if (!workloads.has(key)) workloads.set(key, f.workload);
  }
  return {
    text: docs.join('---\n'),
    authorizationPolicies: total,
    namespaces: namespaces.size,
    sameNamespaceFillers,
    rootFillers,
    workloads: [...workloads.values()],
  };
}

/**
 * True when IP matching works end to end (src/match/cidr.ts implemented and the validator accepting CIDRs). While
 * cidr.ts is a stub, ipBlocks rules cannot load, and the fixtures leave them out.
 */
export function ipMatchingAvailable(): boolean {
  const ip = parseIp('10.10.3.7');
  const cidr = parseCidr('10.10.0.0/16');
  if (ip === undefined || cidr === undefined || !compileIpSet([cidr]).contains(ip)) return false;
  const probe = HEADER('probe', 'default') + 'spec:\n  action: DENY\n  rules:\n  - from:\n    - source:\n        ipBlocks: ["10.10.0.0/16"]\n';
  const loaded = loadResources([{ file: 'probe.yaml', text: probe }]);
  return loaded.resources.length === 1 && !loaded.diagnostics.some((d) => d.severity === 'error');
}
