import { RampartError } from '../errors.ts';
import type { SpiffeId } from './spiffe-id.ts';
import { svidFromParts, type Svid } from './svid.ts';
import { TrustBundle } from './trust-bundle.ts';
import { certificatesFromPem, createCsr, generateKeyPair, type KeyType } from './x509.ts';

/**
 * The workload side of identity: holds the current SVID and trust bundle, renews before expiry the way Istio's
 * agent does (at 50 % of the lifetime, ±1 % jitter by default), retries with capped exponential backoff while the
 * CA is unreachable, keeps the old SVID in place until a new one arrives, and tells listeners when either changes
 * so servers can swap their TLS context (open connections keep theirs).
 */

/** What the CA answers to a CSR: the leaf-first chain and the roots (IssuedSvid satisfies it). */
export interface SvidResponse {
  readonly chainPem: string;
  readonly rootsPem: string;
}

/** Sends a CSR to the CA. `current` is the SVID to authenticate a renewal with (absent on the first request). */
export type SvidRequester = (csrPem: string, current: Svid | undefined) => Promise<SvidResponse>;

export interface CertificateManagerOptions {
  readonly identity: SpiffeId;
  readonly requestSvid: SvidRequester;
  /** Trust domain aliases to accept besides the identity's own. */
  readonly trustDomainAliases?: readonly string[];
  readonly keyType?: KeyType;
  /**
   * Fraction of the lifetime kept in reserve: renewal happens when this much of the lifetime is left
   * (Istio's SECRET_GRACE_PERIOD_RATIO, default 0.5).
   */
  readonly graceRatio?: number;
  /** Random ± spread of the grace ratio (Istio's SECRET_GRACE_PERIOD_RATIO_JITTER, default 0.01). */
  readonly graceRatioJitter?: number;
  /** First retry delay after a failed request, doubled per failure up to maxBackoffMs (with ±20 % jitter). */
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
  readonly now?: () => number;
  readonly random?: () => number;
}

export type CertificateEvent =
  | { readonly type: 'rotated'; readonly svid: Svid; readonly bundle: TrustBundle; readonly previous: Svid | undefined }
  | { readonly type: 'bundle-changed'; readonly bundle: TrustBundle }
  | { readonly type: 'renewal-failed'; readonly error: unknown; readonly attempt: number; readonly retryInMs: number }
  | { readonly type: 'expired'; readonly svid: Svid };

export type CertificateListener = (event: CertificateEvent) => void;

export class CertificateManagerError extends RampartError {}

/** When a certificate received at createdMs and valid to notAfterMs should be renewed (Istio's rotateTime). */
export function renewalTime(createdMs: number, notAfterMs: number, graceRatio: number, jitter: number, random: () => number = Math.random): number {
  const signed = random() * jitter * (random() < 0.5 ? -1 : 1);
  const ratio = Math.min(1, Math.max(0, graceRatio + signed));
  return notAfterMs - ratio * (notAfterMs - createdMs);
}

/** setTimeout caps delays at 2^31-1 ms (~24.8 days) and fires at once beyond; longer waits go in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A timer for an absolute time. Unref'd by default: renewal alone does not keep a process alive, the servers using
 * the SVID do. The wait for the first SVID is kept alive: someone awaits it.
 */
class AbsoluteTimer {
  #handle: NodeJS.Timeout | undefined;
  constructor(atMs: number, now: () => number, fire: () => void, keepAlive = false) {
    const arm = (): void => {
      const wait = atMs - now();
      this.#handle = setTimeout(wait > MAX_TIMER_MS ? arm : fire, Math.max(0, Math.min(wait, MAX_TIMER_MS)));
      if (!keepAlive) this.#handle.unref();
    };
    arm();
  }
  cancel(): void {
    clearTimeout(this.#handle);
  }
}

export class CertificateManager {
  readonly identity: SpiffeId;
  readonly #opts: Required<Omit<CertificateManagerOptions, 'identity' | 'requestSvid' | 'trustDomainAliases'>>;
  readonly #request: SvidRequester;
  /** Accepted trust domains besides the own: from the options, then from the last bundle set by setTrustBundle. */
  #aliases: readonly string[];
  readonly #listeners = new Set<CertificateListener>();
  #svid: Svid | undefined;
  #bundle: TrustBundle | undefined;
  #timer: AbsoluteTimer | undefined;
  #expiryTimer: AbsoluteTimer | undefined;
  #failures = 0;
  #inFlight: Promise<Svid> | undefined;
  #stopped = false;
  #renewAt: number | undefined;

