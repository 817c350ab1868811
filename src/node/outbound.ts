import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { createRequire } from 'node:module';
import type { Agent } from 'undici';
import { outboundEntry, type Connected } from '../proxy/outbound.ts';
import type { Sidecar } from '../proxy/sidecar.ts';

/**
 * The app's way out, in its own process: connections opened exactly as the sidecar's outbound opens them
 * (`Sidecar.connect`: the registry, auto mTLS with the workload's SVID, secure naming against the service accounts
 * the registry lists, outboundTrafficPolicy for the rest), offered to undici (`fetch`'s dispatcher) and to
 * node:https as their connection factory. A URL names the service as the app always did
 * (`https://httpbin.default:8000/`); `http://` works too, since the mesh, not the URL, decides about mTLS. Outside
 * the mesh (ALLOW_ANY), or on a DISABLE port, an `https://` URL gets ordinary TLS checked against the system's roots
 * and the host name.
 */

export class OutboundConnector {
  readonly #sidecar: Sidecar;

  constructor(sidecar: Sidecar) {
    this.#sidecar = sidecar;
  }

  /** A connection to `host:port` as this workload; `https` asks for TLS where the mesh gives none. */
  async open(host: string, port: number, https: boolean): Promise<net.Socket> {
    const start = Date.now();
    const destination = `${host}:${port}`;
    let c: Connected;
    try {
      c = await this.#sidecar.connect(host, port);
    } catch (err) {
      this.#log(start, destination, undefined, (err as Error).message);
      throw err;
    }
    let socket = c.socket as net.Socket;
    if (!c.mtls && https) {
      try {
        socket = await ownTls(socket, host);
      } catch (err) {
        this.#log(start, destination, c, (err as Error).message);
        throw err;
      }
    }
    const bytes = { sent: 0, received: 0 };
    const write = socket.write;
    // Bytes as the app wrote and read them (before TLS), counted where they pass.
    socket.on('data', (chunk: Buffer) => (bytes.received += chunk.length));
    socket.write = function (this: net.Socket, ...a: Parameters<net.Socket['write']>): boolean {
      const chunk = a[0];
      bytes.sent += typeof chunk === 'string' ? Buffer.byteLength(chunk) : (chunk as Uint8Array).length;
      return write.apply(this, a);
    } as net.Socket['write'];
    socket.once('close', () => this.#log(start, destination, c, undefined, bytes));
    return socket;
  }

  #log(start: number, destination: string, c: Connected | undefined, error: string | undefined, bytes = { sent: 0, received: 0 }): void {
    this.#sidecar.recordOutbound(outboundEntry('in-process', start, destination, c, undefined, error, {}, bytes));
  }

  /** An undici dispatcher (`fetch(url, { dispatcher })`, `undici.request`) whose every connection is opened here. */
  dispatcher(options: { readonly connections?: number } = {}): Agent {
    // Loaded on first use: undici is about 12 MB of an app's memory, which an app that never asks for a dispatcher
    // (a server only, or node:https clients) should not pay.
    const { Agent: UndiciAgent } = createRequire(import.meta.url)('undici') as typeof import('undici');
    return new UndiciAgent({
      ...(options.connections === undefined ? {} : { connections: options.connections }),
      connect: (opts, callback) => {
        const secure = opts.protocol === 'https:';
        const port = opts.port === '' ? (secure ? 443 : 80) : Number(opts.port);
        this.open(opts.hostname.replace(/^\[|\]$/g, ''), port, secure).then((s) => callback(null, s), (err: Error) => callback(err, null));
      },
    });
  }

  /** A node:https agent (`https.request(url, { agent })`) whose every connection is opened here. */
  httpsAgent(options: https.AgentOptions = {}): https.Agent {
    return new MeshHttpsAgent(this, { keepAlive: true, ...options });
  }
}

class MeshHttpsAgent extends https.Agent {
  readonly #connector: OutboundConnector;

  constructor(connector: OutboundConnector, options: https.AgentOptions) {
    super(options);
    this.#connector = connector;
  }

  // node:http's Agent accepts a connection factory that answers through the callback instead of returning a socket.
  override createConnection(options: { host?: string; hostname?: string; port?: number | string }, callback: (err: Error | null, socket?: Duplex) => void): undefined {
    const host = String(options.hostname ?? options.host ?? 'localhost').replace(/^\[|\]$/g, '');
    this.#connector.open(host, Number(options.port ?? 443), true).then((s) => callback(null, s), (err: Error) => callback(err));
    return undefined;
  }
}

function ownTls(socket: net.Socket, host: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = tls.connect({ socket, ...(net.isIP(host) === 0 ? { servername: host } : {}), host, ALPNProtocols: ['http/1.1'] });
    t.once('secureConnect', () => resolve(t));
    t.once('error', (err) => {
      t.destroy();
      reject(err);
    });
  });
}
