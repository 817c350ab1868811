import net from 'node:net';
import os from 'node:os';
import { listenExplained } from '../io/listen.ts';
import type { OriginalDestination } from '../capture/original-dst.ts';
import type { InboundListener } from './inbound.ts';
import { outboundEntry, type Connected, type OutboundEntry, type OutboundProxy } from './outbound.ts';

/**
 * The sidecar's two ports under traffic capture (`rampart capture`, as istio-init sets it up): every inbound TCP
 * connection of the namespace arrives on the inbound capture port (Istio's 15006) and every outbound one the app
 * opens on the outbound capture port (15001). The original destination of each (SO_ORIGINAL_DST) says where it was
 * going: inbound, which workload port (its InboundListener decides it as if it had accepted it); outbound, which
 * service or endpoint of the registry (auto mTLS and secure naming, as any outbound connection), or an address
 * outside the mesh (outboundTrafficPolicy).
 */

export interface CaptureListenerOptions {
  /** The inbound capture port, on every address (redirected connections arrive on the address they were sent to). */
  readonly inboundPort: number;
  /** The outbound capture port, on 127.0.0.1 (REDIRECT of locally made connections lands on loopback). */
  readonly outboundPort: number;
  /**
   * SO_ORIGINAL_DST of an accepted connection: where it was going before the redirect (a connection made straight to
   * a capture port gives that port; one conntrack does not track throws).
   */
  readonly originalDestination: (socket: net.Socket) => OriginalDestination;
  /** The workload port's listener (undeclared ports get one too: Istio's inbound passthrough, protocol detected). */
  readonly inbound: (port: number) => InboundListener;
  readonly outbound: OutboundProxy;
  readonly onLog: (entry: OutboundEntry) => void;
  readonly maxConnections: number;
  /** A connection that could not be placed (no original destination, or one that would loop). */
  readonly onRefused: (direction: 'inbound' | 'outbound', reason: string, peer: string | undefined) => void;
}

/** Whether this namespace has IPv6 loopback (::1), the address an IPv6 redirect lands on. */
function ipv6Available(): boolean {
  return Object.values(os.networkInterfaces()).some((list) => list?.some((a) => a.family === 'IPv6' && a.address === '::1'));
}

const HTTP_REQUEST_LINE = /^([A-Z]{3,10}) (\S+) HTTP\/1\.[01]\r?\n/;

export class CaptureListeners {
  readonly #o: CaptureListenerOptions;
  readonly #inbound: net.Server;
  readonly #outbound: net.Server;
  /** IPv6 connections the app opens are redirected to [::1]; absent where the namespace has no IPv6. */
  #outbound6: net.Server | undefined;
  #inbound6: net.Server | undefined;
  readonly #open = new Set<net.Socket>();

  constructor(options: CaptureListenerOptions) {
    this.#o = options;
    this.#inbound = this.#server('inbound');
    this.#outbound = this.#server('outbound');
  }

