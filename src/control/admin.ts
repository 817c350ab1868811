import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import type http from 'node:http';
import { CONSOLE_CSS, CONSOLE_JS } from './console-assets.ts';
import { accessPage, ConsoleModel, decisionPage, decisionsPage, loginPage, policiesPage, workloadsPage } from './console-pages.ts';
import type { DecisionFeed, FeedEntry } from './decision-feed.ts';
import type { StatusReport } from './protocol.ts';
import type { MeshState } from './snapshot.ts';

/**
 * The control plane's admin port: `/ready`, `/status` (what `rampart status` reads) and the console under
 * `/console/`. Read-only. Bound to 127.0.0.1 by default; there, requests must name a loopback host (a web page whose
 * name was rebound to 127.0.0.1 cannot read it). Bound to any other address it needs a token: `authorization:
 * Bearer TOKEN` for programs, a sign-in form and a session cookie for browsers. `/ready` is always open (probes).
 */

export interface AdminDeps {
  status(): StatusReport;
  state(): MeshState | undefined;
  ready(): boolean;
  readonly feed: DecisionFeed;
  /** The wall clock, for "expires in …" texts. */
  now(): Date;
}

export interface AdminAccessOptions {
  /** Address the port is bound to. */
  readonly host: string;
  /** Required when `host` is not a loopback address. */
  readonly token?: string;
}

