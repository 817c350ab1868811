import type { JWTPayload, ProtectedHeaderParameters } from 'jose';
import { spaceDelimitedClaims, type FoundToken, type JwtOutcome, type JwtRuleRef, type JwtVerifier } from '../policy/request-authn.ts';
import type { VerifiedJwt } from '../policy/request.ts';
import type { KeySet } from './key-set.ts';
import { audiencesOf, checkTimes, decodeToken, ENVOY_MESSAGES, JwtError, verifySignature, verifySignatureAsync, type DecodedJwt, type JwtFailure } from './verify.ts';

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

/** A verified token: its decoded form and the key sets that verified it (a refetched set is a new object). */
interface Verified {
  readonly decoded: DecodedJwt;
  readonly keySets: KeySet[];
}

/** Key sets remembered per token: enough for a rotation overlap, bounded against churn. */
const KEY_SETS_PER_TOKEN = 4;

interface Failure {
  readonly reason: JwtFailure;
  readonly detail: string;
}

interface Accepted {
  readonly jwt: VerifiedJwt;
  readonly accepted: JwtRuleRef[];
}

/** One token between decoding and the audience check: the signature checks still to do are in `toCheck`. */
interface Pending {
  readonly found: FoundToken;
  readonly decoded: DecodedJwt;
  readonly verified: JwtRuleRef[];
  readonly toCheck: { readonly ref: JwtRuleRef; readonly keys: KeySet }[];
  failure: Failure | undefined;
}

export class JwtAuthenticator implements JwtVerifier {
  readonly #keysFor: (ref: JwtRuleRef) => KeySetState;
  readonly #now: () => number;
  readonly #onUnknownKid: ((ref: JwtRuleRef) => void) | undefined;
  /**
   * Verified tokens by value, evicted oldest first and dropped at expiry. Only tokens that verified enter it, so
   * garbage cannot fill it; a repeated token skips decoding and its signature check.
   */
  readonly #verified: BoundedMap<string, Verified>;
  /**
   * Tokens verified once and not (yet) admitted. A token enters #verified on its second verification while still
   * remembered here: a stream of one-off tokens (new clients, or a flood) then never pushes out the tokens that
   * clients repeat, and costs no long-lived cache entry per token.
   */
  readonly #seenOnce: BoundedMap<string, true>;
  readonly #headers = new BoundedMap<string, ProtectedHeaderParameters>(256);
  /** The request.auth view of a verified payload, built once: the engine caches its prepared form by identity. */
  readonly #views = new WeakMap<JWTPayload, VerifiedJwt>();

  constructor(options: JwtAuthenticatorOptions) {
    this.#onUnknownKid = options.onUnknownKid;
    this.#verified = new BoundedMap(options.cacheSize ?? 10_000);
    this.#seenOnce = new BoundedMap(Math.min(options.cacheSize ?? 10_000, 1_024));
    this.#keysFor = options.keysFor;
    this.#now = options.now ?? Date.now;
  }

  /** The payload of a token in the verified cache (a proxy's header edits read it without decoding again). */
  verifiedPayload(token: string): Readonly<Record<string, unknown>> | undefined {
    return this.#verified.get(token)?.decoded.payload as Readonly<Record<string, unknown>> | undefined;
  }

  authenticate(tokens: readonly FoundToken[], _allRules: readonly JwtRuleRef[]): JwtOutcome {
    const results: Accepted[] = [];
    for (const found of tokens) {
      const p = this.#begin(found);
      if ('reason' in p) return rejected(found, p);
      for (const { ref, keys } of p.toCheck) {
        try {
          verifySignature(found.token, keys, p.decoded);
          this.#passed(p, ref, keys);
        } catch (err) {
          this.#failed(p, ref, err);
        }
      }
      const r = this.#finish(p);
      if ('reason' in r) return rejected(found, r);
      results.push(r);
    }
    return outcome(tokens, results);
  }

  /**
   * authenticate() with signatures checked on libuv's threadpool: the event loop stays free during the check and a
   * second core does the arithmetic. Same outcomes and cache; a proxy awaits it before deciding.
   */
  async authenticateAsync(tokens: readonly FoundToken[], _allRules: readonly JwtRuleRef[]): Promise<JwtOutcome> {
    const results: Accepted[] = [];
    for (const found of tokens) {
      const p = this.#begin(found);
      if ('reason' in p) return rejected(found, p);
      for (const { ref, keys } of p.toCheck) {
        try {
          await verifySignatureAsync(found.token, keys, p.decoded);
          this.#passed(p, ref, keys);
        } catch (err) {
          this.#failed(p, ref, err);
        }
      }
      const r = this.#finish(p);
      if ('reason' in r) return rejected(found, r);
      results.push(r);
    }
    return outcome(tokens, results);
  }

