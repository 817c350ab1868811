import { decodeBoolean, decodeEnum, decodeList, decodeObject, decodeString, decodeStringMap, isPlainObject, type Path } from './decode.ts';
import type { Diagnostic } from './diagnostic.ts';
import { DEFAULT_MESH, decodeMesh, type MeshSettings } from './mesh-config.ts';
import { Reporter } from './report.ts';
import { parseDocuments } from './yaml-source.ts';
import { parseIp } from '../match/cidr.ts';

/**
 * The mesh file: what Kubernetes would otherwise tell the mesh — its settings (MeshConfig), the workloads (pods:
 * namespace, service account, labels, ports) and the services that select them. Sidecars and the control plane
 * read it; the policies themselves stay Istio YAML beside it.
 *
 * ```yaml
 * meshConfig: {trustDomain: cluster.local}
 * workloads:
 * - name: httpbin
 *   namespace: default
 *   serviceAccount: httpbin
 *   labels: {app: httpbin}
 *   ports: [{name: http, port: 8000, targetPort: 18000}]   # sidecar listens on 8000, the app on 127.0.0.1:18000
 * services:
 * - name: httpbin
 *   namespace: default
 *   selector: {app: httpbin}
 *   address: 240.240.0.10          # optional: the service's virtual IP (Kubernetes' ClusterIP); allocated when absent
 *   ports: [{name: http, port: 8000, targetPort: 8000}]
 * ```
 */

/** Istio's protocol selection for a port: explicit, from the port name's prefix, or detected from the first bytes. */
export type PortProtocol = 'HTTP' | 'HTTP2' | 'GRPC' | 'TCP' | 'DETECT';

export interface WorkloadPort {
  readonly name: string | undefined;
  /** Where the sidecar accepts inbound traffic for this port (what peers and policies see as the port). */
  readonly port: number;
  /** Where the app listens on 127.0.0.1. */
  readonly targetPort: number;
  readonly protocol: PortProtocol;
}

export interface MeshWorkload {
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The address peers reach the sidecar at. */
  readonly address: string;
  readonly ports: readonly WorkloadPort[];
}

export interface ServicePort {
  readonly name: string | undefined;
  readonly port: number;
  /** The workload port (sidecar inbound port) traffic for this service port goes to. */
  readonly targetPort: number;
  readonly protocol: PortProtocol;
}

export interface MeshService {
  readonly name: string;
  readonly namespace: string;
  readonly selector: Readonly<Record<string, string>>;
  /**
   * The service's virtual IP (Kubernetes' ClusterIP): what its names resolve to for a captured workload, and how a
   * captured connection's original destination finds the service. Given in the file, or allocated (`allocated`).
   */
  readonly address: string;
  /** The address was not given: allocated from 240.240.0.0/16, as Istio's DNS proxy allocates service addresses. */
  readonly allocated: boolean;
  /**
   * The addresses of the selected workloads that serve it (Kubernetes' ready EndpointSlice endpoints); absent:
   * every selected workload does.
   */
  readonly endpoints?: readonly string[];
  readonly ports: readonly ServicePort[];
}

export interface MeshFile {
  readonly mesh: MeshSettings;
  /**
   * Denial responses name the request id, the deciding layer and the policy (`x-rampart-*` headers). Off by
   * default: callers never learn policy names unless the mesh says so. Not an Istio field.
   */
  readonly debugHeaders: boolean;
  readonly workloads: readonly MeshWorkload[];
  readonly services: readonly MeshService[];
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const PROTOCOLS = ['http', 'http2', 'grpc', 'tcp'] as const;

/** Istio's convention: a port named `<protocol>` or `<protocol>-<suffix>` declares its protocol. */
export function protocolFromName(name: string | undefined): PortProtocol {
  const prefix = (name ?? '').toLowerCase().split('-')[0]!;
  if (prefix === 'http' || prefix === 'http2' || prefix === 'grpc' || prefix === 'tcp') return prefix.toUpperCase() as PortProtocol;
  return 'DETECT';
}

function decodePortNumber(r: Reporter, value: unknown, path: Path): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    r.error(path, 'ERR_PORT', `must be a port number from 1 to 65535, got ${JSON.stringify(value)}`);
    return undefined;
  }
  return value;
}

function decodeName(r: Reporter, value: unknown, path: Path, what: string, fallback?: string): string | undefined {
  const s = decodeString(r, value, path) ?? fallback;
  if (s === undefined) {
    r.error(path, 'ERR_FIELD_REQUIRED', `${what} is required`);
    return undefined;
  }
  if (s.length > 63 || !DNS1123_LABEL.test(s)) {
    r.error(path, 'ERR_NAME', `${what} "${s}" must be a DNS label (lower-case letters, digits and "-", at most 63 characters)`);
    return undefined;
  }
  return s;
}

