import type http from 'node:http';
import type http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { verifyTlsPeer } from '../identity/tls.ts';
import { HttpDecisions, type ConnInfo, type RequestContext } from '../proxy/http-decision.ts';
import { DEFAULT_LIMITS } from '../proxy/inbound.ts';
import { authorityOf, closeAfter, distinctHeaders, grpcReply, isGrpc, isH2, type AnyRequest, type AnyResponse } from '../proxy/request-view.ts';
import { readRequestTarget } from '../proxy/request-target.ts';
import type { Sidecar } from '../proxy/sidecar.ts';
import type { Decision } from '../policy/decision.ts';
import type { WorkloadPort } from '../resources/mesh-file.ts';

/**
 * Inbound enforcement inside the app's own process: a request that reached the app's server is decided exactly as
 * the sidecar's inbound listener decides it (HttpDecisions: the same request built from what the connection proved,
 * the same WorkloadPolicy.decide, the same CUSTOM round trip, Envoy's local replies, the same access entry). An
 * allowed request goes on to the app's handler with the headers the sidecar would have sent it and with what was
 * proved about the caller in `req.rampart`.
 */

/** What the mesh proved about the caller of an allowed request (`req.rampart`). */
export interface RequestIdentity {
  /** The caller's verified identity in Istio's principal form (`cluster.local/ns/default/sa/sleep`); absent without mTLS. */
  readonly principal: string | undefined;
  /** The same as a SPIFFE ID (`spiffe://cluster.local/ns/default/sa/sleep`). */
  readonly spiffeId: string | undefined;
  readonly namespace: string | undefined;
  readonly serviceAccount: string | undefined;
  /** The request principal of a verified JWT (`iss/sub`), as `request.auth.principal`. */
  readonly requestPrincipal: string | undefined;
  /** The verified claims of the request's first token (none without one). */
  readonly claims: Readonly<Record<string, unknown>> | undefined;
  readonly mtls: boolean;
  /** The decision that let the request in. */
  readonly decision: { readonly decidedBy: Decision['decidedBy']; readonly policy: string | null; readonly rule: number | null; readonly reason: string };
  readonly requestId: string;
  readonly configVersion: string;
}

declare module 'node:http' {
  interface IncomingMessage {
    /** Set by Rampart's in-process enforcement on every request it let through. */
    rampart?: RequestIdentity;
  }
}
declare module 'node:http2' {
  interface Http2ServerRequest {
    /** Set by Rampart's in-process enforcement on every request it let through. */
    rampart?: RequestIdentity;
  }
}

export interface EnforceOptions {
  /**
   * The workload port requests arrive on (the mesh file's `port`). By default the server socket's local port when it
   * is one of the workload's, or the workload's only port.
   */
  readonly port?: number;
}

/** How a framework answers on its own (Fastify must be told that the raw response was taken over). */
export interface AnswerHooks {
  /** Called just before Rampart writes a denial to the raw response. */
  readonly beforeReply?: () => void;
  /**
   * The framework has already routed the request by its path as received (Fastify's hooks run after routing), so
   * a path that normalization changes cannot be handed on.
   */
  readonly routed?: boolean;
}

/** Marks a request that an enforcer let in. */
const DECIDED = Symbol('rampart.decided');

const PATTERN_SPIFFE = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/;

export class InProcessEnforcer {
  readonly #sidecar: Sidecar;
  readonly #fixedPort: number | undefined;
  /** One decision site per workload port. */
  readonly #sites = new Map<number, { readonly port: WorkloadPort; readonly d: HttpDecisions }>();
  /** What each connection (an HTTP/1.1 socket or an HTTP/2 session) proved, verified once. */
  readonly #conns = new WeakMap<object, ConnInfo | 'refused'>();

