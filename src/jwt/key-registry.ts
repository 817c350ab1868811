import type { JwtRuleRef } from '../policy/request-authn.ts';
import type { JwtRule, RequestAuthentication } from '../resources/types.ts';
import { parseGoDuration } from '../resources/go-duration.ts';
import type { KeySetState } from './authenticator.ts';
import { JwksError, KeySet } from './key-set.ts';
import { describeFetchError, JwksSource, type JwksEvent } from './jwks-source.ts';
import { fetchKeyDocument, type KeyFetcher, type Resolver } from './key-fetch.ts';
import { forbiddenUrl } from '../match/fetch-target.ts';

/**
 * Keys for every jwtRule of a configuration: inline `jwks` parsed once, `jwksUri` fetched and kept fresh by a
 * shared JwksSource per URI, neither → OIDC discovery at `<issuer>/.well-known/openid-configuration` (as istiod
 * does), and local overrides by issuer (`rampart check --jwks ISSUER=FILE`). A rule whose keys cannot be had is
 * "unavailable": its tokens get 401, requests without tokens are unaffected (Istio's fail-closed behaviour).
 */

export interface KeyRegistryOptions {
  /** Issuer → JWKS JSON used instead of whatever the rule says. */
  readonly overrides?: ReadonlyMap<string, string>;
  readonly fetch?: KeyFetcher;
  /** Name resolution for fetches (tests); every address it gives is checked. */
  readonly resolve?: Resolver;
  readonly now?: () => number;
  readonly refreshMs?: number;
  readonly minRefetchMs?: number;
  readonly onEvent?: (event: JwksEvent) => void;
  /** Start background refreshes (a long-running proxy); a one-shot check leaves them off. */
  readonly background?: boolean;
}

type Entry = { readonly state: KeySetState } | { readonly source: JwksSource };

function timeoutOf(rule: JwtRule): number {
  const nanos = rule.timeout === undefined ? undefined : parseGoDuration(rule.timeout);
  return nanos === undefined ? 5_000 : Math.max(1, Number(nanos / 1_000_000n));
}

export class KeyRegistry {
  readonly #entries: Map<JwtRule, Entry>;
  readonly #sources: readonly JwksSource[];

  private constructor(entries: Map<JwtRule, Entry>, sources: readonly JwksSource[]) {
    this.#entries = entries;
    this.#sources = sources;
  }

  static async create(policies: readonly RequestAuthentication[], options: KeyRegistryOptions = {}): Promise<KeyRegistry> {
    const entries = new Map<JwtRule, Entry>();
    const sources = new Map<string, JwksSource>();
    const fetchImpl = options.fetch ?? fetchKeyDocument;
    const source = (uri: string, rule: JwtRule): JwksSource => {
      const key = `${timeoutOf(rule)} ${uri}`;
      let s = sources.get(key);
      if (s === undefined) {
        s = new JwksSource({
          uri, timeoutMs: timeoutOf(rule), fetch: fetchImpl,
          ...(options.resolve === undefined ? {} : { resolve: options.resolve }),
          ...(options.now === undefined ? {} : { now: options.now }),
          ...(options.refreshMs === undefined ? {} : { refreshMs: options.refreshMs }),
          ...(options.minRefetchMs === undefined ? {} : { minRefetchMs: options.minRefetchMs }),
          ...(options.onEvent === undefined ? {} : { onEvent: options.onEvent }),
        });
        sources.set(key, s);
      }
      return s;
    };
    for (const p of policies) {
      for (const rule of p.spec.jwtRules ?? []) {
        const override = rule.issuer === undefined ? undefined : options.overrides?.get(rule.issuer);
        try {
          if (override !== undefined) {
            entries.set(rule, { state: { keys: await KeySet.fromJwks(override, `--jwks for ${rule.issuer}`) } });
          } else if (rule.jwks !== undefined && rule.jwks !== '') {
            entries.set(rule, { state: { keys: await KeySet.fromJwks(rule.jwks, `${p.meta.namespace}/${p.meta.name} inline jwks`) } });
          } else if (rule.jwksUri !== undefined && rule.jwksUri !== '') {
            entries.set(rule, { source: source(rule.jwksUri, rule) });
          } else if (rule.issuer !== undefined && rule.issuer !== '') {
            const uri = await discover(rule.issuer, fetchImpl, timeoutOf(rule), options.resolve);
            entries.set(rule, uri.startsWith('error: ') ? { state: { unavailable: uri.slice(7) } } : { source: source(uri, rule) });
          } else {
            entries.set(rule, { state: { unavailable: 'the rule has neither issuer, jwks nor jwksUri' } });
          }
        } catch (err) {
          entries.set(rule, { state: { unavailable: err instanceof JwksError ? err.message : String(err) } });
        }
      }
    }
    const all = [...sources.values()];
    await Promise.all(all.map((s) => (options.background === true ? s.start() : s.refresh())));
    return new KeyRegistry(entries, all);
  }

  keysFor(ref: JwtRuleRef): KeySetState {
    const e = this.#entries.get(ref.rule);
    if (e === undefined) return { unavailable: 'no keys were loaded for this rule' };
    return 'state' in e ? e.state : e.source.state();
  }

  /** A token named a kid the rule's set lacks: its source refetches (rate-limited). */
  unknownKid(ref: JwtRuleRef): void {
    const e = this.#entries.get(ref.rule);
    if (e !== undefined && 'source' in e) e.source.unknownKid();
  }

  get sources(): readonly JwksSource[] {
    return this.#sources;
  }

  stop(): void {
    for (const s of this.#sources) s.stop();
  }
}

/** OIDC discovery: the issuer's `jwks_uri`, or "error: <reason>". Neither may point at a metadata address. */
async function discover(issuer: string, fetchImpl: KeyFetcher, timeoutMs: number, resolve: Resolver | undefined): Promise<string> {
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  try {
    const res = await fetchImpl(url, { timeoutMs, ...(resolve === undefined ? {} : { resolve }) });
    if (res.status < 200 || res.status > 299) return `error: OIDC discovery ${url}: HTTP ${res.status}`;
    const doc = JSON.parse(res.body) as { jwks_uri?: unknown };
    if (typeof doc.jwks_uri !== 'string') return `error: OIDC discovery ${url}: no jwks_uri`;
    const forbidden = forbiddenUrl(doc.jwks_uri);
    if (forbidden !== undefined) return `error: OIDC discovery ${url}: jwks_uri ${doc.jwks_uri} refused: ${forbidden}`;
    return doc.jwks_uri;
  } catch (err) {
    return `error: OIDC discovery ${url}: ${err instanceof SyntaxError ? `not JSON (${err.message})` : describeFetchError(err, timeoutMs)}`;
  }
}
