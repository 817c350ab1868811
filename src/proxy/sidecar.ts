import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { RampartError } from '../errors.ts';
import { CertificateAuthority } from '../identity/ca.ts';
import { CertificateManager } from '../identity/cert-manager.ts';
import { istioSpiffeId } from '../identity/spiffe-id.ts';
import { serverTlsOptions } from '../identity/tls.ts';
import { TrustBundle } from '../identity/trust-bundle.ts';
import { readCaDir } from '../io/ca-dir.ts';
import { listenExplained } from '../io/listen.ts';
import { readConfigSources } from '../io/config-files.ts';
import { JwtAuthenticator } from '../jwt/authenticator.ts';
import { KeyRegistry } from '../jwt/key-registry.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { formatDiagnostic, type Diagnostic } from '../resources/diagnostic.ts';
import { loadResources } from '../resources/load.ts';
import { findWorkload, parseMeshFile, type MeshFile, type MeshWorkload, type WorkloadPort } from '../resources/mesh-file.ts';
import { jwksTelemetry, type EventLog } from '../telemetry/jwks.ts';
import { DEFAULT_LIMITS, InboundListener, type AccessEntry, type InboundLimits, type InboundState, type TlsState } from './inbound.ts';
import { ProxyMetrics } from './metrics.ts';
import { OutboundProxy, type ClientTls, type OutboundEntry, type Upstream } from './outbound.ts';
import type { ControlPlaneClient } from './control-client.ts';
import type { ReportedAccess } from '../control/protocol.ts';
import { snapshotSources, type ProxySnapshot } from '../control/snapshot.ts';
import type { SourceText } from '../resources/load.ts';
import type { IstioIdentity, SpiffeId } from '../identity/spiffe-id.ts';
import type { SvidRequester } from '../identity/cert-manager.ts';
import type net from 'node:net';
import { CaptureListeners } from './capture-listeners.ts';
import type { OriginalDestination } from '../capture/original-dst.ts';
import { hostsBlock, withHostsBlock } from './hosts-entries.ts';
import { rewriteHostsFile } from '../io/hosts-file.ts';

/**
 * `rampart proxy`: the sidecar of one workload. It reads the mesh file and the policy files, serves one inbound
 * listener per workload port, holds an SVID from the CA and renews it, and reloads its configuration when the files
 * change. A new configuration with any error is refused whole and the last good one stays in force: leaving one
 * broken policy out could widen access (a DENY policy that no longer applies).
 */

export class SidecarError extends RampartError {}

