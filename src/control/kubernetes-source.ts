import https from 'node:https';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { RampartError } from '../errors.ts';
import type { SourceInput } from './snapshot.ts';
import type { ConfigSource } from './source.ts';
import type { Diagnostic } from '../resources/diagnostic.ts';

/**
 * Configuration from a Kubernetes cluster, behind the same ConfigSource as a directory: Istio's security resources
 * (each a "file" of its own, so that a resource that fails validation keeps its last good version, as files do),
 * and a mesh file written from what the cluster says — Pods (workloads: labels, service account, IP, ports),
 * Services (the registry: selector, ClusterIP, ports) with their EndpointSlices (which pods serve them: the ready
 * endpoints) and the `istio` ConfigMap of the root namespace (MeshConfig).
 *
 * Each kind is followed as client-go's reflector follows it: a list, then a watch from the list's resourceVersion
 * with bookmarks; a watch that ends is resumed from the last version seen, after a back-off when it failed; an
 * ERROR 410 (the version was compacted away) relists and replaces the kind's objects whole, so nothing is lost
 * and nothing deleted meanwhile survives. Kubeconfig (a file, or the default chain) or in-cluster config.
 */

export class KubernetesSourceError extends RampartError {}

interface KindSpec {
  readonly key: string;
  /** The list/watch path across all namespaces. */
  readonly path: string;
  readonly kind: string;
}

export interface KubeObject {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly resourceVersion?: string; readonly creationTimestamp?: string; readonly generation?: number; readonly labels?: Readonly<Record<string, string>>; readonly annotations?: Readonly<Record<string, string>> };
  readonly [k: string]: unknown;
}

/** The fields of a Pod and a Service the mesh file is written from. */
interface PodSpec {
  readonly serviceAccountName?: string;
  readonly containers?: ReadonlyArray<{ readonly ports?: ReadonlyArray<{ readonly name?: string; readonly containerPort: number; readonly protocol?: string }> }>;
}
interface ServiceSpec {
  readonly selector?: Readonly<Record<string, string>>;
  readonly clusterIP?: string;
  readonly ports?: ReadonlyArray<{ readonly name?: string; readonly port: number; readonly targetPort?: number | string; readonly protocol?: string }>;
}

const SECURITY_KINDS: readonly KindSpec[] = [
  { key: 'peerauthentications', path: '/apis/security.istio.io/v1/peerauthentications', kind: 'PeerAuthentication' },
  { key: 'requestauthentications', path: '/apis/security.istio.io/v1/requestauthentications', kind: 'RequestAuthentication' },
  { key: 'authorizationpolicies', path: '/apis/security.istio.io/v1/authorizationpolicies', kind: 'AuthorizationPolicy' },
];

const CLUSTER_KINDS: readonly KindSpec[] = [
  { key: 'pods', path: '/api/v1/pods', kind: 'Pod' },
  { key: 'services', path: '/api/v1/services', kind: 'Service' },
  { key: 'configmaps', path: '/api/v1/configmaps', kind: 'ConfigMap' },
  { key: 'endpointslices', path: '/apis/discovery.k8s.io/v1/endpointslices', kind: 'EndpointSlice' },
];

export interface KubernetesSourceOptions {
  /** A kubeconfig file; absent: in-cluster config when running in a pod, else the default kubeconfig chain. */
  readonly kubeconfig?: string;
  /** The root namespace, whose `istio` ConfigMap holds MeshConfig (Istio's default: istio-system). */
  readonly rootNamespace?: string;
  /** Back-off after a failed list or watch: doubles from `minMs` to `maxMs`. */
  readonly backoff?: { readonly minMs: number; readonly maxMs: number };
  /** Problems reaching the API server (each once per outage), for the log. */
  readonly onError?: (kind: string, message: string) => void;
}

/** One kind's objects as the cluster has them, kept current by list + watch. */
class Reflector {
  readonly spec: KindSpec;
  readonly objects = new Map<string, KubeObject>();
  resourceVersion = '';
  synced = false;
  #abort: AbortController | undefined;
  #stopped = false;
  #delayMs: number;
  #timer: NodeJS.Timeout | undefined;
  #lastError: string | undefined;
  readonly #src: KubernetesSource;

  constructor(src: KubernetesSource, spec: KindSpec) {
    this.#src = src;
    this.spec = spec;
    this.#delayMs = src.backoff.minMs;
  }

