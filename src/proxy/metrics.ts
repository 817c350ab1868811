import { Counter, Histogram, Registry } from 'prom-client';
import type { MeshWorkload } from '../resources/mesh-file.ts';
import type { AccessEntry } from './inbound.ts';
import type { OutboundEntry } from './outbound.ts';

/**
 * The sidecar's Prometheus series: Istio's standard metrics with their names and the labels Rampart knows
 * (reporter="destination" for inbound traffic), and Rampart's decision counter. Label values are bounded by
 * what the mesh declares (principals, policies), never by request contents such as paths.
 */
interface HttpChild {
  readonly requests: { inc(n?: number): void };
  readonly duration: { observe(v: number): void };
  readonly decisions: { inc(n?: number): void };
  /** Requests counted since the last scrape. */
  pending: number;
}

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter<string>;
  readonly #duration: Histogram<string>;
  readonly #tcpOpened: Counter<string>;
  readonly #tcpClosed: Counter<string>;
  readonly #tcpReceived: Counter<string>;
  readonly #tcpSent: Counter<string>;
  readonly #decisions: Counter<string>;
  readonly #refused: Counter<string>;
  readonly #workload: MeshWorkload;
  readonly #ownPrincipal: string;
  /**
   * Label-bound children by label values: prom-client validates and hashes a labels object on every inc/observe,
   * which was a tenth of a sidecar's per-request work. The key space is bounded like the labels themselves.
   */
  readonly #httpChildren = new Map<string, HttpChild>();

  /** The mesh's trust domain, for the destination principal of outbound traffic. */
  readonly #trustDomain: string;

  constructor(workload: MeshWorkload, ownPrincipal: string, trustDomain: string) {
    this.#trustDomain = trustDomain;
    this.#workload = workload;
    this.#ownPrincipal = ownPrincipal;
    const registers = [this.registry];
    const common = ['reporter', 'source_principal', 'destination_workload', 'destination_workload_namespace', 'destination_principal', 'connection_security_policy'] as const;
    // Request and decision counts are kept per child and handed to prom-client when it is scraped: even a
    // label-bound child hashes its labels on every inc().
    const collect = (): void => this.#flush();
    this.#requests = new Counter({ name: 'istio_requests_total', help: 'Requests handled, as Istio counts them.', labelNames: [...common, 'request_protocol', 'response_code', 'response_flags'], registers, collect });
    this.#duration = new Histogram({
      name: 'istio_request_duration_milliseconds', help: 'Request duration in milliseconds, as Istio measures it.',
      labelNames: [...common, 'request_protocol', 'response_code'], registers,
      buckets: [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000],
    });
    this.#tcpOpened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'TCP connections opened.', labelNames: [...common], registers });
    this.#tcpClosed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'TCP connections closed.', labelNames: [...common], registers });
    this.#tcpReceived = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Bytes received on TCP connections.', labelNames: [...common], registers });
    this.#tcpSent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Bytes sent on TCP connections.', labelNames: [...common], registers });
    this.#decisions = new Counter({ name: 'rampart_decisions_total', help: 'Authorization decisions by outcome, deciding layer and policy.', labelNames: ['kind', 'decision', 'decided_by', 'policy'], registers, collect });
    this.#refused = new Counter({ name: 'rampart_connections_refused_total', help: 'Connections refused before any request (plaintext to STRICT, bad peer certificate, connection limit, malformed HTTP).', labelNames: ['reason'], registers });
  }

  record(e: AccessEntry): void {
    const labelsOf = (): Record<string, string> => ({
      reporter: 'destination',
      source_principal: e.sourcePrincipal ?? 'unknown',
      destination_workload: this.#workload.name,
      destination_workload_namespace: this.#workload.namespace,
      destination_principal: this.#ownPrincipal,
      connection_security_policy: e.mtls ? 'mutual_tls' : 'none',
    });
    if (e.kind === 'connection') {
      const reason = e.reason.startsWith('plaintext') ? 'plaintext_to_strict' : e.reason.startsWith('mTLS peer') ? 'peer_certificate'
        : e.reason.startsWith('connection limit') ? 'connection_limit' : 'other';
      this.#refused.inc({ reason });
      return;
    }
    if (e.kind === 'tcp') {
      this.#decisions.inc({ kind: e.kind, decision: e.decision, decided_by: e.decidedBy, policy: e.policy ?? '' });
      // A denied connection was never opened to the app: it is counted in the decisions only.
      if (e.decision === 'DENY') return;
      const labels = labelsOf();
      this.#tcpClosed.inc(labels);
      this.#tcpReceived.inc(labels, e.bytesReceived);
      this.#tcpSent.inc(labels, e.bytesSent);
      return;
    }
    const key = `${e.sourcePrincipal ?? ''}|${e.mtls ? 1 : 0}|${e.status ?? 0}|${e.responseFlags}|${e.decision}|${e.decidedBy}|${e.policy ?? ''}`;
    let c = this.#httpChildren.get(key);
    if (c === undefined) {
      const code = String(e.status ?? 0);
      c = {
        requests: this.#requests.labels({ ...labelsOf(), request_protocol: 'http', response_code: code, response_flags: e.responseFlags }),
        duration: this.#duration.labels({ ...labelsOf(), request_protocol: 'http', response_code: code }),
        decisions: this.#decisions.labels({ kind: 'http', decision: e.decision, decided_by: e.decidedBy, policy: e.policy ?? '' }),
        pending: 0,
      };
      // Bounded: a pathological spread of principals cannot grow this without limit (prom-client keeps its own series).
      if (this.#httpChildren.size > 10_000) {
        this.#flush();
        this.#httpChildren.clear();
      }
      this.#httpChildren.set(key, c);
    }
    c.pending++;
    c.duration.observe(e.durationMs);
  }

  #flush(): void {
    for (const c of this.#httpChildren.values()) {
      if (c.pending === 0) continue;
      c.requests.inc(c.pending);
      c.decisions.inc(c.pending);
      c.pending = 0;
    }
  }

  /** An inbound TCP connection opened to the app (counted when it opens; the rest when it closes). */
  tcpOpened(sourcePrincipal: string | undefined, mtls: boolean): void {
    this.#tcpOpened.inc({
      reporter: 'destination', source_principal: sourcePrincipal ?? 'unknown', destination_workload: this.#workload.name,
      destination_workload_namespace: this.#workload.namespace, destination_principal: this.#ownPrincipal, connection_security_policy: mtls ? 'mutual_tls' : 'none',
    });
  }

  /** Outbound traffic, as Istio's client sidecars report it (reporter="source"). */
  recordOutbound(e: OutboundEntry): void {
    const sa = e.destinationServiceAccount;
    const labels = {
      reporter: 'source',
      source_principal: this.#ownPrincipal,
      destination_workload: e.destinationWorkload ?? 'unknown',
      destination_workload_namespace: e.destinationNamespace ?? 'unknown',
      destination_principal: sa === undefined || !e.mtls ? 'unknown' : `spiffe://${this.#trustDomain}/ns/${sa.split('/')[0]}/sa/${sa.split('/')[1]}`,
      connection_security_policy: e.mtls ? 'mutual_tls' : 'none',
    };
    if (e.via === 'http-proxy') {
      const code = String(e.status ?? 0);
      this.#requests.inc({ ...labels, request_protocol: 'http', response_code: code, response_flags: e.error === undefined ? '-' : 'UF' });
      this.#duration.observe({ ...labels, request_protocol: 'http', response_code: code }, e.durationMs);
      return;
    }
    this.#tcpOpened.inc(labels);
    this.#tcpClosed.inc(labels);
    this.#tcpSent.inc(labels, e.bytesSent);
    this.#tcpReceived.inc(labels, e.bytesReceived);
  }
}
