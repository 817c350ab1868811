import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { listenExplained } from '../io/listen.ts';
import { RampartError } from '../errors.ts';
import { clientTlsOptions } from '../identity/tls.ts';
import type { Svid } from '../identity/svid.ts';
import type { TrustBundle } from '../identity/trust-bundle.ts';
import type { PolicyEngine } from '../policy/engine.ts';
import type { MeshFile, MeshWorkload } from '../resources/mesh-file.ts';
import { destinationByAddress, resolveDestination, splitHostPort, type Destination, type Endpoint } from './registry.ts';

/**
 * The outbound side of a sidecar: the app reaches other services through it, as an HTTP proxy
 * (`HTTP_PROXY=http://127.0.0.1:PORT`: absolute-form requests and CONNECT) or through declared local upstream ports
 * (`127.0.0.1:9001` → `reviews.bookinfo:9080`). A destination in the mesh registry gets mTLS with this sidecar's
 * SVID unless its port's PeerAuthentication is DISABLE (Istio's auto mTLS), and the server must prove one of the
 * service accounts the registry lists for it (secure naming): anything else fails closed. Destinations outside the
 * mesh follow meshConfig.outboundTrafficPolicy (ALLOW_ANY: plain connection; REGISTRY_ONLY: refused).
 */

export class OutboundError extends RampartError {
  readonly status: 502 | 503;
  constructor(code: string, message: string, status: 502 | 503) {
    super(code, message);
    this.status = status;
  }
}

export interface ClientTls {
  readonly svid: Svid;
  readonly bundle: TrustBundle;
}

export interface OutboundEntry {
  readonly kind: 'outbound';
  /**
   * The app's HTTP proxy, a CONNECT tunnel through it, an upstream port, an in-process client's connection, or a
   * connection the app opened to the destination itself, captured (transparent interception).
   */
  readonly via: 'http-proxy' | 'connect' | 'upstream' | 'in-process' | 'capture';
  readonly time: string;
  readonly durationMs: number;
  readonly destination: string;
  readonly cluster: string | undefined;
  readonly endpoint: string | undefined;
  readonly mtls: boolean;
  /** The endpoint's workload, when the destination is in the registry. */
  readonly destinationWorkload: string | undefined;
  readonly destinationNamespace: string | undefined;
  /** The service account the server proved (secure naming), `namespace/serviceAccount`. */
  readonly destinationServiceAccount: string | undefined;
  readonly bytesSent: number;
  readonly bytesReceived: number;
  readonly method?: string;
  readonly path?: string;
  readonly status: number | undefined;
  readonly error: string | undefined;
}

export interface Upstream {
  /** Local port on 127.0.0.1. */
  readonly listen: number;
  readonly host: string;
  readonly port: number;
}

export interface OutboundOptions {
  readonly workload: MeshWorkload;
  readonly current: () => { readonly mesh: MeshFile; readonly engine: PolicyEngine };
  readonly clientTls: () => ClientTls | undefined;
  /** The HTTP proxy's port on 127.0.0.1 (0: any free port); absent: no HTTP proxy. */
  readonly httpProxyPort?: number;
  readonly upstreams?: readonly Upstream[];
  readonly onLog: (entry: OutboundEntry) => void;
  readonly connectTimeoutMs?: number;
}

export interface Connected {
  readonly socket: Duplex;
  readonly mtls: boolean;
  readonly dest: Destination | undefined;
  readonly endpoint: Endpoint | undefined;
}

/** TLS sessions kept for resumption (one per endpoint and expected identity). */
const MAX_SESSIONS = 1024;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

export class OutboundProxy {
  readonly #o: OutboundOptions;
  readonly #servers: net.Server[] = [];
  #httpProxy: http.Server | undefined;
  #rr = 0;
  /** Keep-alive pools per destination cluster, for the TLS state they were made with. */
  #agents = new Map<string, http.Agent>();
  #agentsFor: ClientTls | undefined;
  #agentsForMesh: MeshFile | undefined;
  readonly #ports = new Map<string, number>();
  /** TLS sessions to resume, by endpoint and expected identity, for the client TLS state they were made with. */
  readonly #sessions = new Map<string, Buffer>();
  #sessionsFor: ClientTls | undefined;
  /** What each pooled connection was opened to, for the access log of the requests it carries. */
  readonly #connected = new WeakMap<Duplex, Connected>();

  constructor(options: OutboundOptions) {
    this.#o = options;
  }

  /** Actual ports: `http-proxy` and `upstream:<listen>`. */
  get ports(): ReadonlyMap<string, number> {
    return this.#ports;
  }