  start(): void {
    void this.#list();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#abort?.abort();
  }

  #retry(what: () => void, err: string): void {
    if (this.#stopped) return;
    if (err !== this.#lastError) this.#src.reportError(this.spec.kind, err);
    this.#lastError = err;
    this.#timer = setTimeout(what, this.#delayMs);
    this.#delayMs = Math.min(this.#delayMs * 2, this.#src.backoff.maxMs);
  }

  async #list(): Promise<void> {
    if (this.#stopped) return;
    let list: { metadata?: { resourceVersion?: string }; items?: KubeObject[] };
    try {
      list = await this.#src.getJson(this.spec.path) as typeof list;
    } catch (err) {
      this.#retry(() => void this.#list(), `list ${this.spec.path}: ${(err as Error).message}`);
      return;
    }
    // A list replaces what was known: objects deleted while the watch was away are gone with it.
    this.objects.clear();
    for (const o of list.items ?? []) this.objects.set(keyOf(o), o);
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
    this.synced = true;
    this.#ok();
    this.#src.changed();
    void this.#watch();
  }

  #ok(): void {
    this.#delayMs = this.#src.backoff.minMs;
    this.#lastError = undefined;
  }

  async #watch(): Promise<void> {
    if (this.#stopped) return;
    let gone = false;
    let failed: string | undefined;
    const done = new Promise<void>((resolve) => {
      this.#src.watcher.watch(this.spec.path, { resourceVersion: this.resourceVersion, allowWatchBookmarks: true }, (type: string, obj: unknown) => {
        const o = obj as KubeObject & { code?: number };
        if (type === 'ERROR') {
          if (o.code === 410) gone = true;
          else failed = `watch ${this.spec.path}: ${JSON.stringify(obj)}`;
          this.#abort?.abort();
          return;
        }
        const rv = o.metadata?.resourceVersion;
        if (rv !== undefined && rv !== '') this.resourceVersion = rv;
        if (type === 'BOOKMARK') return;
        if (type === 'DELETED') this.objects.delete(keyOf(o));
        else this.objects.set(keyOf(o), o);
        this.#ok();
        this.#src.changed();
      }, (err: unknown) => {
        if (err !== null && err !== undefined && !(err instanceof Error && err.name === 'AbortError')) failed ??= `watch ${this.spec.path}: ${(err as Error).message ?? String(err)}`;
        resolve();
      }).then((a) => (this.#abort = a), (err: Error) => {
        failed = `watch ${this.spec.path}: ${err.message}`;
        resolve();
      });
    });
    await done;
    if (this.#stopped) return;
    if (gone) {
      // The version is too old for the API server's history: list again (client-go's reflector does the same).
      void this.#list();
      return;
    }
    if (failed !== undefined) {
      this.#retry(() => void this.#watch(), failed);
      return;
    }
    // A watch the server ended (its timeout, a restart): resume from the last version seen.
    void this.#watch();
  }
}

/** The name a resource's texts and diagnostics go by: `namespace/Kind/name`. */
function fileOf(k: KindSpec, o: KubeObject): string {
  return `${o.metadata.namespace ?? ''}/${k.kind}/${o.metadata.name}`;
}

