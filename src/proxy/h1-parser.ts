import { createRequire } from 'node:module';
import { RampartError } from '../errors.ts';

/**
 * Node's own HTTP/1.1 parser (llhttp, the one node:http runs), driven directly, so that the sidecar can decide a
 * request from its head and forward it without building node:http's request, response and stream objects for
 * every request (that machinery was most of a request's CPU). It runs strict, as node:http does by default: both
 * Content-Length and Transfer-Encoding, bad chunking, invalid header characters and the other smuggling shapes
 * fail the parse. Its binding is not a documented API, so it is looked up once and checked; when it is missing
 * or different (`h1ParserAvailable` false), the sidecar uses node:http instead.
 */

interface LlhttpBinding {
  new (): LlhttpParser;
  readonly REQUEST: number;
  readonly RESPONSE: number;
  readonly kOnMessageBegin: number;
  readonly kOnHeaders: number;
  readonly kOnHeadersComplete: number;
  readonly kOnBody: number;
  readonly kOnMessageComplete: number;
  readonly kOnExecute: number;
}

interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | LlhttpError;
  finish(): number | LlhttpError | undefined;
  close(): void;
  [callback: number]: unknown;
}

interface LlhttpError extends Error {
  readonly code?: string;
  readonly reason?: string;
  readonly bytesParsed?: number;
}

const binding = ((): { parser: LlhttpBinding; methods: readonly string[] } | undefined => {
  try {
    const common = createRequire(import.meta.url)('_http_common') as { HTTPParser?: unknown; methods?: unknown };
    const p = common.HTTPParser as LlhttpBinding | undefined;
    const methods = common.methods;
    if (typeof p !== 'function' || !Array.isArray(methods) || methods[1] !== 'GET') return undefined;
    for (const k of ['REQUEST', 'RESPONSE', 'kOnMessageBegin', 'kOnHeaders', 'kOnHeadersComplete', 'kOnBody', 'kOnMessageComplete', 'kOnExecute'] as const) {
      if (typeof p[k] !== 'number') return undefined;
    }
    if (typeof p.prototype.initialize !== 'function' || typeof p.prototype.execute !== 'function') return undefined;
    return { parser: p, methods: methods as string[] };
  } catch {
    return undefined;
  }
})();

/** Whether this Node.js exposes the parser in the shape this module drives. */
export const h1ParserAvailable = binding !== undefined;

export class H1ParseError extends RampartError {
  /** llhttp's error code (`HPE_HEADER_OVERFLOW`, `HPE_INVALID_CONTENT_LENGTH`…). */
  readonly llhttpCode: string;
  constructor(llhttpCode: string, message: string) {
    super('ERR_HTTP1_PARSE', message);
    this.llhttpCode = llhttpCode;
  }
}

export interface H1Head {
  readonly versionMajor: number;
  readonly versionMinor: number;
  /** Request method (requests only). */
  readonly method: string;
  /** Request target as sent (requests only). */
  readonly url: string;
  /** Status code and reason (responses only). */
  readonly status: number;
  readonly statusText: string;
  /** Names as sent, values trimmed: [name, value, name, value…]. */
  readonly rawHeaders: readonly string[];
  readonly upgrade: boolean;
  /** Whether the connection may carry another message after this one (HTTP version and Connection header). */
  readonly keepAlive: boolean;
}

export interface H1Events {
  /** The first byte of a message arrived. */
  begin(): void;
  /** A head is complete; return true for a response that has no body whatever its headers say (to a HEAD). */
  head(head: H1Head): boolean;
  body(chunk: Buffer): void;
  complete(): void;
  /**
   * A message with an upgrade (a WebSocket handshake, or a 101 answering one) is complete: return true when the
   * connection now carries the upgraded protocol, and execute() hands back the bytes after the message instead
   * of parsing them; false to go on reading HTTP.
   */
  upgraded?(): boolean;
}

