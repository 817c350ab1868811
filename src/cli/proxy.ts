import cluster, { type Worker } from 'node:cluster';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import type { EventLog } from '../telemetry/jwks.ts';
import { RampartError } from '../errors.ts';
import { readFile } from 'node:fs/promises';
import { ControlPlaneClient } from '../proxy/control-client.ts';
import { Sidecar, type CaptureSettings } from '../proxy/sidecar.ts';
import { originalDestination, originalDstSupport } from '../capture/original-dst.ts';
import type { Upstream } from '../proxy/outbound.ts';
import type { InboundLimits } from '../proxy/inbound.ts';
import { AccessLogWriter } from '../proxy/access-log.ts';
import { parseTtl } from './duration.ts';
import { lifetime } from './lifetime.ts';

export interface ProxyOptions {
  readonly mesh?: string;
  readonly config?: readonly string[];
  readonly workload: string;
  readonly ca?: string;
  /** `https://host:port` of the control plane, instead of mesh, config and ca. */
  readonly controlPlane?: string;
  /** File holding the bootstrap token (with controlPlane). */
  readonly token?: string;
  /** The mesh's root certificates, to know the control plane by (with controlPlane). */
  readonly rootCert?: string;
  readonly svidTtl?: string;
  readonly host?: string;
  readonly adminPort?: string;
  readonly debugHeaders?: boolean;
  readonly outboundPort?: string;
  readonly upstream?: readonly string[];
  readonly idleTimeout?: string;
  readonly headersTimeout?: string;
  readonly requestTimeout?: string;
  readonly maxHeaderBytes?: string;
  readonly maxHeaders?: string;
  readonly maxConnections?: string;
  /** `stdout` (default) or `off`. */
  readonly accessLog?: string;
  /** Processes sharing the listeners (node:cluster); 1 by default. */
  readonly workers?: string;
  /** Stop when the process that started this one exits (`rampart up` sets it for its sidecars). */
  readonly exitWithParent?: boolean;
  /** Serve captured traffic (`rampart capture` in the workload's network namespace) instead of per-port listeners. */
  readonly capture?: boolean;
  readonly inboundCapturePort?: string;
  readonly outboundCapturePort?: string;
  /** A hosts file the sidecar keeps the mesh services' names in (with --capture). */
  readonly hostsFile?: string;
}

/**
 * `rampart proxy`: runs until SIGINT/SIGTERM. Logs and the access log are JSON lines on standard output (one
 * stream, as a sidecar's container log); a first configuration with errors exits 2 with every diagnostic.
 */