function keyOf(o: KubeObject): string {
  return `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export class KubernetesSource implements ConfigSource {
  readonly description: string;
  readonly backoff: { readonly minMs: number; readonly maxMs: number };
  readonly watcher: Watch;
  readonly #kc: KubeConfig;
  readonly #o: KubernetesSourceOptions;
  readonly #reflectors: Reflector[];
  readonly #listeners = new Set<() => void>();
  /** The status last written per resource, so that an unchanged outcome is not written again. */
  readonly #reported = new Map<string, { key: string; state: string }>();
  #started = false;

  constructor(options: KubernetesSourceOptions = {}) {
    this.#o = options;
    this.#kc = new KubeConfig();
    if (options.kubeconfig !== undefined) this.#kc.loadFromFile(options.kubeconfig);
    else this.#kc.loadFromDefault();
    const cluster = this.#kc.getCurrentCluster();
    if (cluster === null) throw new KubernetesSourceError('ERR_KUBE_CONFIG', `no cluster in ${options.kubeconfig ?? 'the default kubeconfig'}`);
    this.description = `Kubernetes ${cluster.server}`;
    this.backoff = options.backoff ?? { minMs: 500, maxMs: 30_000 };
    this.watcher = new Watch(this.#kc);
    this.#reflectors = [...SECURITY_KINDS, ...CLUSTER_KINDS].map((k) => new Reflector(this, k));
  }

  /** Starts following the cluster; resolves once every kind is listed (retrying with back-off until then). */
  async start(timeoutMs = 30_000): Promise<void> {
    if (!this.#started) {
      this.#started = true;
      for (const r of this.#reflectors) r.start();
    }
    const end = Date.now() + timeoutMs;
    while (!this.#reflectors.every((r) => r.synced)) {
      if (Date.now() > end) {
        throw new KubernetesSourceError('ERR_KUBE_SYNC', `${this.description}: not listed after ${timeoutMs / 1000} s: ${this.#reflectors.filter((r) => !r.synced).map((r) => r.spec.key).join(', ')}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  stop(): void {
    for (const r of this.#reflectors) r.stop();
  }

  /** The resourceVersion each kind is at (for status and tests). */
  get versions(): Readonly<Record<string, string>> {
    return Object.fromEntries(this.#reflectors.map((r) => [r.spec.key, r.resourceVersion]));
  }

  reportError(kind: string, message: string): void {
    this.#o.onError?.(kind, message);
  }

  changed(): void {
    for (const l of this.#listeners) l();
  }

  async getJson(path: string): Promise<unknown> {
    return this.#call('GET', path);
  }

  async #call(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<unknown> {
    const cluster = this.#kc.getCurrentCluster()!;
    const opts: https.RequestOptions = { method, headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': contentType }) } };
    await this.#kc.applyToHTTPSOptions(opts);
    return new Promise((resolve, reject) => {
      const req = https.request(`${cluster.server}${path}`, opts, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          if (res.statusCode !== 200 && res.statusCode !== 201) {
            reject(new KubernetesSourceError('ERR_KUBE_HTTP', `${res.statusCode ?? 0}: ${statusMessage(body)}`));
            return;
          }
          try {
            resolve(JSON.parse(body));
          } catch (err) {
            reject(err as Error);
          }
        });
      });
      req.setTimeout(30_000, () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  /**
   * Whose a pod's projected service-account token is, by a TokenReview for audience `istio-ca` (what istiod asks):
   * the namespace and service account, or undefined when the cluster does not authenticate it for that audience.
   */
  async reviewToken(token: string): Promise<{ namespace: string; serviceAccount: string } | undefined> {
    const review = await this.#call('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
      apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: ['istio-ca'] },
    }) as { status?: { authenticated?: boolean; user?: { username?: string }; audiences?: string[] } };
    const st = review.status;
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(st?.user?.username ?? '');
    if (st?.authenticated !== true || m === null || !(st.audiences ?? []).includes('istio-ca')) return undefined;
    return { namespace: m[1]!, serviceAccount: m[2]! };
  }

  /**
   * Where a user of kubectl looks: each Istio resource's status says whether its last version was accepted
   * (condition `Reconciled`, and `validationMessages` as istiod's analysis writes them), and a Warning Event names
   * the problem with its line and field. Written only when it changes; failures to write are reported, not thrown.
   */
  report(result: { readonly diagnostics: readonly Diagnostic[]; readonly rejectedFiles: readonly string[] }): void {
    for (const k of SECURITY_KINDS) {
      for (const o of this.#kind(k.key).objects.values()) {
        const file = fileOf(k, o);
        const own = result.diagnostics.filter((d) => d.file === file && d.severity === 'error');
        const rejected = result.rejectedFiles.includes(file);
        const text = own.map((d) => `line ${d.line}${d.path === '' ? '' : ` ${d.path}`}: ${d.message}`).join('; ');
        // By the spec, not the resourceVersion: writing status makes a new version, which must not write again.
        const key = JSON.stringify(o['spec'] ?? null);
        const state = rejected ? `bad:${text}` : 'ok';
        if (this.#reported.get(file)?.state === state && this.#reported.get(file)?.key === key) continue;
        const wasBad = this.#reported.get(file)?.state.startsWith('bad:') === true;
        this.#reported.set(file, { key, state });
        if (!rejected && !wasBad && (o['status'] as { conditions?: unknown } | undefined)?.conditions === undefined) continue;
        const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
        const status = rejected
          ? {
            conditions: [{ type: 'Reconciled', status: 'False', reason: 'Invalid', message: `this version is refused, the last good one stays in force: ${text}`, lastTransitionTime: now, observedGeneration: o.metadata.generation ?? null }],
            validationMessages: own.map((d) => ({ level: 'ERROR', type: { code: d.code, name: d.code }, description: `line ${d.line}${d.path === '' ? '' : ` ${d.path}`}: ${d.message}` })),
          }
          : { conditions: [{ type: 'Reconciled', status: 'True', reason: 'Accepted', message: 'in force', lastTransitionTime: now, observedGeneration: o.metadata.generation ?? null }], validationMessages: null };
        const base = `${k.path.replace(/\/[^/]+$/, '')}/namespaces/${o.metadata.namespace ?? 'default'}/${k.key}/${o.metadata.name}`;
        void this.#call('PATCH', `${base}/status`, { status }, 'application/merge-patch+json').catch((err: Error) => this.reportError(k.kind, `status of ${file}: ${err.message}`));
        if (rejected) {
          void this.#call('POST', `/api/v1/namespaces/${o.metadata.namespace ?? 'default'}/events`, {
            apiVersion: 'v1', kind: 'Event',
            metadata: { generateName: `${o.metadata.name}.`, namespace: o.metadata.namespace ?? 'default' },
            involvedObject: { apiVersion: o.apiVersion ?? 'security.istio.io/v1', kind: k.kind, name: o.metadata.name, namespace: o.metadata.namespace, resourceVersion: o.metadata.resourceVersion },
            reason: 'InvalidConfiguration', type: 'Warning', message: `refused; the last good version stays in force: ${text}`,
            source: { component: 'rampart-control-plane' }, firstTimestamp: now, lastTimestamp: now, count: 1,
          }).catch((err: Error) => this.reportError('Event', `event for ${file}: ${err.message}`));
        }
      }
    }
  }

  #kind(key: string): Reflector {
    return this.#reflectors.find((r) => r.spec.key === key)!;
  }

  async read(): Promise<SourceInput> {
    if (!this.#reflectors.every((r) => r.synced)) throw new KubernetesSourceError('ERR_KUBE_SYNC', `${this.description}: not listed yet`);
    const policies = SECURITY_KINDS.flatMap((k) => [...this.#kind(k.key).objects.values()].map((o) => ({
      file: fileOf(k, o),
      // The resource as istiod reads it: kind, name, namespace, labels, annotations, creation time (the oldest
      // PeerAuthentication wins a tie) and spec; status and managed fields left out.
      text: JSON.stringify({
        apiVersion: o.apiVersion ?? 'security.istio.io/v1', kind: k.kind,
        metadata: {
          name: o.metadata.name, namespace: o.metadata.namespace,
          ...(o.metadata.labels === undefined ? {} : { labels: o.metadata.labels }),
          ...(o.metadata.annotations === undefined ? {} : { annotations: withoutLastApplied(o.metadata.annotations) }),
          ...(o.metadata.creationTimestamp === undefined ? {} : { creationTimestamp: o.metadata.creationTimestamp }),
        },
        spec: o['spec'] ?? {},
      }, null, 2),
    }))).sort((a, b) => (a.file < b.file ? -1 : 1));
    return { mesh: { file: `${this.description} (pods, services, ${this.#o.rootNamespace ?? 'istio-system'}/istio)`, text: this.meshText() }, policies };
  }

  /** The mesh file the cluster amounts to. */
  meshText(): string {
    const root = this.#o.rootNamespace ?? 'istio-system';
    const cm = this.#kind('configmaps').objects.get(`${root}/istio`);
    const meshData = (cm?.['data'] as Record<string, string> | undefined)?.['mesh'];
    const workloads = [...this.#kind('pods').objects.values()].filter(runningPod).filter(named).map((p) => {
      const spec = p['spec'] as PodSpec;
      const ports = new Map<number, { name?: string; port: number }>();
      for (const c of spec.containers ?? []) {
        for (const port of c.ports ?? []) {
          if ((port.protocol ?? 'TCP') !== 'TCP' || ports.has(port.containerPort)) continue;
          ports.set(port.containerPort, { ...(port.name === undefined ? {} : { name: port.name }), port: port.containerPort });
        }
      }
      return {
        name: p.metadata.name, namespace: p.metadata.namespace ?? 'default', serviceAccount: spec.serviceAccountName ?? 'default',
        labels: p.metadata.labels ?? {}, address: (p['status'] as { podIP: string }).podIP,
        ports: [...ports.values()].map((x) => ({ ...x, targetPort: x.port })),
      };
    }).sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
    const services = [...this.#kind('services').objects.values()].filter(named).flatMap((s) => {
      const spec = s['spec'] as ServiceSpec;
      // A Service without a selector has no workloads of the mesh to point at.
      if (spec.selector === undefined || Object.keys(spec.selector).length === 0) return [];
      const address = spec.clusterIP !== undefined && spec.clusterIP !== '' && spec.clusterIP !== 'None' ? spec.clusterIP : undefined;
      const ports = (spec.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP').map((p) => ({
        ...(p.name === undefined ? {} : { name: p.name }), port: p.port,
        // A named targetPort is the container port of that name; resolved per pod by Kubernetes, here the port itself when unnamed.
        targetPort: typeof p.targetPort === 'number' ? p.targetPort : p.targetPort === undefined ? p.port : this.#namedPort(s.metadata.namespace ?? 'default', spec.selector!, p.targetPort) ?? p.port,
      }));
      // The ready endpoints of the Service's EndpointSlices: a pod that is not ready is a workload, not an endpoint.
      const slices = [...this.#kind('endpointslices').objects.values()].filter((e) => e.metadata.namespace === s.metadata.namespace && e.metadata.labels?.['kubernetes.io/service-name'] === s.metadata.name);
      const endpoints = slices.flatMap((e) => ((e['endpoints'] ?? []) as Array<{ addresses?: string[]; conditions?: { ready?: boolean } }>)
        .filter((ep) => ep.conditions?.ready !== false).flatMap((ep) => ep.addresses ?? []));
      // No slice yet (the endpoints controller has not caught up): the selector alone decides, as before slices.
      const ready = slices.length === 0 ? {} : { endpoints: [...new Set(endpoints)].sort() };
      return [{ name: s.metadata.name, namespace: s.metadata.namespace ?? 'default', selector: spec.selector, ...(address === undefined ? {} : { address }), ...ready, ports }];
    }).sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
    const text = stringify({ meshConfig: {}, workloads, services }, { lineWidth: 0 });
    // MeshConfig goes in as the ConfigMap's own text, so that its diagnostics read as the user's YAML does.
    return meshData === undefined ? text : text.replace(/^meshConfig: \{\}\n/m, `meshConfig:\n${meshData.split('\n').map((l) => (l === '' ? l : `  ${l}`)).join('\n')}\n`);
  }

  #namedPort(namespace: string, selector: Readonly<Record<string, string>>, name: string): number | undefined {
    for (const p of this.#kind('pods').objects.values()) {
      if (p.metadata.namespace !== namespace || !Object.entries(selector).every(([k, v]) => p.metadata.labels?.[k] === v)) continue;
      for (const c of (p['spec'] as PodSpec).containers ?? []) {
        const hit = c.ports?.find((x) => x.name === name);
        if (hit !== undefined) return hit.containerPort;
      }
    }
    return undefined;
  }

  watch(onChange: () => void): () => void {
    this.#listeners.add(onChange);
    return () => this.#listeners.delete(onChange);
  }
}

function runningPod(p: KubeObject): boolean {
  const st = p['status'] as { phase?: string; podIP?: string } | undefined;
  return st?.phase === 'Running' && typeof st.podIP === 'string' && st.podIP !== '';
}

/** Names the mesh file accepts (DNS-1123 labels): anything else would refuse the whole mesh text, so it is left out. */
function named(o: KubeObject): boolean {
  return DNS1123_LABEL.test(o.metadata.name) && (o.metadata.namespace === undefined || DNS1123_LABEL.test(o.metadata.namespace));
}

/** kubectl's copy of the applied text is not the resource's own annotation. */
function withoutLastApplied(a: Readonly<Record<string, string>>): Record<string, string> {
  const { 'kubectl.kubernetes.io/last-applied-configuration': _, ...rest } = a;
  return rest;
}

function statusMessage(body: string): string {
  try {
    return (JSON.parse(body) as { message?: string }).message ?? body;
  } catch {
    return body;
  }
}
