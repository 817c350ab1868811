import { STATUS_CODES } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { H1Parser, type H1Head, type H1ParseError } from './h1-parser.ts';
import type { LocalReply } from './http-decision.ts';

/**
 * One downstream HTTP/1.1 connection of an inbound listener, served without node:http: requests are parsed by
 * llhttp (h1-parser.ts), handed to the sidecar one at a time to decide, and an allowed one is written to the app as
 * a request line and headers the sidecar built, followed by its body as it arrives; the app's response comes back
 * the same way. Each downstream connection has its own connection to the app, opened at its first allowed request
 * (HTTP/1.1 carries one request at a time, so the two stay in step without a pool). Pipelined requests wait for
 * the response before them. Timeouts for headers and whole requests are checked by the listener (`check`).
 */

/** What the app's connection failed with, for the local reply: Envoy's "reset reason". */
export type UpstreamFailure = 'connection failure' | 'connection termination' | string;


export interface ForwardEnd {
  /** The status sent downstream (the app's, or 503 when the app could not be reached). */
  readonly status: number | undefined;
  /**
   * Envoy's response flags: `-`, `UF` (app unreachable), `UR` (app reset mid-response), `DC` (client went away),
   * `DPE` (the request's body turned out malformed: the app's request was cut and the client got a 400).
   */
  readonly flags: '-' | 'UF' | 'UR' | 'DC' | 'DPE';
}

export interface Forward {
  /** Request line and header lines (`name: value\r\n` each), without framing headers or the final CRLF. */
  readonly head: string;
  /** Header lines added to the response. */
  readonly responseHeaders: string;
  /** The local reply when the app cannot be reached before its response began. */
  readonly failure: (reason: UpstreamFailure) => LocalReply;
  readonly end: (end: ForwardEnd) => void;
}

export interface H1Handler {
  /** A request head arrived: answer with ex.reply() or ex.forward(), now or later. */
  request(ex: H1Exchange): void;
  /** Bytes that are not HTTP/1.1, or over a limit: the connection answers `status` and closes. */
  protocolError(err: H1ParseError | undefined, status: 400 | 408 | 431, reason: string): void;
}

export interface H1ConnectionOptions {
  readonly maxHeaderBytes: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /** Idle time allowed on a WebSocket tunnel (the TCP proxy's). */
  readonly tunnelIdleTimeoutMs: number;
  readonly target: { readonly host: string; readonly port: number };
  readonly handler: H1Handler;
  readonly onClose: () => void;
}

/** Hop-by-hop headers of a response (not forwarded downstream), and the framing ones this module sets itself. */
const RESPONSE_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);
/** Reason phrases, node:http's (an external authorizer may answer any status). */
const STATUS_TEXT: Readonly<Record<number, string | undefined>> = STATUS_CODES;

type Ev = { readonly k: 'head'; readonly head: H1Head } | { readonly k: 'body'; readonly chunk: Buffer } | { readonly k: 'end' };

/** One request on the connection, from its head to the end of its response. */
export class H1Exchange {
  readonly head: H1Head;
  readonly start = Date.now();
  /** Request body bytes received. */
  bytesReceived = 0;
  /** Response body bytes sent. */
  bytesSent = 0;
  /** Whether the whole request (body included) has arrived. */
  requestComplete = false;
  readonly #conn: H1Connection;
  #state: 'deciding' | 'forwarding' | 'replied' | 'done' = 'deciding';
  #pending: Buffer[] | undefined;
  readonly #chunked: string | undefined;
  #forward: Forward | undefined;
  #responded = false;
  #resChunked = false;
  /**
   * A WebSocket handshake (GET with `Upgrade: websocket`, no body): forwarded with its upgrade headers, and when the
   * app answers 101 the connection becomes a tunnel between client and app, as Istio's sidecars allow by default.
   */
  readonly webSocket: boolean;
  /** The app answered 101: bytes now pass both ways unparsed. */
  tunnelled = false;
  #status: number | undefined;

