import { readFile } from 'node:fs/promises';
import type https from 'node:https';
import type tls from 'node:tls';
import { createRequire } from 'node:module';
import type { Agent } from 'undici';
import { RampartError } from '../errors.ts';
import { AccessLogWriter } from '../proxy/access-log.ts';
import { ControlPlaneClient } from '../proxy/control-client.ts';
import type { AccessEntry } from '../proxy/inbound.ts';
import type { OutboundEntry } from '../proxy/outbound.ts';
import { Sidecar, type AdminResponse } from '../proxy/sidecar.ts';
import type { EventLog } from '../telemetry/jwks.ts';
import { InProcessEnforcer, type AnswerHooks, type EnforceOptions, type RequestHandler } from './enforce.ts';
import { OutboundConnector } from './outbound.ts';
import { InProcessServer, type AppHandler } from './server.ts';

/**
 * Zero trust inside a Node process: the workload's identity (its SVID, renewed), its configuration (the control
 * plane's stream, or local files, reloaded) and its decisions, with no sidecar. Under the hood it is the sidecar's
 * own runtime with no listeners (`Sidecar` embedded): the same CSRs and stream client, the same validation that
 * refuses a bad configuration whole and keeps the last good one, the same decisions, access log and metrics.
 */

export class WorkloadError extends RampartError {}

/** A logger with pino's signature (pino itself fits). */
export interface WorkloadLogger extends EventLog {
  info(fields: object, message: string): void;
}

export type WorkloadOptions = {
  /** `namespace/name` of the workload in the mesh file. */
  readonly workload: string;
  /** Validity asked for each SVID (local CA directory only; the control plane decides its own). */
  readonly svidTtlMs?: number;
  /** Rampart's own log lines (pino JSON on standard error by default). */
  readonly log?: WorkloadLogger;
  /**
   * The access log: the sidecar's JSON lines on standard output (default), off, or each batch of lines to a
   * function of the app's.
   */
  readonly accessLog?: 'stdout' | 'off' | ((lines: string) => void);
  /** The admin endpoint of the sidecar (/ready, /metrics, /config, /certs) on 127.0.0.1; 0 picks a port. */
  readonly adminPort?: number;
  /** x-rampart-* headers on denials (the mesh file's debugHeaders by default). */
  readonly debugHeaders?: boolean;
} & (
  | {
      /** The control plane: SVIDs from its CSR endpoint, the configuration from its stream. */
      readonly controlPlane: {
        /** `https://host:port` of its mTLS port. */
        readonly url: string;
        /** The bootstrap token (`rampart ca token`), or `tokenFile`. */
        readonly token?: string;
        readonly tokenFile?: string;
        /** The mesh's root certificates (PEM), or `rootCertFile`. */
        readonly rootCert?: string;
        readonly rootCertFile?: string;
      };
    }
  | {
      /** Local files, as `rampart proxy --mesh --config --ca`. */
      readonly mesh: string;
      readonly config: readonly string[];
      readonly ca: string;
    }
);

export class Workload {
  readonly #sidecar: Sidecar;
  readonly #connector: OutboundConnector;
  readonly #flush: () => void;
  readonly #enforcers = new Map<string, InProcessEnforcer>();

  private constructor(sidecar: Sidecar, flush: () => void) {
    this.#sidecar = sidecar;
    this.#connector = new OutboundConnector(sidecar);
    this.#flush = flush;
  }

