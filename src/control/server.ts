import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { decodeJwt } from 'jose';
import { RampartError } from '../errors.ts';
import { CaError, type CertificateAuthority, type CsrCredential } from '../identity/ca.ts';
import { BootstrapTokenError } from '../identity/bootstrap-token.ts';
import { istioSpiffeId, type SpiffeId } from '../identity/spiffe-id.ts';
import { svidFromPem, type Svid } from '../identity/svid.ts';
import { SvidError } from '../identity/svid-verify.ts';
import { peerChain, serverTlsOptions, verifyTlsPeer } from '../identity/tls.ts';
import { createCsr, generateKeyPair, privateKeyPem } from '../identity/x509.ts';
import { formatDiagnostic } from '../resources/diagnostic.ts';
import { findWorkload, type MeshWorkload } from '../resources/mesh-file.ts';
import type { EventLog } from '../telemetry/jwks.ts';
import { listenExplained } from '../io/listen.ts';
import { AdminHandler, isLoopbackHost } from './admin.ts';
import { DecisionFeed, validReports } from './decision-feed.ts';
import { buildMeshState, MeshStateError, proxySnapshot, type MeshState } from './snapshot.ts';
import type { ConfigSource } from './source.ts';
import { CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT, PATH_CSR, PATH_STREAM, readLines, type ProxyMessage, type StatusReport, type ProxyStatus } from './protocol.ts';

/**
 * `rampart control-plane`: holds the CA and the configuration, and serves proxies over one mTLS HTTP/2 port:
 *
 * - `POST /v1/csr`: signs a CSR for the identity the caller proves — its current SVID (the TLS client certificate)
 *   or, for a first certificate, a single-use bootstrap token (`authorization: Bearer …`). The SPIFFE ID signed is
 *   the authenticated one, whatever the CSR asks for (a CSR naming another identity is refused).
 * - `POST /v1/stream`: a proxy with an SVID subscribes for its workload; the control plane sends it versioned
 *   snapshots (NDJSON, one per line) and the proxy answers each with an ACK or a NACK carrying the error, as xDS does.
 *
 * Status (connected proxies, their config version and ACK state, certificate expiry) is served as JSON on a
 * separate plain-HTTP admin port on 127.0.0.1 (`GET /status`), which `rampart status` reads, with the console
 * (admin.ts) under `/console/`. Proxies report their decisions on the same stream (`{"type":"access"}`), which the
 * console shows live.
 */

export class ControlPlaneError extends RampartError {}

export interface ControlPlaneOptions {
  readonly source: ConfigSource;
  readonly ca: CertificateAuthority;
  /** Address and port of the mTLS port (0 picks a free port). */
  readonly host?: string;
  readonly port?: number;
  /** Plain-HTTP admin port for status, readiness and the console (absent: none; 0 picks one). */
  readonly adminPort?: number;
  /** Address of the admin port: 127.0.0.1 by default; any other address needs `adminToken`. */
  readonly adminHost?: string;
  /**
   * Kubernetes: a bearer token that is not a bootstrap token of this CA is a pod's projected service-account token
   * (audience istio-ca, as istiod expects); this says whose it is (a TokenReview), or undefined when it proves no one.
   */
  readonly tokenReviewer?: (token: string) => Promise<{ readonly namespace: string; readonly serviceAccount: string } | undefined>;
  /** The token the admin port asks for when it is bound beyond loopback. */
  readonly adminToken?: string;
  /** Decisions the console keeps (1,000). */
  readonly consoleCapacity?: number;
  /** Wait after a change before reading and pushing (istiod's PILOT_DEBOUNCE_AFTER: 100 ms). */
  readonly debounceMs?: number;
  /** Lifetime of the SVIDs signed for proxies; the CA default (24 h) when absent. */
  readonly svidTtlMs?: number;
  /** Snapshot bytes buffered for a proxy that does not read its stream before the stream is closed (32 MiB). */
  readonly maxBufferedPerProxy?: number;
  readonly log: EventLog;
}