  constructor(conn: H1Connection, head: H1Head) {
    this.#conn = conn;
    this.head = head;
    let te: string | undefined;
    let length = 0;
    let upgrade = '';
    const raw = head.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i]!;
      if (n.length === 17 && n.toLowerCase() === 'transfer-encoding') te = te === undefined ? raw[i + 1]! : `${te}, ${raw[i + 1]!}`;
      else if (n.length === 14 && n.toLowerCase() === 'content-length') length = Number(raw[i + 1]);
      else if (head.upgrade && n.length === 7 && n.toLowerCase() === 'upgrade') upgrade += `${raw[i + 1]!.toLowerCase()},`;
    }
    this.#chunked = te;
    const bodyless = te === undefined && !(length > 0);
    // The head is handed over before the parser reports the end of a request without a body: it is complete now.
    this.requestComplete = bodyless && !head.upgrade;
    this.webSocket = head.upgrade && head.method === 'GET' && bodyless && upgrade.split(/[\s,]+/).includes('websocket');
  }

  /** Ends the connection without a reply (a connection the configuration no longer accepts). */
  destroyConnection(): void {
    this.#state = 'done';
    this.#conn.destroy();
  }

  get deciding(): boolean {
    return this.#state === 'deciding';
  }

  get forwarding(): boolean {
    return this.#state === 'forwarding';
  }

  /** Answers locally (a denial, a refusal); the connection closes after it when the request body is still coming. */
  reply(r: LocalReply): void {
    if (this.#state !== 'deciding') return;
    this.#state = 'replied';
    this.#pending = undefined;
    this.bytesSent = Buffer.byteLength(r.body);
    const close = r.close === true || !this.requestComplete || !this.head.keepAlive || this.#conn.closing;
    this.#conn.write(`HTTP/1.1 ${r.status} ${STATUS_TEXT[r.status] ?? 'Unknown'}\r\n${headerLines(r.headers)}content-length: ${this.bytesSent}\r\n${close ? 'connection: close\r\n' : ''}\r\n`, 'latin1');
    if (r.body !== '') this.#conn.write(r.body);
    this.#finish(close);
    this.#conn.resume('decide');
  }

  /** Sends the request on to the app. */
  forward(f: Forward): void {
    if (this.#state !== 'deciding') return;
    this.#state = 'forwarding';
    this.#forward = f;
    const up = this.#conn.upstream();
    // Header text is bytes as llhttp read them (one character each): written back the same way.
    up.write(`${f.head}${this.#chunked === undefined ? '' : `transfer-encoding: ${this.#chunked}\r\n`}\r\n`, 'latin1');
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending !== undefined) for (const c of pending) this.#sendBody(c);
    if (this.requestComplete && this.#chunked !== undefined) up.write('0\r\n\r\n');
    this.#conn.resume('decide');
  }

  /** @internal a body chunk from the parser. */
  body(chunk: Buffer): void {
    this.bytesReceived += chunk.length;
    if (this.#state === 'deciding') {
      (this.#pending ??= []).push(chunk);
      // Deciding takes time only for an external authorizer: hold the client's body meanwhile.
      this.#conn.pause('decide');
    } else if (this.#state === 'forwarding') this.#sendBody(chunk);
  }

  /** @internal the request's last byte arrived. */
  end(): void {
    this.requestComplete = true;
    if (this.#state === 'forwarding' && this.#chunked !== undefined) this.#conn.upstream().write('0\r\n\r\n');
  }

  #sendBody(chunk: Buffer): void {
    const up = this.#conn.upstream();
    if (this.#chunked !== undefined) up.write(`${chunk.length.toString(16)}\r\n`);
    const more = up.write(chunk);
    if (this.#chunked !== undefined) up.write('\r\n');
    if (!more) this.#conn.waitUpstreamDrain();
  }

  /** @internal the app's response head; returns true when it has no body (a response to HEAD). */
  responseHead(h: H1Head): boolean {
    const f = this.#forward;
    if (f === undefined || this.#state !== 'forwarding') return false;
    if (h.status < 200) {
      // 100 Continue and other interim responses go through as they are; the final one follows.
      if (h.status === 101) {
        if (!this.webSocket) {
          this.#conn.destroy();
          return false;
        }
        // The handshake's answer goes through whole (Connection, Upgrade, Sec-WebSocket-Accept…).
        this.#responded = true;
        this.#status = 101;
        this.tunnelled = true;
        this.#conn.write(`HTTP/1.1 101 ${h.statusText}\r\n${rawLines(h.rawHeaders)}\r\n`, 'latin1');
        this.#conn.startTunnel();
        return false;
      }
      this.#conn.write(`HTTP/1.1 ${h.status} ${h.statusText}\r\n${rawLines(h.rawHeaders)}\r\n`, 'latin1');
      return false;
    }
    this.#responded = true;
    this.#status = h.status;
    const noBody = this.head.method === 'HEAD' || h.status === 204 || h.status === 304;
    let hasLength = false;
    let chunked = false;
    let lines = '';
    const raw = h.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      const lower = name.toLowerCase();
      if (lower === 'content-length') hasLength = true;
      else if (lower === 'transfer-encoding') chunked = true;
      if (RESPONSE_HOP.has(lower)) continue;
      lines += `${name}: ${raw[i + 1]!}\r\n`;
    }
    // A response that ends with the app's connection goes on chunked, so that the client's connection survives
    // (clients are HTTP/1.1: HTTP/1.0 is refused, as Envoy does by default).
    this.#resChunked = !noBody && (chunked || !hasLength);
    // A WebSocket handshake the app did not take: the client's connection is already carrying frames.
    const close = this.webSocket || !this.head.keepAlive || this.#conn.closing || !this.requestComplete;
    this.#conn.write(`HTTP/1.1 ${h.status} ${h.statusText}\r\n${lines}${f.responseHeaders}${this.#resChunked ? 'transfer-encoding: chunked\r\n' : ''}${close ? 'connection: close\r\n' : ''}\r\n`, 'latin1');
    return this.head.method === 'HEAD';
  }

  /** @internal a chunk of the app's response body. */
  responseBody(chunk: Buffer): void {
    if (this.#state !== 'forwarding' || !this.#responded) return;
    this.bytesSent += chunk.length;
    if (this.#resChunked) this.#conn.write(`${chunk.length.toString(16)}\r\n`);
    const more = this.#conn.write(chunk);
    if (this.#resChunked) this.#conn.write('\r\n');
    if (!more) this.#conn.waitDownstreamDrain();
  }

  /** @internal the app's response is complete (a 1xx is not the end). */
  responseEnd(): boolean {
    if (this.#state !== 'forwarding' || !this.#responded || this.tunnelled) return false;
    if (this.#resChunked) this.#conn.write('0\r\n\r\n');
    this.#forward!.end({ status: this.#status, flags: '-' });
    this.#finish(this.webSocket || !this.head.keepAlive || this.#conn.closing || !this.requestComplete);
    return true;
  }

  /** @internal the app's connection failed or closed before the response ended. */
  upstreamFailed(reason: UpstreamFailure): void {
    if (this.#state !== 'forwarding') return;
    const f = this.#forward!;
    if (this.tunnelled) {
      // The app closed its side of the tunnel: the end of the exchange, not a failure.
      this.#state = 'done';
      f.end({ status: 101, flags: '-' });
      this.#conn.destroy();
      return;
    }
    if (this.#responded) {
      this.#state = 'done';
      f.end({ status: this.#status, flags: 'UR' });
      this.#conn.destroy();
      return;
    }
    const r = f.failure(reason);
    this.#state = 'deciding';
    this.reply(r);
    f.end({ status: r.status, flags: 'UF' });
  }

  /** @internal whether response bytes went downstream (an error reply can no longer be sent). */
  get responseStarted(): boolean {
    return this.#responded;
  }

  /** @internal the request turned out malformed before its response began: it ends with the connection's error reply. */
  abort(status: number): boolean {
    const forwarding = this.#state === 'forwarding';
    this.#state = 'done';
    if (forwarding) this.#forward!.end({ status, flags: 'DPE' });
    return forwarding;
  }

  /** @internal the client went away. */
  downstreamClosed(): void {
    if (this.#state === 'forwarding') {
      this.#state = 'done';
      this.#forward!.end({ status: this.#status, flags: this.tunnelled ? '-' : 'DC' });
    } else if (this.#state === 'deciding') this.#state = 'done';
  }

  #finish(close: boolean): void {
    this.#state = 'done';
    this.#conn.exchangeDone(this, close);
  }
}

export class H1Connection {
  readonly #socket: Duplex;
  readonly #o: H1ConnectionOptions;
  readonly #parser: H1Parser;
  #cur: H1Exchange | undefined;
  #queue: Ev[] | undefined;
  /** When the current head's first byte arrived (0: no head in progress). */
  #headStart = 0;
  /** When the current request's first byte arrived, until its last one (0: none in progress). */
  #requestStart = 0;
  #up: net.Socket | undefined;
  #upParser: H1Parser | undefined;
  /** The exchange the app's connection is answering. */
  #upFor: H1Exchange | undefined;
  /** Whether the app's last response left its connection open for another request. */
  #upReusable = true;
  /** Whether the app's response being parsed is a final one (not 1xx). */
  #upFinal = false;
  readonly #paused = new Set<string>();
  #inDown = false;
  #corkedUp: net.Socket | undefined;
  #closing = false;
  #closed = false;
  /** Client bytes go to the app unparsed (an accepted WebSocket handshake). */
  #tunnelUp = false;
  /** App bytes go to the client unparsed (the app answered 101). */
  #tunnelDown = false;

  constructor(socket: Duplex, options: H1ConnectionOptions) {
    this.#socket = socket;
    this.#o = options;
    this.#parser = new H1Parser('request', options.maxHeaderBytes, {
      begin: () => {
        const now = Date.now();
        this.#headStart = now;
        this.#requestStart = now;
      },
      head: (head) => {
        this.#headStart = 0;
        this.#dispatch({ k: 'head', head });
        return false;
      },
      body: (chunk) => this.#dispatch({ k: 'body', chunk }),
      complete: () => {
        this.#requestStart = 0;
        this.#dispatch({ k: 'end' });
      },
      // A WebSocket handshake still being decided or forwarded: what follows is the client's WebSocket frames.
      upgraded: () => this.#cur?.webSocket === true && (this.#cur.deciding || this.#cur.forwarding),
    });
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => this.#onDownEnd());
    socket.on('close', () => this.#onDownClose());
    socket.on('error', () => socket.destroy());
  }

  get socket(): Duplex {
    return this.#socket;
  }

  /** Whether a request is in progress (its response not yet complete). */
  get busy(): boolean {
    return this.#cur !== undefined || this.#headStart !== 0;
  }

  get closing(): boolean {
    return this.#closing;
  }

  /** Close once the current response is out (now, when idle). */
  closeWhenIdle(): void {
    this.#closing = true;
    if (!this.busy) this.destroy();
  }

  /** Enforces the header and request time limits; called by the listener on an interval. */
  check(now: number): void {
    if (this.#closed) return;
    if (this.#headStart !== 0 && now - this.#headStart > this.#o.headersTimeoutMs) this.#protocolError(undefined, 408, 'request headers not received in time');
    else if (this.#requestStart !== 0 && now - this.#requestStart > this.#o.requestTimeoutMs) this.#protocolError(undefined, 408, 'request not received in time');
  }

  /** Idle timeout of the socket: only an idle connection is closed (in-flight requests have their own limits). */
  onIdle(): void {
    if (!this.busy || this.#tunnelUp) this.destroy();
  }

  destroy(): void {
    this.#socket.destroy();
    this.#up?.destroy();
  }

  /** @internal */
  write(data: string | Buffer, encoding?: BufferEncoding): boolean {
    return encoding === undefined ? this.#socket.write(data) : this.#socket.write(data, encoding);
  }

  /** @internal pauses reading from the client for a reason; it resumes when no reason is left. */
  pause(reason: string): void {
    if (this.#paused.size === 0) this.#socket.pause();
    this.#paused.add(reason);
  }

  /** @internal */
  resume(reason: string): void {
    if (!this.#paused.delete(reason) || this.#paused.size > 0 || this.#closed) return;
    this.#socket.resume();
  }

  /** @internal the app's side is full: wait for it to drain before reading more of the client's body. */
  waitUpstreamDrain(): void {
    const up = this.#up;
    if (up === undefined || this.#paused.has('upstream')) return;
    this.pause('upstream');
    up.once('drain', () => this.resume('upstream'));
  }

  /** @internal the client's side is full: wait before reading more of the app's response. */
  waitDownstreamDrain(): void {
    const up = this.#up;
    if (up === undefined || up.isPaused()) return;
    up.pause();
    this.#socket.once('drain', () => up.resume());
  }

  /** @internal the app answered a WebSocket handshake with 101: its bytes now go to the client as they come. */
  startTunnel(): void {
    this.#tunnelDown = true;
  }

  /** @internal the connection to the app, opened on first use. */
  upstream(): net.Socket {
    let up = this.#up;
    if (up === undefined) {
      up = net.connect({ host: this.#o.target.host, port: this.#o.target.port, noDelay: true });
      this.#up = up;
      const u = up;
      const parser = new H1Parser('response', 0, {
        begin: () => undefined,
        upgraded: () => this.#tunnelDown,
        head: (h) => {
          this.#upFinal = h.status >= 200;
          if (this.#upFinal) this.#upReusable = h.keepAlive;
          return this.#upFor?.responseHead(h) ?? false;
        },
        body: (chunk) => this.#upFor?.responseBody(chunk),
        complete: () => {
          const ex = this.#upFor;
          if (this.#upFinal) {
            this.#upFor = undefined;
            // The app said it closes this connection: the next request gets a new one rather than racing its close.
            if (!this.#upReusable) this.#detachUpstream(u);
          }
          ex?.responseEnd();
        },
      });
      this.#upParser = parser;
      u.on('data', (chunk: Buffer) => {
        if (this.#tunnelDown) {
          if (!this.#socket.write(chunk)) this.waitDownstreamDrain();
          return;
        }
        this.#socket.cork();
        const r = parser.execute(chunk);
        this.#socket.uncork();
        if (Buffer.isBuffer(r)) {
          if (r.length > 0 && !this.#socket.write(r)) this.waitDownstreamDrain();
        } else if (r !== undefined) this.#upstreamGone(u, 'protocol error');
      });
      u.on('end', () => {
        // A response delimited by the end of the connection is complete now.
        parser.finish();
        this.#upstreamGone(u, 'connection termination');
      });
      u.on('error', (err: NodeJS.ErrnoException) => this.#upstreamGone(u, resetReason(err)));
      u.on('close', () => this.#upstreamGone(u, 'connection termination'));
    }
    this.#upFor = this.#cur;
    if (this.#inDown && this.#corkedUp !== up) {
      up.cork();
      this.#corkedUp = up;
    }
    return up;
  }

  #detachUpstream(u: net.Socket): void {
    if (this.#up !== u) return;
    this.#up = undefined;
    this.#upParser?.close();
    this.#upParser = undefined;
    u.destroy();
  }

  #upstreamGone(u: net.Socket, reason: UpstreamFailure): void {
    if (this.#up !== u) return;
    this.#up = undefined;
    this.#upParser?.close();
    this.#upParser = undefined;
    u.destroy();
    const ex = this.#upFor;
    this.#upFor = undefined;
    ex?.upstreamFailed(reason);
  }

  /** @internal an exchange's response is complete. */
  exchangeDone(ex: H1Exchange, close: boolean): void {
    if (close) {
      // The app's connection may be mid-message (an early response to a body not all sent): not reusable.
      if (this.#upFor === ex) this.#upFor = undefined;
      this.#up?.destroy();
      this.#closing = true;
      this.#parser.close();
      this.#socket.end();
      this.#cur = undefined;
      this.#queue = undefined;
      return;
    }
    if (this.#cur === ex) this.#cur = undefined;
    this.#drain();
  }

  #onData(chunk: Buffer): void {
    if (this.#tunnelUp) {
      this.#cur?.body(chunk);
      return;
    }
    this.#inDown = true;
    let err = this.#parser.execute(chunk);
    this.#inDown = false;
    if (Buffer.isBuffer(err)) {
      this.#tunnelUp = true;
      (this.#socket as net.Socket).setTimeout(this.#o.tunnelIdleTimeoutMs);
      if (err.length > 0) this.#cur?.body(err);
      err = undefined;
    }
    // An error found in the same read as the head cuts the app's connection before anything was sent on it.
    if (err !== undefined) this.#protocolError(err, err.llhttpCode === 'HPE_HEADER_OVERFLOW' ? 431 : 400, `malformed HTTP (${err.llhttpCode})`);
    const corked = this.#corkedUp;
    this.#corkedUp = undefined;
    corked?.uncork();
  }

  #protocolError(err: H1ParseError | undefined, status: 400 | 408 | 431, reason: string): void {
    if (this.#closed) return;
    this.#parser.close();
    const cur = this.#cur;
    this.#cur = undefined;
    this.#queue = undefined;
    this.#headStart = 0;
    this.#requestStart = 0;
    if (cur !== undefined && cur.responseStarted) {
      // A response is under way: it cannot be followed by an error reply.
      cur.downstreamClosed();
      this.destroy();
      this.#o.handler.protocolError(err, status, reason);
      return;
    }
    this.#up?.destroy();
    const logged = cur?.abort(status) ?? false;
    this.#closing = true;
    const text = STATUS_TEXT[status]!;
    this.#socket.end(`HTTP/1.1 ${status} ${text}\r\ncontent-type: text/plain\r\ncontent-length: ${text.length}\r\nconnection: close\r\n\r\n${text}`);
    // A request already forwarded is logged as itself (flag DPE); anything else as a refusal.
    if (!logged) this.#o.handler.protocolError(err, status, reason);
  }

  #dispatch(ev: Ev): void {
    if (this.#queue !== undefined || (ev.k === 'head' && this.#cur !== undefined)) {
      // A pipelined request waits for the response before it.
      (this.#queue ??= []).push(ev);
      this.pause('pipelined');
      return;
    }
    this.#handle(ev);
  }

  #handle(ev: Ev): void {
    if (ev.k === 'head') {
      const ex = new H1Exchange(this, ev.head);
      this.#cur = ex;
      this.#o.handler.request(ex);
      if (ex.deciding && this.#cur === ex) this.pause('decide');
      return;
    }
    const cur = this.#cur;
    if (cur === undefined) return;
    if (ev.k === 'body') cur.body(ev.chunk);
    else cur.end();
  }

  #drain(): void {
    const q = this.#queue;
    if (q === undefined) return;
    this.#queue = undefined;
    for (let i = 0; i < q.length; i++) {
      const ev = q[i]!;
      if (this.#queue !== undefined || (ev.k === 'head' && this.#cur !== undefined)) {
        this.#queue = [...q.slice(i), ...(this.#queue ?? [])];
        return;
      }
      this.#handle(ev);
    }
    this.resume('pipelined');
  }

  #onDownEnd(): void {
    // The client finished sending: a request cut short is a protocol error; otherwise the response still goes out.
    if (this.#headStart !== 0 || this.#requestStart !== 0) {
      this.#socket.destroy();
      return;
    }
    this.#closing = true;
    if (!this.busy) this.#socket.end();
  }

  #onDownClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#parser.close();
    this.#cur?.downstreamClosed();
    this.#cur = undefined;
    this.#queue = undefined;
    this.#up?.destroy();
    this.#o.onClose();
  }
}

/** Envoy's "reset reason" for an error on the connection to the app. */
export function resetReason(err: NodeJS.ErrnoException): UpstreamFailure {
  return err.code === 'ECONNREFUSED' ? 'connection failure' : (err.code ?? 'unknown');
}

function headerLines(h: Readonly<Record<string, string>>): string {
  let s = '';
  for (const k in h) s += `${k}: ${h[k]!}\r\n`;
  return s;
}

function rawLines(raw: readonly string[]): string {
  let s = '';
  for (let i = 0; i < raw.length; i += 2) s += `${raw[i]!}: ${raw[i + 1]!}\r\n`;
  return s;
}