export interface AdminResponse {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

export interface SidecarOptions {
  /** The mesh file (settings, workloads, services); with `config` and `caDir`, when there is no control plane. */
  readonly meshFile?: string;
  /** Policy files or directories (Istio YAML). */
  readonly config?: readonly string[];
  /** `namespace/name` of the workload in the mesh file. */
  readonly workload: string;
  /** A local CA directory (`rampart ca init`): the sidecar gets and renews its SVID from it in-process. */
  readonly caDir?: string;
  /**
   * The control plane: SVIDs from its CSR endpoint and the configuration from its stream (ACKed or NACKed), instead
   * of the files and the CA directory.
   */
  readonly controlPlane?: ControlPlaneClient;
  readonly svidTtlMs?: number;
  /** Listen address of the inbound listeners (the workload's address by default). */
  readonly host?: string;
  /** Admin endpoint (readiness, metrics, configuration, certificate); 0 picks a free port. */
  readonly adminPort?: number;
  readonly adminHost?: string;
  readonly debugHeaders?: boolean;
  readonly limits?: Partial<InboundLimits>;
  /** The app's HTTP proxy (HTTP_PROXY) on 127.0.0.1; 0 picks a free port; absent: none. */
  readonly outboundPort?: number;
  /** Local ports on 127.0.0.1 forwarding to a fixed destination. */
  readonly upstreams?: readonly Upstream[];
  /** Log the ready line under another event name (a worker of a multi-process sidecar: the primary says ready). */
  readonly readyEvent?: string;
  /**
   * No inbound listeners and no outbound ports: the app's own process enforces through in-process middleware and
   * reaches other services through `connect` (rampart/node). Everything else is the sidecar's: identity, the
   * configuration and its reloads, metrics, the access log, the admin endpoint.
   */
  readonly embedded?: boolean;
  /**
   * Traffic capture (`rampart capture` in the workload's network namespace): no listener per workload port and no
   * outbound ports; the inbound and outbound capture ports instead, and the app keeps its own ports.
   */
  readonly capture?: CaptureSettings;
  /** Debounce of file-change reloads. */
  readonly reloadDebounceMs?: number;
  readonly log: EventLog & { info(fields: object, message: string): void };
  /** One JSON object per request or connection. */
  /**
   * One access entry and the workload it is about (passed apart so that no copy of the entry is made per request).
   * Inbound entries carry their start as a number (`start`), outbound ones their `time` already. The entry is not
   * changed afterwards: a writer may keep it and serialize later.
   */
  readonly accessLog: (entry: AccessEntry | OutboundEntry, workload: string) => void;
}

export interface CaptureSettings {
  /** Istio's 15006. */
  readonly inboundPort: number;
  /** Istio's 15001. */
  readonly outboundPort: number;
  /** SO_ORIGINAL_DST of an accepted connection (src/capture/original-dst.ts). */
  readonly originalDestination: (socket: net.Socket) => OriginalDestination;
  /** A hosts file to keep the mesh services' names in (the namespace's /etc/netns/<name>/hosts, or /etc/hosts). */
  readonly hostsFile?: string;
}

/** Undeclared ports a captured workload serves (Istio's inbound passthrough); beyond it their connections are refused. */
const MAX_PASSTHROUGH_PORTS = 256;

interface Loaded {
  readonly state: InboundState;
  readonly registry: KeyRegistry;
  readonly mesh: MeshFile;
  readonly resources: number;
}

export class Sidecar {
  readonly #o: SidecarOptions;
  #loaded: Loaded | undefined;
  #tls: TlsState | undefined;
  #clientTls: ClientTls | undefined;
  #outbound: OutboundProxy | undefined;
  #listeners: InboundListener[] = [];
  #capture: CaptureListeners | undefined;
  /** Listeners of undeclared ports under capture, made on their first connection. */
  readonly #passthrough = new Map<number, InboundListener>();
  #hostsWritten: MeshFile | undefined;
  #admin: http.Server | undefined;
  #watchers: FSWatcher[] = [];
  #reloadTimer: NodeJS.Timeout | undefined;
  #certs: CertificateManager | undefined;
  #version = 0;
  #readyInfo: Readonly<Record<string, unknown>> | undefined;
  #lastError: string | undefined;
  #workload: MeshWorkload | undefined;
  #metrics: ProxyMetrics | undefined;
  readonly #jwks: ReturnType<typeof jwksTelemetry>;
  readonly #tlsListeners = new Set<(tls: TlsState) => void>();

  constructor(options: SidecarOptions) {
    this.#o = options;
    this.#jwks = jwksTelemetry({ logger: options.log });
  }

