import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import tls, { TLSSocket, type TlsOptions } from 'node:tls';
import type { Duplex } from 'node:stream';
import { listenExplained } from '../io/listen.ts';
import type { JwtAuthenticator } from '../jwt/authenticator.ts';
import type { TrustBundle } from '../identity/trust-bundle.ts';
import { verifyTlsPeer } from '../identity/tls.ts';
import type { Decision } from '../policy/decision.ts';
import { formatDecision } from '../policy/explain.ts';
import type { PolicyEngine, WorkloadPolicy } from '../policy/engine.ts';
import type { MeshWorkload, WorkloadPort } from '../resources/mesh-file.ts';
import { H1Connection, resetReason, type H1Exchange } from './h1-connection.ts';
import { HttpDecisions, type ConnInfo, type LocalReply, type RequestContext } from './http-decision.ts';
import { h1ParserAvailable } from './h1-parser.ts';
import { peek } from './peek.ts';
import { authorityOf, closeAfter, distinctHeaders, grpcReply, isGrpc, isH2, type AnyRequest, type AnyResponse } from './request-view.ts';
import { readRequestTarget } from './request-target.ts';
import { H2HeaderCheck } from './h2-header-check.ts';

/**
 * One inbound listener of a sidecar: a workload port. The port's effective PeerAuthentication mode decides what a
 * connection may be (STRICT: mTLS only; PERMISSIVE: mTLS or plaintext, told apart by the first byte; DISABLE:
 * plaintext). HTTP requests go through the engine exactly as `rampart check` decides them (JWT, then CUSTOM, DENY,
 * ALLOW) and, when allowed, to the app on 127.0.0.1 over a keep-alive pool; TCP connections are decided on their
 * L4 fields and piped.
 */

/** What requests are decided against; replaced whole when the configuration changes. */
export interface InboundState {
  readonly version: string;
  /** The mesh file's debugHeaders (or the command line's). */
  readonly debugHeaders: boolean;
  readonly engine: PolicyEngine;
  readonly policy: WorkloadPolicy;
  readonly jwt: JwtAuthenticator | undefined;
}

/** The sidecar's TLS side; replaced whole when its SVID rotates or the trust bundle changes. */
export interface TlsState {
  /** serverTlsOptions of the current SVID and bundle. */
  readonly options: TlsOptions;
  readonly bundle: TrustBundle;
  /** This sidecar's own SPIFFE ID (`By=` of x-forwarded-client-cert). */
  readonly spiffeId: string;
}

/** One access-log entry: a request, or a TCP connection, or a connection refused before either. */
export interface AccessEntry {
  readonly kind: 'http' | 'tcp' | 'connection';
  readonly start: number;
  readonly durationMs: number;
  readonly port: number;
  readonly sourceIp: string | undefined;
  readonly sourcePrincipal: string | undefined;
  readonly mtls: boolean;
  readonly method?: string;
  readonly authority?: string;
  readonly path?: string;
  readonly status: number | undefined;
  /** Envoy's response flags: `-`, `UF` upstream connect failure, `UR` upstream reset, `DC` downstream closed, `UAEX` external authorizer denied, `NR` connection refused (no filter chain), `DPE` downstream protocol error. */
  readonly responseFlags: string;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  readonly requestPrincipal: string | undefined;
  readonly decision: 'ALLOW' | 'DENY';
  readonly decidedBy: Decision['decidedBy'] | 'connection';
  readonly policy: string | null;
  readonly rule: number | null;
  readonly reason: string;
  readonly requestId: string | undefined;
  readonly configVersion: string;
  /**
   * For a denial: the decision again with its trace, as `rampart check` prints it. Computed only when called (the
   * sidecar calls it for the control plane's console, within its reporting budget); JSON leaves it out of log lines.
   */
  readonly explain?: () => string;
}

export interface InboundLimits {
  /** Time allowed for a client's first byte and for each idle gap on a connection. */
  readonly idleTimeoutMs: number;
  /** Time allowed for the request headers (slow clients are cut off). */
  readonly headersTimeoutMs: number;
  /** Time allowed for a whole request, body included. */
  readonly requestTimeoutMs: number;
  readonly maxHeaderBytes: number;
  readonly maxHeaders: number;
  /** Time allowed for the TLS handshake. */
  readonly handshakeTimeoutMs: number;
  /** Open downstream connections per listener; beyond it new ones are closed at once. */
  readonly maxConnections: number;
  /** Idle time allowed on a proxied TCP connection (Envoy's tcp_proxy default: 1 h). */
  readonly tcpIdleTimeoutMs: number;
}

export const DEFAULT_LIMITS: InboundLimits = {
  idleTimeoutMs: 60_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  maxHeaderBytes: 60 * 1024,
  maxHeaders: 100,
  handshakeTimeoutMs: 10_000,
  maxConnections: 10_000,
  tcpIdleTimeoutMs: 3_600_000,
};