  /**
   * Everything before the signature, in Envoy's order (jwt_authn authenticator.cc startVerify): the token's shape,
   * its issuer, its times, then the audiences of the rules that accept the issuer. Only then are keys looked at, so
   * a token that fails any of these costs no signature check and reads as Envoy words it.
   */
  #begin(found: FoundToken): Failure | Pending {
    const nowSeconds = Math.floor(this.#now() / 1000);
    const entry = this.#verified.get(found.token);
    let decoded: DecodedJwt;
    if (entry !== undefined) decoded = entry.decoded;
    else {
      try {
        decoded = decodeToken(found.token, this.#headers);
      } catch (err) {
        if (err instanceof JwtError) return { reason: err.reason, detail: detailOf(err) };
        throw err;
      }
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
    try {
      checkTimes(decoded, nowSeconds);
    } catch (err) {
      // An expired token leaves the cache: it can only fail from now on.
      if (entry !== undefined) this.#verified.delete(found.token);
      if (err instanceof JwtError) return { reason: err.reason, detail: detailOf(err) };
      throw err;
    }
    const aud = audiencesOf(decoded.payload);
    const audienceOk = candidates.filter((ref) => {
      const want = ref.rule.audiences ?? [];
      return want.length === 0 || want.some((a) => aud.includes(a));
    });
    if (audienceOk.length === 0) {
      return { reason: 'audience', detail: `audiences ${JSON.stringify(aud)} match none of ${JSON.stringify(candidates.flatMap((x) => x.rule.audiences ?? []))}` };
    }
    const p: Pending = { found, decoded, verified: [], toCheck: [], failure: undefined };
    for (const ref of audienceOk) {
      const state = this.#keysFor(ref);
      if ('unavailable' in state) {
        p.failure ??= { reason: 'keys-unavailable', detail: `keys of ${ref.policy} jwtRules[${ref.index}]: ${state.unavailable}` };
      } else if (entry !== undefined && entry.keySets.includes(state.keys)) {
        p.verified.push(ref);
      } else {
        p.toCheck.push({ ref, keys: state.keys });
      }
    }
    return p;
  }

  #passed(p: Pending, ref: JwtRuleRef, keys: KeySet): void {
    p.verified.push(ref);
    const entry = this.#verified.get(p.found.token);
    if (entry === undefined) {
      if (this.#seenOnce.get(p.found.token) === undefined) this.#seenOnce.set(p.found.token, true);
      else {
        this.#seenOnce.delete(p.found.token);
        this.#verified.set(p.found.token, { decoded: p.decoded, keySets: [keys] });
      }
    }
    else if (!entry.keySets.includes(keys)) {
      if (entry.keySets.length >= KEY_SETS_PER_TOKEN) entry.keySets.shift();
      entry.keySets.push(keys);
    }
  }

  #failed(p: Pending, ref: JwtRuleRef, err: unknown): void {
    if (!(err instanceof JwtError)) throw err;
    if (err.reason === 'no-key' && p.decoded.header.kid !== undefined) this.#onUnknownKid?.(ref);
    p.failure ??= { reason: err.reason, detail: detailOf(err) };
  }

  #finish(p: Pending): Failure | Accepted {
    if (p.verified.length === 0) return p.failure ?? { reason: 'bad-signature', detail: 'no rule verified the token' };
    const payload = p.decoded.payload;
    const aud = audiencesOf(payload);
    const accepted = p.verified;
    let jwt = this.#views.get(payload);
    if (jwt === undefined) {
      const iss = typeof payload.iss === 'string' ? payload.iss : undefined;
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

function rejected(found: FoundToken, r: Failure): JwtOutcome {
  const status = r.reason === 'audience' ? 403 : 401;
  return {
    kind: 'rejected', status, reason: ENVOY_MESSAGES[r.reason],
    message: `token in ${found.locations.join(', ')}: ${ENVOY_MESSAGES[r.reason]}: ${r.detail}`,
  };
}

function outcome(tokens: readonly FoundToken[], results: readonly Accepted[]): JwtOutcome {
  const first = results[0];
  if (first === undefined) return { kind: 'none', message: 'no token found' };
  const spaceDelimited = spaceDelimitedClaims(first.accepted);
  const by = first.accepted[0]!;
  const extra = tokens.length > 1 ? ` (${tokens.length} tokens, each verified)` : '';
  return {
    kind: 'verified', jwt: first.jwt, spaceDelimited,
    message: `token verified: principal ${first.jwt.principal ?? '(no iss/sub)'}, accepted by ${by.policy} jwtRules[${by.index}]${extra}`,
  };
}

function detailOf(err: JwtError): string {
  const prefix = `${ENVOY_MESSAGES[err.reason]}: `;
  return err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
}