export async function runProxy(o: ProxyOptions): Promise<number> {
  // Asynchronous writes: under load, lines queue while a write is in flight and go out together, instead of one
  // blocking write per request on the event loop. Flushed when the proxy stops.
  const out = pino.destination({ dest: 1, sync: false });
  const log = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime }, out);
  const access = new AccessLogWriter((text) => out.write(text));
  const flushAccess = (): void => access.flush();
  const flush = (): void => {
    flushAccess();
    try {
      out.flushSync();
    } catch {
      // Not open yet: nothing was written.
    }
  };
  let ttlMs: number | undefined;
  try {
    ttlMs = o.svidTtl === undefined ? undefined : parseTtl(o.svidTtl, '--svid-ttl');
  } catch (err) {
    process.stderr.write(`rampart proxy: ${(err as Error).message}\n`);
    return 2;
  }
  const limits: { -readonly [K in keyof InboundLimits]?: number } = {};
  try {
    if (o.idleTimeout !== undefined) limits.idleTimeoutMs = parseTtl(o.idleTimeout, '--idle-timeout');
    if (o.headersTimeout !== undefined) limits.headersTimeoutMs = parseTtl(o.headersTimeout, '--headers-timeout');
    if (o.requestTimeout !== undefined) limits.requestTimeoutMs = parseTtl(o.requestTimeout, '--request-timeout');
  } catch (err) {
    process.stderr.write(`rampart proxy: ${(err as Error).message}\n`);
    return 2;
  }
  for (const [flag, value, key] of [['--max-header-bytes', o.maxHeaderBytes, 'maxHeaderBytes'], ['--max-headers', o.maxHeaders, 'maxHeaders'], ['--max-connections', o.maxConnections, 'maxConnections']] as const) {
    if (value === undefined) continue;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) {
      process.stderr.write(`rampart proxy: ${flag}: not a positive whole number: ${value}\n`);
      return 2;
    }
    limits[key] = n;
  }
  if (o.accessLog !== undefined && o.accessLog !== 'stdout' && o.accessLog !== 'off') {
    process.stderr.write(`rampart proxy: --access-log takes stdout or off, not ${o.accessLog}\n`);
    return 2;
  }
  const workers = o.workers === undefined ? 1 : Number(o.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
    process.stderr.write(`rampart proxy: --workers: a whole number from 1 to 64, not ${o.workers}\n`);
    return 2;
  }
  const adminPort = o.adminPort === undefined ? undefined : Number(o.adminPort);
  if (adminPort !== undefined && (!Number.isInteger(adminPort) || adminPort < 0 || adminPort > 65535)) {
    process.stderr.write(`rampart proxy: --admin-port: not a port: ${o.adminPort}\n`);
    return 2;
  }
  const upstreams: Upstream[] = [];
  for (const u of o.upstream ?? []) {
    const m = /^(\d+)=(.+):(\d+)$/.exec(u);
    if (m === null || Number(m[1]) > 65535 || Number(m[3]) > 65535) {
      process.stderr.write(`rampart proxy: --upstream ${u}: write it as LOCALPORT=HOST:PORT (e.g. 9001=reviews.bookinfo:9080)\n`);
      return 2;
    }
    upstreams.push({ listen: Number(m[1]), host: m[2]!, port: Number(m[3]) });
  }
  const outboundPort = o.outboundPort === undefined ? undefined : Number(o.outboundPort);
  if (outboundPort !== undefined && (!Number.isInteger(outboundPort) || outboundPort < 0 || outboundPort > 65535)) {
    process.stderr.write(`rampart proxy: --outbound-port: not a port: ${o.outboundPort}\n`);
    return 2;
  }
  let capture: CaptureSettings | undefined;
  if (o.capture === true) {
    const ports: number[] = [];
    for (const [flag, value, dflt] of [['--inbound-capture-port', o.inboundCapturePort, 15006], ['--outbound-capture-port', o.outboundCapturePort, 15001]] as const) {
      const n = value === undefined ? dflt : Number(value);
      if (!Number.isInteger(n) || n < 1 || n > 65535) {
        process.stderr.write(`rampart proxy: ${flag}: not a port: ${value}\n`);
        return 2;
      }
      ports.push(n);
    }
    const support = originalDstSupport();
    if (!support.ok) {
      process.stderr.write(`rampart proxy: --capture needs the original-destination addon: ${support.reason}\n`);
      return 2;
    }
    if (workers > 1 || outboundPort !== undefined || upstreams.length > 0) {
      process.stderr.write('rampart proxy: --capture takes the app\'s traffic as it is: it goes without --workers, --outbound-port and --upstream\n');
      return 2;
    }
    capture = { inboundPort: ports[0]!, outboundPort: ports[1]!, originalDestination, ...(o.hostsFile === undefined ? {} : { hostsFile: o.hostsFile }) };
  } else if (o.hostsFile !== undefined || o.inboundCapturePort !== undefined || o.outboundCapturePort !== undefined) {
    process.stderr.write('rampart proxy: --hosts-file, --inbound-capture-port and --outbound-capture-port go with --capture\n');
    return 2;
  }
  let controlPlane: ControlPlaneClient | undefined;
  if (o.controlPlane !== undefined) {
    if (o.token === undefined || o.rootCert === undefined) {
      process.stderr.write('rampart proxy: --control-plane needs --token FILE (a bootstrap token) and --root-cert FILE (the mesh roots)\n');
      return 2;
    }
    if (workers > 1) {
      process.stderr.write('rampart proxy: --workers is not available with --control-plane yet (each worker would need its own bootstrap token)\n');
      return 2;
    }
    try {
      controlPlane = new ControlPlaneClient({
        url: o.controlPlane, workload: o.workload,
        token: (await readFile(o.token, 'utf8')).trim(),
        rootsPem: await readFile(o.rootCert, 'utf8'),
      });
    } catch (err) {
      process.stderr.write(`rampart proxy: ${(err as Error).message}\n`);
      return 2;
    }
  } else if (o.mesh === undefined || o.config === undefined || o.ca === undefined) {
    process.stderr.write('rampart proxy: give either --mesh, --config and --ca (local files), or --control-plane, --token and --root-cert\n');
    return 2;
  }
  if (workers > 1 && cluster.isPrimary) return runPrimary(workers, adminPort, log, flush, o.exitWithParent === true);
  const inWorker = cluster.isWorker;
  const sidecar = new Sidecar({
    ...(inWorker ? { readyEvent: 'worker-ready' } : {}),
    upstreams,
    limits,
    ...(outboundPort === undefined ? {} : { outboundPort }),
    ...(capture === undefined ? {} : { capture }),
    ...(controlPlane === undefined ? { meshFile: o.mesh!, config: o.config!, caDir: o.ca! } : { controlPlane }),
    workload: o.workload,
    ...(ttlMs === undefined ? {} : { svidTtlMs: ttlMs }),
    ...(o.host === undefined ? {} : { host: o.host }),
    ...(adminPort === undefined || inWorker ? {} : { adminPort }),
    ...(o.debugHeaders === undefined ? {} : { debugHeaders: o.debugHeaders }),
    log,
    accessLog: o.accessLog === 'off' ? () => undefined : (e, workload) => access.push(e, workload),
  });
  try {
    await sidecar.start();
  } catch (err) {
    flush();
    process.stderr.write(`rampart proxy: ${err instanceof RampartError ? err.message : String(err)}\n`);
    await sidecar.stop();
    return 2;
  }
  if (inWorker) {
    const registry = sidecar.metricsRegistry;
    // Constructing one installs prom-client's listener that answers the primary's metric requests.
    new AggregatorRegistry();
    if (registry !== undefined) AggregatorRegistry.setRegistries([registry]);
    process.on('message', (m: { type?: string; id?: number; path?: string }) => {
      if (m.type !== 'admin' || m.path === undefined) return;
      void sidecar.admin(m.path).then((r) => process.send?.({ type: 'admin-reply', id: m.id, ...r }));
    });
    process.send?.({ type: 'ready', info: sidecar.readyInfo });
  }
  // A worker is stopped by its primary; the primary (or a single process) by a signal or, if asked, its parent's exit.
  const reason = await lifetime({ withParent: o.exitWithParent === true && !inWorker }).stopped;
  log.info({ event: 'stopping', reason }, `stopping (${reason}): open connections finish`);
  await sidecar.stop();
  flush();
  // A worker's IPC channel would keep it alive.
  if (inWorker) process.disconnect?.();
  return 0;
}

