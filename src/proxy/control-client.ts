import http2 from 'node:http2';
import { decodeJwt } from 'jose';
import { RampartError } from '../errors.ts';
import type { SvidResponse } from '../identity/cert-manager.ts';
import { parseIstioIdentity, istioSpiffeId, type IstioIdentity } from '../identity/spiffe-id.ts';
import type { Svid } from '../identity/svid.ts';
import { clientTlsOptions, serverCheckingTlsOptions } from '../identity/tls.ts';
import { TrustBundle } from '../identity/trust-bundle.ts';
import { CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT, PATH_CSR, PATH_STREAM, readLines, type ControlMessage, type ProxyMessage } from '../control/protocol.ts';
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
  /** A bootstrap token for this workload's namespace and service account (`rampart ca token`); names the identity. */
  readonly token: string;
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

export class ControlPlaneClient {
  readonly #o: ControlPlaneClientOptions;
  readonly identity: IstioIdentity;
  #bundle: TrustBundle;
  #svid: Svid | undefined;
  #stopped = false;
  #session: http2.ClientHttp2Session | undefined;
  #retry: NodeJS.Timeout | undefined;
  #certNotAfter: string | undefined;

  constructor(options: ControlPlaneClientOptions) {
    this.#o = options;
    let sub: unknown;
    try {
      sub = decodeJwt(options.token).sub;
    } catch (err) {
      throw new ControlPlaneClientError('ERR_BOOTSTRAP_TOKEN_UNREADABLE', `the bootstrap token cannot be read: ${(err as Error).message}`);
    }
    try {
      this.identity = parseIstioIdentity(String(sub));
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
