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

/** A request from node:http, or from node:http2's compatibility API (which has no headersDistinct or rawHeaders). */
export type AnyRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type AnyResponse = http.ServerResponse | http2.Http2ServerResponse;

export function isH2(req: AnyRequest): req is http2.Http2ServerRequest {
  return 'stream' in req;
}

/** Each header as the list of its values, without HTTP/2 pseudo-headers. */
export function distinctHeaders(req: AnyRequest): Record<string, string[]> {
  if (!isH2(req)) return req.headersDistinct as Record<string, string[]>;
  const out: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (k.startsWith(':') || v === undefined) continue;
    out[k] = Array.isArray(v) ? v : [v];
  }
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