  /**
   * Gets the first SVID and the first configuration, then resolves. Rejects with every diagnostic when the first
   * configuration has errors (nothing is enforced with a configuration that did not load).
   */
  static async start(options: WorkloadOptions): Promise<Workload> {
    const log = options.log ?? defaultLogger();
    const access = options.accessLog ?? 'stdout';
    const writer = typeof access === 'function' ? new AccessLogWriter(access) : access === 'stdout' ? new AccessLogWriter((t) => process.stdout.write(t)) : undefined;
    let source: { controlPlane: ControlPlaneClient } | { meshFile: string; config: readonly string[]; caDir: string };
    if ('controlPlane' in options) {
      const cp = options.controlPlane;
      const token = cp.token ?? (cp.tokenFile === undefined ? undefined : (await readFile(cp.tokenFile, 'utf8')).trim());
      const rootsPem = cp.rootCert ?? (cp.rootCertFile === undefined ? undefined : await readFile(cp.rootCertFile, 'utf8'));
      if (token === undefined) throw new WorkloadError('ERR_WORKLOAD_TOKEN', 'controlPlane needs a bootstrap token (token or tokenFile)');
      if (rootsPem === undefined) throw new WorkloadError('ERR_WORKLOAD_ROOTS', "controlPlane needs the mesh's root certificates (rootCert or rootCertFile)");
      source = { controlPlane: new ControlPlaneClient({ url: cp.url, token, rootsPem, workload: options.workload }) };
    } else {
      source = { meshFile: options.mesh, config: options.config, caDir: options.ca };
    }
    const sidecar = new Sidecar({
      ...source,
      embedded: true,
      workload: options.workload,
      log,
      accessLog: writer === undefined ? () => undefined : (e: AccessEntry | OutboundEntry, w: string) => writer.push(e, w),
      ...(options.svidTtlMs === undefined ? {} : { svidTtlMs: options.svidTtlMs }),
      ...(options.adminPort === undefined ? {} : { adminPort: options.adminPort }),
      ...(options.debugHeaders === undefined ? {} : { debugHeaders: options.debugHeaders }),
    });
    try {
      await sidecar.start();
    } catch (err) {
      await sidecar.stop();
      writer?.flush();
      throw err;
    }
    return new Workload(sidecar, () => writer?.flush());
  }

  /** The workload's SPIFFE ID (`spiffe://cluster.local/ns/default/sa/httpbin`). */
  get spiffeId(): string {
    const t = this.#sidecar.tls;
    if (t === undefined) throw new WorkloadError('ERR_WORKLOAD_NO_SVID', 'no SVID yet');
    return t.spiffeId;
  }

  /** The version of the configuration in force (the control plane's, or a local count). */
  get configVersion(): string {
    return this.#sidecar.configVersion;
  }

  /** The admin endpoint's port, when one was asked for. */
  get adminPort(): number | undefined {
    return this.#sidecar.adminPort;
  }

  // --- inbound ---

