import { RampartError } from '../errors.ts';
import { forbiddenUrl } from '../match/fetch-target.ts';
import { KeySet, JwksError } from './key-set.ts';
import type { KeySetState } from './authenticator.ts';
import { fetchKeyDocument, type KeyFetcher, type Resolver } from './key-fetch.ts';

/**
 * A remote JWKS kept fresh: fetched with a timeout, refreshed in the background (istiod's default: every 20
 * minutes), refetched early when a token names a kid the set lacks (rate-limited, so key rotation at the issuer
 * just works without letting tokens drive a fetch storm), and — when fetching fails — the last good set kept until
 * it is stale. Without any good set, tokens fail closed (401 "Jwks remote fetch is failed"). Fetches never reach a
 * link-local or metadata address (key-fetch.ts): such a URL, redirect or DNS answer is a failed fetch, and the last
 * good set stays. This is the I/O edge of the jwt/ module: it owns fetching and timers, nothing else does.
 */

export interface JwksSourceOptions {
  readonly uri: string;
  /** Fetch timeout (RequestAuthentication `timeout`, default 5 s). */
  readonly timeoutMs?: number;
  /** Background refresh interval (istiod: PILOT_JWT_PUB_KEY_REFRESH_INTERVAL, 20 min). */
  readonly refreshMs?: number;
  /** A set older than this is no longer used when refreshes keep failing. */
  readonly staleAfterMs?: number;
  /** At most one unknown-kid refetch per this interval. */
  readonly minRefetchMs?: number;
  readonly fetch?: KeyFetcher;
  /** Name resolution for the fetch (tests); every address it gives is checked. */
  readonly resolve?: Resolver;
  readonly now?: () => number;
  /** Fetch failures and recoveries, for logs and metrics. */
  readonly onEvent?: (event: JwksEvent) => void;
}

export type JwksEvent =
  | { readonly type: 'fetched'; readonly uri: string; readonly keys: number; readonly skipped: readonly string[] }
  | { readonly type: 'fetch-failed'; readonly uri: string; readonly error: string; readonly keepingLastGood: boolean };

export interface JwksSourceStats {
  readonly fetches: number;
  readonly failures: number;
  readonly lastError: string | undefined;
  readonly fetchedAt: number | undefined;
}

/** What went wrong with a fetch, in a few words. */
export function describeFetchError(err: unknown, timeoutMs: number): string {
  const e = err as Error & { code?: unknown };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  // Our own errors say it all; a socket error's code says what happened (ECONNREFUSED, ENOTFOUND, a TLS failure).
  if (err instanceof RampartError) return e.message;
  if (typeof e.code === 'string') return e.code === 'ENOTFOUND' ? `ENOTFOUND (no address for ${(e as { hostname?: string }).hostname ?? 'the host'})` : `${e.code}${/^[A-Z_]+$/.test(e.message) ? '' : ` (${e.message})`}`;
  const cause = e.cause as { code?: string; message?: string } | undefined;
  return cause?.code ?? cause?.message ?? e.message;
}

export class JwksSource {
  readonly uri: string;
  readonly #timeoutMs: number;
  readonly #refreshMs: number;
  readonly #staleAfterMs: number;
  readonly #minRefetchMs: number;
  readonly #fetch: KeyFetcher;
  readonly #resolve: Resolver | undefined;
  readonly #now: () => number;
  readonly #onEvent: ((e: JwksEvent) => void) | undefined;
  #keys: KeySet | undefined;
  #fetchedAt: number | undefined;
  #lastError: string | undefined = 'not fetched yet';
  #lastAttempt = -Infinity;
  #inFlight: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #fetches = 0;
  #failures = 0;

  constructor(options: JwksSourceOptions) {
    const url = new URL(options.uri);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new JwksError(`jwksUri ${options.uri}: only http and https are fetched`);
    const forbidden = forbiddenUrl(options.uri);
    if (forbidden !== undefined) throw new JwksError(`jwksUri ${options.uri}: refused: ${forbidden}`);
    this.uri = options.uri;
    this.#timeoutMs = options.timeoutMs ?? 5_000;
    this.#refreshMs = options.refreshMs ?? 20 * 60_000;
    this.#staleAfterMs = options.staleAfterMs ?? 24 * 3_600_000;
    this.#minRefetchMs = options.minRefetchMs ?? 30_000;
    this.#fetch = options.fetch ?? fetchKeyDocument;
    this.#resolve = options.resolve;
    this.#now = options.now ?? Date.now;
    this.#onEvent = options.onEvent;
  }

  /** The keys to verify with now, or why there are none. */
  state(): KeySetState {
    if (this.#keys !== undefined && this.#fetchedAt !== undefined && this.#now() - this.#fetchedAt <= this.#staleAfterMs) return { keys: this.#keys };
    const why = this.#keys !== undefined ? `the last good key set is stale and refreshing fails (${this.#lastError})` : (this.#lastError ?? 'not fetched');
    return { unavailable: `${this.uri}: ${why}` };
  }

  get stats(): JwksSourceStats {
    return { fetches: this.#fetches, failures: this.#failures, lastError: this.#lastError, fetchedAt: this.#fetchedAt };
  }

  /** Fetches once now (awaiting it), then keeps refreshing in the background until stop(). */
  async start(): Promise<void> {
    await this.refresh();
    this.#schedule();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** A token named a kid the set lacks: fetch again unless a fetch happened very recently. */
  unknownKid(): void {
    if (this.#now() - this.#lastAttempt < this.#minRefetchMs) return;
    void this.refresh();
  }

  /** Fetches now; concurrent calls share one fetch. Never throws: failures are kept in state and reported. */
  refresh(): Promise<void> {
    this.#inFlight ??= this.#doFetch().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    // After a failure, retry sooner (every minute, as istiod) than the regular refresh.
    const wait = this.#lastError === undefined ? this.#refreshMs : Math.min(this.#refreshMs, 60_000);
    this.#timer = setTimeout(() => {
      void this.refresh().then(() => this.#schedule());
    }, wait);
    this.#timer.unref();
  }

  async #doFetch(): Promise<void> {
    this.#lastAttempt = this.#now();
    this.#fetches++;
    try {
      const res = await this.#fetch(this.uri, { timeoutMs: this.#timeoutMs, ...(this.#resolve === undefined ? {} : { resolve: this.#resolve }) });
      if (res.status < 200 || res.status > 299) throw new Error(`HTTP ${res.status}`);
      const text = res.body;
      const keys = await KeySet.fromJwks(text, this.uri);
      this.#keys = keys;
      this.#fetchedAt = this.#now();
      this.#lastError = undefined;
      this.#onEvent?.({ type: 'fetched', uri: this.uri, keys: keys.keys.length, skipped: keys.skipped });
    } catch (err) {
      this.#failures++;
      this.#lastError = describeFetchError(err, this.#timeoutMs);
      this.#onEvent?.({ type: 'fetch-failed', uri: this.uri, error: this.#lastError, keepingLastGood: this.#keys !== undefined });
    }
  }
}
