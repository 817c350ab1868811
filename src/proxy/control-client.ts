import http2 from 'node:http2';
import { decodeJwt } from 'jose';
import { RampartError } from '../errors.ts';
import type { SvidResponse } from '../identity/cert-manager.ts';
import { parseIstioIdentity, istioSpiffeId, type IstioIdentity } from '../identity/spiffe-id.ts';
import type { Svid } from '../identity/svid.ts';
import { clientTlsOptions, serverCheckingTlsOptions } from '../identity/tls.ts';
import { TrustBundle } from '../identity/trust-bundle.ts';
import { CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT, PATH_CSR, PATH_STREAM, readLines, type ControlMessage, type ProxyMessage, type ReportedAccess } from '../control/protocol.ts';
import type { ProxySnapshot } from '../control/snapshot.ts';

/**
 * The proxy's side of the control plane: CSRs (the first with the bootstrap token, renewals with the current SVID)
 * and the configuration stream, over mTLS HTTP/2 to a server whose SVID must be the control plane's. The stream
 * reconnects with capped, jittered backoff for as long as the proxy runs; the proxy keeps what it has meanwhile.
 */

export class ControlPlaneClientError extends RampartError {}

export interface ControlPlaneClientOptions {
  /** `https://host:port` of the control plane's mTLS port. */
  readonly url: string;
  /** PEM of the roots that sign the control plane's certificate (the mesh's trust bundle). */
  readonly rootsPem: string;
  /**
   * A bootstrap token for this workload's namespace and service account (`rampart ca token`), or, on Kubernetes, the
   * pod's projected service-account token (audience istio-ca); either names the identity.
   */
  readonly token: string;
  /** The mesh's trust domain, for a service-account token (which names none); cluster.local by default. */
  readonly trustDomain?: string;
  /** `namespace/name` of the workload in the mesh. */
  readonly workload: string;
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

export type SnapshotVerdict = { readonly ok: true } | { readonly ok: false; readonly error: string };

export interface StreamEvents {
  /** Applies a snapshot; the answer becomes the ACK or NACK. */
  readonly onSnapshot: (s: ProxySnapshot) => Promise<SnapshotVerdict>;
  readonly onConnected?: () => void;
  readonly onDisconnected?: (error: string, retryInMs: number) => void;
}

const MAX_SNAPSHOT_CHARS = 64 * 1024 * 1024;
/** Access reports leave at most this often, in messages of at most REPORT_BATCH_CHARS. */
const REPORT_INTERVAL_MS = 200;
const REPORT_BATCH_CHARS = 128 * 1024;
/**
 * Reports kept between two sends; past either bound they are counted as dropped. A proxy under a flood of requests
 * reports at most ~2,500 decisions (~2.5 MB) a second to the control plane, whatever the flood.
 */
const MAX_PENDING_REPORTS = 500;
const MAX_PENDING_REPORT_CHARS = 512 * 1024;
/** Stream bytes not yet taken by the control plane past which reports are dropped rather than buffered. */
const MAX_UNSENT_STREAM_BYTES = 1024 * 1024;

export class ControlPlaneClient {
  readonly #o: ControlPlaneClientOptions;
  readonly identity: IstioIdentity;
  #bundle: TrustBundle;
  #svid: Svid | undefined;
  #stopped = false;
  #session: http2.ClientHttp2Session | undefined;
  #retry: NodeJS.Timeout | undefined;
  #certNotAfter: string | undefined;
  /** Access reports waiting for the next send, as JSON texts. */
  #reports: string[] = [];
  #reportChars = 0;
  #dropped = 0;
  #reportTimer: NodeJS.Timeout | undefined;
  /** Writes one line on the open stream; absent while it is not open. */
  #sendLine: ((line: string) => boolean) | undefined;

  constructor(options: ControlPlaneClientOptions) {
    this.#o = options;
    let sub: unknown;
    try {
      sub = decodeJwt(options.token).sub;
    } catch (err) {
      throw new ControlPlaneClientError('ERR_BOOTSTRAP_TOKEN_UNREADABLE', `the bootstrap token cannot be read: ${(err as Error).message}`);
    }
    try {
      // A pod's projected service-account token names its namespace and service account, not a trust domain.
      const sa = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(String(sub));
      this.identity = sa === null ? parseIstioIdentity(String(sub)) : istioSpiffeId(options.trustDomain ?? 'cluster.local', sa[1]!, sa[2]!);
    } catch (err) {
      throw new ControlPlaneClientError('ERR_BOOTSTRAP_TOKEN_UNREADABLE', `the bootstrap token does not name a workload identity: ${(err as Error).message}`);
    }
    this.#bundle = TrustBundle.fromPem(this.identity.trustDomain, options.rootsPem);
  }