export interface InboundOptions {
  readonly workload: MeshWorkload;
  readonly port: WorkloadPort;
  /** Address to listen on. */
  readonly host: string;
  readonly state: () => InboundState;
  readonly tls: () => TlsState | undefined;
  readonly onAccess: (entry: AccessEntry) => void;
  readonly limits?: Partial<InboundLimits>;
  /** An allowed TCP connection was opened to the app (its access entry comes when it closes). */
  readonly onTcpOpen?: (sourcePrincipal: string | undefined, mtls: boolean) => void;
  /** How to reach an external authorizer (the sidecar's outbound: mTLS in the mesh, the outbound policy outside). */
  readonly connect?: (host: string, port: number) => Promise<Duplex>;
}


const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-authorization', 'x-forwarded-client-cert']);

/** Headers as node:http presents them (lower-cased; repeated ones as a list, set-cookie always), for the authorizer. */
function nodeHeaders(raw: readonly string[]): http.IncomingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    const v = raw[i + 1]!;
    const prev = out[k];
    out[k] = prev === undefined ? (k === 'set-cookie' ? [v] : v) : Array.isArray(prev) ? [...prev, v] : `${prev}, ${v}`;
  }
  return out;
}

const HTTP_START = /^(?:GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH|CONNECT|TRACE) /;
/** The HTTP/2 connection preface's first bytes (prior knowledge h2c, or h2 inside the sidecars' mTLS). */
const H2_PREFACE = 'PRI * HTTP/2.0';

export class InboundListener {
  readonly #o: InboundOptions;
  /** Decisions, denials, upstream edits and access entries of HTTP requests (shared with in-process enforcement). */
  readonly #d: HttpDecisions;
  readonly #limits: InboundLimits;
  readonly #server: net.Server;
  readonly #http: http.Server;
  readonly #conns = new WeakMap<object, ConnInfo>();
  readonly #agent: http.Agent;
  readonly #open = new Set<Duplex>();
  /** Terminates mTLS for connections handed to it; its context follows the TLS state (rotation). */
  #tlsServer: tls.Server | undefined;
  #tlsFor: TlsState | undefined;
  /** HTTP/2 downstream (h2c by prior knowledge, in or out of mTLS). */
  readonly #h2: http2.Http2Server;
  /** Each HTTP/2 session's header check, and the one being handed over with #h2Next. */
  readonly #h2Checks = new WeakMap<http2.ServerHttp2Session, H2HeaderCheck>();
  #h2NextCheck: H2HeaderCheck | undefined;
  /** The connection being handed to #h2 (its 'session' event fires synchronously inside the hand-over). */
  #h2Next: ConnInfo | undefined;
  /** One multiplexed h2c session to the app, for http2 and grpc ports. */
  #h2Up: http2.ClientHttp2Session | undefined;
  /** HTTP/1.1 connections served by h1-connection.ts, and the timer that enforces their time limits. */
  readonly #h1Conns = new Set<H1Connection>();
  #h1Timer: NodeJS.Timeout | undefined;

  constructor(options: InboundOptions) {
    this.#o = options;
    this.#d = new HttpDecisions(options);
    this.#limits = { ...DEFAULT_LIMITS, ...options.limits };
    // noDelay: without it Nagle holds the body behind the headers until the app's delayed ACK (tens of ms).
    this.#agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo', noDelay: true } as http.AgentOptions);
    this.#http = http.createServer({
      requestTimeout: this.#limits.requestTimeoutMs,
      headersTimeout: this.#limits.headersTimeoutMs,
      maxHeaderSize: this.#limits.maxHeaderBytes,
      keepAliveTimeout: this.#limits.idleTimeoutMs,
      // llhttp's strict mode stays on: both Content-Length and Transfer-Encoding, bad chunking and other smuggling
      // shapes are refused with 400 before a request event.
      insecureHTTPParser: false,
      // Node checks the two timeouts above on this interval (30 s by default, too coarse for short limits).
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(Math.min(this.#limits.headersTimeoutMs, this.#limits.requestTimeoutMs) / 2))),
    }, (req, res) => this.#onRequest(req, res));
    // Node would silently drop headers beyond maxHeadersCount, and a dropped header could hide what a DENY rule looks
    // for: count them here instead and refuse the request (431).
    this.#http.maxHeadersCount = 0;
    this.#http.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#onClientError(err, socket));
    this.#h2 = http2.createServer({ settings: { maxHeaderListSize: this.#limits.maxHeaderBytes } });
    this.#h2.on('session', (session: http2.ServerHttp2Session) => {
      if (this.#h2Next !== undefined) this.#conns.set(session, this.#h2Next);
      if (this.#h2NextCheck !== undefined) this.#h2Checks.set(session, this.#h2NextCheck);
      session.setTimeout(this.#limits.idleTimeoutMs, () => session.close());
      session.on('error', () => session.destroy());
    });
    this.#h2.on('request', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => this.#onRequest(req, res));
    this.#server = net.createServer({ noDelay: true }, (socket) => void this.#onConnection(socket));
    this.#server.maxConnections = this.#limits.maxConnections;
    // Node closes a connection beyond the limit before any callback; without this the flood would leave no trace.
    this.#server.on('drop', (data?: net.DropArgument) => this.#d.refusal('connection', Date.now(), { sourceIp: data?.remoteAddress }, undefined, 'NR',
      `connection limit of ${this.#limits.maxConnections} reached`));
  }

