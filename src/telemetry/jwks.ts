import { Counter, Gauge, type Registry } from 'prom-client';
import type { JwksEvent, JwksSource } from '../jwt/jwks-source.ts';

/**
 * JWKS fetches made visible: a log line per failure and per recovery, and Prometheus series per key URI. Envoy
 * counts fetches as `jwt_authn.jwks_fetch_success` / `jwks_fetch_failed`; the same counts here carry the URI, with
 * whether a usable key set is in hand (a failing fetch is harmless while the last good set is fresh, and an outage
 * once it is stale: the series to alert on is `rampart_jwks_usable == 0`).
 */

/** What is logged through: a pino logger fits (structured fields first, then the message). */
export interface EventLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export interface JwksTelemetry {
  /** Pass as `onEvent` to KeyRegistry.create / JwksSource. */
  readonly onEvent: (event: JwksEvent) => void;
  /** Sources whose key-set state is read at scrape time (`rampart_jwks_usable`, key counts). */
  watch(sources: readonly JwksSource[]): void;
}

export function jwksTelemetry(options: { readonly registry?: Registry; readonly logger?: EventLog }): JwksTelemetry {
  const { registry, logger } = options;
  let watched: readonly JwksSource[] = [];
  const registers = registry === undefined ? [] : [registry];
  const fetches = new Counter({
    name: 'rampart_jwks_fetches_total',
    help: 'JWKS fetches by key URI and result (success, failure).',
    labelNames: ['uri', 'result'] as const,
    registers,
  });
  const lastSuccess = new Gauge({
    name: 'rampart_jwks_last_success_timestamp_seconds',
    help: 'When the key set of a URI was last fetched and parsed successfully (Unix seconds).',
    labelNames: ['uri'] as const,
    registers,
  });
  new Gauge({
    name: 'rampart_jwks_usable',
    help: 'Whether tokens can be verified with the keys of a URI now (1) or fail closed with 401 (0).',
    labelNames: ['uri'] as const,
    registers,
    collect() {
      this.reset();
      for (const s of watched) this.set({ uri: s.uri }, 'keys' in s.state() ? 1 : 0);
    },
  });
  // Consecutive failures per URI, so that a long outage logs its start and its end, not one line per retry.
  const failing = new Map<string, number>();
  return {
    onEvent(event) {
      if (event.type === 'fetched') {
        fetches.inc({ uri: event.uri, result: 'success' });
        lastSuccess.set({ uri: event.uri }, Date.now() / 1000);
        const failures = failing.get(event.uri);
        if (failures !== undefined) {
          failing.delete(event.uri);
          logger?.info({ event: 'jwks-recovered', uri: event.uri, keys: event.keys, failures }, `JWKS ${event.uri} fetched again after ${failures} failed attempt(s)`);
        }
        if (event.skipped.length > 0) logger?.warn({ event: 'jwks-keys-skipped', uri: event.uri, skipped: event.skipped }, `JWKS ${event.uri}: ${event.skipped.length} key(s) skipped`);
        return;
      }
      fetches.inc({ uri: event.uri, result: 'failure' });
      const n = (failing.get(event.uri) ?? 0) + 1;
      failing.set(event.uri, n);
      if (n === 1 || Number.isInteger(Math.log2(n))) {
        logger?.error(
          { event: 'jwks-fetch-failed', uri: event.uri, error: event.error, keepingLastGood: event.keepingLastGood, consecutiveFailures: n },
          `JWKS ${event.uri} could not be fetched (${event.error}); ${event.keepingLastGood ? 'the last good key set stays in use until it is stale' : 'tokens of this issuer get 401 until it is'}`,
        );
      }
    },
    watch(sources) {
      watched = sources;
    },
  };
}