interface Subscriber {
  readonly id: number;
  readonly workload: MeshWorkload;
  readonly identity: string;
  readonly address: string;
  readonly connectedAt: Date;
  readonly stream: http2.ServerHttp2Stream;
  sentVersion: string | undefined;
  ackedVersion: string | undefined;
  state: 'PENDING' | 'ACK' | 'NACK';
  error: string | undefined;
  certNotAfter: string | undefined;
}

/** Largest message a proxy may send on its stream (ACKs, NACKs with their errors). */
const MAX_PROXY_MESSAGE = 256 * 1024;
const MAX_CSR_BODY = 64 * 1024;
/** Snapshot bytes buffered for one proxy before its stream is closed. */
const MAX_BUFFERED_PER_PROXY = 32 * 1024 * 1024;

export class ControlPlane {
  readonly #o: ControlPlaneOptions;
  #state: MeshState | undefined;
  #server: http2.Http2SecureServer | undefined;
  #admin: http.Server | undefined;
  #svid: Svid | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #unwatch: (() => void) | undefined;
  #nextId = 1;
  readonly #subscribers = new Map<number, Subscriber>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  #lastChange: Date | undefined;
  #lastReadError: string | undefined;
  #rebuilding: Promise<void> | undefined;
  #again = false;
  /** What proxies report, for the console. */
  readonly decisions: DecisionFeed;

  constructor(options: ControlPlaneOptions) {
    const host = options.adminHost ?? '127.0.0.1';
    if (options.adminPort !== undefined && !isLoopbackHost(host) && (options.adminToken === undefined || options.adminToken === '')) {
      throw new ControlPlaneError('ERR_ADMIN_TOKEN_REQUIRED', `the admin port would be bound to ${host}, beyond loopback, with no token: give one (--admin-token-file FILE) or bind it to 127.0.0.1`);
    }
    this.#o = options;
    this.decisions = new DecisionFeed(options.consoleCapacity);
  }