/** Decisions a new stream viewer gets before the live ones. */
const BACKLOG = 200;
/** Bytes an event-stream viewer may leave unread before it is cut off (it reconnects from its last event id). */
const MAX_UNREAD_STREAM_BYTES = 4 * 1024 * 1024;
const KEEPALIVE_MS = 15_000;
const MAX_SESSIONS = 1_000;
const COOKIE = 'rampart_console';

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host);
}

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export class AdminHandler {
  readonly #deps: AdminDeps;
  readonly #loopback: boolean;
  readonly #tokenDigest: Buffer | undefined;
  readonly #sessions = new Set<string>();
  readonly #model = new ConsoleModel();

  constructor(deps: AdminDeps, access: AdminAccessOptions) {
    this.#deps = deps;
    this.#loopback = isLoopbackHost(access.host);
    this.#tokenDigest = access.token === undefined || access.token === '' ? undefined : digest(access.token);
  }

  readonly handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    if (path === '/ready') {
      const ready = this.#deps.ready();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'LIVE\n' : 'NOT READY\n');
      return;
    }
    if (this.#loopback) {
      const host = hostnameOf(req.headers.host);
      if (host === undefined || !isLoopbackHost(host)) {
        // 421: a request for another name reached this port (DNS rebinding, or a mistaken proxy).
        send(res, 421, 'text/plain', `this admin port answers only for 127.0.0.1, localhost and [::1], not ${req.headers.host ?? '(no host)'}\n`);
        return;
      }
    }
    if (path === '/console/console.css') return send(res, 200, 'text/css; charset=utf-8', CONSOLE_CSS);
    if (path === '/console/console.js') return send(res, 200, 'text/javascript; charset=utf-8', CONSOLE_JS);
    if (path === '/console/login' && !this.#loopback) return void this.#login(req, res);
    if (!this.#authorized(req)) {
      const browser = req.method === 'GET' && (path === '/' || (path.startsWith('/console/') && !path.startsWith('/console/api/') && path !== '/console/events'));
      if (browser) send(res, 401, 'text/html; charset=utf-8', loginPage(false));
      else send(res, 401, 'application/json', `${JSON.stringify({ code: 'ERR_ADMIN_UNAUTHENTICATED', error: 'this admin port needs its token: authorization: Bearer TOKEN' })}\n`, { 'www-authenticate': 'Bearer realm="rampart-admin"' });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'application/json', `${JSON.stringify({ error: 'the admin port is read-only' })}\n`, { allow: 'GET, HEAD' });
      return;
    }
    if (path === '/status') return send(res, 200, 'application/json', `${JSON.stringify(this.#deps.status(), null, 2)}\n`);
    if (path === '/' || path === '/console') {
      res.writeHead(302, { ...SECURITY_HEADERS, location: '/console/' }).end();
      return;
    }
    if (path === '/console/events') return this.#events(req, res);
    const state = this.#deps.state();
    const status = this.#deps.status();
    const page = (body: string): void => send(res, 200, 'text/html; charset=utf-8', body);
    if (path === '/console/api/decisions') {
      const after = Number(url.searchParams.get('after') ?? 0);
      return send(res, 200, 'application/json', `${JSON.stringify({ dropped: this.#deps.feed.dropped, decisions: this.#deps.feed.recent(BACKLOG, Number.isFinite(after) ? after : 0) })}\n`);
    }
    const apiOne = /^\/console\/api\/decisions\/(\d{1,15})$/.exec(path);
    if (apiOne !== null) {
      const e = this.#deps.feed.get(Number(apiOne[1]));
      if (e === undefined) send(res, 404, 'application/json', `${JSON.stringify({ code: 'ERR_DECISION_GONE', error: 'not kept any more, or never reported' })}\n`);
      else send(res, 200, 'application/json', `${JSON.stringify(e)}\n`);
      return;
    }
    const one = /^\/console\/decisions\/(\d{1,15})$/.exec(path);
    if (one !== null) return page(decisionPage(status, this.#deps.feed.get(Number(one[1])), Number(one[1])));
    if (path === '/console/decisions') return page(decisionsPage(status, this.#deps.feed.dropped));
    if (state === undefined) return send(res, 503, 'text/plain', 'no configuration loaded yet\n');
    if (path === '/console/') return page(workloadsPage(state, status, this.#deps.now()));
    if (path === '/console/policies') return page(policiesPage(state, status, this.#model));
    if (path === '/console/access') return page(accessPage(state, status, this.#model));
    send(res, 404, 'application/json', `${JSON.stringify({ error: 'not found', endpoints: ['/ready', '/status', '/console/'] })}\n`);
  };

  #authorized(req: http.IncomingMessage): boolean {
    if (this.#loopback) return true;
    if (this.#tokenDigest === undefined) return false;
    const auth = req.headers.authorization;
    if (typeof auth === 'string' && /^Bearer\s+\S+$/i.test(auth)) return timingSafeEqual(digest(auth.replace(/^Bearer\s+/i, '')), this.#tokenDigest);
    const session = cookieValue(req.headers.cookie, COOKIE);
    return session !== undefined && this.#sessions.has(session);
  }

  async #login(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method === 'GET') return send(res, 200, 'text/html; charset=utf-8', loginPage(false));
    if (req.method !== 'POST') return send(res, 405, 'text/plain', 'GET or POST\n', { allow: 'GET, POST' });
    let body = '';
    try {
      body = await readSmallBody(req, 4_096);
    } catch {
      return send(res, 413, 'text/plain', 'too large\n');
    }
    const token = new URLSearchParams(body).get('token') ?? '';
    if (this.#tokenDigest === undefined || !timingSafeEqual(digest(token), this.#tokenDigest)) {
      send(res, 401, 'text/html; charset=utf-8', loginPage(true));
      return;
    }
    if (this.#sessions.size >= MAX_SESSIONS) this.#sessions.delete(this.#sessions.values().next().value!);
    const session = randomBytes(32).toString('base64url');
    this.#sessions.add(session);
    res.writeHead(303, { ...SECURITY_HEADERS, location: '/console/', 'set-cookie': `${COOKIE}=${session}; HttpOnly; SameSite=Strict; Path=/` }).end();
  }

  /** Server-sent events: the recent decisions, then each batch as it is reported; resumes after Last-Event-ID. */
  #events(req: http.IncomingMessage, res: http.ServerResponse): void {
    const feed = this.#deps.feed;
    const last = Number(req.headers['last-event-id'] ?? NaN);
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream', connection: 'keep-alive' });
    res.write('retry: 2000\n\n');
    const write = (entries: readonly FeedEntry[]): void => {
      if (entries.length === 0) return;
      if (res.writableLength > MAX_UNREAD_STREAM_BYTES) {
        res.destroy();
        return;
      }
      res.write(`id: ${entries[entries.length - 1]!.id}\nevent: decisions\ndata: ${JSON.stringify(entries)}\n\n`);
    };
    write(Number.isInteger(last) && last >= 0 ? feed.recent(feed.nextId, last) : feed.recent(BACKLOG));
    const off = feed.subscribe(write);
    const keepalive = setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS);
    keepalive.unref();
    res.on('close', () => {
      off();
      clearInterval(keepalive);
    });
  }
}

function send(res: http.ServerResponse, status: number, type: string, body: string, extra: Readonly<Record<string, string>> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, ...extra, 'content-type': type }).end(res.req.method === 'HEAD' ? undefined : body);
}

function digest(text: string): Buffer {
  // Equal-length inputs for timingSafeEqual, whatever the length of what was sent.
  return createHash('sha256').update(text).digest();
}

/** The name part of a Host header (`[::1]:8080` → `[::1]`, `localhost:80` → `localhost`). */
export function hostnameOf(host: string | undefined): string | undefined {
  if (host === undefined || host === '') return undefined;
  const m = /^(\[[^\]]+\]|[^:]+)(?::\d+)?$/.exec(host);
  return m?.[1]?.toLowerCase();
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

function readSmallBody(req: http.IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      text += c;
      if (text.length > limit) {
        reject(new Error('too large'));
        req.destroy();
      }
    });
    req.on('end', () => resolve(text));
    req.on('error', reject);
  });
}