  constructor(sidecar: Sidecar, options: EnforceOptions = {}) {
    this.#sidecar = sidecar;
    this.#fixedPort = options.port;
    const w = sidecar.workload;
    if (options.port !== undefined && !w.ports.some((p) => p.port === options.port)) {
      throw new TypeError(`port ${options.port} is not a port of workload ${w.namespace}/${w.name} (its ports: ${w.ports.map((p) => p.port).join(', ') || 'none'})`);
    }
    for (const port of w.ports) {
      this.#sites.set(port.port, {
        port,
        d: new HttpDecisions({
          workload: w, port,
          state: () => sidecar.state,
          tls: () => sidecar.tls,
          onAccess: (e) => sidecar.recordAccess(e),
          connect: async (h, p) => (await sidecar.connect(h, p)).socket,
        }),
      });
    }
  }

  /**
   * Decides one request: a denial is answered here (401, 403, a CUSTOM provider's answer, or the connection reset
   * as the sidecar resets it); an allowed request is handed on with `next()`.
   */
  handle(req: AnyRequest, res: AnyResponse, next: (err?: unknown) => void, hooks: AnswerHooks = {}): void {
    if ((req as { [DECIDED]?: true })[DECIDED] === true) {
      // Already let in by an enforcement layer in front (createServer before a framework's own hook): once is enough.
      next();
      return;
    }
    const start = Date.now();
    const transport = transportOf(req);
    const site = this.#siteFor(transport);
    if (site === undefined) {
      // Fail closed: a request on a port the mesh file does not declare has no policy to be decided by.
      this.#refuseUnknownPort(transport, res);
      return;
    }
    const info = this.#connection(req, transport, site, start);
    if (info === undefined) return;
    if (!isH2(req) && req.httpVersion !== '1.1') {
      // Envoy's HTTP/1 codec refuses HTTP/1.0 unless accept_http_10 is set, which Istio leaves off by default.
      this.#plainReply(req, res, hooks, 426, 'Upgrade Required');
      site.d.refusal('http', start, info, 426, 'DPE', `HTTP/${req.httpVersion} is not accepted`, { method: req.method ?? 'GET', authority: authorityOf(req) ?? '', path: req.url ?? '/' });
      return;
    }
    const headerCount = isH2(req) ? Object.keys(req.headers).filter((k) => !k.startsWith(':')).length : req.rawHeaders.length / 2;
    if (headerCount > DEFAULT_LIMITS.maxHeaders) {
      this.#plainReply(req, res, hooks, 431, 'Request Header Fields Too Large');
      site.d.refusal('http', start, info, 431, 'DPE', `${headerCount} headers (at most ${DEFAULT_LIMITS.maxHeaders})`, { method: req.method ?? 'GET', authority: authorityOf(req) ?? '', path: req.url ?? '/' });
      return;
    }
    // Express rewrites req.url under a mounted router; the decision is on the target as received.
    const received = (req as { originalUrl?: unknown }).originalUrl;
    const url = typeof received === 'string' ? received : req.url ?? '/';
    const target = isH2(req) ? { ok: true as const, path: url, authority: undefined } : readRequestTarget(url);
    if (!target.ok) {
      this.#plainReply(req, res, hooks, 400, 'Bad Request');
      site.d.refusal('http', start, info, 400, 'DPE', target.reason, { method: req.method ?? 'GET', authority: authorityOf(req) ?? '', path: url });
      return;
    }
    const authority = target.authority ?? authorityOf(req);
    const distinct = distinctHeaders(req);
    if (target.authority !== undefined) distinct['host'] = [target.authority];
    const requestId = typeof req.headers['x-request-id'] === 'string' ? req.headers['x-request-id'] : undefined;
    const { ctx, d } = site.d.decideHttp(info, start, req.method ?? 'GET', authority, target.path, distinct, requestId);
    ctx.received = contentLength(req);
    site.d.authorize(ctx, d, () => ({ method: ctx.method, path: site.d.forwardPath(ctx), headers: authority !== undefined ? { ...req.headers, host: authority } : req.headers }),
      (final, upstreamExtra, downstreamExtra) => {
        if (final.decision === 'DENY') {
          this.#deny(site.d, req, res, ctx, final, hooks);
          return;
        }
        const decided = site.d.forwardPath(ctx);
        if (decided !== url) {
          if (hooks.routed === true) {
            // The framework chose the route by the path as received, and the decision was on its normalized form:
            // the two could name different handlers, so the request goes no further.
            this.#plainReply(req, res, hooks, 400, 'Bad Request');
            site.d.refusal('http', start, info, 400, 'DPE', `the path ${JSON.stringify(url)} normalizes to ${JSON.stringify(decided)} after the framework routed it`, { method: ctx.method, authority: authority ?? '', path: url });
            return;
          }
          // The app routes by the path that was decided, as the sidecar forwards it.
          req.url = decided;
          if (typeof received === 'string') (req as { originalUrl?: string }).originalUrl = decided;
        }
        this.#allow(site.d, req, res, ctx, final, upstreamExtra, downstreamExtra);
        next();
      },
      (denied, answer, reason, debug) => {
        ctx.sent = Buffer.byteLength(answer.body);
        hooks.beforeReply?.();
        if (isGrpc(req)) grpcReply(res, answer.status, answer.body || `denied by CUSTOM provider "${denied.customProvider ?? ''}"`, debug);
        else res.writeHead(answer.status, { ...answer.headers, 'content-length': String(ctx.sent), ...debug }).end(answer.body);
        closeAfter(req, res);
        site.d.log(ctx, denied, answer.status, reason);
      });
  }

  #siteFor(transport: Duplex): { readonly port: WorkloadPort; readonly d: HttpDecisions } | undefined {
    if (this.#fixedPort !== undefined) return this.#sites.get(this.#fixedPort);
    const local = (transport as { localPort?: number }).localPort;
    const byPort = local === undefined ? undefined : this.#sites.get(local);
    if (byPort !== undefined) return byPort;
    return this.#sites.size === 1 ? this.#sites.values().next().value : undefined;
  }

  #refuseUnknownPort(transport: Duplex, res: AnyResponse): void {
    const w = this.#sidecar.workload;
    const local = (transport as { localPort?: number }).localPort;
    const first = this.#sites.values().next().value;
    first?.d.refusal('connection', Date.now(), { sourceIp: (transport as { remoteAddress?: string }).remoteAddress }, undefined, 'NR',
      `port ${local ?? '?'} is not a port of workload ${w.namespace}/${w.name}: give the workload port to the middleware ({ port })`);
    res.destroy();
    transport.destroy();
  }

  /**
   * What the connection proved, checked on its first request: the client's SVID (mTLS) against the bundle in force,
   * or plaintext, which a STRICT port refuses as the sidecar does (reset, no answer). Undefined when it was refused.
   */
  #connection(req: AnyRequest, transport: Duplex, site: { readonly port: WorkloadPort; readonly d: HttpDecisions }, start: number): ConnInfo | undefined {
    const key: object = isH2(req) ? req.stream.session ?? transport : transport;
    const known = this.#conns.get(key);
    if (known === 'refused') {
      transport.destroy();
      return undefined;
    }
    if (known !== undefined) return known;
    const sock = transport as TLSSocket;
    const base = { sourceIp: sock.remoteAddress, localIp: sock.localAddress };
    const mode = this.#sidecar.state.policy.mtls.modeFor(site.port.port);
    const refuse = (reason: string): undefined => {
      this.#conns.set(key, 'refused');
      site.d.refusal('connection', start, base, undefined, 'NR', reason);
      transport.destroy();
      return undefined;
    };
    let info: ConnInfo;
    if (sock.encrypted === true && mode !== 'DISABLE') {
      const tls = this.#sidecar.tls;
      if (tls === undefined) return refuse('no SVID yet: mTLS cannot be terminated');
      let peer: string;
      try {
        peer = verifyTlsPeer(sock, tls.bundle, 'client').spiffeId.uri;
      } catch (err) {
        return refuse(`mTLS peer rejected: ${(err as Error).message}`);
      }
      const cert = sock.getPeerCertificate(false);
      info = { ...base, peer, peerCertDer: cert.raw, mtls: true, sni: typeof sock.servername === 'string' ? sock.servername : undefined };
    } else {
      if (mode === 'STRICT') return refuse('plaintext connection refused: mTLS mode is STRICT');
      // DISABLE: the app's own TLS (if any) is not the mesh's; the caller proved no identity to it.
      info = { ...base, peer: undefined, peerCertDer: undefined, mtls: false };
    }
    this.#conns.set(key, info);
    return info;
  }

  #deny(d: HttpDecisions, req: AnyRequest, res: AnyResponse, ctx: RequestContext, decision: Decision, hooks: AnswerHooks): void {
    const r = d.denial(ctx, decision);
    if (r === null) {
      // The port became STRICT under an open plaintext connection: refused as a new one would be.
      d.log(ctx, decision, undefined);
      transportOf(req).destroy();
      return;
    }
    ctx.sent = Buffer.byteLength(r.body);
    hooks.beforeReply?.();
    if (isGrpc(req)) {
      const { 'content-type': _ct, ...rest } = r.headers;
      grpcReply(res, r.status, r.body, rest);
    } else res.writeHead(r.status, { ...r.headers, 'content-length': String(ctx.sent) }).end(r.body);
    closeAfter(req, res);
    d.log(ctx, decision, r.status);
  }

  /** The request as the sidecar would have forwarded it (token edits, XFCC, proto, id), and `req.rampart`. */
  #allow(d: HttpDecisions, req: AnyRequest, res: AnyResponse, ctx: RequestContext, decision: Decision, upstreamExtra: Readonly<Record<string, string>> | undefined,
    downstreamExtra: Readonly<Record<string, string>> | undefined): void {
    const { remove, set } = d.upstreamEdits(ctx, upstreamExtra);
    const headers = req.headers as Record<string, string | string[] | undefined>;
    // The sidecar never forwards a client's own x-forwarded-client-cert: only the one it writes for an mTLS peer.
    delete headers['x-forwarded-client-cert'];
    for (const h of remove) delete headers[h];
    Object.assign(headers, set);
    if (downstreamExtra !== undefined) for (const k in downstreamExtra) res.setHeader(k, downstreamExtra[k]!);
    const peer = ctx.info.peer;
    const m = peer === undefined ? null : PATTERN_SPIFFE.exec(peer);
    (req as { [DECIDED]?: true })[DECIDED] = true;
    req.rampart = {
      principal: peer?.slice('spiffe://'.length), spiffeId: peer, namespace: m?.[1], serviceAccount: m?.[2],
      requestPrincipal: ctx.principal, claims: ctx.claims, mtls: ctx.info.mtls,
      decision: { decidedBy: decision.decidedBy, policy: decision.policy, rule: decision.rule, reason: decision.reason },
      requestId: ctx.requestId, configVersion: ctx.st.version,
    };
    countSent(res, ctx);
    let logged = false;
    const log = (): void => {
      if (logged) return;
      logged = true;
      if (!res.writableFinished) ctx.flags = 'DC';
      d.log(ctx, decision, res.statusCode);
    };
    res.once('finish', log);
    res.once('close', log);
  }

  #plainReply(req: AnyRequest, res: AnyResponse, hooks: AnswerHooks, status: 400 | 426 | 431, body: string): void {
    hooks.beforeReply?.();
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': String(body.length), ...(isH2(req) ? {} : { connection: 'close' }) }).end(body);
    if (!isH2(req)) res.once('finish', () => req.socket.destroySoon());
  }
}

/** The socket a request arrived on (an HTTP/2 request's session socket). */
function transportOf(req: AnyRequest): Duplex {
  return isH2(req) ? (req.stream.session?.socket as Duplex | undefined) ?? req.socket : req.socket;
}

function contentLength(req: AnyRequest): number {
  const n = Number(req.headers['content-length']);
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/** Counts the body bytes of the app's response as it writes them (the access entry's bytesSent). */
function countSent(res: AnyResponse, ctx: RequestContext): void {
  const count = (chunk: unknown, encoding: unknown): void => {
    if (typeof chunk === 'string') ctx.sent += Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
    else if (chunk instanceof Uint8Array) ctx.sent += chunk.length;
  };
  const r = res as { write: (...a: unknown[]) => boolean; end: (...a: unknown[]) => unknown };
  const write = r.write;
  const end = r.end;
  r.write = function (this: unknown, ...a: unknown[]): boolean {
    count(a[0], a[1]);
    return write.apply(this, a);
  };
  r.end = function (this: unknown, ...a: unknown[]): unknown {
    if (typeof a[0] !== 'function') count(a[0], a[1]);
    return end.apply(this, a);
  };
}

export type { AnyRequest, AnyResponse };
export type RequestHandler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;