  get port(): number | undefined {
    return (this.#server?.address() as AddressInfo | null)?.port;
  }

  get adminPort(): number | undefined {
    return (this.#admin?.address() as AddressInfo | null)?.port;
  }

  get state(): MeshState | undefined {
    return this.#state;
  }

  /** The control plane's own SPIFFE ID, which proxies expect of the server they connect to. */
  get identity(): SpiffeId {
    return istioSpiffeId(this.#o.ca.trustDomain, CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT);
  }

  /** Reads the source (a first configuration with errors throws MeshStateError), then opens the ports. */
  async start(): Promise<void> {
    const input = await this.#o.source.read();
    this.#state = buildMeshState(input, undefined);
    this.#lastChange = new Date();
    this.#report(this.#state);
    await this.#renewOwnSvid();
    const tls = serverTlsOptions(this.#svid!, this.#o.ca.trustBundle);
    const server = http2.createSecureServer({ ...tls, ALPNProtocols: ['h2'] });
    server.on('stream', (stream, headers) => this.#onStream(stream, headers));
    server.on('sessionError', () => undefined);
    server.on('session', (session) => {
      this.#sessions.add(session);
      session.once('close', () => this.#sessions.delete(session));
    });
    // rampart control-plane and rampart up both move it with --port.
    await listenExplained(server, this.#o.port ?? 0, this.#o.host ?? '127.0.0.1', { what: "the control plane's mTLS port", movedBy: '--port' });
    this.#server = server;
    if (this.#o.adminPort !== undefined) {
      const host = this.#o.adminHost ?? '127.0.0.1';
      const handler = new AdminHandler({
        status: () => this.status(), state: () => this.#state, ready: () => this.#server !== undefined && this.#state !== undefined, feed: this.decisions, now: () => new Date(),
      }, { host, ...(this.#o.adminToken === undefined ? {} : { token: this.#o.adminToken }) });
      const admin = http.createServer(handler.handle);
      try {
        await listenExplained(admin, this.#o.adminPort, host, { what: "the control plane's admin port (console, status)", movedBy: '--admin-port' });
      } catch (err) {
        server.close();
        this.#server = undefined;
        throw err;
      }
      this.#admin = admin;
    }
    this.#unwatch = this.#o.source.watch(() => this.#schedule());
  }

  async stop(): Promise<void> {
    this.#unwatch?.();
    clearTimeout(this.#debounce);
    clearTimeout(this.#renewTimer);
    for (const s of this.#subscribers.values()) s.stream.close(http2.constants.NGHTTP2_CANCEL);
    this.#subscribers.clear();
    // server.close() waits for every session to end: a client that keeps its connection open must not hold it.
    for (const session of this.#sessions) session.destroy();
    const server = this.#server;
    if (server !== undefined) await new Promise<void>((r) => server.close(() => r()));
    const admin = this.#admin;
    if (admin !== undefined) {
      admin.closeAllConnections();
      await new Promise<void>((r) => admin.close(() => r()));
    }
  }

  /** Reads the source now and pushes what changed (the debounced watcher calls this). */
  async refresh(): Promise<void> {
    if (this.#rebuilding !== undefined) {
      this.#again = true;
      return this.#rebuilding;
    }
    this.#rebuilding = (async () => {
      do {
        this.#again = false;
        await this.#rebuild();
      } while (this.#again);
    })().finally(() => (this.#rebuilding = undefined));
    return this.#rebuilding;
  }

  #schedule(): void {
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => void this.refresh(), this.#o.debounceMs ?? 100);
  }

  async #rebuild(): Promise<void> {
    let input;
    try {
      input = await this.#o.source.read();
      this.#lastReadError = undefined;
    } catch (err) {
      const message = (err as Error).message;
      if (this.#lastReadError !== message) this.#o.log.error({ event: 'source-unreadable', error: message }, `cannot read ${this.#o.source.description}: ${message}; version ${this.#state?.version} stays`);
      this.#lastReadError = message;
      return;
    }
    const previous = this.#state!;
    let next: MeshState;
    try {
      next = buildMeshState(input, previous);
    } catch (err) {
      if (!(err instanceof MeshStateError)) throw err;
      return;
    }
    const rejectedBefore = previous.rejectedFiles.join('\n') + previous.diagnostics.map(formatDiagnostic).join('\n');
    const rejectedNow = next.rejectedFiles.join('\n') + next.diagnostics.map(formatDiagnostic).join('\n');
    this.#state = next;
    if (next.version === previous.version) {
      if (rejectedNow !== rejectedBefore) this.#report(next);
      return;
    }
    this.#lastChange = new Date();
    this.#report(next);
    for (const s of this.#subscribers.values()) this.#push(s);
  }

  #report(s: MeshState): void {
    this.#o.source.report?.({ diagnostics: s.diagnostics, rejectedFiles: s.rejectedFiles });
    const errors = s.diagnostics.filter((d) => d.severity === 'error');
    if (errors.length > 0) {
      this.#o.log.error(
        { event: 'config-rejected', files: s.rejectedFiles, errors: errors.map(formatDiagnostic), version: s.version },
        `${s.rejectedFiles.length} file(s) rejected (${errors.length} error(s)); their last good content stays in force`,
      );
    }
    this.#o.log.info({ event: 'config-version', version: s.version, resources: s.resources.length, workloads: s.mesh.workloads.length }, `configuration version ${s.version}: ${s.resources.length} resources, ${s.mesh.workloads.length} workloads`);
  }

  async #renewOwnSvid(): Promise<void> {
    const keys = await generateKeyPair('ec-p256');
    const id = this.identity;
    const issued = this.#o.ca.issue({ csr: createCsr(keys, id.uri) }, id);
    this.#svid = svidFromPem(privateKeyPem(keys.privateKey), issued.chainPem);
    this.#server?.setSecureContext(serverTlsOptions(this.#svid, this.#o.ca.trustBundle));
    // At half the lifetime, as the proxies do.
    const wait = Math.max(1_000, (issued.notAfter.getTime() - Date.now()) / 2);
    this.#renewTimer = setTimeout(() => void this.#renewOwnSvid().catch((err: unknown) => this.#o.log.error({ event: 'svid-renewal-failed', error: String(err) }, 'the control plane could not renew its own SVID')), Math.min(wait, 2 ** 31 - 1));
    this.#renewTimer.unref();
  }

  #onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    const path = headers[':path'];
    const method = headers[':method'];
    if (method === 'POST' && path === PATH_CSR) void this.#csr(stream, headers);
    else if (method === 'POST' && path === PATH_STREAM) this.#subscribe(stream);
    else this.#reply(stream, 404, { code: 'ERR_NOT_FOUND', error: `no ${method} ${path}` });
  }

  #reply(stream: http2.ServerHttp2Stream, status: number, body: unknown): void {
    if (stream.destroyed || stream.closed) return;
    if (!stream.headersSent) stream.respond({ ':status': status, 'content-type': 'application/json' });
    stream.end(JSON.stringify(body));
  }

  /** The caller's SVID, verified against the bundle; undefined when it presented none. Throws for a bad one. */
  #peer(stream: http2.ServerHttp2Stream): { id: SpiffeId; notAfter: Date; chain: ReturnType<typeof peerChain> } | undefined {
    const socket = stream.session?.socket as TLSSocket | undefined;
    if (socket === undefined) return undefined;
    const cert = socket.getPeerCertificate(false) as { raw?: Buffer } | undefined;
    if (cert === undefined || cert.raw === undefined) return undefined;
    const v = verifyTlsPeer(socket, this.#o.ca.trustBundle, 'client');
    return { id: v.spiffeId, notAfter: v.notAfter, chain: peerChain(socket) };
  }

  async #csr(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    let body: { csr?: unknown; ttlMs?: unknown };
    try {
      body = JSON.parse(await readBody(stream, MAX_CSR_BODY)) as typeof body;
    } catch (err) {
      this.#reply(stream, 400, { code: 'ERR_CSR_REQUEST', error: `the request is not a JSON object with a "csr": ${(err as Error).message}` });
      return;
    }
    if (typeof body !== 'object' || body === null || typeof body.csr !== 'string') {
      this.#reply(stream, 400, { code: 'ERR_CSR_REQUEST', error: 'the request is not a JSON object with a "csr" string' });
      return;
    }
    let credential: CsrCredential;
    try {
      const peer = this.#peer(stream);
      const auth = headers['authorization'];
      if (peer !== undefined) credential = { kind: 'svid', chain: peer.chain };
      else if (typeof auth === 'string' && /^Bearer\s+\S+$/i.test(auth)) credential = { kind: 'bootstrap-token', token: auth.replace(/^Bearer\s+/i, '') };
      else {
        this.#reply(stream, 401, { code: 'ERR_CSR_UNAUTHENTICATED', error: 'no credential: present an SVID (TLS client certificate) or a bootstrap token (authorization: Bearer …)' });
        return;
      }
    } catch (err) {
      this.#reply(stream, 401, { code: 'ERR_CSR_UNAUTHENTICATED', error: `the client certificate is not an acceptable SVID: ${(err as Error).message}` });
      return;
    }
    try {
      const ttl = typeof body.ttlMs === 'number' ? body.ttlMs : this.#o.svidTtlMs;
      const request = { csr: body.csr, ...(ttl === undefined ? {} : { ttlMs: ttl }) };
      const reviewer = this.#o.tokenReviewer;
      const saToken = credential.kind === 'bootstrap-token' && reviewer !== undefined && isServiceAccountToken(credential.token) ? credential.token : undefined;
      const reviewed = saToken !== undefined;
      const issued = saToken !== undefined
        ? this.#o.ca.issue(request, await this.#reviewed(reviewer!, saToken))
        : await this.#o.ca.signCsr(request, credential);
      const by = reviewed ? 'service-account-token' : credential.kind;
      this.#o.log.info({ event: 'svid-signed', spiffeId: issued.spiffeId.uri, by, notAfter: issued.notAfter.toISOString() }, `signed an SVID for ${issued.spiffeId.uri} (${by})`);
      this.#reply(stream, 200, { chainPem: issued.chainPem, rootsPem: issued.rootsPem });
    } catch (err) {
      const unauthenticated = err instanceof BootstrapTokenError || err instanceof SvidError || (err instanceof CaError && err.code === 'ERR_CSR_UNAUTHENTICATED');
      const code = err instanceof RampartError ? err.code : 'ERR_CSR';
      this.#o.log.warn({ event: 'csr-refused', by: credential.kind, code, error: (err as Error).message }, `CSR refused: ${(err as Error).message}`);
      this.#reply(stream, unauthenticated ? 401 : 403, { code, error: (err as Error).message });
    }
  }

  /** The identity a Kubernetes token proves: that namespace and service account, in this mesh's trust domain, only. */
  async #reviewed(reviewer: NonNullable<ControlPlaneOptions['tokenReviewer']>, token: string): Promise<SpiffeId> {
    let who;
    try {
      who = await reviewer(token);
    } catch (err) {
      throw new CaError('ERR_CSR_UNAUTHENTICATED', `the service-account token could not be reviewed: ${(err as Error).message}`, { cause: err });
    }
    if (who === undefined) throw new CaError('ERR_CSR_UNAUTHENTICATED', 'the service-account token is not authenticated by the cluster (TokenReview, audience istio-ca)');
    return istioSpiffeId(this.#o.ca.trustDomain, who.namespace, who.serviceAccount);
  }

  #subscribe(stream: http2.ServerHttp2Stream): void {
    let peer;
    try {
      peer = this.#peer(stream);
    } catch (err) {
      this.#reply(stream, 401, { code: 'ERR_STREAM_UNAUTHENTICATED', error: (err as Error).message });
      return;
    }
    if (peer === undefined) {
      this.#reply(stream, 401, { code: 'ERR_STREAM_UNAUTHENTICATED', error: 'subscribing needs an SVID (TLS client certificate)' });
      return;
    }
    let sub: Subscriber | undefined;
    readLines(stream, MAX_PROXY_MESSAGE, (line) => {
      let msg: ProxyMessage;
      try {
        msg = JSON.parse(line) as ProxyMessage;
      } catch {
        this.#reply(stream, 400, { code: 'ERR_STREAM_MESSAGE', error: 'a message is not JSON' });
        return;
      }
      if (sub === undefined) {
        if (msg.type !== 'subscribe' || typeof msg.workload !== 'string') {
          this.#reply(stream, 400, { code: 'ERR_STREAM_MESSAGE', error: 'the first message must be {"type":"subscribe","workload":"NAMESPACE/NAME"}' });
          return;
        }
        const w = findWorkload(this.#state!.mesh, msg.workload);
        const expected = w === undefined ? undefined : istioSpiffeId(this.#o.ca.trustDomain, w.namespace, w.serviceAccount).uri;
        if (w === undefined || expected !== peer.id.uri) {
          const why = expected === undefined ? `workload ${msg.workload} is not in the mesh` : `workload ${msg.workload} runs as ${expected}, not ${peer.id.uri}`;
          this.#o.log.warn({ event: 'subscribe-refused', workload: msg.workload, identity: peer.id.uri, reason: why }, `subscription refused: ${why}`);
          this.#reply(stream, 403, { code: 'ERR_STREAM_FORBIDDEN', error: why });
          return;
        }
        const socket = stream.session?.socket;
        sub = {
          id: this.#nextId++, workload: w, identity: peer.id.uri, address: `${socket?.remoteAddress ?? '?'}:${socket?.remotePort ?? '?'}`, connectedAt: new Date(), stream,
          sentVersion: undefined, ackedVersion: undefined, state: 'PENDING', error: undefined, certNotAfter: peer.notAfter.toISOString(),
        };
        this.#subscribers.set(sub.id, sub);
        stream.respond({ ':status': 200, 'content-type': 'application/x-ndjson' });
        this.#o.log.info({ event: 'proxy-connected', proxy: sub.id, workload: msg.workload, identity: sub.identity, address: sub.address }, `proxy ${sub.id} (${msg.workload}) connected`);
        this.#push(sub);
        return;
      }
      if (msg.type === 'access') {
        // Reports from an authenticated proxy, about its own workload only: the workload is the subscription's.
        if (validReports(msg.entries)) this.decisions.add(`${sub.workload.namespace}/${sub.workload.name}`, sub.id, msg.entries, typeof msg.dropped === 'number' ? msg.dropped : 0);
        return;
      }
      if ((msg.type === 'ack' || msg.type === 'nack') && typeof msg.version === 'string') {
        if (typeof msg.certNotAfter === 'string') sub.certNotAfter = msg.certNotAfter;
        if (msg.type === 'ack') {
          sub.ackedVersion = msg.version;
          sub.state = msg.version === sub.sentVersion ? 'ACK' : sub.state;
          sub.error = undefined;
        } else {
          sub.state = 'NACK';
          sub.error = typeof msg.error === 'string' ? msg.error.slice(0, 4_096) : 'rejected';
          this.#o.log.warn({ event: 'proxy-nack', proxy: sub.id, workload: `${sub.workload.namespace}/${sub.workload.name}`, version: msg.version, error: sub.error }, `proxy ${sub.id} rejected version ${msg.version}: ${sub.error}`);
        }
      }
    }, (err) => {
      if (err !== undefined) this.#reply(stream, 400, { code: 'ERR_STREAM_MESSAGE', error: err.message });
    });
    stream.on('close', () => {
      if (sub === undefined) return;
      this.#subscribers.delete(sub.id);
      this.#o.log.info({ event: 'proxy-disconnected', proxy: sub.id, workload: `${sub.workload.namespace}/${sub.workload.name}` }, `proxy ${sub.id} disconnected`);
    });
  }

  /** Serialized snapshots of the current version by workload: proxies of one workload get the same bytes. */
  #lines = new Map<string, { version: string; line: string }>();

  #push(s: Subscriber): void {
    const state = this.#state!;
    const key = `${s.workload.namespace}/${s.workload.name}`;
    let cached = this.#lines.get(key);
    if (cached === undefined || cached.version !== String(state.version)) {
      const snap = proxySnapshot(state, s.workload, this.#o.ca.trustBundle.pem);
      cached = { version: snap.version, line: `${JSON.stringify({ type: 'snapshot', ...snap })}\n` };
      this.#lines.set(key, cached);
    }
    s.sentVersion = cached.version;
    if (s.ackedVersion !== cached.version) s.state = 'PENDING';
    // A proxy that does not read its stream would make the control plane buffer every version for it: past a
    // bound, its stream is closed; it reconnects and gets only the current version.
    if (s.stream.writableLength > (this.#o.maxBufferedPerProxy ?? MAX_BUFFERED_PER_PROXY)) {
      this.#o.log.warn({ event: 'proxy-too-slow', proxy: s.id, buffered: s.stream.writableLength }, `proxy ${s.id} is not reading its stream; closing it`);
      s.stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      return;
    }
    s.stream.write(cached.line);
  }

  /** What `rampart status` shows. */
  status(): StatusReport {
    const s = this.#state;
    const proxies: ProxyStatus[] = [...this.#subscribers.values()].map((p) => ({
      id: p.id,
      workload: `${p.workload.namespace}/${p.workload.name}`,
      identity: p.identity,
      address: p.address,
      connectedAt: p.connectedAt.toISOString(),
      sentVersion: p.sentVersion ?? null,
      ackedVersion: p.ackedVersion ?? null,
      state: p.state,
      error: p.error ?? null,
      certNotAfter: p.certNotAfter ?? null,
    }));
    return {
      version: s === undefined ? null : String(s.version),
      source: this.#o.source.description,
      lastChange: this.#lastChange?.toISOString() ?? null,
      sourceError: this.#lastReadError ?? null,
      rejected: s === undefined ? [] : s.diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic),
      rejectedFiles: s?.rejectedFiles ?? [],
      resources: s?.resources.length ?? 0,
      workloads: s?.mesh.workloads.map((w) => `${w.namespace}/${w.name}`) ?? [],
      proxies,
      controlPlane: { identity: this.identity.uri, port: this.port ?? null, certNotAfter: this.#svid?.notAfter.toISOString() ?? null },
    };
  }
}

/** The whole body of a request, up to `limit` bytes. */
function readBody(stream: http2.ServerHttp2Stream, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new Error(`larger than ${limit} bytes`));
        stream.destroy();
        return;
      }
      chunks.push(c);
    });
    stream.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    stream.on('error', reject);
  });
}

/** A Kubernetes service-account JWT (`sub: system:serviceaccount:NS:SA`), read without verifying: the cluster verifies it. */
function isServiceAccountToken(token: string): boolean {
  try {
    return /^system:serviceaccount:[^:]+:[^:]+$/.test(String(decodeJwt(token).sub));
  } catch {
    return false;
  }
}
