import type http from 'node:http';
import type http2 from 'node:http2';

/** Reading a request the same way whether node:http or node:http2 (compatibility API) parsed it. */

/** gRPC status for a local reply's HTTP status, as Envoy maps them (grpc's http-grpc-status-mapping). */
export function grpcStatusOf(status: number): number {
  if (status === 401) return 16;
  if (status === 403) return 7;
  if (status === 404) return 12;
  if (status === 400 || status === 431) return 13;
  if (status === 429 || status === 502 || status === 503 || status === 504) return 14;
  return 2;
}

/** A request from node:http, or from node:http2's compatibility API (which has no headersDistinct). */
export type AnyRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type AnyResponse = http.ServerResponse | http2.Http2ServerResponse;

export function isH2(req: AnyRequest): req is http2.Http2ServerRequest {
  return 'stream' in req;
}

/**
 * Each header as the list of its values as received, without HTTP/2 pseudo-headers. For HTTP/2 this reads the
 * raw header list: Node's `req.headers` joins repeated fields with ", " and keeps only the first of a single-value
 * field such as `authorization`, and a decision must see every field the client sent.
 */
export function distinctHeaders(req: AnyRequest): Record<string, string[]> {
  if (!isH2(req)) return req.headersDistinct as Record<string, string[]>;
  const out: Record<string, string[]> = Object.create(null) as Record<string, string[]>;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    if (k.startsWith(':')) continue;
    (out[k] ??= []).push(raw[i + 1]!);
  }
  // HTTP/2 splits cookies into crumbs; Envoy's codec joins them back into one value with "; " (RFC 9113 §8.2.3).
  const cookie = out['cookie'];
  if (cookie !== undefined && cookie.length > 1) out['cookie'] = [cookie.join('; ')];
  return out;
}

export function authorityOf(req: AnyRequest): string | undefined {
  const h = req.headers;
  const a = isH2(req) ? (h[':authority'] as string | undefined) ?? h.host : h.host;
  return a === undefined ? undefined : String(a);
}


export function isGrpc(req: AnyRequest): boolean {
  const ct = req.headers['content-type'];
  return typeof ct === 'string' && ct.startsWith('application/grpc');
}

/** A local reply to a gRPC client: HTTP 200 with the status in grpc-status, as Envoy sends it (clients read trailers). */
export function grpcReply(res: AnyResponse, status: number, message: string, extra: Readonly<Record<string, string>>): void {
  res.writeHead(200, { ...extra, 'content-type': 'application/grpc', 'grpc-status': String(grpcStatusOf(status)), 'grpc-message': encodeURIComponent(message) }).end();
}

/** Closes an HTTP/1.1 connection once the response is out (an unread body must not become the next request). */
export function closeAfter(req: AnyRequest, res: AnyResponse): void {
  if (isH2(req) || req.complete) return;
  res.once('finish', () => req.socket.destroySoon());
}
