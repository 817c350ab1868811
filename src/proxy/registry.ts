import type { MeshFile, MeshService, MeshWorkload, ServicePort } from '../resources/mesh-file.ts';
import { serviceEndpoints } from '../resources/mesh-file.ts';

/**
 * Service discovery from the mesh file: a host and port as an app names them (`httpbin`, `httpbin.default`,
 * `httpbin.default.svc`, `httpbin.default.svc.cluster.local`, with or without `:port`) → the service, its endpoints
 * and the service accounts a server may prove (secure naming). Pure.
 */

export interface Endpoint {
  readonly workload: MeshWorkload;
  readonly address: string;
  /** The workload port (its sidecar's inbound listener). */
  readonly port: number;
}

export interface Destination {
  readonly service: MeshService;
  readonly port: ServicePort;
  readonly endpoints: readonly Endpoint[];
  /** `namespace/serviceAccount` of every endpoint: what the server's SVID must name. */
  readonly serviceAccounts: readonly string[];
  /** Istio's outbound cluster name, also sent as SNI: `outbound_.<port>_._.<name>.<ns>.svc.cluster.local`. */
  readonly clusterName: string;
}

const CLUSTER_SUFFIX = 'svc.cluster.local';

/** Splits `host[:port]`; IPv6 literals in brackets keep their brackets off. */
export function splitHostPort(authority: string, defaultPort: number): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(authority) ?? /^([^:]+)(?::(\d+))?$/.exec(authority);
  if (m === null) return { host: authority.toLowerCase(), port: defaultPort };
  return { host: m[1]!.toLowerCase(), port: m[2] === undefined ? defaultPort : Number(m[2]) };
}

export function resolveDestination(mesh: MeshFile, callerNamespace: string, host: string, port: number): Destination | undefined {
  const h = host.toLowerCase().replace(/\.$/, '');
  const parts = h.split('.');
  let name: string;
  let namespace: string;
  if (parts.length === 1) [name, namespace] = [parts[0]!, callerNamespace];
  else if (parts.length === 2 || (parts.length === 3 && parts[2] === 'svc') || (parts.length === 5 && parts.slice(2).join('.') === CLUSTER_SUFFIX)) {
    [name, namespace] = [parts[0]!, parts[1]!];
  } else return undefined;
  const service = mesh.services.find((s) => s.name === name && s.namespace === namespace);
  return service === undefined ? undefined : destinationOf(mesh, service, port);
}

/**
 * The destination of a captured connection, by its original destination address: a service's address (its
 * virtual IP) and one of its ports; or a workload's address and a port one of its services targets, as the service's
 * destination narrowed to that endpoint (secure naming: the server must prove that workload's service account).
 * Anything else is outside the registry (the caller applies outboundTrafficPolicy). Pure.
 */
export function destinationByAddress(mesh: MeshFile, address: string, port: number): Destination | undefined {
  const service = mesh.services.find((s) => s.address === address);
  if (service !== undefined) return destinationOf(mesh, service, port);
  for (const s of mesh.services) {
    const sp = s.ports.find((p) => p.targetPort === port);
    if (sp === undefined) continue;
    const d = destinationOf(mesh, s, sp.port);
    const ep = d?.endpoints.find((e) => e.address === address);
    if (d === undefined || ep === undefined) continue;
    return { ...d, endpoints: [ep], serviceAccounts: [`${ep.workload.namespace}/${ep.workload.serviceAccount}`] };
  }
  return undefined;
}

function destinationOf(mesh: MeshFile, service: MeshService, port: number): Destination | undefined {
  const sp = service.ports.find((p) => p.port === port);
  if (sp === undefined) return undefined;
  const endpoints: Endpoint[] = [];
  for (const w of serviceEndpoints(mesh, service)) {
    if (w.ports.some((p) => p.port === sp.targetPort)) endpoints.push({ workload: w, address: w.address, port: sp.targetPort });
  }
  return {
    service, port: sp, endpoints,
    serviceAccounts: [...new Set(endpoints.map((e) => `${e.workload.namespace}/${e.workload.serviceAccount}`))],
    clusterName: `outbound_.${sp.port}_._.${service.name}.${service.namespace}.${CLUSTER_SUFFIX}`,
  };
}
