/**
 * Baselines for the decision benchmarks. `handWrittenDecision` is the ten applicable policies of fixtures.ts written
 * out by hand as one function of the prepared request, in the engine's order (DENY root, DENY namespace, ALLOW) and
 * with the same short-circuits: roughly the floor for what a policy compiler could reach in JavaScript. It knows its
 * workload, so it does no selection, and returns a constant instead of building a Decision.
 */
import type { PreparedRequest } from '../src/policy/request.ts';

const WEB = 'spiffe://cluster.local/ns/frontend/sa/web';
const WEB_CANARY = 'spiffe://cluster.local/ns/frontend/sa/web-canary';

/** The namespace segment of a SPIFFE ID (`…/ns/<ns>/sa/…`), or undefined. */
function peerNamespace(peer: string | undefined): string | undefined {
  if (peer === undefined) return undefined;
  const i = peer.indexOf('/ns/');
  if (i < 0) return undefined;
  const end = peer.indexOf('/', i + 4);
  return end < 0 ? undefined : peer.slice(i + 4, end);
}

/** Kept out of line so that the DENY rule on namespaces does not narrow `ns` for the ALLOW rules after it. */
function isKnownNamespace(ns: string | undefined): boolean {
  return ns === 'shop' || ns === 'frontend' || ns === 'mobile-bff' || ns === 'payments' || ns === 'istio-system';
}

/**
 * Dotted-quad prefix test: exact for the /16 and /24 ranges the fixtures use (`10.10.0.0/16` is `10.10.`). With
 * `ipBlocks` false the fixtures carry no ipBlocks and these tests are skipped, as the engine's would be.
 */
function inRange(ip: PreparedRequest['sourceIp'], prefixes: readonly string[]): boolean {
  if (ip === undefined || ip.family !== 4) return false;
  for (const p of prefixes) if (ip.text.startsWith(p)) return true;
  return false;
}

export function handWrittenDecision(r: PreparedRequest, ipBlocks: boolean): 'ALLOW' | 'DENY' {
  const peer = r.peer;
  if (peer === undefined) return 'DENY'; // mesh-wide STRICT: plaintext refused
  const h = r.http;
  if (h === undefined || r.malformed !== undefined) return 'DENY';
  const ns = peerNamespace(peer);
  const port = r.destPort;
  const method = h.method;
  const path = h.path;
  const host = h.host;
  const headers = h.headers;

  // DENY istio-system/deny-blocked-sources
  if (ipBlocks && inRange(r.sourceIp, ['203.0.113.', '198.51.100.'])) return 'DENY';
  if (ns === 'quarantine' || (ns !== undefined && ns.startsWith('sandbox-'))) return 'DENY';
  if ((port === 8080 || port === 8443) && headers['x-debug-bypass'] !== undefined) return 'DENY';
  // DENY shop/deny-admin-paths
  if ((port === 8080 || port === 8443) && (method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'DELETE') &&
    (path.startsWith('/admin/') || path.startsWith('/internal/') || path.endsWith('/debug'))) return 'DENY';
  if (!isKnownNamespace(ns)) return 'DENY';
  // DENY shop/deny-legacy-clients
  if ((peer === 'spiffe://cluster.local/ns/frontend/sa/legacy-web' || peer === 'spiffe://cluster.local/ns/frontend/sa/web-v0') &&
    port === 8080 && method === 'POST') return 'DENY';
  if (host === 'checkout.legacy.example.com' && port === 8080) return 'DENY';
  const ua = headers['user-agent'];
  if (port === 8080 && ua !== undefined && (ua.startsWith('curl/') || ua.startsWith('python-requests/') || ua.startsWith('Go-http-client/'))) return 'DENY';

  // ALLOW shop/allow-health
  if ((method === 'GET' || method === 'HEAD') && (path === '/healthz' || path === '/readyz' || path === '/livez')) return 'ALLOW';
  // ALLOW shop/allow-monitoring
  if (peer === 'spiffe://cluster.local/ns/monitoring/sa/prometheus' && (port === 15090 || port === 15020) &&
    (path === '/metrics' || path === '/stats/prometheus')) return 'ALLOW';
  if (ns === 'monitoring' && (!ipBlocks || inRange(r.sourceIp, ['10.99.']))) return 'ALLOW';
  // ALLOW shop/allow-payments-callback
  if (peer.startsWith('spiffe://cluster.local/ns/payments/sa/') && host === 'checkout.shop.svc.cluster.local' && path.startsWith('/callbacks/')) return 'ALLOW';
  if (peer.startsWith('spiffe://') && peer.endsWith('/sa/payments-gateway')) return 'ALLOW';
  // ALLOW shop/allow-admin-team
  if (r.auth !== undefined && r.auth.iss === 'https://idp.example.com' && path.startsWith('/api/')) return 'ALLOW';
  if (headers['x-admin-token'] !== undefined) return 'ALLOW';
  // ALLOW shop/allow-internal-readonly
  if ((ns === 'frontend' || ns === 'mobile-bff' || ns === 'reporting') && (method === 'GET' || method === 'HEAD' || method === 'OPTIONS')) return 'ALLOW';
  if (ns === 'reporting') return 'ALLOW';
  // ALLOW shop/allow-partner-api
  if (peer.startsWith('spiffe://cluster.local/ns/partners/sa/') && host === 'api.partner.example.com') return 'ALLOW';
  if (host !== undefined && host.endsWith('.shop.svc.cluster.local') && path.startsWith('/partner/') && headers['x-tenant'] === 'acme') return 'ALLOW';
  // ALLOW shop/allow-frontend-orders
  if (ns === 'mobile-bff' && path.startsWith('/api/v1/')) return 'ALLOW';
  const tenant = headers['x-tenant'];
  const contentType = headers['content-type'];
  if ((peer === WEB || peer === WEB_CANARY) &&
    (!ipBlocks || inRange(r.sourceIp, ['10.10.', '10.11.'])) &&
    (host === 'checkout.shop.svc.cluster.local' || host === 'checkout.shop') &&
    (method === 'POST' || method === 'PUT') &&
    (path.startsWith('/api/v2/orders/') || path.endsWith('/cart')) &&
    (tenant === 'acme' || tenant === 'globex') &&
    contentType !== undefined && contentType.startsWith('application/json')) return 'ALLOW';
  return 'DENY';
}

/** The other floor: a loop calling a function that reads two fields. */
export function trivialCheck(r: PreparedRequest): boolean {
  return r.namespace.length > 0 && r.http !== undefined;
}
