import { createRequire } from 'node:module';
import { Duplex } from 'node:stream';

/**
 * HTTP/2 header fields as the client sent them, checked before node:http2 sees them. Node's HTTP/2 server ignores
 * a field nghttp2 finds invalid (a value with CR, LF, NUL or another control character, an upper-case or otherwise
 * invalid name) and hands the request on without it, so a DENY on `x-role: admin` never sees an `X-Role: admin`,
 * and the app gets a request that was altered to make it valid. Envoy resets such a stream (PROTOCOL_ERROR,
 * RFC 9113 §8.2.1). This module sits between the connection and node:http2: it passes every byte through
 * unchanged, follows the frames, decodes each header block with the connection's HPACK state (hpack.js), and
 * records the streams whose headers were malformed, which the listener then resets instead of deciding.
 */

interface HpackHeader {
  readonly name: string;
  readonly value: string;
}

interface HpackDecompressor {
  write(block: Buffer): void;
  execute(): void;
  read(): HpackHeader | null;
  on(event: 'error', listener: (err: Error) => void): void;
}

interface HpackModule {
  readonly decompressor: { create(options: { table: { size: number } }): HpackDecompressor };
}

const hpack = createRequire(import.meta.url)('hpack.js') as HpackModule;

const PREFACE_LENGTH = 24;
const FRAME_HEADERS = 0x1;
const FRAME_PUSH_PROMISE = 0x5;
const FRAME_CONTINUATION = 0x9;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
/** node:http2's default SETTINGS_HEADER_TABLE_SIZE, which the listener does not change. */
const HEADER_TABLE_SIZE = 4096;

/** RFC 9113 §8.2.1 / nghttp2's checks: field names are lower-case tokens (a pseudo-header starts with ":"). */
const FIELD_NAME = /^:?[a-z0-9!#$%&'*+\-.^_`|~]+$/;
/** Field values: no control character but HTAB, no DEL, and no white space at either end. */
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]|^[ \t]|[ \t]$/;

/** Why a decoded field is malformed, or undefined. */
export function malformedField(name: string, value: string): string | undefined {
  if (!FIELD_NAME.test(name)) return `header name ${JSON.stringify(name)} is not a lower-case token`;
  const m = BAD_VALUE.exec(value);
  if (m === null) return undefined;
  const what = m[0] === ' ' || m[0] === '\t' ? 'white space at an end' : `the character 0x${m[0].charCodeAt(0).toString(16).padStart(2, '0')}`;
  return `header ${JSON.stringify(name)} has ${what} in its value`;
}

export interface H2HeaderCheckOptions {
  /** The most header block bytes one stream may accumulate (HEADERS plus CONTINUATION frames). */
  readonly maxHeaderBlockBytes: number;
}

/**
 * A Duplex over the real connection that node:http2 reads from. `malformed` holds, per stream id, why its headers
 * were refused; the listener looks there before deciding a request.
 */
export class H2HeaderCheck extends Duplex {
  readonly malformed = new Map<number, string>();
  readonly #socket: Duplex;
  readonly #max: number;
  readonly #hpack = hpack.decompressor.create({ table: { size: HEADER_TABLE_SIZE } });
  #preface = PREFACE_LENGTH;
  /** The frame header being read (9 bytes), and what remains of the current frame's payload. */
  #head = Buffer.alloc(9);
  #headFill = 0;
  #remaining = 0;
  /** The current frame, while it is a HEADERS / CONTINUATION whose payload is collected. */
  #collect: { type: number; flags: number; stream: number; parts: Buffer[] } | undefined;
  /** The header block of a stream until END_HEADERS. */
  #block: { stream: number; parts: Buffer[]; size: number } | undefined;
  #broken = false;