  /** The port it listens on; undefined when it does not listen itself (its connections come through `accept`). */
  get port(): number | undefined {
    return (this.#server.address() as net.AddressInfo | null)?.port;
  }

  listen(): Promise<void> {
    const w = this.#o.workload;
    return listenExplained(this.#server, this.#o.port.port, this.#o.host, {
      what: `the inbound port ${this.#o.port.port} of ${w.namespace}/${w.name}`,
      movedBy: `the address and ports of workload ${w.namespace}/${w.name} in the mesh file (or --host)`,
    });
  }

  /**
   * A connection accepted elsewhere for this port (a captured one: traffic capture sends every inbound connection to
   * one port, and its original destination names the workload port), handled as if this listener had accepted it.
   */
  accept(socket: net.Socket): void {
    void this.#onConnection(socket);
  }

  /** Stops accepting; open connections are closed once idle (in-flight requests finish). */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#http.closeIdleConnections();
      for (const c of this.#h1Conns) c.closeWhenIdle();
      for (const s of this.#open) if (!this.#busy(s)) s.destroy();
      setTimeout(() => {
        for (const s of this.#open) s.destroy();
      }, 5_000).unref();
    });
    if (this.#h1Timer !== undefined) clearInterval(this.#h1Timer);
    this.#agent.destroy();
  }

  #busy(s: Duplex): boolean {
    for (const c of this.#h1Conns) if (c.socket === s) return c.busy;
    return (s as Duplex & { _httpMessage?: unknown })._httpMessage !== undefined && (s as Duplex & { _httpMessage?: unknown })._httpMessage !== null;
  }

  async #onConnection(socket: net.Socket): Promise<void> {
    const start = Date.now();
    socket.setTimeout(this.#limits.idleTimeoutMs, () => socket.destroy());
    socket.on('error', () => socket.destroy());
    this.#open.add(socket);
    socket.once('close', () => this.#open.delete(socket));
    const first = await peek(socket, this.#limits.idleTimeoutMs);
    if (first === null) {
      socket.destroy();
      return;
    }
    const mode = this.#o.state().policy.mtls.modeFor(this.#o.port.port);
    const isTls = first[0] === 0x16;
    const tlsState = this.#o.tls();
    const base = { sourceIp: socket.remoteAddress, localIp: socket.localAddress };
    if (isTls && mode !== 'DISABLE') {
      if (tlsState === undefined) {
        this.#refuse(socket, start, 'no SVID yet: mTLS cannot be terminated');
        return;
      }
      // From here the TLS socket carries the timeouts (the handshake's, then the idle one).
      socket.setTimeout(0);
      this.#tlsServerFor(tlsState).emit('connection', socket);
      return;
    }
    if (!isTls && mode === 'STRICT') {
      this.#refuse(socket, start, 'plaintext connection refused: mTLS mode is STRICT');
      return;
    }
    this.#conns.set(socket, { ...base, peer: undefined, peerCertDer: undefined, mtls: false });
    void this.#dispatch(socket, start);
  }

  /** A node:tls server used only to terminate: it checks the chain against the bundle (socket.authorized). */
  #tlsServerFor(state: TlsState): tls.Server {
    if (this.#tlsServer === undefined) {
      const server = tls.createServer({ ...state.options, handshakeTimeout: this.#limits.handshakeTimeoutMs, ALPNProtocols: ['http/1.1'] });
      server.on('secureConnection', (t: TLSSocket) => this.#onSecure(t, this.#tlsFor ?? state));
      server.on('tlsClientError', (err: Error, t: TLSSocket) => {
        this.#refuse(t, Date.now(), `TLS handshake failed: ${err.message}`, t.remoteAddress);
      });
      this.#tlsServer = server;
    } else if (state !== this.#tlsFor) {
      // A rotated SVID or a new bundle: new handshakes use it, established connections keep theirs.
      this.#tlsServer.setSecureContext({ ...state.options });
    }
    this.#tlsFor = state;
    return this.#tlsServer;
  }

  #onSecure(t: TLSSocket, state: TlsState): void {
    const start = Date.now();
    t.setTimeout(this.#limits.idleTimeoutMs, () => t.destroy());
    t.on('error', () => t.destroy());
    this.#open.add(t);
    t.once('close', () => this.#open.delete(t));
    let peer: string;
    try {
      peer = verifyTlsPeer(t, state.bundle, 'client').spiffeId.uri;
    } catch (err) {
      this.#refuse(t, start, `mTLS peer rejected: ${(err as Error).message}`, t.remoteAddress);
      return;
    }
    const cert = t.getPeerCertificate(false);
    this.#conns.set(t, { sourceIp: t.remoteAddress, localIp: t.localAddress, peer, peerCertDer: cert.raw, mtls: true, sni: typeof t.servername === 'string' ? t.servername : undefined });
    void this.#dispatch(t, start);
  }

  /**
   * HTTP or TCP by the port's protocol, or by the first bytes when it is not declared; an HTTP connection is HTTP/2
   * when it opens with the HTTP/2 preface (Envoy's inbound codec is AUTO too), HTTP/1.1 otherwise.
   */
  async #dispatch(stream: Duplex, start: number): Promise<void> {
    let protocol = this.#o.port.protocol;
    let h2 = false;
    if (protocol !== 'TCP') {
      const first = await peek(stream, this.#limits.idleTimeoutMs);
      if (first === null) {
        stream.destroy();
        return;
      }
      const head = first.subarray(0, 14).toString('latin1');
      h2 = H2_PREFACE.startsWith(head) || head.startsWith(H2_PREFACE);
      if (protocol === 'DETECT') protocol = h2 || HTTP_START.test(head) ? 'HTTP' : 'TCP';
    }
    if (protocol === 'TCP') this.#tcp(stream, start);
    else if (h2) {
      // Not resumed: node:http2 reads the peeked bytes still buffered in the stream itself (stream.read()).
      // node:http2 falls back to HTTP/1.1 when a TLS socket's ALPN was not h2. The sidecars' mTLS is a transport
      // that may carry either, chosen by the preface just read, so the socket is marked as what it carries.
      if (stream instanceof TLSSocket && stream.alpnProtocol !== 'h2') (stream as { alpnProtocol: string | false | null }).alpnProtocol = 'h2';
      this.#h2Next = this.#conns.get(stream);
      // node:http2 reads through the header check, which sees every field as sent (Node drops invalid ones).
      this.#h2NextCheck = new H2HeaderCheck(stream, { maxHeaderBlockBytes: Math.max(64 * 1024, 4 * this.#limits.maxHeaderBytes) });
      try {
        this.#h2.emit('connection', this.#h2NextCheck);
      } finally {
        this.#h2Next = undefined;
        this.#h2NextCheck = undefined;
      }
    } else if (h1ParserAvailable && protocol !== 'HTTP2' && protocol !== 'GRPC') {
      this.#h1(stream);
    } else {
      stream.resume();
      this.#http.emit('connection', stream);
    }
  }

  #refuse(stream: Duplex, start: number, reason: string, sourceIp?: string): void {
    this.#d.refusal('connection', start, { sourceIp: sourceIp ?? (stream as net.Socket).remoteAddress }, undefined, 'NR', reason);
    reset(stream);
  }

  #tcp(stream: Duplex, start: number): void {
    const info = this.#conns.get(stream)!;
    const st = this.#o.state();
    const prepared = st.engine.prepare(this.#d.checkRequest(info));
    const d = st.policy.decide(prepared);
    let received = 0;
    let sent = 0;
    const log = (flags: string): void =>
      this.#o.onAccess({
        kind: 'tcp', start, durationMs: Date.now() - start, port: this.#o.port.port, sourceIp: info.sourceIp, sourcePrincipal: info.peer, mtls: info.mtls,
        status: undefined, responseFlags: flags, bytesReceived: received, bytesSent: sent, requestPrincipal: undefined, decision: d.decision,
        decidedBy: d.decidedBy, policy: d.policy, rule: d.rule, reason: d.reason, requestId: undefined, configVersion: st.version,
        ...(d.decision === 'DENY' ? { explain: () => formatDecision(st.policy.decide(prepared, { trace: true })) } : {}),
      });
    if (d.decision === 'DENY') {
      log('-');
      reset(stream);
      return;
    }
    (stream as net.Socket).setTimeout(this.#limits.tcpIdleTimeoutMs, () => stream.destroy());
    this.#o.onTcpOpen?.(info.peer, info.mtls);
    const up = net.connect({ host: '127.0.0.1', port: this.#o.port.targetPort, noDelay: true });
    let connected = false;
    up.once('connect', () => (connected = true));
    stream.on('data', (c: Buffer) => (received += c.length));
    up.on('data', (c: Buffer) => (sent += c.length));
    stream.pipe(up);
    up.pipe(stream);
    let logged = false;
    const finish = (flags: string): void => {
      if (logged) return;
      logged = true;
      log(flags);
      stream.destroy();
      up.destroy();
    };
    up.on('error', () => finish(connected ? '-' : 'UF'));
    stream.on('error', () => finish('DC'));
    up.on('close', () => finish(connected ? '-' : 'UF'));
    stream.on('close', () => finish('-'));
    stream.resume();
  }

  #onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const code = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const text = code === 431 ? 'Request Header Fields Too Large' : code === 408 ? 'Request Timeout' : 'Bad Request';
    socket.end(`HTTP/1.1 ${code} ${text}\r\ncontent-type: text/plain\r\ncontent-length: ${text.length}\r\nconnection: close\r\n\r\n${text}`);
    this.#d.refusal('http', Date.now(), this.#conns.get(socket), code, 'DPE', `malformed HTTP (${err.code ?? err.message})`);
  }

  #infoOf(req: AnyRequest): ConnInfo {
    const info = isH2(req) ? this.#conns.get(req.stream.session as object) : this.#conns.get(req.socket);
    return info ?? { peer: undefined, peerCertDer: undefined, mtls: false, sourceIp: req.socket.remoteAddress, localIp: req.socket.localAddress };
  }


  // --- HTTP/1.1 without node:http (h1-connection.ts) ---

  #h1(stream: Duplex): void {
    const info = this.#conns.get(stream)!;
    const l = this.#limits;
    const conn: H1Connection = new H1Connection(stream, {
      maxHeaderBytes: l.maxHeaderBytes, headersTimeoutMs: l.headersTimeoutMs, requestTimeoutMs: l.requestTimeoutMs, tunnelIdleTimeoutMs: l.tcpIdleTimeoutMs,
      target: { host: '127.0.0.1', port: this.#o.port.targetPort },
      handler: {
        request: (ex) => this.#onH1Request(ex, info),
        protocolError: (_err, status, reason) => this.#d.refusal('http', Date.now(), info, status, 'DPE', reason),
      },
      onClose: () => this.#h1Conns.delete(conn),
    });
    this.#h1Conns.add(conn);
    if (this.#h1Timer === undefined) {
      // One timer per listener checks every connection's header and request limits (no timer per request).
      this.#h1Timer = setInterval(() => {
        const now = Date.now();
        for (const c of this.#h1Conns) c.check(now);
      }, Math.max(50, Math.min(1_000, Math.floor(Math.min(l.headersTimeoutMs, l.requestTimeoutMs) / 4))));
      this.#h1Timer.unref();
    }
    stream.removeAllListeners('timeout');
    stream.on('timeout', () => conn.onIdle());
    stream.resume();
  }

  #onH1Request(ex: H1Exchange, info: ConnInfo): void {
    const start = ex.start;
    const head = ex.head;
    const raw = head.rawHeaders;
    const refuse = (status: 400 | 426 | 431, body: string, reason: string, authority = ''): void => {
      ex.reply({ status, headers: { 'content-type': 'text/plain' }, body, close: true });
      this.#d.refusal('http', start, info, status, 'DPE', reason, { method: head.method, authority, path: head.url, bytesSent: ex.bytesSent });
    };
    if (head.versionMajor !== 1 || head.versionMinor !== 1) {
      // Envoy's HTTP/1 codec refuses HTTP/1.0 unless accept_http_10 is set, which Istio leaves off by default.
      refuse(426, 'Upgrade Required', `HTTP/${head.versionMajor}.${head.versionMinor} is not accepted`);
      return;
    }
    if (raw.length / 2 > this.#limits.maxHeaders) {
      refuse(431, 'Request Header Fields Too Large', `${raw.length / 2} headers (at most ${this.#limits.maxHeaders})`);
      return;
    }
    // Lower-cased names, repeated headers joined with "," as Envoy does; the engine also gets each copy of a
    // repeated header (token locations take every copy as a token of its own).
    const headers: Record<string, string> = Object.create(null) as Record<string, string>;
    let copies: Record<string, string[]> | undefined;
    let hosts = 0;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      const prev = headers[name];
      if (prev === undefined) headers[name] = raw[i + 1]!;
      else {
        headers[name] = `${prev},${raw[i + 1]!}`;
        copies ??= Object.create(null) as Record<string, string[]>;
        (copies[name] ??= [prev]).push(raw[i + 1]!);
      }
      if (name === 'host') hosts++;
    }
    // Two Host headers leave the authority ambiguous, and HTTP/1.1 requires one (node:http refuses both too).
    if (hosts !== 1) {
      refuse(400, 'Bad Request', hosts > 1 ? 'more than one Host header' : 'HTTP/1.1 request without Host', headers['host']);
      return;
    }
    // An absolute-form target names the authority: it replaces Host, for the decision and upstream alike.
    const target = readRequestTarget(head.url);
    if (!target.ok) {
      refuse(400, 'Bad Request', target.reason, headers['host']);
      return;
    }
    const authority = target.authority ?? headers['host'];
    if (head.method === 'CONNECT') {
      refuse(400, 'Bad Request', 'CONNECT is not accepted on an inbound port', authority);
      return;
    }
    if (target.authority !== undefined) headers['host'] = target.authority;
    const { ctx, d } = this.#d.decideHttp(info, start, head.method, authority, target.path, copies === undefined ? headers : { ...headers, ...copies }, headers['x-request-id']);
    this.#d.authorize(ctx, d, () => ({ method: ctx.method, path: this.#d.forwardPath(ctx), headers: target.authority === undefined ? nodeHeaders(raw) : { ...nodeHeaders(raw), host: target.authority } }),
      (final, upstreamExtra, downstreamExtra) => this.#finishH1(ex, ctx, final, upstreamExtra, downstreamExtra),
      (denied, answer, reason, debug) => {
        ex.reply({ status: answer.status, headers: { ...answer.headers, ...debug }, body: answer.body });
        ctx.sent = ex.bytesSent;
        ctx.received = ex.bytesReceived;
        this.#d.log(ctx, denied, answer.status, reason);
      });
  }