  get adminPort(): number | undefined {
    return (this.#admin?.address() as AddressInfo | null)?.port;
  }

  /** What the ready line says: the workload, its listeners and the outbound ports (after start). */
  get readyInfo(): Readonly<Record<string, unknown>> | undefined {
    return this.#readyInfo;
  }

  get configVersion(): string {
    return this.#loaded?.state.version ?? '';
  }

  /** The workload from the mesh file (after start). */
  get workload(): MeshWorkload {
    if (this.#workload === undefined) throw new SidecarError('ERR_PROXY_NOT_STARTED', 'the sidecar has not started');
    return this.#workload;
  }

  /** The configuration requests are decided against now (after start); replaced whole on each change. */
  get state(): InboundState {
    if (this.#loaded === undefined) throw new SidecarError('ERR_PROXY_NOT_STARTED', 'the sidecar has not started');
    return this.#loaded.state;
  }

  /** The mesh file in force (registry, MeshConfig). */
  get mesh(): MeshFile {
    if (this.#loaded === undefined) throw new SidecarError('ERR_PROXY_NOT_STARTED', 'the sidecar has not started');
    return this.#loaded.mesh;
  }

  /** The server side of mTLS with the current SVID and bundle; undefined until the first SVID. */
  get tls(): TlsState | undefined {
    return this.#tls;
  }

  /** The client side of mTLS with the current SVID and bundle. */
  get clientTls(): ClientTls | undefined {
    return this.#clientTls;
  }

  /**
   * Calls `listener` after every change of the TLS state (a rotated SVID, a new bundle), so that servers the app
   * owns can swap their secure context. Returns the unsubscribe function.
   */
  onTlsChange(listener: (tls: TlsState) => void): () => void {
    this.#tlsListeners.add(listener);
    return () => this.#tlsListeners.delete(listener);
  }

  /** Opens a connection to a service as this workload: auto mTLS with secure naming, plaintext, or refused. */
  connect(host: string, port: number): ReturnType<OutboundProxy['connect']> {
    if (this.#outbound === undefined) throw new SidecarError('ERR_PROXY_NOT_STARTED', 'the sidecar has not started');
    return this.#outbound.connect(host, port);
  }

  /** Asks for a new SVID now (it is also renewed on its own before it expires); resolves once it is in use. */
  async renewSvid(): Promise<void> {
    if (this.#certs === undefined) throw new SidecarError('ERR_PROXY_NOT_STARTED', 'the sidecar has not started');
    await this.#certs.renewNow();
  }

  /** Records an inbound access entry: metrics, the access log, the control plane's console. */
  recordAccess(entry: AccessEntry): void {
    this.#onAccess(entry);
  }

  /** Records an outbound access entry: metrics and the access log. */
  recordOutbound(entry: OutboundEntry): void {
    const w = this.workload;
    this.#metrics?.recordOutbound(entry);
    this.#o.accessLog(entry, `${w.namespace}/${w.name}`);
  }

  /** Loads everything, gets an SVID, opens the listeners. Throws (with every diagnostic) when the first load fails. */
  async start(): Promise<void> {
    const cp = this.#o.controlPlane;
    let identity: SpiffeId;
    let requestSvid: SvidRequester;
    let trustDomainAliases: readonly string[];
    let first: Loaded;
    if (cp === undefined) {
      const loaded = await this.#load();
      if ('errors' in loaded) throw new SidecarError('ERR_PROXY_CONFIG', `the configuration has errors:\n${loaded.errors.map(formatDiagnostic).join('\n')}`);
      first = loaded;
      const w = this.#workload!;
      const mesh = first.mesh.mesh;
      identity = istioSpiffeId(mesh.trustDomain, w.namespace, w.serviceAccount);
      trustDomainAliases = mesh.trustDomainAliases;
      if (this.#o.caDir === undefined) throw new SidecarError('ERR_PROXY_CA', 'a sidecar without a control plane needs a CA directory');
      const ca = new CertificateAuthority(await readCaDir(this.#o.caDir), { trustDomain: mesh.trustDomain, trustDomainAliases: mesh.trustDomainAliases });
      requestSvid = async (csr) => {
        const s = ca.issue({ csr, ...(this.#o.svidTtlMs === undefined ? {} : { ttlMs: this.#o.svidTtlMs }) }, identity);
        return { chainPem: s.chainPem, rootsPem: s.rootsPem };
      };
    } else {
      // The identity is the one the bootstrap token names; the CA signs no other for it. The mesh's trust domain
      // aliases come with the snapshots' trust bundle (#takeBundle), once there is a snapshot.
      identity = cp.identity;
      trustDomainAliases = [];
      requestSvid = cp.requestSvid;
    }
    this.#certs = new CertificateManager({ identity, trustDomainAliases, requestSvid });
    this.#certs.subscribe((e) => {
      if (e.type === 'rotated') {
        this.#tls = { options: serverTlsOptions(e.svid, e.bundle), bundle: e.bundle, spiffeId: e.svid.spiffeId.uri };
        this.#clientTls = { svid: e.svid, bundle: e.bundle };
        for (const l of this.#tlsListeners) l(this.#tls);
        this.#o.log.info({ event: 'svid-rotated', spiffeId: e.svid.spiffeId.uri, notAfter: e.svid.notAfter.toISOString() }, `SVID for ${e.svid.spiffeId.uri} until ${e.svid.notAfter.toISOString()}`);
      } else if (e.type === 'bundle-changed' && this.#certs?.svid !== undefined) {
        this.#tls = { options: serverTlsOptions(this.#certs.svid, e.bundle), bundle: e.bundle, spiffeId: this.#certs.svid.spiffeId.uri };
        this.#clientTls = { svid: this.#certs.svid, bundle: e.bundle };
        for (const l of this.#tlsListeners) l(this.#tls);
      } else if (e.type === 'renewal-failed') {
        this.#o.log.error({ event: 'svid-renewal-failed', attempt: e.attempt, retryInMs: e.retryInMs, error: String(e.error) }, `SVID renewal failed (attempt ${e.attempt}); retrying in ${e.retryInMs} ms`);
      } else if (e.type === 'expired') {
        this.#o.log.error({ event: 'svid-expired' }, 'the SVID expired: mTLS connections fail until it is renewed');
      }
    });
    if (cp !== undefined) {
      this.#certs.subscribe((e) => {
        if (e.type === 'rotated') {
          cp.useSvid(e.svid, e.bundle);
          this.#renewalOverdue = false;
        } else if (e.type === 'renewal-failed' || e.type === 'expired') {
          this.#renewalOverdue = true;
        }
      });
    }
    // Retries with backoff until the CA (or the control plane) answers.
    await this.#certs.start();
    if (cp !== undefined) first = await this.#firstSnapshot(cp, cp.identity);
    this.#loaded = first!;
    const w = this.#workload!;
    const mesh = first!.mesh.mesh;
    this.#metrics = new ProxyMetrics(w, identity.uri, mesh.trustDomain);
    this.#jwks.watch(first!.registry.sources);
    // Always there: external authorizers are reached through it even when the app has no outbound port.
    this.#outbound = new OutboundProxy({
      workload: w,
      current: () => ({ mesh: this.#loaded!.mesh, engine: this.#loaded!.state.engine }),
      clientTls: () => this.#clientTls,
      ...(this.#o.outboundPort === undefined ? {} : { httpProxyPort: this.#o.outboundPort }),
      upstreams: this.#o.upstreams ?? [],
      onLog: (e) => this.recordOutbound(e),
    });
    const outbound = this.#outbound;
    const host = this.#o.host ?? w.address;
    const listenerFor = (port: WorkloadPort): InboundListener => new InboundListener({
      workload: w, port, host,
      state: () => this.#loaded!.state,
      tls: () => this.#tls,
      onAccess: (e) => this.#onAccess(e),
      connect: async (h, p) => (await outbound.connect(h, p)).socket,
      onTcpOpen: (principal, mtls) => this.#metrics?.tcpOpened(principal, mtls),
      ...(this.#o.limits === undefined ? {} : { limits: this.#o.limits }),
    });
    for (const port of this.#o.embedded === true ? [] : w.ports) {
      const l = listenerFor(port);
      if (this.#o.capture === undefined) await l.listen();
      this.#listeners.push(l);
    }
    const capture = this.#o.capture;
    if (capture !== undefined && this.#o.embedded !== true) {
      this.#capture = new CaptureListeners({
        inboundPort: capture.inboundPort, outboundPort: capture.outboundPort,
        originalDestination: capture.originalDestination,
        inbound: (port) => this.#captured(port, listenerFor),
        outbound, onLog: (e) => this.recordOutbound(e),
        maxConnections: this.#o.limits?.maxConnections ?? DEFAULT_LIMITS.maxConnections,
        onRefused: (direction, reason, peer) => this.#o.log.warn({ event: 'capture-refused', direction, reason, peer: peer ?? null }, `captured ${direction} connection refused: ${reason}`),
      });
      await this.#capture.listen();
      await this.#writeHosts(first!.mesh);
    }
    await this.#outbound.listen();
    if (this.#o.adminPort !== undefined) await this.#startAdmin(this.#o.adminPort);
    if (cp === undefined) this.#watch();
    this.#readyInfo = {
      workload: `${w.namespace}/${w.name}`,
      ports: w.ports.map((p, i) => ({ port: p.port, listen: this.#listeners[i]?.port ?? this.#capture?.ports.inbound ?? null, app: p.targetPort, protocol: p.protocol })),
      outbound: Object.fromEntries(this.#outbound.ports),
      ...(this.#capture === undefined ? {} : { capture: { ...this.#capture.ports, hostsFile: capture?.hostsFile ?? null } }),
      configVersion: first!.state.version,
    };
    this.#o.log.info(
      { event: this.#o.readyEvent ?? 'ready', ...this.#readyInfo, admin: this.adminPort },
      `${this.#o.embedded === true ? 'in-process enforcement' : 'sidecar'} for ${w.namespace}/${w.name} ready`,
    );
  }

  async stop(): Promise<void> {
    clearTimeout(this.#reloadTimer);
    for (const w of this.#watchers) w.close();
    this.#certs?.stop();
    this.#o.controlPlane?.stop();
    this.#loaded?.registry.stop();
    await this.#capture?.close();
    await Promise.all([...this.#listeners.map((l) => l.close()), ...[...this.#passthrough.values()].map((l) => l.close()), this.#outbound?.close()]);
    await new Promise<void>((r) => (this.#admin === undefined ? r() : this.#admin.close(() => r())));
    this.#admin?.closeAllConnections();
  }

  /** Reads and checks the files; a new state, or the errors that refuse it. */
  async #load(): Promise<Loaded | { errors: Diagnostic[] }> {
    const meshFile = this.#o.meshFile ?? '';
    let meshText: string;
    try {
      meshText = await readFile(meshFile, 'utf8');
    } catch (err) {
      return { errors: [{ severity: 'error', code: 'ERR_CONFIG_NOT_FOUND', message: `cannot read the mesh file: ${(err as Error).message}`, file: meshFile, line: 0, path: '' }] };
    }
    let sources;
    try {
      sources = await readConfigSources(this.#o.config ?? []);
    } catch (err) {
      return { errors: [{ severity: 'error', code: 'ERR_CONFIG_NOT_FOUND', message: (err as Error).message, file: (this.#o.config ?? []).join(','), line: 0, path: '' }] };
    }
    return this.#build({ file: meshFile, text: meshText }, sources);
  }

  /** Checks a mesh file and policy texts (from files or a snapshot); a new state, or the errors that refuse it. */
  async #build(meshSource: SourceText, sources: readonly SourceText[]): Promise<Loaded | { errors: Diagnostic[] }> {
    const parsedMesh = parseMeshFile(meshSource.text, meshSource.file);
    const loaded = loadResources(sources, { rootNamespace: parsedMesh.mesh.mesh.rootNamespace });
    const diagnostics = [...parsedMesh.diagnostics, ...loaded.diagnostics];
    const errors = diagnostics.filter((d) => d.severity === 'error');
    const w = findWorkload(parsedMesh.mesh, this.#o.workload);
    if (w === undefined && errors.length === 0) {
      errors.push({ severity: 'error', code: 'ERR_WORKLOAD_UNKNOWN', message: `workload ${this.#o.workload} is not in the mesh file`, file: meshSource.file, line: 0, path: 'workloads' });
    }
    if (this.#workload !== undefined && w !== undefined && JSON.stringify(w) !== JSON.stringify(this.#workload)) {
      // Ports, labels and identity are fixed for the sidecar's life (a pod's are too); policies may change.
      errors.push({ severity: 'error', code: 'ERR_WORKLOAD_CHANGED', message: `workload ${this.#o.workload} changed in the mesh file; restart the sidecar to apply it`, file: meshSource.file, line: 0, path: 'workloads' });
    }
    if (errors.length > 0) return { errors };
    this.#workload ??= w!;
    const engine = new PolicyEngine(loaded.resources, parsedMesh.mesh.mesh);
    const policy = engine.workload(w!.namespace, w!.labels);
    const registry = await KeyRegistry.create(policy.requestAuthentications, { background: true, onEvent: this.#jwks.onEvent });
    const jwt = policy.jwtRules.length === 0 ? undefined : new JwtAuthenticator({ keysFor: (ref) => registry.keysFor(ref), onUnknownKid: (ref) => registry.unknownKid(ref) });
    this.#version++;
    const debugHeaders = this.#o.debugHeaders ?? parsedMesh.mesh.debugHeaders;
    return { state: { version: String(this.#version), debugHeaders, engine, policy, jwt }, registry, mesh: parsedMesh.mesh, resources: loaded.resources.length };
  }

  /** Checks a snapshot from the control plane; the workload must run as the identity this sidecar holds. */
  async #fromSnapshot(snap: ProxySnapshot, identity: IstioIdentity): Promise<Loaded | { errors: Diagnostic[] }> {
    const next = await this.#build(snap.mesh, snapshotSources(snap));
    if ('errors' in next) return next;
    const w = this.#workload!;
    if (w.namespace !== identity.namespace || w.serviceAccount !== identity.serviceAccount) {
      next.registry.stop();
      return { errors: [{ severity: 'error', code: 'ERR_WORKLOAD_IDENTITY', message: `workload ${this.#o.workload} runs as ${w.namespace}/${w.serviceAccount}, but this sidecar's token names ${identity.namespace}/${identity.serviceAccount}`, file: snap.mesh.file, line: 0, path: 'workloads' }] };
    }
    // The control plane's own version, so that status, logs and access entries agree with it.
    return { ...next, state: { ...next.state, version: snap.version } };
  }

  /** Subscribes and waits for the first snapshot that loads; later ones replace the configuration as they come. */
  #firstSnapshot(cp: ControlPlaneClient, identity: IstioIdentity): Promise<Loaded> {
    return new Promise((resolve) => {
      let started = false;
      cp.subscribe({
        onSnapshot: async (snap) => {
          if (started && snap.digest === this.#digest) {
            // The same content again (a reconnect, or a restarted control plane counting from 1): nothing to rebuild,
            // only the version label follows the control plane's.
            const cur = this.#loaded;
            if (cur !== undefined && cur.state.version !== snap.version) this.#loaded = { ...cur, state: { ...cur.state, version: snap.version } };
            return { ok: true };
          }
          const next = await this.#fromSnapshot(snap, identity);
          if ('errors' in next) {
            const text = next.errors.map(formatDiagnostic).join('\n');
            this.#lastError = text;
            this.#o.log.error({ event: 'config-rejected', version: snap.version, errors: next.errors.map(formatDiagnostic), keeping: this.configVersion || null }, `configuration version ${snap.version} rejected (${next.errors.length} error(s))${started ? `; version ${this.configVersion} stays in force` : ''}`);
            return { ok: false, error: text };
          }
          this.#digest = snap.digest;
          this.#takeBundle(snap, next.mesh);
          if (!started) {
            started = true;
            resolve(next);
            return { ok: true };
          }
          this.#apply(next);
          return { ok: true };
        },
        onConnected: () => {
          this.#cpState = { connected: true, since: new Date().toISOString(), lastError: null };
          this.#o.log.info({ event: 'control-plane-connected' }, 'connected to the control plane');
          // A renewal that failed while the control plane was away is made now, not at the next backoff step.
          if (this.#renewalOverdue && started) this.#certs?.renewNow().catch(() => undefined);
        },
        onDisconnected: (error, retryInMs) => {
          if (this.#cpState.connected || this.#cpState.lastError !== error) this.#cpState = { connected: false, since: new Date().toISOString(), lastError: error };
          this.#o.log.warn({ event: 'control-plane-disconnected', error, retryInMs }, `control plane stream lost (${error}); keeping version ${this.configVersion || '(none yet)'}, retrying in ${retryInMs} ms`);
        },
      });
    });
  }

  /**
   * The roots the control plane sends replace those of the last renewal (a root added for a rotation reaches the
   * proxies with the next snapshot, not with their next certificate). Unreadable roots are ignored: the current ones
   * stay, and the snapshot is still good for policy.
   */
  #takeBundle(snap: ProxySnapshot, mesh: MeshFile): void {
    if (snap.trustBundle === '' || this.#certs === undefined) return;
    try {
      this.#certs.setTrustBundle(TrustBundle.fromPem(mesh.mesh.trustDomain, snap.trustBundle, mesh.mesh.trustDomainAliases));
    } catch (err) {
      this.#o.log.error({ event: 'trust-bundle-rejected', error: (err as Error).message }, `the control plane's trust bundle cannot be read: ${(err as Error).message}`);
    }
  }

  #apply(next: Loaded): void {
    const old = this.#loaded;
    this.#loaded = next;
    this.#lastError = undefined;
    this.#jwks.watch(next.registry.sources);
    old?.registry.stop();
    if (this.#capture !== undefined) void this.#writeHosts(next.mesh);
    this.#o.log.info({ event: 'config-applied', configVersion: next.state.version, resources: next.resources }, `configuration version ${next.state.version} applied (${next.resources} resources)`);
  }

  /** The listener of a captured connection's original port: the workload port's, or a passthrough one. */
  #captured(port: number, make: (p: WorkloadPort) => InboundListener): InboundListener {
    const i = this.workload.ports.findIndex((p) => p.port === port);
    if (i !== -1) return this.#listeners[i]!;
    let l = this.#passthrough.get(port);
    if (l === undefined) {
      if (this.#passthrough.size >= MAX_PASSTHROUGH_PORTS) {
        throw new SidecarError('ERR_CAPTURE_PORTS', `more than ${MAX_PASSTHROUGH_PORTS} undeclared ports: port ${port} refused (declare the app's ports in the mesh file)`);
      }
      // Istio's inbound passthrough: a port the mesh does not declare still gets the workload's PeerAuthentication
      // and AuthorizationPolicies, its protocol detected from the first bytes; the app gets it on the same port.
      l = make({ name: undefined, port, targetPort: port, protocol: 'DETECT' });
      this.#passthrough.set(port, l);
    }
    return l;
  }

  /** The mesh services' names into the hosts file, when the registry changed (errors are logged, not fatal). */
  async #writeHosts(mesh: MeshFile): Promise<void> {
    const file = this.#o.capture?.hostsFile;
    if (file === undefined || mesh === this.#hostsWritten) return;
    this.#hostsWritten = mesh;
    const block = hostsBlock(mesh, this.workload.namespace);
    try {
      if (await rewriteHostsFile(file, (existing) => withHostsBlock(existing, block))) {
        this.#o.log.info({ event: 'hosts-written', file, services: mesh.services.length }, `${mesh.services.length} mesh service name(s) written to ${file}`);
      }
    } catch (err) {
      this.#o.log.error({ event: 'hosts-write-failed', file, error: (err as Error).message }, `cannot write ${file}: ${(err as Error).message}`);
    }
  }

  #watch(): void {
    const paths = [this.#o.meshFile ?? '', ...(this.#o.config ?? [])];
    for (const p of paths) {
      try {
        const w = watch(p, { persistent: false }, () => this.#scheduleReload());
        w.on('error', () => undefined);
        this.#watchers.push(w);
      } catch {
        // A path that cannot be watched is still read on every reload.
      }
    }
  }

  #scheduleReload(): void {
    clearTimeout(this.#reloadTimer);
    this.#reloadTimer = setTimeout(() => void this.reload(), this.#o.reloadDebounceMs ?? 100);
  }

  /** Reads the files again; applies the result only when it has no error. */
  async reload(): Promise<boolean> {
    const next = await this.#load();
    if ('errors' in next) {
      this.#lastError = next.errors.map(formatDiagnostic).join('\n');
      this.#o.log.error({ event: 'config-rejected', errors: next.errors.map(formatDiagnostic), keeping: this.configVersion }, `new configuration rejected (${next.errors.length} error(s)); version ${this.configVersion} stays in force`);
      return false;
    }
    this.#apply(next);
    return true;
  }


  #workloadName: string | undefined;
  /** The configuration stream, as /config reports it. */
  #cpState: { connected: boolean; since: string | null; lastError: string | null } = { connected: false, since: null, lastError: null };
  /** A renewal failed (or the SVID expired) and none has succeeded since. */
  #renewalOverdue = false;
  /** Digest of the control plane snapshot in force. */
  #digest: string | undefined;

  #onAccess(e: AccessEntry): void {
    this.#metrics?.record(e);
    const w = this.#workload!;
    this.#o.accessLog(e, this.#workloadName ??= `${w.namespace}/${w.name}`);
    const cp = this.#o.controlPlane;
    if (cp !== undefined) cp.report(reportOf(e, cp.reporting));
  }

  async #startAdmin(port: number): Promise<void> {
    const server = http.createServer((req, res) => void this.#adminRequest(req, res));
    await listenExplained(server, port, this.#o.adminHost ?? '127.0.0.1', { what: "the sidecar's admin port", movedBy: '--admin-port' });
    this.#admin = server;
  }

  async #adminRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const r = await this.admin(req.url ?? '/');
    res.writeHead(r.status, { 'content-type': r.contentType }).end(r.body);
  }

  /** The admin endpoint's answer for a path: what /ready, /metrics, /config and /certs serve. */
  async admin(path: string): Promise<AdminResponse> {
    const url = new URL(path, 'http://admin');
    const json = (status: number, body: unknown): AdminResponse => ({ status, contentType: 'application/json', body: `${JSON.stringify(body, null, 2)}\n` });
    if (url.pathname === '/ready') {
      const listening = this.#o.embedded === true || this.#listeners.length === (this.#workload?.ports.length ?? -1);
      const ready = this.#tls !== undefined && this.#loaded !== undefined && listening;
      return { status: ready ? 200 : 503, contentType: 'text/plain', body: ready ? 'LIVE\n' : 'NOT READY\n' };
    }
    if (url.pathname === '/metrics' && this.#metrics !== undefined) {
      return { status: 200, contentType: this.#metrics.registry.contentType, body: await this.#metrics.registry.metrics() };
    }
    if (url.pathname === '/config') {
      const st = this.#loaded!.state;
      return json(200, {
        version: st.version,
        lastRejected: this.#lastError ?? null,
        ...(this.#o.controlPlane === undefined ? {} : {
          controlPlane: { url: this.#o.controlPlane.url, identity: this.#o.controlPlane.serverIdentity, digest: this.#digest ?? null, ...this.#cpState },
        }),
        workload: this.#workload,
        mesh: this.#loaded!.mesh.mesh,
        mtls: Object.fromEntries((this.#workload?.ports ?? []).map((p) => [p.port, st.policy.mtls.modeFor(p.port)])),
        authorizationPolicies: st.policy.authorizationPolicies.map((p) => ({ name: `${p.meta.namespace}/${p.meta.name}`, action: p.spec.action ?? 'ALLOW', source: `${p.source.file}:${p.source.line}` })),
        // Inline JWKS are public keys, but configurations may carry other secrets later: the rule shape only.
        requestAuthentications: st.policy.requestAuthentications.map((p) => ({
          name: `${p.meta.namespace}/${p.meta.name}`,
          jwtRules: (p.spec.jwtRules ?? []).map((r) => ({ issuer: r.issuer, audiences: r.audiences, jwksUri: r.jwksUri, jwks: r.jwks === undefined ? undefined : '(inline, redacted)' })),
        })),
      });
    }
    if (url.pathname === '/certs') {
      const svid = this.#certs?.svid;
      return json(svid === undefined ? 503 : 200, svid === undefined ? { error: 'no SVID yet' } : {
        spiffeId: svid.spiffeId.uri,
        notBefore: svid.notBefore.toISOString(),
        notAfter: svid.notAfter.toISOString(),
        chain: svid.chain.map((c) => ({ subject: c.subject, issuer: c.issuer, serialNumber: c.serialNumber, fingerprint256: c.fingerprint256, validTo: c.validTo })),
        trustBundle: this.#tls?.bundle.roots.map((r) => ({ subject: r.subject, fingerprint256: r.fingerprint256 })) ?? [],
      });
    }
    return json(404, { error: 'not found', endpoints: ['/ready', '/metrics', '/config', '/certs'] });
  }

  /** The metrics registry (for aggregation across worker processes). */
  get metricsRegistry(): ProxyMetrics['registry'] | undefined {
    return this.#metrics?.registry;
  }
}

/** Longest denial explanation reported: a trace over many policies is cut, the decision and its first steps stay. */
const MAX_EXPLANATION_CHARS = 16 * 1024;

/** An access entry as the control plane's console receives it; a denial explained only when it will be kept. */
function reportOf(e: AccessEntry, explain: boolean): ReportedAccess {
  const { start, explain: explainer, ...rest } = e;
  let explanation = explain && explainer !== undefined ? explainer() : undefined;
  if (explanation !== undefined && explanation.length > MAX_EXPLANATION_CHARS) explanation = `${explanation.slice(0, MAX_EXPLANATION_CHARS)}\n… (cut at ${MAX_EXPLANATION_CHARS} characters)`;
  return { ...rest, time: new Date(start).toISOString(), ...(explanation === undefined ? {} : { explanation }) } as ReportedAccess;
}
