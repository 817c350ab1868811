import http from 'node:http';
import type { Duplex } from 'node:stream';
import { parseGoDuration } from '../resources/go-duration.ts';
import type { ExtensionProvider } from '../resources/mesh-config.ts';

/**
 * Istio's HTTP external authorizer (meshConfig.extensionProviders[].envoyExtAuthzHttp), as Envoy's ext_authz
 * filter calls it for a CUSTOM AuthorizationPolicy: the request's method, the path behind `pathPrefix` and a chosen
 * set of headers go to the authorizer; a 2xx answer allows (copying `headersToUpstreamOnAllow` into the request),
 * anything else denies with the authorizer's status, body and headers. No answer in time, or no connection, is
 * `statusOnError` (403) unless `failOpen`.
 */

export interface ExtAuthzHttpConfig {
  readonly service: string;
  readonly port: number;
  readonly timeoutMs: number;
  readonly pathPrefix: string;
  readonly failOpen: boolean;
  readonly statusOnError: number;
  readonly includeRequestHeaders: readonly string[];
  readonly additionalHeaders: Readonly<Record<string, string>>;
  readonly headersToUpstreamOnAllow: readonly string[];
  readonly headersToDownstreamOnAllow: readonly string[];
  /** Undefined: every header of the authorizer's answer goes back to the client. */
  readonly headersToDownstreamOnDeny: readonly string[] | undefined;
}

/** Envoy always sends these to the authorizer, besides the configured ones. */
const ALWAYS_INCLUDED = ['host', 'authorization', 'content-length'];
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'content-length']);

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string').map((x) => x.toLowerCase()) : []);

/** The provider's settings, or why it cannot be used (the request then fails closed). */
export function extAuthzHttpConfig(p: ExtensionProvider): ExtAuthzHttpConfig | string {
  if (p.type !== 'envoyExtAuthzHttp') return `provider "${p.name}" is ${p.type}; only envoyExtAuthzHttp is supported`;
  const c = p.config;
  const service = c['service'];
  const port = c['port'];
  if (typeof service !== 'string' || service === '') return `provider "${p.name}" has no service`;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return `provider "${p.name}" has no valid port`;
  const timeout = typeof c['timeout'] === 'string' ? parseGoDuration(c['timeout']) : undefined;
  const status = Number(c['statusOnError'] ?? 403);
  const additional: Record<string, string> = {};
  const extra = c['includeAdditionalHeadersInCheck'];
  if (typeof extra === 'object' && extra !== null) for (const [k, v] of Object.entries(extra)) if (typeof v === 'string') additional[k.toLowerCase()] = v;
  return {
    service: service.toLowerCase(),
    port,
    // Istio's default is 600 s.
    timeoutMs: timeout === undefined ? 600_000 : Math.max(1, Number(timeout / 1_000_000n)),
    pathPrefix: typeof c['pathPrefix'] === 'string' ? c['pathPrefix'] : '',
    failOpen: c['failOpen'] === true,
    statusOnError: Number.isInteger(status) && status >= 100 && status <= 599 ? status : 403,
    includeRequestHeaders: [...strings(c['includeRequestHeadersInCheck']), ...strings(c['includeHeadersInCheck'])],
    additionalHeaders: additional,
    headersToUpstreamOnAllow: strings(c['headersToUpstreamOnAllow']),
    headersToDownstreamOnAllow: strings(c['headersToDownstreamOnAllow']),
    headersToDownstreamOnDeny: c['headersToDownstreamOnDeny'] === undefined ? undefined : strings(c['headersToDownstreamOnDeny']),
  };
}

/** Istio's header lists match exactly, or by prefix (`x-ext-*`) or suffix (`*-id`), case-insensitively. */
export function headerListMatches(list: readonly string[], name: string): boolean {
  for (const p of list) {
    if (p === name) return true;
    if (p.endsWith('*') && name.startsWith(p.slice(0, -1))) return true;
    if (p.startsWith('*') && name.endsWith(p.slice(1))) return true;
  }
  return false;
}

export type ExtAuthzAnswer =
  | {
    readonly allow: true; readonly upstreamHeaders: Readonly<Record<string, string>>; readonly downstreamHeaders: Readonly<Record<string, string>>;
    /** Set when the authorizer could not be asked and the provider's failOpen let the request on: why. */
    readonly failedOpen?: string;
  }
  | { readonly allow: false; readonly status: number; readonly headers: Readonly<Record<string, string>>; readonly body: string; readonly error?: string };

export interface CheckedRequest {
  readonly method: string;
  /** Path and query as forwarded (normalized). */
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
}

function pick(headers: http.IncomingHttpHeaders, keep: (name: string) => boolean): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && keep(k)) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

export function checkExtAuthzHttp(cfg: ExtAuthzHttpConfig, req: CheckedRequest, connect: (host: string, port: number) => Promise<Duplex>): Promise<ExtAuthzAnswer> {
  const headers: Record<string, string> = {
    ...pick(req.headers, (k) => ALWAYS_INCLUDED.includes(k) || headerListMatches(cfg.includeRequestHeaders, k)),
    ...cfg.additionalHeaders,
  };
  // The body is not sent (includeRequestBodyInCheck is not supported), so the length of the original is not either.
  delete headers['content-length'];
  const onError = (error: string): ExtAuthzAnswer =>
    cfg.failOpen ? { allow: true, upstreamHeaders: {}, downstreamHeaders: {}, failedOpen: error } : { allow: false, status: cfg.statusOnError, headers: {}, body: '', error };
  return new Promise((resolve) => {
    let settled = false;
    const done = (a: ExtAuthzAnswer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(a);
    };
    // No `agent`: with `agent: false` Node builds an Agent of its own, which dials cfg.service itself through DNS
    // and never calls createConnection. The connection must come from `connect`, the sidecar's outbound path: the
    // registry resolves a mesh service name, and a destination in the mesh gets mTLS with secure naming.
    const check = http.request({
      host: cfg.service, port: cfg.port, method: req.method, path: `${cfg.pathPrefix}${req.path}`, headers,
      createConnection: ((_o: unknown, cb: (err: Error | null, s?: Duplex) => void) => {
        connect(cfg.service, cfg.port).then((s) => cb(null, s), (err: Error) => cb(err));
        return undefined;
      }) as unknown as http.RequestOptions['createConnection'],
    });
    const timer = setTimeout(() => {
      check.destroy();
      done(onError(`no answer within ${cfg.timeoutMs} ms`));
    }, cfg.timeoutMs);
    check.on('error', (err) => done(onError(err.message)));
    check.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (body.length < 64 * 1024) body += c;
      });
      res.on('error', (err) => done(onError(err.message)));
      res.on('end', () => {
        const status = res.statusCode ?? 500;
        if (status >= 200 && status < 300) {
          done({
            allow: true,
            upstreamHeaders: pick(res.headers, (k) => headerListMatches(cfg.headersToUpstreamOnAllow, k)),
            downstreamHeaders: pick(res.headers, (k) => headerListMatches(cfg.headersToDownstreamOnAllow, k)),
          });
        } else {
          const deny = cfg.headersToDownstreamOnDeny;
          done({ allow: false, status, body, headers: pick(res.headers, (k) => !HOP_BY_HOP.has(k) && (deny === undefined || headerListMatches(deny, k))) });
        }
      });
    });
    check.end();
  });
}