/**
 * A sidecar of several processes: the primary forks the workers, which share the listeners (node:cluster hands
 * each new connection to one of them), each with its own SVID and configuration watch. The primary serves the admin
 * endpoint: metrics summed over the workers, readiness when all are ready, the rest from the first worker.
 */
async function runPrimary(count: number, adminPort: number | undefined, log: EventLog, flush: () => void, withParent: boolean): Promise<number> {
  const aggregator = new AggregatorRegistry();
  const ready = new Map<number, Readonly<Record<string, unknown>>>();
  let stopping = false;
  let nextId = 0;
  const pending = new Map<number, (r: { status: number; contentType: string; body: string }) => void>();
  const fork = (): Worker => {
    const w = cluster.fork();
    w.on('message', (m: { type?: string; id?: number; info?: Record<string, unknown>; status?: number; contentType?: string; body?: string }) => {
      if (m.type === 'ready' && m.info !== undefined) ready.set(w.id, m.info);
      if (m.type === 'admin-reply' && m.id !== undefined) pending.get(m.id)?.({ status: m.status ?? 500, contentType: m.contentType ?? 'text/plain', body: m.body ?? '' });
    });
    return w;
  };
  for (let i = 0; i < count; i++) fork();
  const startFailed = new Promise<number>((resolve) => {
    cluster.on('exit', (w, code) => {
      if (stopping) return;
      const wasReady = ready.delete(w.id);
      if (!wasReady && ready.size === 0) {
        resolve(code ?? 2);
        return;
      }
      log.error({ event: 'worker-exited', worker: w.id, code }, `worker ${w.id} exited (${code}); starting another`);
      fork();
    });
  });
  const allReady = new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (ready.size >= count) {
        clearInterval(check);
        resolve();
      }
    }, 20);
  });
  const first = await Promise.race([allReady.then(() => 0), startFailed]);
  if (first !== 0) {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM');
    return 2;
  }
  let admin: http.Server | undefined;
  if (adminPort !== undefined) {
    const fromWorker = (path: string): Promise<{ status: number; contentType: string; body: string }> => {
      const w = Object.values(cluster.workers ?? {}).find((x) => x !== undefined && ready.has(x.id));
      if (w === undefined) return Promise.resolve({ status: 503, contentType: 'text/plain', body: 'NOT READY\n' });
      const id = nextId++;
      return new Promise((resolve) => {
        pending.set(id, (r) => {
          pending.delete(id);
          resolve(r);
        });
        w.send({ type: 'admin', id, path });
      });
    };
    admin = http.createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://admin').pathname;
      const answer = path === '/metrics'
        ? aggregator.clusterMetrics().then((body) => ({ status: 200, contentType: aggregator.contentType, body }))
        : path === '/ready' && ready.size < count
          ? Promise.resolve({ status: 503, contentType: 'text/plain', body: 'NOT READY\n' })
          : fromWorker(req.url ?? '/');
      void answer.then((r) => res.writeHead(r.status, { 'content-type': r.contentType }).end(r.body), () => res.writeHead(500).end());
    });
    await new Promise<void>((resolve) => admin!.listen(adminPort, '127.0.0.1', () => resolve()));
  }
  const info = [...ready.values()][0] ?? {};
  log.info({ event: 'ready', ...info, workers: count, admin: (admin?.address() as AddressInfo | null)?.port }, `sidecar for ${String(info['workload'])} ready (${count} workers)`);
  const reason = await lifetime({ withParent }).stopped;
  stopping = true;
  log.info({ event: 'stopping', reason }, `stopping (${reason}): workers finish their open connections`);
  await Promise.all(Object.values(cluster.workers ?? {}).map((w) => (w === undefined || w.isDead() ? undefined : new Promise<void>((r) => {
    w.once('exit', () => r());
    w.kill('SIGTERM');
  }))));
  admin?.close();
  flush();
  return 0;
}