  constructor(socket: Duplex, options: H2HeaderCheckOptions) {
    super({ allowHalfOpen: false });
    this.#socket = socket;
    this.#max = options.maxHeaderBlockBytes;
    this.#hpack.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      if (!this.#broken) this.#scan(chunk);
      if (!this.push(chunk)) socket.pause();
    });
    socket.once('end', () => this.push(null));
    socket.once('error', (err: Error) => this.destroy(err));
    socket.once('close', () => this.destroy());
  }

  override _read(): void {
    this.#socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#socket.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#socket.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#socket.destroy();
    cb(err);
  }

  /** Follows frame boundaries; only header block fragments are copied. */
  #scan(chunk: Buffer): void {
    let at = 0;
    if (this.#preface > 0) {
      const n = Math.min(this.#preface, chunk.length);
      this.#preface -= n;
      at = n;
    }
    while (at < chunk.length) {
      if (this.#remaining === 0 && this.#collect === undefined) {
        const n = Math.min(9 - this.#headFill, chunk.length - at);
        chunk.copy(this.#head, this.#headFill, at, at + n);
        this.#headFill += n;
        at += n;
        if (this.#headFill < 9) return;
        this.#headFill = 0;
        const length = this.#head.readUIntBE(0, 3);
        const type = this.#head[3]!;
        const flags = this.#head[4]!;
        const stream = this.#head.readUInt32BE(5) & 0x7fffffff;
        this.#remaining = length;
        if (type === FRAME_HEADERS || type === FRAME_CONTINUATION || type === FRAME_PUSH_PROMISE) {
          this.#collect = { type, flags, stream, parts: [] };
          if (length === 0) this.#frameDone();
        }
        continue;
      }
      const n = Math.min(this.#remaining, chunk.length - at);
      if (this.#collect !== undefined) this.#collect.parts.push(chunk.subarray(at, at + n));
      this.#remaining -= n;
      at += n;
      if (this.#remaining === 0 && this.#collect !== undefined) this.#frameDone();
    }
  }

  #frameDone(): void {
    const f = this.#collect!;
    this.#collect = undefined;
    let payload = f.parts.length === 1 ? f.parts[0]! : Buffer.concat(f.parts);
    if (f.type === FRAME_HEADERS) {
      let start = 0;
      let pad = 0;
      if ((f.flags & FLAG_PADDED) !== 0) {
        pad = payload[0] ?? 0;
        start = 1;
      }
      if ((f.flags & FLAG_PRIORITY) !== 0) start += 5;
      // A bad length is node:http2's to refuse (a connection error); nothing more to check here.
      if (start + pad > payload.length) return this.#giveUp();
      payload = payload.subarray(start, payload.length - pad);
      this.#block = { stream: f.stream, parts: [], size: 0 };
    } else if (f.type === FRAME_PUSH_PROMISE) {
      // Clients must not push (RFC 9113 §8.4); node:http2 ends the connection for it.
      return this.#giveUp();
    } else if (this.#block === undefined || this.#block.stream !== f.stream) {
      return this.#giveUp();
    }
    const block = this.#block!;
    block.parts.push(Buffer.from(payload));
    block.size += payload.length;
    if (block.size > this.#max) {
      // Far past what node:http2 accepts (maxHeaderListSize): the connection is not worth following.
      this.malformed.set(block.stream, `header block larger than ${this.#max} bytes`);
      return this.#giveUp();
    }
    if ((f.flags & FLAG_END_HEADERS) === 0) return;
    this.#block = undefined;
    this.#decode(block.stream, block.parts.length === 1 ? block.parts[0]! : Buffer.concat(block.parts));
  }

  #decode(stream: number, block: Buffer): void {
    try {
      this.#hpack.write(block);
      this.#hpack.execute();
    } catch {
      return this.#giveUp();
    }
    let why: string | undefined;
    for (let h = this.#hpack.read(); h !== null; h = this.#hpack.read()) why ??= malformedField(h.name, h.value);
    if (why !== undefined && !this.malformed.has(stream)) {
      this.malformed.set(stream, why);
      // Entries leave when the listener resets their stream; a client that keeps sending what nghttp2 resets by
      // itself (so no request ever reaches the listener) is not followed for long.
      if (this.malformed.size > 100) this.#giveUp();
    }
  }

  /**
   * The frames can no longer be followed (a compression error, a frame out of place, an oversized block):
   * node:http2 would end such a connection too. It is ended here, so that no request is decided on headers this
   * module could not check.
   */
  #giveUp(): void {
    this.#broken = true;
    this.#collect = undefined;
    this.#block = undefined;
    this.destroy(new Error('HTTP/2 framing or header compression could not be followed'));
  }
}