function decodePorts<T>(r: Reporter, value: unknown, path: Path, make: (p: { name: string | undefined; port: number; targetPort: number; protocol: PortProtocol }) => T): T[] {
  const list = decodeList(r, value, path) ?? [];
  const out: T[] = [];
  const seen = new Set<number>();
  list.forEach((item, i) => {
    const p = [...path, i];
    const o = decodeObject(r, item, p, ['name', 'port', 'targetPort', 'protocol']);
    if (o === undefined) {
      if (item === undefined || item === null) r.error(p, 'ERR_FIELD_TYPE', 'must be a mapping');
      return;
    }
    const name = decodeString(r, o['name'], [...p, 'name']);
    const port = decodePortNumber(r, o['port'], [...p, 'port']);
    if (port === undefined) {
      if (o['port'] === undefined) r.error([...p, 'port'], 'ERR_FIELD_REQUIRED', 'port is required');
      return;
    }
    const targetPort = decodePortNumber(r, o['targetPort'], [...p, 'targetPort']) ?? port;
    const explicit = typeof o['protocol'] === 'string' ? (o['protocol'] as string).toLowerCase() : o['protocol'];
    const protocol = explicit === undefined ? protocolFromName(name) : decodeEnum(r, explicit, [...p, 'protocol'], PROTOCOLS)?.toUpperCase() as PortProtocol | undefined;
    if (protocol === undefined) return;
    if (seen.has(port)) {
      r.error([...p, 'port'], 'ERR_PORT_DUPLICATE', `port ${port} is declared twice`);
      return;
    }
    seen.add(port);
    out.push(make({ name, port, targetPort, protocol }));
  });
  return out;
}

/** Parses and checks a mesh file; entries with errors are left out (and reported), the others are kept. */
export function parseMeshFile(text: string, file: string): { mesh: MeshFile; diagnostics: Diagnostic[] } {
  const parsed = parseDocuments(text, file);
  const diagnostics = [...parsed.diagnostics];
  const empty: MeshFile = { mesh: DEFAULT_MESH, debugHeaders: false, workloads: [], services: [] };
  const doc = parsed.documents[0];
  if (doc === undefined) return { mesh: empty, diagnostics };
  const r = new Reporter(doc);
  const top = decodeObject(r, doc.value, [], ['meshConfig', 'debugHeaders', 'workloads', 'services']);
  if (top === undefined) {
    if (!isPlainObject(doc.value)) r.error([], 'ERR_FIELD_TYPE', 'a mesh file is a mapping with meshConfig, workloads and services');
    return { mesh: empty, diagnostics: [...diagnostics, ...r.diagnostics] };
  }
  const meshReporter = new Reporter(doc, ['meshConfig']);
  const settings = decodeMesh(meshReporter, top['meshConfig']);

  const workloads: MeshWorkload[] = [];
  const workloadKeys = new Set<string>();
  (decodeList(r, top['workloads'], ['workloads']) ?? []).forEach((item, i) => {
    const path: Path = ['workloads', i];
    const before = r.errorCount;
    const o = decodeObject(r, item, path, ['name', 'namespace', 'serviceAccount', 'labels', 'address', 'ports']);
    if (o === undefined) return;
    const name = decodeName(r, o['name'], [...path, 'name'], 'a workload name');
    const namespace = decodeName(r, o['namespace'], [...path, 'namespace'], 'a namespace', 'default');
    const serviceAccount = decodeName(r, o['serviceAccount'], [...path, 'serviceAccount'], 'a service account', 'default');
    const labels = decodeStringMap(r, o['labels'], [...path, 'labels']) ?? {};
    const address = decodeString(r, o['address'], [...path, 'address']) ?? '127.0.0.1';
    const ports = decodePorts(r, o['ports'], [...path, 'ports'], (p): WorkloadPort => p);
    ports.forEach((p, j) => {
      if (p.port === p.targetPort && (address === '127.0.0.1' || address === 'localhost' || address === '::1')) {
        r.error([...path, 'ports', j, 'targetPort'], 'ERR_PORT_CLASH', `the sidecar (${address}:${p.port}) and the app (127.0.0.1:${p.targetPort}) cannot share a port on loopback`);
      }
    });
    if (name !== undefined && namespace !== undefined && workloadKeys.has(`${namespace}/${name}`)) {
      r.error([...path, 'name'], 'ERR_WORKLOAD_DUPLICATE', `workload ${namespace}/${name} is declared twice`);
    }
    if (r.errorCount > before || name === undefined || namespace === undefined || serviceAccount === undefined) return;
    workloadKeys.add(`${namespace}/${name}`);
    workloads.push({ name, namespace, serviceAccount, labels: Object.freeze({ ...labels }), address, ports });
  });

  const services: MeshService[] = [];
  const explicit = new Map<string, string>();
  (decodeList(r, top['services'], ['services']) ?? []).forEach((item, i) => {
    const path: Path = ['services', i];
    const before = r.errorCount;
    const o = decodeObject(r, item, path, ['name', 'namespace', 'selector', 'address', 'endpoints', 'ports']);
    if (o === undefined) return;
    const name = decodeName(r, o['name'], [...path, 'name'], 'a service name');
    const address = decodeString(r, o['address'], [...path, 'address']);
    const ip = address === undefined ? undefined : parseIp(address);
    if (address !== undefined && (ip === undefined || address.includes('%'))) {
      r.error([...path, 'address'], 'ERR_ADDRESS', `must be an IPv4 or IPv6 address, got ${JSON.stringify(address)}`);
    } else if (ip !== undefined && explicit.has(ip.text)) {
      r.error([...path, 'address'], 'ERR_ADDRESS_DUPLICATE', `${ip.text} is already the address of service ${explicit.get(ip.text)!}`);
    }
    const namespace = decodeName(r, o['namespace'], [...path, 'namespace'], 'a namespace', 'default');
    const selector = decodeStringMap(r, o['selector'], [...path, 'selector']);
    if (selector === undefined || Object.keys(selector).length === 0) {
      r.error([...path, 'selector'], 'ERR_FIELD_REQUIRED', 'a service needs a selector (the labels of its workloads)');
    }
    const ports = decodePorts(r, o['ports'], [...path, 'ports'], (p): ServicePort => p);
    let endpoints: string[] | undefined;
    if (o['endpoints'] !== undefined) {
      endpoints = [];
      (decodeList(r, o['endpoints'], [...path, 'endpoints']) ?? []).forEach((e, j) => {
        const parsed = typeof e === 'string' ? parseIp(e) : undefined;
        if (parsed === undefined) r.error([...path, 'endpoints', j], 'ERR_ADDRESS', `must be an IPv4 or IPv6 address, got ${JSON.stringify(e)}`);
        else endpoints!.push(parsed.text);
      });
    }
    if (r.errorCount > before || name === undefined || namespace === undefined || selector === undefined) return;
    if (ip !== undefined) explicit.set(ip.text, `${namespace}/${name}`);
    services.push({ name, namespace, selector, address: ip?.text ?? '', allocated: ip === undefined, ...(endpoints === undefined ? {} : { endpoints }), ports });
  });
  allocateServiceAddresses(services, explicit);
  const debugHeaders = decodeBoolean(r, top['debugHeaders'], ['debugHeaders']) ?? false;
  return { mesh: { mesh: settings, debugHeaders, workloads, services }, diagnostics: [...diagnostics, ...meshReporter.diagnostics.map(underMeshConfig), ...r.diagnostics] };
}