  constructor(options: CertificateManagerOptions) {
    this.identity = options.identity;
    this.#request = options.requestSvid;
    this.#aliases = options.trustDomainAliases ?? [];
    this.#opts = {
      keyType: options.keyType ?? 'ec-p256',
      graceRatio: options.graceRatio ?? 0.5,
      graceRatioJitter: options.graceRatioJitter ?? 0.01,
      initialBackoffMs: options.initialBackoffMs ?? 1_000,
      maxBackoffMs: options.maxBackoffMs ?? 60_000,
      now: options.now ?? Date.now,
      random: options.random ?? Math.random,
    };
    if (!(this.#opts.graceRatio > 0 && this.#opts.graceRatio < 1)) throw new CertificateManagerError('ERR_CERT_MANAGER_OPTIONS', 'graceRatio must be between 0 and 1');
  }

  /** The SVID in use; undefined before the first one arrived. */
  get svid(): Svid | undefined {
    return this.#svid;
  }

  get trustBundle(): TrustBundle | undefined {
    return this.#bundle;
  }

  /** When the next renewal is planned (ms since the epoch), for status output. */
  get renewAt(): number | undefined {
    return this.#renewAt;
  }

  /** Adds a listener; returns the function that removes it. */
  subscribe(listener: CertificateListener): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /** Gets the first SVID (retrying with backoff until it succeeds or stop() is called) and schedules renewals. */
  async start(): Promise<Svid> {
    this.#stopped = false;
    for (;;) {
      try {
        return await this.renewNow();
      } catch (err) {
        if (this.#stopped) throw err;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          this.#timer = new AbsoluteTimer(this.#opts.now() + this.#lastRetryDelay, this.#opts.now, resolve, true);
        });
        this.#wake = undefined;
        if (this.#stopped) throw new CertificateManagerError('ERR_CERT_MANAGER_STOPPED', 'stopped before the first SVID arrived', { cause: err });
      }
    }
  }

  #lastRetryDelay = 0;
  #wake: (() => void) | undefined;

  /** Requests a new SVID now (a fresh key each time). Concurrent calls share one request. */
  renewNow(): Promise<Svid> {
    this.#inFlight ??= this.#renew().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  async #renew(): Promise<Svid> {
    try {
      const keys = await generateKeyPair(this.#opts.keyType);
      // An expired SVID authenticates nothing; without a valid one the requester falls back to its bootstrap credential.
      const current = this.#svid !== undefined && this.#svid.notAfter.getTime() > this.#opts.now() ? this.#svid : undefined;
      const response = await this.#request(createCsr(keys, this.identity.uri), current);
      const svid = svidFromParts(keys.privateKey, certificatesFromPem(response.chainPem, "the CA's certificate chain"));
      if (svid.spiffeId.uri !== this.identity.uri) {
        throw new CertificateManagerError('ERR_SVID_IDENTITY', `the CA issued ${svid.spiffeId.uri}, expected ${this.identity.uri}`);
      }
      const bundle = TrustBundle.fromPem(this.identity.trustDomain, response.rootsPem, this.#aliases);
      if (this.#stopped) return svid;
      this.#install(svid, bundle);
      return svid;
    } catch (err) {
      this.#failures++;
      const base = Math.min(this.#opts.maxBackoffMs, this.#opts.initialBackoffMs * 2 ** (this.#failures - 1));
      const delay = Math.round(base * (0.8 + 0.4 * this.#opts.random()));
      this.#lastRetryDelay = delay;
      this.#emit({ type: 'renewal-failed', error: err, attempt: this.#failures, retryInMs: delay });
      if (this.#svid !== undefined && !this.#stopped) this.#schedule(this.#opts.now() + delay);
      throw err;
    }
  }

  /** Replaces the trust bundle (a root added or retired) without a new SVID. */
  setTrustBundle(bundle: TrustBundle): void {
    // Its trust domain aliases stay for the bundles of later renewals (which carry roots only).
    this.#aliases = bundle.aliases;
    if (this.#bundle !== undefined && this.#bundle.equals(bundle)) return;
    this.#bundle = bundle;
    this.#emit({ type: 'bundle-changed', bundle });
  }

  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#expiryTimer?.cancel();
    this.#wake?.();
    this.#timer = undefined;
    this.#expiryTimer = undefined;
  }

  #install(svid: Svid, bundle: TrustBundle): void {
    const previous = this.#svid;
    const bundleChanged = this.#bundle === undefined || !this.#bundle.equals(bundle);
    this.#svid = svid;
    if (bundleChanged) this.#bundle = bundle;
    this.#failures = 0;
    // Like Istio's agent, the lifetime counts from receipt, not from notBefore (which the CA backdates for clock skew).
    const at = renewalTime(Math.max(svid.notBefore.getTime(), this.#opts.now()), svid.notAfter.getTime(), this.#opts.graceRatio, this.#opts.graceRatioJitter, this.#opts.random);
    this.#schedule(at);
    this.#expiryTimer?.cancel();
    this.#expiryTimer = new AbsoluteTimer(svid.notAfter.getTime(), this.#opts.now, () => {
      if (this.#svid === svid) this.#emit({ type: 'expired', svid });
    });
    this.#emit({ type: 'rotated', svid, bundle: this.#bundle!, previous });
  }

  #schedule(atMs: number): void {
    this.#timer?.cancel();
    this.#renewAt = atMs;
    this.#timer = new AbsoluteTimer(atMs, this.#opts.now, () => {
      this.renewNow().catch(() => {
        // Reported through 'renewal-failed'; the retry is already scheduled.
      });
    });
  }

  #emit(event: CertificateEvent): void {
    for (const l of this.#listeners) {
      try {
        l(event);
      } catch {
        // A failing listener must not stop the others or the renewal loop.
      }
    }
  }
}
