import { StringDecoder } from 'node:string_decoder';
import type { ProxySnapshot } from './snapshot.ts';

/**
 * The wire format between proxies and the control plane, over one mTLS HTTP/2 connection. Bodies are JSON;
 * the configuration stream is NDJSON in both directions (one message per line).
 */

export const PATH_CSR = '/v1/csr';
export const PATH_STREAM = '/v1/stream';

/** The control plane's own identity: spiffe://<trust domain>/ns/istio-system/sa/rampart-control-plane. */
export const CONTROL_PLANE_NAMESPACE = 'istio-system';
export const CONTROL_PLANE_SERVICE_ACCOUNT = 'rampart-control-plane';

/** Proxy → control plane. */
export type ProxyMessage =
  | { readonly type: 'subscribe'; readonly workload: string }
  | { readonly type: 'ack'; readonly version: string; readonly certNotAfter?: string }
  | { readonly type: 'nack'; readonly version: string; readonly error: string; readonly certNotAfter?: string }
  | { readonly type: 'access'; readonly entries: readonly ReportedAccess[]; readonly dropped?: number };

/**
 * One inbound decision as a proxy reports it on its stream (what Envoy's access log service receives): the access
 * entry of the proxy's log, its time as text, and for a denial the full explanation of the decision as
 * `rampart check` prints it, computed by the proxy from the request it decided.
 */
export interface ReportedAccess {
  readonly kind: 'http' | 'tcp' | 'connection';
  readonly time: string;
  readonly durationMs: number;
  readonly port: number;
  readonly sourceIp?: string;
  readonly sourcePrincipal?: string;
  readonly mtls: boolean;
  readonly method?: string;
  readonly authority?: string;
  readonly path?: string;
  readonly status?: number;
  readonly responseFlags: string;
  readonly requestPrincipal?: string;
  readonly decision: 'ALLOW' | 'DENY';
  readonly decidedBy: string;
  readonly policy: string | null;
  readonly rule: number | null;
  readonly reason: string;
  readonly requestId?: string;
  readonly configVersion: string;
  readonly explanation?: string;
}

/** Control plane → proxy. */
export type ControlMessage = { readonly type: 'snapshot' } & ProxySnapshot;

export interface ProxyStatus {
  readonly id: number;
  readonly workload: string;
  readonly identity: string;
  readonly address: string;
  readonly connectedAt: string;
  readonly sentVersion: string | null;
  readonly ackedVersion: string | null;
  /** ACK: runs the version it was sent; NACK: refused it (see error) and runs an older one; PENDING: not answered yet. */
  readonly state: 'PENDING' | 'ACK' | 'NACK';
  readonly error: string | null;
  readonly certNotAfter: string | null;
}

export interface StatusReport {
  readonly version: string | null;
  readonly source: string;
  readonly lastChange: string | null;
  readonly sourceError: string | null;
  /** Errors that kept files out of the current version (their last good content is in force). */
  readonly rejected: readonly string[];
  readonly rejectedFiles: readonly string[];
  readonly resources: number;
  readonly workloads: readonly string[];
  readonly proxies: readonly ProxyStatus[];
  readonly controlPlane: { readonly identity: string; readonly port: number | null; readonly certNotAfter: string | null };
}

/**
 * Calls `onLine` for every non-blank newline-terminated line; `onEnd` at the end of the stream, or with an error for
 * a line over `limit` characters (what was buffered is dropped). UTF-8 split across chunks is decoded whole.
 */
export function readLines(stream: NodeJS.ReadableStream, limit: number, onLine: (line: string) => void, onEnd: (err?: Error) => void): void {
  const decoder = new StringDecoder('utf8');
  let parts: string[] = [];
  let size = 0;
  stream.on('data', (c: Buffer | string) => {
    let text = typeof c === 'string' ? c : decoder.write(c);
    // Only the new text is searched: a snapshot comes in many chunks with one newline, at its end.
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n')) {
      parts.push(text.slice(0, nl));
      const line = parts.join('');
      parts = [];
      size = 0;
      text = text.slice(nl + 1);
      if (/\S/.test(line)) onLine(line);
    }
    if (text === '') return;
    parts.push(text);
    size += text.length;
    if (size > limit) {
      parts = [];
      size = 0;
      onEnd(new Error(`a message is longer than ${limit} characters`));
    }
  });
  stream.on('end', () => onEnd());
}