/** Istio's DNS proxy allocates service addresses from the reserved class E range 240.240.0.0/16. */
const ALLOCATION_BASE = (240 << 24 | 240 << 16) >>> 0;
const ALLOCATION_SIZE = 65_534;

/**
 * Gives each service without an address one from 240.240.0.0/16, chosen by a hash of `namespace/name` so that a
 * service keeps its address when others are added or removed (a workload may hold it in its resolver's cache);
 * a collision takes the next free one, in the order of the services' names.
 */
function allocateServiceAddresses(services: MeshService[], taken: ReadonlyMap<string, string>): void {
  const used = new Set(taken.keys());
  const order = services.map((s, i) => ({ s, i })).filter((e) => e.s.allocated)
    .sort((a, b) => (`${a.s.namespace}/${a.s.name}` < `${b.s.namespace}/${b.s.name}` ? -1 : 1));
  for (const { s, i } of order) {
    let slot = fnv1a(`${s.namespace}/${s.name}`) % ALLOCATION_SIZE;
    let text: string;
    for (;;) {
      const n = ALLOCATION_BASE + 1 + slot;
      text = `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
      if (!used.has(text) && (n & 255) !== 0 && (n & 255) !== 255) break;
      slot = (slot + 1) % ALLOCATION_SIZE;
    }
    used.add(text);
    services[i] = { ...s, address: text };
  }
}

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The MeshConfig decoder names fields from its own top; here they sit under `meshConfig`. */
function underMeshConfig(d: Diagnostic): Diagnostic {
  return { ...d, path: d.path === '' ? 'meshConfig' : `meshConfig.${d.path}` };
}

/** The workload a `namespace/name` reference names, if the mesh has it. */
export function findWorkload(mesh: MeshFile, ref: string): MeshWorkload | undefined {
  const slash = ref.indexOf('/');
  return mesh.workloads.find((w) => w.namespace === ref.slice(0, slash) && w.name === ref.slice(slash + 1));
}

/** The workloads a service selects (same namespace, every selector label equal). */
export function serviceEndpoints(mesh: MeshFile, service: MeshService): MeshWorkload[] {
  const ready = service.endpoints === undefined ? undefined : new Set(service.endpoints);
  return mesh.workloads.filter((w) => w.namespace === service.namespace && Object.entries(service.selector).every(([k, v]) => w.labels[k] === v)
    && (ready === undefined || ready.has(w.address)));
}
