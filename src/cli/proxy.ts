import { pino } from 'pino';
import { RampartError } from '../errors.ts';
import { Sidecar } from '../proxy/sidecar.ts';
import type { Upstream } from '../proxy/outbound.ts';
import type { InboundLimits } from '../proxy/inbound.ts';
import { parseTtl } from './duration.ts';

export interface ProxyOptions {
  readonly mesh: string;
  readonly config: readonly string[];
  readonly workload: string;
  readonly ca: string;
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
  const flush = (): void => {
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
  const sidecar = new Sidecar({
    upstreams,
    limits,
    ...(outboundPort === undefined ? {} : { outboundPort }),
    meshFile: o.mesh,
    config: o.config,
    workload: o.workload,
    caDir: o.ca,
    ...(ttlMs === undefined ? {} : { svidTtlMs: ttlMs }),
    ...(o.host === undefined ? {} : { host: o.host }),
    ...(adminPort === undefined ? {} : { adminPort }),
    ...(o.debugHeaders === undefined ? {} : { debugHeaders: o.debugHeaders }),
    log,
    accessLog: o.accessLog === 'off' ? () => undefined : (e) => {
      // The line pino would write for access.info(e) (the entry carries its own time), built directly: pino's
      // per-key serialization was a fifth of a sidecar's CPU per request, and an entry is a flat object.
      out.write(`{"level":30,"log":"access",${JSON.stringify(e).slice(1)}\n`);
    },
  });
  try {
    await sidecar.start();
  } catch (err) {
    flush();
    process.stderr.write(`rampart proxy: ${err instanceof RampartError ? err.message : String(err)}\n`);
    await sidecar.stop();
    return 2;
  }
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  log.info({ event: 'stopping' }, 'stopping: open connections finish');
  await sidecar.stop();
  flush();
  return 0;
}