export class H1Parser {
  readonly #p: LlhttpParser;
  #events!: H1Events;
  #headers: string[] = [];
  #url = '';
  #closed = false;
  #executing = false;
  /** The message just completed had an upgrade. */
  #upgradeDone = false;
  #upgradeHead = false;

  constructor(kind: 'request' | 'response', maxHeaderBytes: number, events: H1Events) {
    if (binding === undefined) throw new RampartError('ERR_HTTP1_PARSER_UNAVAILABLE', 'this Node.js does not expose its HTTP/1.1 parser');
    const B = binding.parser;
    const methods = binding.methods;
    const p = new B();
    p.initialize(kind === 'request' ? B.REQUEST : B.RESPONSE, {}, maxHeaderBytes, 0);
    p[B.kOnMessageBegin] = (): void => events.begin();
    // Heads longer than one read, or with many headers, arrive in parts before the head is complete.
    p[B.kOnHeaders] = (headers: string[] | undefined, url: string | undefined): void => {
      if (headers !== undefined) for (const h of headers) this.#headers.push(h);
      if (url !== undefined) this.#url += url;
    };
    p[B.kOnHeadersComplete] = (versionMajor: number, versionMinor: number, headers: string[] | undefined, method: number | undefined, url: string | undefined,
      status: number | undefined, statusText: string | undefined, upgrade: boolean, keepAlive: boolean): number => {
      let rawHeaders = headers ?? [];
      if (this.#headers.length > 0) {
        rawHeaders = this.#headers.concat(rawHeaders);
        this.#headers = [];
      }
      const fullUrl = this.#url + (url ?? '');
      this.#url = '';
      this.#upgradeHead = upgrade;
      const skipBody = events.head({
        versionMajor, versionMinor, method: method === undefined ? '' : methods[method] ?? '', url: fullUrl, status: status ?? 0, statusText: statusText ?? '',
        rawHeaders, upgrade, keepAlive,
      });
      return skipBody ? 1 : 0;
    };
    p[B.kOnBody] = (chunk: Buffer): void => events.body(chunk);
    p[B.kOnMessageComplete] = (): void => {
      this.#upgradeDone = this.#upgradeHead;
      this.#upgradeHead = false;
      events.complete();
    };
    this.#events = events;
    p[B.kOnExecute] = (): void => undefined;
    this.#p = p;
  }

  /**
   * Parses a chunk. After a message with an upgrade that `upgraded()` takes, the bytes that follow it are returned
   * (possibly none) and the parser reads no more; an upgrade not taken is read past as further messages.
   */
  execute(data: Buffer): H1ParseError | Buffer | undefined {
    if (this.#closed) return undefined;
    let rest = data;
    this.#executing = true;
    try {
      for (;;) {
        const r = this.#p.execute(rest);
        if (typeof r !== 'number') return new H1ParseError(r.code ?? 'HPE_UNKNOWN', r.reason ?? r.message);
        if (this.#upgradeDone) {
          this.#upgradeDone = false;
          if (!this.#closed && this.#events.upgraded?.() === true) {
            this.close();
            return rest.subarray(r);
          }
        }
        if (r >= rest.length || this.#closed) return undefined;
        rest = rest.subarray(r);
      }
    } finally {
      this.#executing = false;
      // A close asked for inside a callback waits for the native parser to return (closing frees it).
      if (this.#closed) this.#p.close();
    }
  }

  /** The peer ended its side: completes a message delimited by the end of the connection. */
  finish(): H1ParseError | undefined {
    if (this.#closed) return undefined;
    this.#executing = true;
    try {
      const r = this.#p.finish();
      return r === undefined || typeof r === 'number' ? undefined : new H1ParseError(r.code ?? 'HPE_UNKNOWN', r.reason ?? r.message);
    } finally {
      this.#executing = false;
      if (this.#closed) this.#p.close();
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#executing) this.#p.close();
  }
}