  #enforcer(options: EnforceOptions): InProcessEnforcer {
    const key = String(options.port ?? '');
    let e = this.#enforcers.get(key);
    if (e === undefined) this.#enforcers.set(key, (e = new InProcessEnforcer(this.#sidecar, options)));
    return e;
  }

  /**
   * A node:net server for a workload port that accepts mTLS and (where the port's mode allows) plaintext on one
   * socket, HTTP/1.1 and HTTP/2, and runs `app` only for allowed requests. `listen()` it on the port the mesh file
   * names, on the workload's address.
   */
  createServer(app: AppHandler, options: EnforceOptions = {}): InProcessServer {
    return new InProcessServer(this.#sidecar, this.handler(app, options));
  }

  /** `app` behind enforcement, for a server of the app's own (see `tlsOptions` and `secure`). */
  handler(app: AppHandler, options: EnforceOptions = {}): RequestHandler {
    const e = this.#enforcer(options);
    const run = app as (req: Parameters<RequestHandler>[0], res: Parameters<RequestHandler>[1]) => void;
    return (req, res) => e.handle(req, res, (err) => {
      if (err !== undefined) res.destroy();
      else run(req, res);
    });
  }

  /** Connect / Express middleware: `app.use(workload.middleware())`, first, before any route. */
  middleware(options: EnforceOptions = {}): (req: Parameters<RequestHandler>[0], res: Parameters<RequestHandler>[1], next: (err?: unknown) => void) => void {
    const e = this.#enforcer(options);
    return (req, res, next) => e.handle(req, res, next);
  }

  /**
   * A Fastify plugin (`await fastify.register(workload.fastify())`): an onRequest hook for every route of the
   * instance (not encapsulated), `request.rampart` set on allowed requests. Fastify itself is not imported.
   */
  fastify(options: EnforceOptions = {}): FastifyPlugin {
    const e = this.#enforcer(options);
    const plugin = ((instance: FastifyLike, _opts: unknown, done: (err?: Error) => void): void => {
      instance.decorateRequest('rampart', null);
      instance.addHook('onRequest', (request: FastifyRequestLike, reply: FastifyReplyLike, hookDone: (err?: Error) => void) => {
        const hooks: AnswerHooks = { beforeReply: () => reply.hijack(), routed: true };
        e.handle(request.raw, reply.raw, (err) => {
          if (err !== undefined) {
            hookDone(err instanceof Error ? err : new Error(String(err)));
            return;
          }
          request.rampart = request.raw.rampart;
          hookDone();
        }, hooks);
      });
      done();
    }) as FastifyPlugin;
    // fastify-plugin's markers: the hook applies to the whole instance, under this name.
    (plugin as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;
    (plugin as unknown as Record<symbol, unknown>)[Symbol.for('fastify.display-name')] = 'rampart';
    return plugin;
  }

  /**
   * TLS options for a server of the app's own (`https.createServer(workload.tlsOptions(), handler)`,
   * `http2.createSecureServer({ ...workload.tlsOptions(), allowHTTP1: true }, handler)`): the current SVID, the
   * mesh's roots, a client certificate asked for and checked per request. Pass the server to `secure()` so that it
   * follows rotations.
   */
  tlsOptions(): tls.TlsOptions {
    const t = this.#sidecar.tls;
    if (t === undefined) throw new WorkloadError('ERR_WORKLOAD_NO_SVID', 'no SVID yet');
    return { ...t.options };
  }

  /** Keeps a server made with `tlsOptions()` on the current SVID and bundle (new handshakes; open connections stay). */
  secure<S extends tls.Server>(server: S): S {
    const off = this.#sidecar.onTlsChange((t) => server.setSecureContext({ ...t.options }));
    server.once('close', off);
    return server;
  }

  // --- outbound ---

  /** An undici dispatcher: `fetch('https://httpbin.default:8000/', { dispatcher })` is mTLS with secure naming. */
  dispatcher(options: { readonly connections?: number } = {}): Agent {
    return this.#connector.dispatcher(options);
  }

  /** A node:https agent: `https.get('https://httpbin.default:8000/', { agent })`. */
  httpsAgent(options: https.AgentOptions = {}): https.Agent {
    return this.#connector.httpsAgent(options);
  }

  // --- operations ---

  /** What the sidecar's admin endpoint answers for a path (/ready, /metrics, /config, /certs), to mount in the app. */
  admin(path: string): Promise<AdminResponse> {
    return this.#sidecar.admin(path);
  }

  /** Renews the SVID now (it renews on its own before expiry); resolves once new connections use the new one. */
  renewSvid(): Promise<void> {
    return this.#sidecar.renewSvid();
  }

  /** Reads the local files again (file mode; they are also watched); false when the new configuration was refused. */
  reload(): Promise<boolean> {
    return this.#sidecar.reload();
  }

  /** Stops renewing and streaming, and writes the access log still kept. */
  async close(): Promise<void> {
    await this.#sidecar.stop();
    this.#flush();
  }
}

/** pino JSON lines on standard error, loaded only when the app brings no logger of its own. */
function defaultLogger(): WorkloadLogger {
  const { pino } = createRequire(import.meta.url)('pino') as typeof import('pino');
  return pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 2, sync: false }));
}

/** The shapes of Fastify this plugin uses (Fastify is the app's dependency, never Rampart's). */
export interface FastifyRequestLike {
  readonly raw: Parameters<RequestHandler>[0] & { rampart?: unknown };
  rampart?: unknown;
}
export interface FastifyReplyLike {
  readonly raw: Parameters<RequestHandler>[1];
  hijack(): unknown;
}
export interface FastifyLike {
  decorateRequest(name: string, value: unknown): unknown;
  addHook(name: 'onRequest', hook: (request: FastifyRequestLike, reply: FastifyReplyLike, done: (err?: Error) => void) => void): unknown;
}
export type FastifyPlugin = (instance: FastifyLike, options: unknown, done: (err?: Error) => void) => void;
