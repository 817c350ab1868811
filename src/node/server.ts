import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import tls, { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { peek } from '../proxy/peek.ts';
import type { Sidecar } from '../proxy/sidecar.ts';
import type { TlsState } from '../proxy/inbound.ts';
import { DEFAULT_LIMITS } from '../proxy/inbound.ts';
import type { AnyRequest, AnyResponse } from '../proxy/request-view.ts';

/**
 * The app's own server for a workload port, accepting what the port's PeerAuthentication accepts on one socket, as
 * the sidecar's inbound listener does: a first byte 0x16 is TLS (terminated here with the workload's current SVID,
 * rotated without touching open connections), anything else plaintext; HTTP/2 by its preface (ALPN h2, or prior
 * knowledge in or out of TLS), HTTP/1.1 otherwise. Every request goes through `handle` (the enforcer) before the
 * app's handler.
 */

const H2_PREFACE = 'PRI * HTTP/2.0';

/**
 * The app: a node:http handler (an Express app is one), or one that also takes node:http2's compatibility requests
 * (what HTTP/2 clients arrive as).
 */
export type AppHandler = ((req: http.IncomingMessage, res: http.ServerResponse) => void) | ((req: AnyRequest, res: AnyResponse) => void);

export class InProcessServer {
  /** The listening socket: `listen()` it as any node:net server. */
  readonly server: net.Server;
  readonly #tls: tls.Server;
  readonly #h1: http.Server;
  readonly #h2: http2.Http2Server;
  readonly #open = new Set<Duplex>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  #tlsFor: TlsState | undefined;
  readonly #unsubscribe: () => void;

  constructor(sidecar: Sidecar, app: AppHandler) {
    const handler = app as (req: AnyRequest, res: AnyResponse) => void;
    const current = sidecar.tls;
    // Created with no certificate when there is none yet: a handshake then fails, as the sidecar's would.
    this.#tls = tls.createServer({ ...(current?.options ?? {}), handshakeTimeout: DEFAULT_LIMITS.handshakeTimeoutMs, ALPNProtocols: ['h2', 'http/1.1'] });
    this.#tlsFor = current;
    this.#unsubscribe = sidecar.onTlsChange((t) => this.#rotate(t));
    this.#tls.on('secureConnection', (t: TLSSocket) => void this.#dispatch(t));
    this.#tls.on('tlsClientError', (_err: Error, t: TLSSocket) => t.destroy());
    this.#h1 = http.createServer({
      headersTimeout: DEFAULT_LIMITS.headersTimeoutMs, requestTimeout: DEFAULT_LIMITS.requestTimeoutMs,
      keepAliveTimeout: DEFAULT_LIMITS.idleTimeoutMs, maxHeaderSize: DEFAULT_LIMITS.maxHeaderBytes, insecureHTTPParser: false,
    }, handler);
    // Node would drop headers beyond maxHeadersCount silently, and a dropped header could hide what a DENY rule
    // looks for: all are kept and the enforcer refuses too many (431).
    this.#h1.maxHeadersCount = 0;
    this.#h2 = http2.createServer({ settings: { maxHeaderListSize: DEFAULT_LIMITS.maxHeaderBytes } }, handler);
    this.#h2.on('session', (s: http2.ServerHttp2Session) => {
      this.#sessions.add(s);
      s.once('close', () => this.#sessions.delete(s));
      s.setTimeout(DEFAULT_LIMITS.idleTimeoutMs, () => s.close());
      s.on('error', () => s.destroy());
    });
    this.server = net.createServer({ noDelay: true }, (socket) => void this.#onConnection(socket));
    this.server.maxConnections = DEFAULT_LIMITS.maxConnections;
    this.server.on('close', () => this.#unsubscribe());
  }

  #rotate(t: TlsState): void {
    if (t === this.#tlsFor) return;
    this.#tlsFor = t;
    // New handshakes use the new SVID and bundle; established connections keep theirs.
    this.#tls.setSecureContext({ ...t.options });
  }

  async #onConnection(socket: net.Socket): Promise<void> {
    this.#track(socket);
    socket.setTimeout(DEFAULT_LIMITS.idleTimeoutMs, () => socket.destroy());
    const first = await peek(socket, DEFAULT_LIMITS.idleTimeoutMs);
    if (first === null) {
      socket.destroy();
      return;
    }
    if (first[0] === 0x16) {
      socket.setTimeout(0);
      this.#tls.emit('connection', socket);
      return;
    }
    // Plaintext: whether the port accepts it is the enforcer's to say (STRICT refuses it, as the sidecar does).
    await this.#dispatch(socket);
  }

  async #dispatch(stream: Duplex): Promise<void> {
    this.#track(stream);
    const first = await peek(stream, DEFAULT_LIMITS.idleTimeoutMs);
    if (first === null) {
      stream.destroy();
      return;
    }
    const head = first.subarray(0, 14).toString('latin1');
    if (H2_PREFACE.startsWith(head) || head.startsWith(H2_PREFACE)) {
      // node:http2 falls back to HTTP/1.1 on a TLS socket whose ALPN was not h2; a client that spoke the preface
      // after an http/1.1 ALPN (the sidecars' mTLS carries either) is marked as what it sends.
      if (stream instanceof TLSSocket && stream.alpnProtocol !== 'h2') (stream as { alpnProtocol: string | false | null }).alpnProtocol = 'h2';
      this.#h2.emit('connection', stream);
      return;
    }
    stream.resume();
    this.#h1.emit('connection', stream);
  }

  #track(s: Duplex): void {
    if (this.#open.has(s)) return;
    this.#open.add(s);
    s.once('close', () => this.#open.delete(s));
    s.on('error', () => s.destroy());
  }

  /** Stops accepting; idle connections close now, busy ones once their request is done (at most `graceMs`). */
  async close(graceMs = 5_000): Promise<void> {
    this.#unsubscribe();
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    this.#h1.closeIdleConnections();
    const timer = setTimeout(() => {
      for (const s of this.#open) s.destroy();
    }, graceMs);
    timer.unref();
    for (const s of this.#sessions) s.close();
    await closed;
    clearTimeout(timer);
  }
}