  get url(): string {
    return this.#o.url;
  }

  /** The SPIFFE ID the control plane must present. */
  get serverIdentity(): string {
    return istioSpiffeId(this.identity.trustDomain, CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT).uri;
  }

  /** The current SVID and bundle (the certificate manager's), used for every later connection. */
  useSvid(svid: Svid, bundle: TrustBundle): void {
    this.#svid = svid;
    this.#bundle = bundle;
    this.#certNotAfter = svid.notAfter.toISOString();
  }

  /**
   * True when a report made now would be kept (the stream is open and the buffer has room): what a denial's
   * explanation, computed only for the control plane, is worth computing for.
   */
  get reporting(): boolean {
    return this.#sendLine !== undefined && this.#reports.length < MAX_PENDING_REPORTS && this.#reportChars < MAX_PENDING_REPORT_CHARS;
  }

  /**
   * Queues one decision for the control plane (its live console); sent in batches on the configuration stream. A
   * report that cannot be kept (stream closed, buffer full) is counted, and the count travels with the next batch.
   */
  report(entry: ReportedAccess): void {
    if (!this.reporting) {
      this.#dropped++;
      return;
    }
    const text = JSON.stringify(entry);
    this.#reports.push(text);
    this.#reportChars += text.length;
    if (this.#reportChars >= REPORT_BATCH_CHARS) this.#flushReports();
    else this.#reportTimer ??= setTimeout(() => this.#flushReports(), REPORT_INTERVAL_MS);
  }

  #flushReports(): void {
    clearTimeout(this.#reportTimer);
    this.#reportTimer = undefined;
    const send = this.#sendLine;
    const reports = this.#reports;
    this.#reports = [];
    this.#reportChars = 0;
    if (send === undefined) {
      this.#dropped += reports.length;
      return;
    }
    let batch: string[] = [];
    let size = 0;
    const out = (): void => {
      if (send(`{"type":"access","dropped":${this.#dropped},"entries":[${batch.join(',')}]}\n`)) this.#dropped = 0;
      else this.#dropped += batch.length;
      batch = [];
      size = 0;
    };
    for (const t of reports) {
      if (batch.length > 0 && size + t.length > REPORT_BATCH_CHARS) out();
      batch.push(t);
      size += t.length + 1;
    }
    if (batch.length > 0) out();
  }

  /** A session presenting `svid` as client certificate, or none (a first CSR). */
  #connect(svid: Svid | undefined): http2.ClientHttp2Session {
    const expect = { ids: [this.serverIdentity] };
    const tls = svid !== undefined ? clientTlsOptions(svid, this.#bundle, expect) : serverCheckingTlsOptions(this.#bundle, expect);
    // servername: an IP address is not a valid SNI name; the server's identity is checked by SPIFFE ID instead.
    const session = http2.connect(this.#o.url, { ...tls, servername: 'rampart-control-plane', ALPNProtocols: ['h2'] });
    session.on('error', () => undefined);
    return session;
  }

  /** Sends a CSR: with the current SVID as client certificate when there is one, else with the bootstrap token. */
  readonly requestSvid = async (csrPem: string, current: Svid | undefined): Promise<SvidResponse> => {
    const session = this.#connect(current);
    try {
      const headers: http2.OutgoingHttpHeaders = { ':method': 'POST', ':path': PATH_CSR, 'content-type': 'application/json' };
      if (current === undefined) headers['authorization'] = `Bearer ${this.#o.token}`;
      const { status, body } = await exchange(session, headers, JSON.stringify({ csr: csrPem }), 10_000);
      let parsed: { chainPem?: unknown; rootsPem?: unknown; error?: unknown; code?: unknown };
      try {
        parsed = JSON.parse(body) as typeof parsed;
      } catch {
        throw new ControlPlaneClientError('ERR_CSR_RESPONSE', `the control plane answered ${status} with a body that is not JSON`);
      }
      if (status !== 200 || typeof parsed.chainPem !== 'string' || typeof parsed.rootsPem !== 'string') {
        throw new ControlPlaneClientError(typeof parsed.code === 'string' ? parsed.code : 'ERR_CSR_REFUSED', `the control plane refused the CSR (${status}): ${String(parsed.error ?? 'no reason given')}`);
      }
      return { chainPem: parsed.chainPem, rootsPem: parsed.rootsPem };
    } finally {
      session.close();
    }
  };

  /** Subscribes for the workload's configuration until stop(); reconnects after any failure. */
  subscribe(events: StreamEvents): void {
    let attempt = 0;
    const run = (): void => {
      if (this.#stopped) return;
      const session = this.#connect(this.#svid);
      this.#session = session;
      let failed = false;
      const fail = (reason: string): void => {
        if (failed) return;
        failed = true;
        this.#sendLine = undefined;
        session.destroy();
        if (this.#stopped) return;
        const base = Math.min(this.#o.maxBackoffMs ?? 5_000, (this.#o.initialBackoffMs ?? 200) * 2 ** Math.min(attempt, 20));
        const wait = Math.round(base * (0.8 + Math.random() * 0.4));
        attempt++;
        events.onDisconnected?.(reason, wait);
        this.#retry = setTimeout(run, wait);
      };
      session.on('error', (err) => fail(err.message));
      session.on('close', () => fail('the connection closed'));
      const req = session.request({ ':method': 'POST', ':path': PATH_STREAM, 'content-type': 'application/x-ndjson' }, { endStream: false });
      const send = (m: ProxyMessage): void => {
        if (!req.destroyed) req.write(`${JSON.stringify(m)}\n`);
      };
      req.on('error', (err) => fail(err.message));
      req.on('response', (headers) => {
        const status = Number(headers[':status']);
        if (status !== 200) {
          let body = '';
          req.setEncoding('utf8');
          req.on('data', (c: string) => (body += c));
          req.on('end', () => fail(`the control plane refused the subscription (${status}): ${body.slice(0, 500)}`));
          return;
        }
        attempt = 0;
        // A control plane that does not read its side of the stream must not make the proxy buffer reports.
        this.#sendLine = (line) => {
          if (req.destroyed || req.writableLength > MAX_UNSENT_STREAM_BYTES) return false;
          req.write(line);
          return true;
        };
        events.onConnected?.();
      });
      // Snapshots are applied one at a time, in order.
      let chain = Promise.resolve();
      readLines(req, MAX_SNAPSHOT_CHARS, (line) => {
        chain = chain.then(async () => {
          let msg: ControlMessage;
          try {
            msg = JSON.parse(line) as ControlMessage;
          } catch {
            return;
          }
          if (msg.type !== 'snapshot') return;
          const { type: _type, ...snap } = msg;
          let verdict: SnapshotVerdict;
          try {
            verdict = await events.onSnapshot(snap);
          } catch (err) {
            verdict = { ok: false, error: (err as Error).message };
          }
          const cert = this.#certNotAfter === undefined ? {} : { certNotAfter: this.#certNotAfter };
          send(verdict.ok ? { type: 'ack', version: snap.version, ...cert } : { type: 'nack', version: snap.version, error: verdict.error, ...cert });
        });
      }, (err) => fail(err?.message ?? 'the control plane ended the stream'));
      req.on('close', () => fail('the stream closed'));
      send({ type: 'subscribe', workload: this.#o.workload });
    };
    run();
  }

  stop(): void {
    this.#stopped = true;
    this.#sendLine = undefined;
    clearTimeout(this.#reportTimer);
    clearTimeout(this.#retry);
    this.#session?.destroy();
  }
}

/** One request with a body; the status and the whole response body. */
function exchange(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      req.close(http2.constants.NGHTTP2_CANCEL);
      reject(new ControlPlaneClientError('ERR_CONTROL_PLANE_TIMEOUT', `no answer from the control plane in ${timeoutMs} ms`));
    }, timeoutMs);
    session.once('error', (err) => {
      clearTimeout(timer);
      reject(new ControlPlaneClientError('ERR_CONTROL_PLANE_UNREACHABLE', `cannot reach the control plane: ${err.message}`));
    });
    const req = session.request(headers);
    let status = 0;
    let text = '';
    req.setEncoding('utf8');
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (c: string) => (text += c));
    req.on('end', () => {
      clearTimeout(timer);
      resolve({ status, body: text });
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(new ControlPlaneClientError('ERR_CONTROL_PLANE_UNREACHABLE', `cannot reach the control plane: ${err.message}`));
    });
    req.end(body);
  });
}