  async listen(): Promise<void> {
    if (this.#o.httpProxyPort !== undefined) {
      const server = http.createServer((req, res) => this.#proxyRequest(req, res));
      server.on('connect', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void this.#proxyConnect(req, socket, head));
      server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void this.#proxyUpgrade(req, socket, head));
      await listenExplained(server, this.#o.httpProxyPort, '127.0.0.1', { what: "the app's outbound HTTP proxy port", movedBy: '--outbound-port' });
      this.#httpProxy = server;
      this.#ports.set('http-proxy', (server.address() as net.AddressInfo).port);
    }
    for (const u of this.#o.upstreams ?? []) {
      const server = net.createServer({ noDelay: true }, (socket) => void this.#upstream(u, socket));
      await listenExplained(server, u.listen, '127.0.0.1', { what: `the upstream port ${u.listen}`, movedBy: '--upstream' });
      this.#servers.push(server);
      this.#ports.set(`upstream:${u.listen}`, (server.address() as net.AddressInfo).port);
    }
  }

  async close(): Promise<void> {
    const all: net.Server[] = [...this.#servers, ...(this.#httpProxy === undefined ? [] : [this.#httpProxy])];
    this.#httpProxy?.closeAllConnections();
    await Promise.all(all.map((s) => new Promise<void>((r) => s.close(() => r()))));
    for (const a of this.#agents.values()) a.destroy();
  }

  /** Opens a connection to host:port as the mesh says: mTLS with secure naming, plaintext, or refused. */
  async connect(host: string, port: number): Promise<Connected> {
    const { mesh } = this.#o.current();
    return this.#open(resolveDestination(mesh, this.#o.workload.namespace, host, port), host, port);
  }

  /**
   * Opens a connection for a captured one, by its original destination: a service's address or an endpoint of one
   * (the registry), with mTLS and secure naming as `connect`; any other address per outboundTrafficPolicy.
   */
  async connectOriginal(address: string, port: number): Promise<Connected> {
    const { mesh } = this.#o.current();
    return this.#open(destinationByAddress(mesh, address, port), address, port);
  }

  async #open(dest: Destination | undefined, host: string, port: number): Promise<Connected> {
    const { mesh, engine } = this.#o.current();
    if (dest === undefined) {
      if (mesh.mesh.outboundTrafficPolicy === 'REGISTRY_ONLY') {
        throw new OutboundError('ERR_OUTBOUND_REGISTRY_ONLY', `${host}:${port} is not in the mesh registry and outboundTrafficPolicy is REGISTRY_ONLY`, 502);
      }
      return { socket: await this.#dial(net.connect({ host, port, noDelay: true }), 'connect'), mtls: false, dest: undefined, endpoint: undefined };
    }
    if (dest.endpoints.length === 0) throw new OutboundError('ERR_OUTBOUND_NO_ENDPOINTS', `no healthy upstream: ${dest.clusterName} has no endpoints`, 503);
    const ep = dest.endpoints[this.#rr++ % dest.endpoints.length]!;
    const mode = engine.workload(ep.workload.namespace, ep.workload.labels).mtls.modeFor(ep.port);
    if (mode === 'DISABLE') {
      return { socket: await this.#dial(net.connect({ host: ep.address, port: ep.port, noDelay: true }), 'connect'), mtls: false, dest, endpoint: ep };
    }
    const ct = this.#o.clientTls();
    if (ct === undefined) throw new OutboundError('ERR_OUTBOUND_NO_SVID', 'no SVID yet: cannot originate mTLS', 503);
    // A resumed session skips the server's identity check (Node runs checkServerIdentity on full handshakes only),
    // so a session is offered again only to the same endpoint under the same expected service accounts, and only
    // while the SVID and bundle it was made with are in force.
    if (ct !== this.#sessionsFor) {
      this.#sessions.clear();
      this.#sessionsFor = ct;
    }
    const sessionKey = `${ep.address}:${ep.port}|${[...dest.serviceAccounts].sort().join(',')}`;
    const session = this.#sessions.get(sessionKey);
    const socket = tls.connect({
      host: ep.address, port: ep.port, servername: dest.clusterName, ALPNProtocols: ['http/1.1'],
      ...clientTlsOptions(ct.svid, ct.bundle, { serviceAccounts: dest.serviceAccounts }),
      ...(session === undefined ? {} : { session }),
    });
    socket.on('session', (s: Buffer) => {
      if (this.#sessionsFor !== ct) return;
      if (this.#sessions.size >= MAX_SESSIONS) this.#sessions.delete(this.#sessions.keys().next().value!);
      this.#sessions.set(sessionKey, s);
    });
    socket.setNoDelay(true);
    return { socket: await this.#dial(socket, 'secureConnect'), mtls: true, dest, endpoint: ep };
  }

  #dial<T extends net.Socket>(socket: T, ready: 'connect' | 'secureConnect'): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new OutboundError('ERR_OUTBOUND_TIMEOUT', 'upstream connect timeout', 503));
      }, this.#o.connectTimeoutMs ?? 10_000);
      socket.once(ready, () => {
        clearTimeout(timer);
        resolve(socket);
      });
      socket.once('error', (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(err instanceof OutboundError ? err : new OutboundError('ERR_OUTBOUND_CONNECT', `upstream connect error: ${err.message}`, 503));
      });
    });
  }

  #log(via: OutboundEntry['via'], start: number, destination: string, c: Connected | undefined, status: number | undefined, error: string | undefined,
    extra: { method?: string; path?: string } = {}, bytes: { sent: number; received: number } = { sent: 0, received: 0 }): void {
    this.#o.onLog(outboundEntry(via, start, destination, c, status, error, extra, bytes));
  }

  async #upstream(u: Upstream, local: net.Socket): Promise<void> {
    const start = Date.now();
    local.on('error', () => local.destroy());
    local.pause();
    let c: Connected;
    try {
      c = await this.connect(u.host, u.port);
    } catch (err) {
      this.#log('upstream', start, `${u.host}:${u.port}`, undefined, undefined, (err as Error).message);
      local.destroy();
      return;
    }
    const bytes = countBytes(local, c.socket);
    pipeBoth(local, c.socket, () => this.#log('upstream', start, `${u.host}:${u.port}`, c, undefined, undefined, {}, bytes));
    local.resume();
  }

  async #proxyConnect(req: http.IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    const start = Date.now();
    const target = req.url ?? '';
    const { host, port } = splitHostPort(target, 443);
    client.on('error', () => client.destroy());
    let c: Connected;
    try {
      c = await this.connect(host, port);
    } catch (err) {
      const status = err instanceof OutboundError ? err.status : 503;
      client.end(`HTTP/1.1 ${status} ${status === 502 ? 'Bad Gateway' : 'Service Unavailable'}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
      this.#log('connect', start, target, undefined, status, (err as Error).message);
      return;
    }
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) c.socket.write(head);
    const bytes = countBytes(client, c.socket);
    pipeBoth(client, c.socket, () => this.#log('connect', start, target, c, 200, undefined, {}, bytes));
  }

  /**
   * A WebSocket handshake sent to the HTTP proxy (absolute-form): a connection of its own to the destination (mTLS
   * in the mesh, as any other), the handshake forwarded with its upgrade headers, then bytes both ways; the
   * destination's sidecar decides it and tunnels it to its app.
   */
  async #proxyUpgrade(req: http.IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    const start = Date.now();
    client.on('error', () => client.destroy());
    const answer = (status: number, text: string): void => {
      client.end(`HTTP/1.1 ${status} ${text}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
    };
    let url: URL;
    try {
      url = new URL(req.url ?? '');
      if (url.protocol !== 'http:' && url.protocol !== 'ws:') throw new Error('only http:// targets');
    } catch {
      answer(400, 'Bad Request');
      return;
    }
    if (String(req.headers['upgrade'] ?? '').toLowerCase() !== 'websocket') {
      answer(400, 'Bad Request');
      return;
    }
    const port = url.port === '' ? 80 : Number(url.port);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const destination = `${host}:${port}`;
    const extra = { method: req.method ?? 'GET', path: url.pathname };
    let c: Connected;
    try {
      c = await this.connect(host, port);
    } catch (err) {
      const status = err instanceof OutboundError ? err.status : 503;
      answer(status, status === 502 ? 'Bad Gateway' : 'Service Unavailable');
      this.#log('http-proxy', start, destination, undefined, status, (err as Error).message, extra);
      return;
    }
    let text = `${req.method ?? 'GET'} ${url.pathname}${url.search} HTTP/1.1\r\n`;
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const k = raw[i]!.toLowerCase();
      if (k === 'proxy-connection' || k === 'proxy-authorization' || k === 'keep-alive') continue;
      text += `${raw[i]!}: ${raw[i + 1]!}\r\n`;
    }
    c.socket.write(`${text}\r\n`, 'latin1');
    if (head.length > 0) c.socket.write(head);
    const bytes = countBytes(client, c.socket);
    pipeBoth(client, c.socket, () => this.#log('http-proxy', start, destination, c, undefined, undefined, extra, bytes));
  }

  #agentFor(dest: string, create: () => http.Agent): http.Agent {
    const ct = this.#o.clientTls();
    const mesh = this.#o.current().mesh;
    if (ct !== this.#agentsFor || mesh !== this.#agentsForMesh) {
      // A rotated SVID or bundle, or a new registry or outbound policy: new pools (a pooled connection must not
      // outlive the decision that opened it); the old ones close once their requests are done.
      const old = [...this.#agents.values()];
      setTimeout(() => old.forEach((a) => a.destroy()), 60_000).unref();
      this.#agents = new Map();
      this.#agentsFor = ct;
      this.#agentsForMesh = mesh;
    }
    let a = this.#agents.get(dest);
    if (a === undefined) this.#agents.set(dest, (a = create()));
    return a;
  }

  #proxyRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const start = Date.now();
    let url: URL;
    try {
      url = new URL(req.url ?? '');
      if (url.protocol !== 'http:') throw new Error('only http:// targets');
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('an HTTP proxy request needs an absolute http:// URL\n');
      return;
    }
    const port = url.port === '' ? 80 : Number(url.port);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const destination = `${host}:${port}`;
    let connected: Connected | undefined;
    // One pool per destination: a pooled connection carries requests of that destination only, so the server it
    // proved itself to (secure naming) is the one the next request expects.
    const self = this;
    const agent = this.#agentFor(destination, () => {
      const a = new http.Agent({ keepAlive: true, maxSockets: 64, noDelay: true } as http.AgentOptions);
      (a as http.Agent & { createConnection: unknown }).createConnection = (_opts: unknown, cb: (err: Error | null, s?: Duplex) => void): undefined => {
        self.connect(host, port).then((c) => {
          self.#connected.set(c.socket, c);
          cb(null, c.socket);
        }, (err: Error) => cb(err));
        return undefined;
      };
      return a;
    });
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
    const up = http.request({ host, port, method: req.method, path: `${url.pathname}${url.search}`, headers, agent });
    up.on('socket', (sock: Duplex) => (connected = this.#connected.get(sock)));
    up.on('response', (ur) => {
      const rh: http.OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(ur.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) rh[k] = v;
      res.writeHead(ur.statusCode ?? 502, rh);
      ur.pipe(res);
      res.once('finish', () => this.#log('http-proxy', start, destination, connected, ur.statusCode, undefined, { method: req.method ?? 'GET', path: url.pathname }));
    });
    up.on('error', (err: Error) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const status = err instanceof OutboundError ? err.status : 503;
      const body = err instanceof OutboundError && status === 502 ? `${err.message}\n` : `upstream connect error or disconnect/reset before headers. reset reason: ${err.message}\n`;
      res.writeHead(status, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)) }).end(body);
      this.#log('http-proxy', start, destination, connected, status, err.message, { method: req.method ?? 'GET', path: url.pathname });
    });
    req.pipe(up);
  }
}

/** The access entry of an outbound connection or request, from what `connect` opened (nothing when it failed). */
export function outboundEntry(via: OutboundEntry['via'], start: number, destination: string, c: Connected | undefined, status: number | undefined, error: string | undefined,
  extra: { method?: string; path?: string } = {}, bytes: { sent: number; received: number } = { sent: 0, received: 0 }): OutboundEntry {
  const w = c?.endpoint?.workload;
  return {
    kind: 'outbound', via, time: new Date(start).toISOString(), durationMs: Date.now() - start, destination,
    cluster: c?.dest?.clusterName, endpoint: c?.endpoint === undefined ? undefined : `${c.endpoint.address}:${c.endpoint.port}`,
    mtls: c?.mtls ?? false, destinationWorkload: w?.name, destinationNamespace: w?.namespace,
    destinationServiceAccount: w === undefined ? undefined : `${w.namespace}/${w.serviceAccount}`,
    bytesSent: bytes.sent, bytesReceived: bytes.received, status, error, ...extra,
  };
}

/** Bytes from the app (sent) and to it (received), counted as they pass. */
function countBytes(app: Duplex, upstream: Duplex): { sent: number; received: number } {
  const bytes = { sent: 0, received: 0 };
  app.on('data', (c: Buffer) => (bytes.sent += c.length));
  upstream.on('data', (c: Buffer) => (bytes.received += c.length));
  return bytes;
}

function pipeBoth(a: Duplex, b: Duplex, done: () => void): void {
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    a.destroy();
    b.destroy();
    done();
  };
  a.pipe(b);
  b.pipe(a);
  a.once('close', finish);
  b.once('close', finish);
  a.on('error', finish);
  b.on('error', finish);
}
