import type { JWTPayload } from 'jose';
import { spaceDelimitedClaims, type FoundToken, type JwtOutcome, type JwtRuleRef, type JwtVerifier } from '../policy/request-authn.ts';
import type { VerifiedJwt } from '../policy/request.ts';
import type { KeySet } from './key-set.ts';
import { audiencesOf, CLOCK_SKEW_SECONDS, decodeToken, ENVOY_MESSAGES, JwtError, verifyToken, type DecodedJwt, type JwtFailure } from './verify.ts';

/**
 * The RequestAuthentication step for raw tokens, with Envoy's requirement semantics: every token found must be
 * accepted by one of the rules that found it (issuer, keys, time), and by the audiences of one of those; a bad token
 * is 401 and an audience no rule lists is 403. Verified tokens are cached per key set until they expire, so a
 * client repeating its token costs a map lookup.
 */

/** The keys of one rule right now: a key set, or why there is none (the JWKS could not be fetched or parsed). */
export type KeySetState = { readonly keys: KeySet } | { readonly unavailable: string };

export interface JwtAuthenticatorOptions {
  readonly keysFor: (ref: JwtRuleRef) => KeySetState;
  /** Milliseconds since the epoch. */
  readonly now?: () => number;
  /** Verified tokens kept per key set. */
  readonly cacheSize?: number;
  /** A token named a kid the rule's key set lacks (the key source may refetch). */
  readonly onUnknownKid?: (ref: JwtRuleRef) => void;
}

/**
 * A Map bounded by evicting the oldest insertion. The insertion order lives in a ring of keys: Map's own
 * `keys().next()` walks over deleted slots until V8 rehashes, which made eviction cost 5-7 us at 10,000 entries.
 */
class BoundedMap<K, V> {
  readonly #map = new Map<K, V>();
  readonly #ring: Array<K | undefined>;
  #next = 0;
  constructor(max: number) {
    this.#ring = new Array<K | undefined>(Math.max(1, max));
  }
  get(key: K): V | undefined {
    return this.#map.get(key);
  }
  delete(key: K): void {
    this.#map.delete(key);
  }
  set(key: K, value: V): void {
    if (!this.#map.has(key)) {
      const old = this.#ring[this.#next];
      if (old !== undefined) this.#map.delete(old);
      this.#ring[this.#next] = key;
      this.#next = (this.#next + 1) % this.#ring.length;
    }
    this.#map.set(key, value);
  }
}

class VerifiedCache {
  readonly #max: number;
  readonly #byKeys = new WeakMap<KeySet, BoundedMap<string, JWTPayload>>();
  constructor(max: number) {
    this.#max = max;
  }
  get(keys: KeySet, token: string, nowSeconds: number): JWTPayload | undefined {
    const m = this.#byKeys.get(keys);
    const hit = m?.get(token);
    if (hit === undefined) return undefined;
    // Evicted at expiry: the full check then reports the expiry.
    if (typeof hit.exp === 'number' && nowSeconds > hit.exp + CLOCK_SKEW_SECONDS) {
      m!.delete(token);
      return undefined;
    }
    return hit;
  }
  set(keys: KeySet, token: string, payload: JWTPayload): void {
    let m = this.#byKeys.get(keys);
    if (m === undefined) this.#byKeys.set(keys, (m = new BoundedMap(this.#max)));
    m.set(token, payload);
  }
}

interface Failure {
  readonly reason: JwtFailure;
  readonly detail: string;
}

export class JwtAuthenticator implements JwtVerifier {
  readonly #keysFor: (ref: JwtRuleRef) => KeySetState;
  readonly #now: () => number;
  readonly #cache: VerifiedCache;
  readonly #onUnknownKid: ((ref: JwtRuleRef) => void) | undefined;
  /** Decoded (not verified) tokens by value: only well-formed tokens, bounded like the verified cache. */
  readonly #decoded: BoundedMap<string, DecodedJwt>;
  /** The request.auth view of a verified payload, built once: the engine caches its prepared form by identity. */
  readonly #views = new WeakMap<JWTPayload, VerifiedJwt>();

  constructor(options: JwtAuthenticatorOptions) {
    this.#onUnknownKid = options.onUnknownKid;
    this.#decoded = new BoundedMap(options.cacheSize ?? 10_000);
    this.#keysFor = options.keysFor;
    this.#now = options.now ?? Date.now;
    this.#cache = new VerifiedCache(options.cacheSize ?? 10_000);
  }