  #finishH1(ex: H1Exchange, ctx: RequestContext, d: Decision, upstreamExtra?: Readonly<Record<string, string>>, downstreamExtra?: Readonly<Record<string, string>>): void {
    if (d.decision === 'DENY') {
      const r = this.#d.denial(ctx, d);
      if (r === null) {
        // The mode changed to STRICT under an open plaintext connection: refuse as a new one would be.
        this.#d.log(ctx, d, undefined);
        ex.destroyConnection();
        return;
      }
      ex.reply(r);
      ctx.sent = ex.bytesSent;
      ctx.received = ex.bytesReceived;
      this.#d.log(ctx, d, r.status);
      return;
    }
    const { remove, set } = this.#d.upstreamEdits(ctx, upstreamExtra);
    let head = `${ctx.method} ${this.#d.forwardPath(ctx)} HTTP/1.1\r\n`;
    const raw = ex.head.rawHeaders;
    // The authority decided on is the one the app gets (it differs from Host for an absolute-form target).
    const hostFromTarget = ctx.authority !== undefined && !ex.head.url.startsWith('/');
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower) || lower in set || (remove.length > 0 && remove.includes(lower))) continue;
      if (hostFromTarget && lower === 'host') {
        head += `host: ${ctx.authority!}\r\n`;
        continue;
      }
      head += `${name}: ${raw[i + 1]!}\r\n`;
    }
    for (const k in set) head += `${k}: ${set[k]!}\r\n`;
    if (ex.webSocket) head += 'connection: upgrade\r\nupgrade: websocket\r\n';
    let responseHeaders = '';
    if (downstreamExtra !== undefined) for (const k in downstreamExtra) responseHeaders += `${k}: ${downstreamExtra[k]!}\r\n`;
    ex.forward({
      head, responseHeaders,
      failure: (reason) => this.#upstreamFailure(ctx, reason),
      end: (e) => {
        ctx.flags = e.flags;
        ctx.sent = ex.bytesSent;
        ctx.received = ex.bytesReceived;
        this.#d.log(ctx, d, e.status);
      },
    });
  }

  // --- node:http (HTTP/1.1 on http2 and grpc ports, or where the parser is not available) and node:http2 ---

  #onRequest(req: AnyRequest, res: AnyResponse): void {
    const start = Date.now();
    if (isH2(req)) {
      const malformed = this.#h2Checks.get(req.stream.session as http2.ServerHttp2Session)?.malformed;
      const id = req.stream.id ?? 0;
      const why = malformed?.get(id);
      if (why !== undefined) {
        // Envoy resets a stream whose header fields are malformed (RFC 9113 §8.2.1): never decided, never forwarded.
        malformed!.delete(id);
        req.stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
        this.#d.refusal('http', start, this.#infoOf(req), undefined, 'DPE', why, { method: req.method ?? 'GET', authority: authorityOf(req) ?? '', path: req.url ?? '/' });
        return;
      }
    }
    const headerCount = isH2(req) ? Object.keys(req.headers).filter((k) => !k.startsWith(':')).length : req.rawHeaders.length / 2;
    if (headerCount > this.#limits.maxHeaders) {
      const body = 'Request Header Fields Too Large';
      res.writeHead(431, { 'content-type': 'text/plain', 'content-length': String(body.length), ...(isH2(req) ? {} : { connection: 'close' }) }).end(body);
      if (!isH2(req)) res.once('finish', () => req.socket.destroySoon());
      this.#d.refusal('http', start, this.#infoOf(req), 431, 'DPE', `${headerCount} headers (at most ${this.#limits.maxHeaders})`,
        { method: req.method ?? 'GET', authority: authorityOf(req) ?? '', path: req.url ?? '/', bytesSent: body.length });
      return;
    }
    const headers = req.headers;
    const requestId = typeof headers['x-request-id'] === 'string' ? headers['x-request-id'] : undefined;
    // HTTP/1.1 only: an absolute-form target names the authority (h2 has :authority and an origin-form :path).
    const target = isH2(req) ? { ok: true as const, path: req.url ?? '/', authority: undefined } : readRequestTarget(req.url ?? '/');
    if (!target.ok) {
      const body = 'Bad Request';
      res.writeHead(400, { 'content-type': 'text/plain', 'content-length': String(body.length), connection: 'close' }).end(body);
      res.once('finish', () => req.socket.destroySoon());
      this.#d.refusal('http', start, this.#infoOf(req), 400, 'DPE', target.reason, { method: req.method ?? 'GET', authority: authorityOf(req) ?? '', path: req.url ?? '/', bytesSent: body.length });
      return;
    }
    const authority = target.authority ?? authorityOf(req);
    // Each repeated header as its list, so that the engine joins them with "," as Envoy does (Node's
    // req.headers joins most with ", ").
    const distinct = distinctHeaders(req);
    if (target.authority !== undefined) distinct['host'] = [target.authority];
    const { ctx, d } = this.#d.decideHttp(this.#infoOf(req), start, req.method ?? 'GET', authority, target.path, distinct, requestId);
    req.on('data', (c: Buffer) => (ctx.received += c.length));
    if (d.decidedBy === 'custom') req.pause();
    this.#d.authorize(ctx, d, () => ({ method: ctx.method, path: this.#d.forwardPath(ctx), headers: authority !== undefined ? { ...headers, host: authority } : headers }),
      (final, upstreamExtra, downstreamExtra) => this.#finish(req, res, ctx, final, upstreamExtra, downstreamExtra),
      (denied, answer, reason, debug) => {
        this.#d.log(ctx, denied, answer.status, reason);
        ctx.sent = Buffer.byteLength(answer.body);
        if (isGrpc(req)) grpcReply(res, answer.status, answer.body || `denied by CUSTOM provider "${denied.customProvider ?? ''}"`, debug);
        else res.writeHead(answer.status, { ...answer.headers, 'content-length': String(ctx.sent), ...debug }).end(answer.body);
        closeAfter(req, res);
      });
  }

  /** Answers a denial, or forwards an allowed request to the app (with extra headers from an external authorizer). */
  #finish(req: AnyRequest, res: AnyResponse, ctx: RequestContext, d: Decision, upstreamExtra?: Readonly<Record<string, string>>, downstreamExtra: Readonly<Record<string, string>> = {}): void {
    if (d.decision === 'DENY') {
      const r = this.#d.denial(ctx, d);
      if (r === null) {
        // The mode changed to STRICT under an open plaintext connection: refuse as a new one would be.
        this.#d.log(ctx, d, undefined);
        if (isH2(req)) req.stream.session?.destroy();
        else req.socket.destroy();
        return;
      }
      ctx.sent = Buffer.byteLength(r.body);
      if (isGrpc(req)) {
        // gRPC clients read the status from trailers: a local reply is HTTP 200 with grpc-status, as Envoy sends it.
        const { 'content-type': _ct, ...rest } = r.headers;
        grpcReply(res, r.status, r.body, rest);
      } else res.writeHead(r.status, { ...r.headers, 'content-length': String(ctx.sent) }).end(r.body);
      closeAfter(req, res);
      this.#d.log(ctx, d, r.status);
      return;
    }

    const { remove, set } = this.#d.upstreamEdits(ctx, upstreamExtra);
    const out: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && !k.startsWith(':') && v !== undefined) out[k] = v;
    for (const h of remove) delete out[h];
    Object.assign(out, set);
    const path = this.#d.forwardPath(ctx);
    const p = this.#o.port.protocol;
    if (p === 'HTTP2' || p === 'GRPC' || (p === 'DETECT' && isH2(req))) {
      this.#forwardH2(req, res, ctx, d, out, path, downstreamExtra);
      return;
    }
    // h2's :authority, or an absolute-form target's authority, is the Host the app gets.
    if (ctx.authority !== undefined) out['host'] = ctx.authority;
    const up = http.request({ host: '127.0.0.1', port: this.#o.port.targetPort, method: req.method, path, headers: out, agent: this.#agent });
    up.on('response', (ur) => {
      const rh: http.OutgoingHttpHeaders = { ...downstreamExtra };
      for (const [k, v] of Object.entries(ur.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) rh[k] = v;
      res.writeHead(ur.statusCode ?? 502, rh);
      ur.on('data', (c: Buffer) => (ctx.sent += c.length));
      ur.pipe(res);
      ur.on('error', () => res.destroy());
      res.once('finish', () => this.#d.log(ctx, d, ur.statusCode));
    });
    up.on('error', (err: NodeJS.ErrnoException) => this.#upstreamError(req, res, ctx, d, resetReason(err)));
    res.once('close', () => {
      if (!res.writableFinished) {
        ctx.flags = 'DC';
        up.destroy();
      }
    });
    req.pipe(up);
    req.resume();
  }

  /** Envoy's local reply when the app cannot be reached before its response began (flag UF). */
  #upstreamFailure(ctx: RequestContext, reason: string): LocalReply {
    return {
      status: 503, headers: { 'content-type': 'text/plain', ...(ctx.st.debugHeaders ? { 'x-rampart-request-id': ctx.requestId } : {}) },
      body: `upstream connect error or disconnect/reset before headers. reset reason: ${reason}`,
    };
  }

  /** The app's side failed on the node:http or node:http2 path: a reset once the response began (UR), else 503 (UF). */
  #upstreamError(req: AnyRequest, res: AnyResponse, ctx: RequestContext, d: Decision, reason: string): void {
    if (res.headersSent) {
      ctx.flags = 'UR';
      res.destroy();
      this.#d.log(ctx, d, res.statusCode);
      return;
    }
    ctx.flags = 'UF';
    const r = this.#upstreamFailure(ctx, reason);
    ctx.sent = Buffer.byteLength(r.body);
    if (isGrpc(req)) grpcReply(res, r.status, r.body, {});
    else res.writeHead(r.status, { ...r.headers, 'content-length': String(ctx.sent) }).end(r.body);
    this.#d.log(ctx, d, r.status);
  }


  #h2Session(): http2.ClientHttp2Session {
    const cur = this.#h2Up;
    if (cur !== undefined && !cur.closed && !cur.destroyed) return cur;
    const s = http2.connect(`http://127.0.0.1:${this.#o.port.targetPort}`);
    s.on('error', () => undefined);
    s.on('close', () => {
      if (this.#h2Up === s) this.#h2Up = undefined;
    });
    s.unref();
    this.#h2Up = s;
    return s;
  }

  /** http2 and grpc ports: the request goes to the app over one multiplexed h2c session, trailers included. */
  #forwardH2(req: AnyRequest, res: AnyResponse, ctx: RequestContext, d: Decision, out: http.OutgoingHttpHeaders, path: string, downstreamExtra: Readonly<Record<string, string>>): void {
    const { host, ...rest } = out;
    const te = req.headers['te'];
    const up = this.#h2Session().request({
      ...rest,
      ':method': req.method ?? 'GET', ':path': path, ':scheme': 'http', ':authority': ctx.authority ?? String(host ?? 'localhost'),
      // gRPC needs "te: trailers"; any other te is hop-by-hop.
      ...(te === 'trailers' ? { te: 'trailers' } : {}),
    });
    up.on('response', (rh) => {
      const status = Number(rh[':status'] ?? 502);
      const copy: http.OutgoingHttpHeaders = { ...downstreamExtra };
      for (const [k, v] of Object.entries(rh)) if (!k.startsWith(':') && !HOP_BY_HOP.has(k) && v !== undefined) copy[k] = v;
      res.writeHead(status, copy);
      up.on('data', (c: Buffer) => (ctx.sent += c.length));
      up.pipe(res as NodeJS.WritableStream);
      res.once('finish', () => this.#d.log(ctx, d, status));
    });
    up.on('trailers', (t) => {
      const copy: Record<string, string> = {};
      for (const [k, v] of Object.entries(t)) if (!k.startsWith(':') && v !== undefined) copy[k] = Array.isArray(v) ? v.join(',') : String(v);
      res.addTrailers(copy);
    });
    // The h2c session reports why it failed on itself; the stream only sees that it did.
    up.on('error', () => this.#upstreamError(req, res, ctx, d, 'connection failure'));
    res.once('close', () => {
      if (!res.writableFinished) {
        ctx.flags = 'DC';
        up.close(http2.constants.NGHTTP2_CANCEL);
      }
    });
    req.pipe(up);
    req.resume();
  }
}

/** A reset where the transport allows one (plain TCP), as Envoy resets refused and denied connections. */
function reset(stream: Duplex): void {
  const sock = stream as net.Socket;
  if (typeof sock.resetAndDestroy === 'function' && !(stream instanceof TLSSocket)) sock.resetAndDestroy();
  else stream.destroy();
}