  /** One capture server: its connection limit, and a refusal logged for each connection beyond it. */
  #server(direction: 'inbound' | 'outbound'): net.Server {
    const server = direction === 'inbound'
      ? net.createServer({ noDelay: true }, (s) => this.#onInbound(s))
      // Half-open: an app that ends its side (a request, then FIN) still gets the answer.
      : net.createServer({ noDelay: true, allowHalfOpen: true }, (s) => void this.#onOutbound(s));
    server.maxConnections = this.#o.maxConnections;
    server.on('drop', (d?: net.DropArgument) => this.#o.onRefused(direction, `connection limit of ${this.#o.maxConnections} reached`, d?.remoteAddress));
    return server;
  }

  get ports(): { inbound: number; outbound: number } {
    return { inbound: (this.#inbound.address() as net.AddressInfo).port, outbound: (this.#outbound.address() as net.AddressInfo).port };
  }

  async listen(): Promise<void> {
    const inbound = { what: 'the inbound capture port', movedBy: '--inbound-capture-port (and the same port in rampart capture)' };
    const outbound = { what: 'the outbound capture port', movedBy: '--outbound-capture-port (and the same port in rampart capture)' };
    await listenExplained(this.#inbound, this.#o.inboundPort, '0.0.0.0', inbound);
    await listenExplained(this.#outbound, this.#o.outboundPort, '127.0.0.1', outbound);
    // IPv6 on servers of their own (IPv6-only sockets: IPv4 peers keep their plain addresses in logs and policies),
    // where the namespace has IPv6 at all.
    if (ipv6Available()) {
      this.#inbound6 = this.#server('inbound');
      this.#outbound6 = this.#server('outbound');
      await listenExplained(this.#inbound6, this.#o.inboundPort, '::', inbound, { ipv6Only: true });
      await listenExplained(this.#outbound6, this.#o.outboundPort, '::1', outbound);
    }
  }

  async close(): Promise<void> {
    for (const s of this.#open) s.destroy();
    const servers = [this.#inbound, this.#outbound, ...[this.#inbound6, this.#outbound6].filter((x) => x !== undefined)];
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  #original(socket: net.Socket, direction: 'inbound' | 'outbound'): OriginalDestination | undefined {
    socket.on('error', () => socket.destroy());
    let od: OriginalDestination;
    try {
      od = this.#o.originalDestination(socket);
    } catch (err) {
      this.#o.onRefused(direction, `no original destination: ${(err as Error).message}`, socket.remoteAddress);
      socket.destroy();
      return undefined;
    }
    // A connection made straight to a capture port (not redirected) has itself as its original destination; passing
    // it on would loop back here.
    if (od.port === this.#o.inboundPort || od.port === this.#o.outboundPort) {
      this.#o.onRefused(direction, `connection to the ${direction} capture port itself (${od.address}:${od.port}): not redirected, refused`, socket.remoteAddress);
      socket.destroy();
      return undefined;
    }
    return od;
  }

  #onInbound(socket: net.Socket): void {
    const od = this.#original(socket, 'inbound');
    if (od === undefined) return;
    let listener: InboundListener;
    try {
      listener = this.#o.inbound(od.port);
    } catch (err) {
      this.#o.onRefused('inbound', (err as Error).message, socket.remoteAddress);
      socket.destroy();
      return;
    }
    listener.accept(socket);
  }

  async #onOutbound(local: net.Socket): Promise<void> {
    const start = Date.now();
    const od = this.#original(local, 'outbound');
    if (od === undefined) return;
    const destination = od.address.includes(':') ? `[${od.address}]:${od.port}` : `${od.address}:${od.port}`;
    this.#open.add(local);
    local.once('close', () => this.#open.delete(local));
    local.pause();
    // The first request line, when the app speaks HTTP/1.x, names the access entry (the connection is tunnelled
    // whole: the destination's sidecar decides each request). Read as it passes: nothing waits for the app's
    // first bytes, so server-first protocols work.
    const extra: { method?: string; path?: string } = {};
    const bytes = { sent: 0, received: 0 };
    local.on('data', (c: Buffer) => {
      if (bytes.sent === 0) {
        const m = HTTP_REQUEST_LINE.exec(c.subarray(0, 2048).toString('latin1'));
        if (m !== null) [extra.method, extra.path] = [m[1]!, m[2]!.split('?')[0]!];
      }
      bytes.sent += c.length;
    });
    let c: Connected;
    try {
      c = await this.#o.outbound.connectOriginal(od.address, od.port);
    } catch (err) {
      this.#o.onLog(outboundEntry('capture', start, destination, undefined, undefined, (err as Error).message));
      local.destroy();
      return;
    }
    c.socket.on('data', (chunk: Buffer) => (bytes.received += chunk.length));
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      local.destroy();
      c.socket.destroy();
      this.#o.onLog(outboundEntry('capture', start, destination, c, undefined, undefined, extra, bytes));
    };
    local.pipe(c.socket);
    c.socket.pipe(local);
    for (const s of [local, c.socket]) {
      s.once('close', finish);
      s.on('error', finish);
    }
    local.resume();
  }
}