  authenticate(tokens: readonly FoundToken[], _allRules: readonly JwtRuleRef[]): JwtOutcome {
    let first: { jwt: VerifiedJwt; accepted: JwtRuleRef[] } | undefined;
    for (const found of tokens) {
      const r = this.#one(found);
      if ('reason' in r) {
        const status = r.reason === 'audience' ? 403 : 401;
        return {
          kind: 'rejected', status, reason: ENVOY_MESSAGES[r.reason],
          message: `token in ${found.locations.join(', ')}: ${ENVOY_MESSAGES[r.reason]}: ${r.detail}`,
        };
      }
      first ??= r;
    }
    if (first === undefined) return { kind: 'none', message: 'no token found' };
    const spaceDelimited = spaceDelimitedClaims(first.accepted);
    const by = first.accepted[0]!;
    const extra = tokens.length > 1 ? ` (${tokens.length} tokens, each verified)` : '';
    return {
      kind: 'verified', jwt: first.jwt, spaceDelimited,
      message: `token verified: principal ${first.jwt.principal ?? '(no iss/sub)'}, accepted by ${by.policy} jwtRules[${by.index}]${extra}`,
    };
  }

  #one(found: FoundToken): Failure | { jwt: VerifiedJwt; accepted: JwtRuleRef[] } {
    const nowSeconds = Math.floor(this.#now() / 1000);
    // A repeated token skips decoding too: the decoded form is kept next to the verified-token cache.
    let decoded = this.#decoded.get(found.token);
    if (decoded === undefined) {
      try {
        decoded = decodeToken(found.token);
      } catch (err) {
        if (err instanceof JwtError) return { reason: err.reason, detail: detailOf(err) };
        throw err;
      }
      this.#decoded.set(found.token, decoded);
    }
    const iss = typeof decoded.payload.iss === 'string' ? decoded.payload.iss : undefined;
    // A rule without issuer (jwksUri only) does not check `iss` in Envoy.
    const candidates = found.rules.filter((ref) => ref.rule.issuer === undefined || ref.rule.issuer === '' || ref.rule.issuer === iss);
    if (candidates.length === 0) {
      return {
        reason: 'issuer-not-configured',
        detail: `issuer ${JSON.stringify(iss ?? '')} is not accepted by the rules looking there (${found.rules.map((x) => JSON.stringify(x.rule.issuer ?? '')).join(', ')})`,
      };
    }
    const verified: JwtRuleRef[] = [];
    let payload: JWTPayload | undefined;
    let failure: Failure | undefined;
    for (const ref of candidates) {
      const state = this.#keysFor(ref);
      if ('unavailable' in state) {
        failure ??= { reason: 'keys-unavailable', detail: `keys of ${ref.policy} jwtRules[${ref.index}]: ${state.unavailable}` };
        continue;
      }
      const cached = this.#cache.get(state.keys, found.token, nowSeconds);
      if (cached !== undefined) {
        payload = cached;
        verified.push(ref);
        continue;
      }
      try {
        payload = verifyToken(found.token, state.keys, nowSeconds, decoded).payload;
        this.#cache.set(state.keys, found.token, payload);
        verified.push(ref);
      } catch (err) {
        if (!(err instanceof JwtError)) throw err;
        if (err.reason === 'no-key' && decoded.header.kid !== undefined) this.#onUnknownKid?.(ref);
        failure ??= { reason: err.reason, detail: detailOf(err) };
      }
    }
    if (verified.length === 0 || payload === undefined) return failure ?? { reason: 'bad-signature', detail: 'no rule verified the token' };
    const aud = audiencesOf(payload);
    const accepted = verified.filter((ref) => {
      const want = ref.rule.audiences ?? [];
      return want.length === 0 || want.some((a) => aud.includes(a));
    });
    if (accepted.length === 0) {
      return { reason: 'audience', detail: `audiences ${JSON.stringify(aud)} match none of ${JSON.stringify(verified.flatMap((x) => x.rule.audiences ?? []))}` };
    }
    let jwt = this.#views.get(payload);
    if (jwt === undefined) {
      const sub = typeof payload.sub === 'string' ? payload.sub : undefined;
      const azp = (payload as { azp?: unknown }).azp;
      // One fixed shape (no conditional spreads): building it was most of a cached authentication.
      jwt = {
        principal: iss !== undefined && sub !== undefined ? `${iss}/${sub}` : undefined,
        audiences: aud,
        presenter: typeof azp === 'string' ? azp : undefined,
        claims: payload as Record<string, unknown>,
      } as VerifiedJwt;
      this.#views.set(payload, jwt);
    }
    return { jwt, accepted };
  }
}

function detailOf(err: JwtError): string {
  const prefix = `${ENVOY_MESSAGES[err.reason]}: `;
  return err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
}
