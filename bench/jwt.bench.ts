/**
 * JWT verification: how many tokens per second Rampart verifies, with its verified-token cache (a repeated token)
 * and without it (distinct tokens, so every call checks a signature), for ES256 and RS256 (RSA 2048). Every line
 * runs next to two baselines from the same group:
 *
 * - the limit: `crypto.verify` on the KeyObject the key set imported, over the same signing input and signature
 *   (decoded up front), i.e. the signature check and nothing else;
 * - bare jose: `jwtVerify(token, key, {algorithms, issuer, audience})` with the same public key (a CryptoKey from
 *   `importJWK`), as a typical Node app verifies. jwtVerify is async (WebCrypto runs the check on libuv's
 *   threadpool), so it is measured awaited one after the other and with 16 in flight. The target's baseline is the
 *   16-in-flight line, jose's best throughput here (it uses the second core as well).
 *
 * Three levels, all cases of one algorithm measured round-robin in one group (so every ratio compares rounds run
 * next to each other):
 *
 * 1. `verifyToken(token, keySet, now)` alone (decodeToken included), over a pool of distinct tokens;
 * 2. `JwtAuthenticator.authenticate([{token, locations, sources, rules}], rules)`, what the engine calls: with the
 *    cache (4 tokens, verified once, repeated) and without: 16,384 distinct tokens in turn through the default cache
 *    (10,000), so it never hits and pays an insertion and an eviction per call, as under a stream of new tokens;
 * 3. `PolicyEngine.decide(prepared, {jwtVerifier})` of the policy benchmarks' request (ten applicable
 *    AuthorizationPolicies) carrying `Authorization: Bearer <token>`, with and without the cache, next to the same
 *    decide with a pre-verified `auth` and with no token at all: what JWT adds to a decision.
 *
 * Parts of those calls are measured alone in the same group (decoding, token extraction, request.auth). And the
 * proxy's path: `authenticateAsync`, which checks signatures on libuv's threadpool, with 16 tokens in flight, next
 * to the limit on the threadpool (`crypto.verify` with a callback, 16 in flight).
 * Tokens are signed with jose's SignJWT in setup (16,388 per algorithm: a few seconds, mostly RSA signing).
 */
import { generateKeyPairSync, verify as cryptoVerify, type KeyObject, type VerifyKeyObjectInput } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, importJWK, jwtVerify, SignJWT, type CryptoKey, type JWK } from 'jose';
import { JwtAuthenticator } from '../src/jwt/authenticator.ts';
import { KeyRegistry } from '../src/jwt/key-registry.ts';
import type { KeySet } from '../src/jwt/key-set.ts';
import { audiencesOf, decodeToken, verifyToken } from '../src/jwt/verify.ts';
import type { Decision } from '../src/policy/decision.ts';
import { PolicyEngine } from '../src/policy/engine.ts';
import { extractTokens, type FoundToken, type JwtRuleRef, type JwtVerifier, type TokenSource } from '../src/policy/request-authn.ts';
import { prepareAuth, type CheckRequest, type VerifiedJwt } from '../src/policy/request.ts';
import { loadResources } from '../src/resources/load.ts';
import type { RequestAuthentication } from '../src/resources/types.ts';
import { applicablePolicyDocs, BENCH_WORKLOAD, benchRequest, EXPECTED, ipMatchingAvailable, MESH_PEER_AUTHENTICATION } from './fixtures.ts';
import { measureRounds, median, type Measurement, type RoundCase, type TimingOptions } from './timing.ts';

export const JWT_ALGS = ['ES256', 'RS256'] as const;
export type BenchAlg = (typeof JWT_ALGS)[number];

/** With the cache, Rampart verifies at least this many times as many tokens per second as bare jose. */
export const TARGET_CACHED_VS_JOSE = 20;
/** Without it, at least this fraction of the raw signature checks per second. */
export const TARGET_UNCACHED_VS_RAW = 0.8;
/** jose's concurrent line: tokens in flight. */
export const JOSE_IN_FLIGHT = 16;

const ISSUER = 'https://auth.example.org';
const AUDIENCE = 'checkout.shop';
/** Repeated tokens of the cached lines: four clients, each repeating its own token. */
const HOT_TOKENS = 4;
const HOT_MASK = HOT_TOKENS - 1;
const LOCATIONS = ['header authorization (Bearer)'] as const;
/** JwtAuthenticator's default cacheSize (checked by checkCacheBehaviour: the pool, larger, never hits). */
const DEFAULT_CACHE_SIZE = 10_000;

export interface JwtBenchOptions {
  readonly quick: boolean;
  /** Progress lines (stderr in run.ts). */
  readonly log: (line: string) => void;
}

export interface JwtTimings {
  readonly rounds: TimingOptions;
  /**
   * Distinct tokens per algorithm, a power of two above the authenticator's default cache (10,000 tokens): cycled
   * in order through a FIFO cache that holds fewer, they never hit, and every call inserts and evicts, as under a
   * stream of new tokens. Every authenticator has the default cache size.
   */
  readonly pool: number;
}

export type JwtLevel = 'limit' | 'jose' | 'verifyToken' | 'authenticate' | 'decide' | 'part';

export interface JwtLine extends Measurement {
  readonly alg: BenchAlg;
  readonly level: JwtLevel;
  readonly label: string;
  /** Whether a call can be answered from Rampart's cache ('cached'), never is ('uncached'), or has none ('-'). */
  readonly cache: 'cached' | 'uncached' | '-';
  readonly inFlight: number;
}

export interface JwtRatio {
  readonly alg: BenchAlg;
  readonly name: string;
  readonly measured: number;
  readonly text: string;
  readonly note: string;
}

export interface JwtTarget {
  readonly target: string;
  readonly measured: string;
  readonly met: boolean;
}

export interface JwtResults {
  readonly timing: JwtTimings;
  readonly setup: {
    readonly keys: Readonly<Record<BenchAlg, string>>;
    readonly tokenChars: Readonly<Record<BenchAlg, number>>;
    readonly joseKey: string;
    readonly hotTokens: number;
    readonly defaultCacheSize: number;
    readonly signingSeconds: number;
    readonly heapUsedMBAtStart: number;
    readonly ipBlocks: boolean;
  };
  readonly lines: readonly JwtLine[];
  readonly ratios: readonly JwtRatio[];
  readonly targets: readonly JwtTarget[];
  readonly elapsedSeconds: number;
}

export function jwtTimings(quick: boolean): JwtTimings {
  return quick
    ? { rounds: { warmupMs: 60, roundMs: 40, rounds: 3 }, pool: 16_384 }
    : { rounds: { warmupMs: 200, roundMs: 120, rounds: 7 }, pool: 16_384 };
}

// ---------------------------------------------------------------- round-robin over sync and async cases

/** A case runs operations for about `ms` and returns how many completed (each checked by the case). */

const deadlineIn = (ms: number): bigint => process.hrtime.bigint() + BigInt(Math.round(ms * 1e6));

/**
 * A synchronous loop as a round case: calibrated batches of about 1 ms (the batch is set on the first call, the
 * warm-up), each checked (`loop(n)` returns how many of its n iterations gave the expected result).
 */
function syncCase(id: string, loop: (n: number) => number): RoundCase {
  let batch = 0;
  const checked = (n: number): void => {
    const ok = loop(n);
    if (ok !== n) throw new Error(`benchmark ${id}: ${n - ok} of ${n} iterations did not give the expected result`);
  };
  return {
    id,
    run: (ms) => {
      if (batch === 0) {
        let n = 1;
        for (;;) {
          const t0 = process.hrtime.bigint();
          checked(n);
          const ns = Number(process.hrtime.bigint() - t0);
          if (ns >= 250_000 || n >= 1 << 24) {
            batch = Math.max(1, Math.round((1e6 * n) / ns));
            break;
          }
          n *= 2;
        }
      }
      const end = deadlineIn(ms);
      let done = 0;
      while (process.hrtime.bigint() < end) {
        checked(batch);
        done += batch;
      }
      return done;
    },
  };
}


// ---------------------------------------------------------------- fixtures

interface AlgFixture {
  readonly alg: BenchAlg;
  readonly kid: string;
  readonly privateKey: KeyObject;
  readonly jwk: JWK;
}

function algFixture(alg: BenchAlg): AlgFixture {
  const { privateKey, publicKey } = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = alg === 'ES256' ? 'es-2026-11' : 'rs-2026-11';
  return { alg, kid, privateKey, jwk: { ...(publicKey.export({ format: 'jwk' }) as JWK), kid, alg, use: 'sig' } };
}

/** A token as an IdP issues it for a user of the shop: ~20 claims' worth of payload. */
function signToken(f: AlgFixture, i: number, nowSeconds: number): Promise<string> {
  return new SignJWT({
    azp: 'shop-frontend',
    scope: 'openid profile email orders:read orders:write',
    email: `user${i}@example.com`,
    email_verified: true,
    name: `User ${i}`,
    groups: ['customers', i % 3 === 0 ? 'beta-testers' : 'newsletter'],
    tenant: 'acme',
  })
    .setProtectedHeader({ alg: f.alg, kid: f.kid, typ: 'JWT' })
    .setIssuer(ISSUER)
    .setSubject(`user-${i}`)
    .setAudience(AUDIENCE)
    .setJti(`t-${i}`)
    .setIssuedAt(nowSeconds)
    .setExpirationTime(nowSeconds + 4 * 3600)
    .sign(f.privateKey);
}

async function signPool(f: AlgFixture, from: number, count: number, nowSeconds: number): Promise<string[]> {
  const out: string[] = [];
  const chunk = 64;
  for (let i = 0; i < count; i += chunk) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(chunk, count - i) }, (_, j) => signToken(f, from + i + j, nowSeconds)))));
  }
  return out;
}

/** The policy benchmarks' ten policies, STRICT mTLS, and a RequestAuthentication for the workload with an inline JWKS. */
function policyText(jwks: string, ipBlocks: boolean): string {
  const ra = JSON.stringify({
    apiVersion: 'security.istio.io/v1',
    kind: 'RequestAuthentication',
    metadata: { name: 'jwt', namespace: BENCH_WORKLOAD.namespace },
    spec: { selector: { matchLabels: { app: 'checkout' } }, jwtRules: [{ issuer: ISSUER, audiences: [AUDIENCE], jwks }] },
  });
  // The issuer is not the one allow-admin-team's requestPrincipals names: the request stays decided by the last policy.
  return [MESH_PEER_AUTHENTICATION, ...applicablePolicyDocs({ ipBlocks }), ra].join('---\n');
}

function withBearer(token: string | undefined, auth?: CheckRequest['auth']): CheckRequest {
  const base = benchRequest();
  const http = base.http!;
  return {
    ...base,
    http: { ...http, headers: { ...http.headers, ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) } },
    ...(auth === undefined ? {} : { auth }),
  };
}

const expectedDecision = (d: Decision): boolean => d.decision === EXPECTED.decision && d.policy === EXPECTED.policy && d.rule === EXPECTED.rule;

/** Where micro-measured results go, so that V8 cannot elide their allocation (escape analysis). */
const sunk: unknown[] = new Array<unknown>(64);
let sunkAt = 0;
function keep<T>(value: T): T {
  sunk[sunkAt++ & 63] = value;
  return value;
}
const SPACE_DELIMITED: ReadonlySet<string> = new Set(['scope', 'permission']);

// ---------------------------------------------------------------- the run

export async function benchJwt(opts: JwtBenchOptions): Promise<JwtResults> {
  const started = process.hrtime.bigint();
  const timing = jwtTimings(opts.quick);
  const { log } = opts;
  const heapUsedMBAtStart = process.memoryUsage().heapUsed / 2 ** 20;
  const ipBlocks = ipMatchingAvailable();
  const nowSeconds = Math.floor(Date.now() / 1000);
  const POOL = timing.pool;
  const MASK = POOL - 1;
  if ((POOL & MASK) !== 0 || POOL <= DEFAULT_CACHE_SIZE) throw new Error(`the pool must be a power of two above ${DEFAULT_CACHE_SIZE}`);

  log(`jwt: keys (P-256, RSA 2048) and ${POOL + HOT_TOKENS} tokens per algorithm…`);
  const fixtures = JWT_ALGS.map(algFixture);
  const jwksText = JSON.stringify({ keys: fixtures.map((f) => f.jwk) });
  const loaded = loadResources([{ file: 'jwt-bench.yaml', text: policyText(jwksText, ipBlocks) }]);
  const errors = loaded.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) throw new Error(`jwt fixture: ${errors.map((d) => d.message).join('; ')}`);
  const engine = new PolicyEngine(loaded.resources);
  const rules: readonly JwtRuleRef[] = engine.workload(BENCH_WORKLOAD.namespace, BENCH_WORKLOAD.labels).jwtRules;
  if (rules.length !== 1) throw new Error(`jwt fixture: expected one jwtRule for the workload, got ${rules.length}`);
  const registry = await KeyRegistry.create(loaded.resources.filter((r): r is RequestAuthentication => r.kind === 'RequestAuthentication'));
  const state = registry.keysFor(rules[0]!);
  if (!('keys' in state)) throw new Error(`jwt fixture: keys unavailable (${state.unavailable})`);
  const keySet: KeySet = state.keys;
  const keysFor = (ref: JwtRuleRef) => registry.keysFor(ref);

  const signStarted = process.hrtime.bigint();
  const pools = new Map<BenchAlg, { hot: string[]; pool: string[] }>();
  for (const f of fixtures) {
    const all = await signPool(f, 0, POOL + HOT_TOKENS, nowSeconds);
    pools.set(f.alg, { hot: all.slice(0, HOT_TOKENS), pool: all.slice(HOT_TOKENS) });
  }
  const signingSeconds = Number(process.hrtime.bigint() - signStarted) / 1e9;

  const lines: JwtLine[] = [];
  for (const f of fixtures) {
    const { hot, pool } = pools.get(f.alg)!;
    const key = keySet.candidates(f.kid, f.alg)[0]!.key;
    const joseKey = (await importJWK(f.jwk, f.alg)) as CryptoKey;
    const rawKey: VerifyKeyObjectInput = f.alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : { key };
    const signed = pool.map((t) => {
      const dot = t.lastIndexOf('.');
      return { input: Buffer.from(t.slice(0, dot), 'ascii'), signature: Buffer.from(t.slice(dot + 1), 'base64url') };
    });
    // What extractTokens finds for a Bearer header and the workload's one rule.
    const sources: readonly TokenSource[] = [{ kind: 'header', name: 'authorization', rule: rules[0]! }];
    const found = (token: string): FoundToken[] => [{ token, locations: LOCATIONS, sources, rules }];
    const hotFound = hot.map(found);
    const poolFound = pool.map(found);
    const sub = (i: number): string => `user-${i + HOT_TOKENS}`;

    // Authenticators, all with the default cache: the cached lines' primed with the hot tokens; the uncached lines'
    // fed the pool, larger than the cache, in turn.
    const cachedAuth = new JwtAuthenticator({ keysFor });
    const uncachedAuth = new JwtAuthenticator({ keysFor });
    const decideCachedAuth = new JwtAuthenticator({ keysFor });
    const decideUncachedAuth = new JwtAuthenticator({ keysFor });
    const jwtPool = pool.map((t) => {
      const p = decodeToken(t).payload;
      return { principal: `${ISSUER}/${String(p.sub)}`, audiences: audiencesOf(p), presenter: undefined, claims: p as Record<string, unknown> } as VerifiedJwt;
    });
    const asyncAuth = new JwtAuthenticator({ keysFor });
    for (const a of [cachedAuth, decideCachedAuth]) {
      // A token is admitted to the cache on its second verification.
      for (let pass = 0; pass < 2; pass++) for (const t of hotFound) if (a.authenticate(t, rules).kind !== 'verified') throw new Error('hot token rejected');
    }
    checkCacheBehaviour(f.alg, keysFor, rules, hotFound, poolFound);

    const hotRequests = hot.map((t) => engine.prepare(withBearer(t)));
    const poolRequests = pool.map((t) => engine.prepare(withBearer(t)));
    const authRequests = hot.map((_, i) =>
      engine.prepare(withBearer(undefined, { principal: `${ISSUER}/user-${i}`, audiences: [AUDIENCE], claims: decodeJwt(hot[i]!) as Record<string, unknown> })),
    );
    const bareRequests = hot.map(() => engine.prepare(withBearer(undefined)));
    const withCached = { jwtVerifier: decideCachedAuth as JwtVerifier };
    const withUncached = { jwtVerifier: decideUncachedAuth as JwtVerifier };
    const withNone = { jwtVerifier: decideCachedAuth as JwtVerifier };

    // One cursor per case, kept across batches: a batch must not start over at the same tokens.
    const cursors = new Map<string, number>();
    const pooled = (id: string, op: (i: number) => boolean) => (n: number): number => {
      let c = cursors.get(id) ?? 0;
      let ok = 0;
      for (let k = 0; k < n; k++, c++) if (op(c & MASK)) ok++;
      cursors.set(id, c);
      return ok;
    };
    const repeated = (op: (i: number) => boolean) => (n: number): number => {
      let ok = 0;
      for (let k = 0; k < n; k++) if (op(k & HOT_MASK)) ok++;
      return ok;
    };
    let joseCursor = 0;
    const joseOnce = async (): Promise<void> => {
      const i = joseCursor++ & MASK;
      const { payload } = await jwtVerify(pool[i]!, joseKey, { algorithms: [f.alg], issuer: ISSUER, audience: AUDIENCE });
      if (payload.sub !== sub(i)) throw new Error('jose: unexpected payload');
    };
    const joseCase = (id: string, inFlight: number): RoundCase => ({
      id,
      run: async (ms) => {
        const end = deadlineIn(ms);
        const counts = await Promise.all(
          Array.from({ length: inFlight }, async () => {
            let n = 0;
            while (process.hrtime.bigint() < end) {
              await joseOnce();
              n++;
            }
            return n;
          }),
        );
        return counts.reduce((a, b) => a + b, 0);
      },
    });

    // The threadpool lines: `inFlight` lanes, each awaiting its own calls in turn, until the round's deadline.
    const lanes = (id: string, inFlight: number, once: (i: number) => Promise<boolean>): RoundCase => ({
      id,
      run: async (ms) => {
        const end = deadlineIn(ms);
        let c = cursors.get(id) ?? 0;
        const counts = await Promise.all(
          Array.from({ length: inFlight }, async () => {
            let n = 0;
            while (process.hrtime.bigint() < end) {
              if (!(await once(c++ & MASK))) throw new Error(`${f.alg}/${id}: unexpected result`);
              n++;
            }
            return n;
          }),
        );
        cursors.set(id, c);
        return counts.reduce((a, b) => a + b, 0);
      },
    });
    const rawAsync = (i: number): Promise<boolean> =>
      new Promise((resolve, reject) => cryptoVerify('sha256', signed[i]!.input, rawKey, signed[i]!.signature, (err, ok) => (err ? reject(err) : resolve(ok))));

    type CaseDef = { id: string; level: JwtLevel; cache: JwtLine['cache']; inFlight: number; label: string; round: RoundCase };
    const sync = (id: string, level: JwtLevel, cache: JwtLine['cache'], label: string, loop: (n: number) => number): CaseDef =>
      ({ id, level, cache, inFlight: 1, label, round: syncCase(`${f.alg}/${id}`, loop) });
    const defs: CaseDef[] = [
      sync('raw', 'limit', '-', 'limit: crypto.verify(sha256, signing input, KeyObject, signature)', pooled('raw', (i) => cryptoVerify('sha256', signed[i]!.input, rawKey, signed[i]!.signature))),
      { id: 'jose-sequential', level: 'jose', cache: '-', inFlight: 1, label: 'jose jwtVerify(token, key, {algorithms, issuer, audience}), awaited in turn', round: joseCase('jose-sequential', 1) },
      {
        id: `jose-${JOSE_IN_FLIGHT}`, level: 'jose', cache: '-', inFlight: JOSE_IN_FLIGHT,
        label: `jose jwtVerify(token, key, {algorithms, issuer, audience}), ${JOSE_IN_FLIGHT} in flight`, round: joseCase(`jose-${JOSE_IN_FLIGHT}`, JOSE_IN_FLIGHT),
      },
      {
        id: `raw-async-${JOSE_IN_FLIGHT}`, level: 'limit', cache: '-', inFlight: JOSE_IN_FLIGHT,
        label: `limit on the threadpool: crypto.verify(…, callback), ${JOSE_IN_FLIGHT} in flight`, round: lanes(`raw-async-${JOSE_IN_FLIGHT}`, JOSE_IN_FLIGHT, rawAsync),
      },
      sync('verifyToken', 'verifyToken', 'uncached', 'verifyToken(token, keySet, now)', pooled('verifyToken', (i) => verifyToken(pool[i]!, keySet, nowSeconds).payload.sub === sub(i))),
      sync('authenticate-cached', 'authenticate', 'cached', 'JwtAuthenticator.authenticate, repeated tokens (cache hits)', repeated((i) => cachedAuth.authenticate(hotFound[i]!, rules).kind === 'verified')),
      sync('authenticate-uncached', 'authenticate', 'uncached', 'JwtAuthenticator.authenticate, distinct tokens (cache misses)', pooled('authenticate-uncached', (i) => uncachedAuth.authenticate(poolFound[i]!, rules).kind === 'verified')),
      {
        id: `authenticate-async-${JOSE_IN_FLIGHT}`, level: 'authenticate', cache: 'uncached', inFlight: JOSE_IN_FLIGHT,
        label: `JwtAuthenticator.authenticateAsync (signatures on the threadpool), distinct tokens, ${JOSE_IN_FLIGHT} in flight`,
        round: lanes(`authenticate-async-${JOSE_IN_FLIGHT}`, JOSE_IN_FLIGHT, async (i) => (await asyncAuth.authenticateAsync(poolFound[i]!, rules)).kind === 'verified'),
      },
      sync('decide-cached', 'decide', 'cached', 'engine.decide(prepared, {jwtVerifier}), Bearer, repeated tokens', repeated((i) => expectedDecision(engine.decide(hotRequests[i]!, withCached)))),
      sync('decide-uncached', 'decide', 'uncached', 'engine.decide(prepared, {jwtVerifier}), Bearer, distinct tokens', pooled('decide-uncached', (i) => expectedDecision(engine.decide(poolRequests[i]!, withUncached)))),
      sync('decide-auth', 'decide', '-', 'engine.decide(prepared) with a pre-verified auth', repeated((i) => expectedDecision(engine.decide(authRequests[i]!)))),
      sync('decide-no-token', 'decide', '-', 'engine.decide(prepared, {jwtVerifier}), no token', repeated((i) => expectedDecision(engine.decide(bareRequests[i]!, withNone)))),
      sync('decodeToken', 'part', '-', 'decodeToken(token)', pooled('decodeToken', (i) => decodeToken(pool[i]!).alg === f.alg)),
      sync('jose-decode', 'part', '-', '  jose decodeProtectedHeader + decodeJwt', pooled('jose-decode', (i) => decodeProtectedHeader(pool[i]!).kid === f.kid && decodeJwt(pool[i]!).sub === sub(i))),
      sync('extractTokens', 'part', '-', 'extractTokens(rules, prepared) (the engine, before the verifier)', repeated((i) => extractTokens(rules, hotRequests[i]!).length === 1)),
      sync('prepareAuth', 'part', '-', "prepareAuth(jwt, spaceDelimited) (the engine's request.auth, per new VerifiedJwt object)", pooled('prepareAuth', (i) => keep(prepareAuth(jwtPool[i]!, SPACE_DELIMITED)).sub === sub(i))),
    ];
    log(`jwt ${f.alg}: ${defs.map((d) => d.id).join(', ')}, round-robin:`);
    const measured = await measureRounds(defs.map((d) => d.round), timing.rounds, { secondWarmup: true });
    measured.forEach((m, i) => {
      const d = defs[i]!;
      lines.push({ ...m, id: d.id, alg: f.alg, level: d.level, label: d.label, cache: d.cache, inFlight: d.inFlight });
      log(`  ${d.id}: ${Math.round(m.opsPerSec)}/s`);
    });
  }

  const { ratios, targets } = ratiosAndTargets(lines);
  return {
    timing,
    setup: {
      keys: { ES256: 'ECDSA P-256 (JWK imported by KeySet.fromJwks)', RS256: 'RSA 2048, e = 65537 (JWK imported by KeySet.fromJwks)' },
      tokenChars: { ES256: pools.get('ES256')!.pool[0]!.length, RS256: pools.get('RS256')!.pool[0]!.length },
      joseKey: 'CryptoKey from jose importJWK(jwk, alg), the same JWK',
      hotTokens: HOT_TOKENS,
      defaultCacheSize: DEFAULT_CACHE_SIZE,
      signingSeconds,
      heapUsedMBAtStart,
      ipBlocks,
    },
    lines,
    ratios,
    targets,
    elapsedSeconds: Number(process.hrtime.bigint() - started) / 1e9,
  };
}

/**
 * The uncached lines must never hit and the cached ones always: checked on fresh authenticators with a key set
 * state that counts signature checks (KeySet.candidates is called once per verifyToken).
 */
function checkCacheBehaviour(
  alg: BenchAlg,
  keysFor: (ref: JwtRuleRef) => ReturnType<KeyRegistry['keysFor']>,
  rules: readonly JwtRuleRef[],
  hot: readonly FoundToken[][],
  pool: readonly FoundToken[][],
): void {
  let checks = 0;
  // One spy per key set, as the registry hands out one KeySet object: the authenticator's cache is per KeySet.
  const spies = new Map<KeySet, KeySet>();
  const counting = (ref: JwtRuleRef): ReturnType<KeyRegistry['keysFor']> => {
    const s = keysFor(ref);
    if (!('keys' in s)) return s;
    const keys = s.keys;
    let spy = spies.get(keys);
    if (spy === undefined) {
      spy = Object.create(keys) as KeySet;
      Object.defineProperty(spy, 'candidates', { value: (...a: Parameters<KeySet['candidates']>) => (checks++, keys.candidates(...a)) });
      spies.set(keys, spy);
    }
    return { keys: spy };
  };
  const cached = new JwtAuthenticator({ keysFor: counting });
  for (let pass = 0; pass < 3; pass++) for (const t of hot) if (cached.authenticate(t, rules).kind !== 'verified') throw new Error('hot token rejected');
  // Checked twice (admitted on the second verification), then served from the cache.
  if (checks !== 2 * hot.length) throw new Error(`${alg}: the cached authenticator checked ${checks} signatures for ${hot.length} repeated tokens, 3 times each`);
  checks = 0;
  // The whole pool once, then the start of a second pass: in a FIFO cache smaller than the pool, the tokens coming
  // round again are the ones evicted first, so if these miss, every later one does too.
  const uncached = new JwtAuthenticator({ keysFor: counting });
  const calls = [...pool, ...pool.slice(0, 256)];
  for (const t of calls) if (uncached.authenticate(t, rules).kind !== 'verified') throw new Error('pool token rejected');
  if (checks !== calls.length) throw new Error(`${alg}: the uncached authenticator checked ${checks} signatures for ${calls.length} calls`);
}

// ---------------------------------------------------------------- ratios and targets

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const fixed = (n: number, digits: number): string => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const us = (ns: number): string => fixed(ns / 1000, ns < 10_000 ? 2 : ns < 100_000 ? 1 : 0);
const x = (n: number): string => `${fixed(n, n < 10 ? 2 : 1)}×`;

function ratiosAndTargets(lines: readonly JwtLine[]): { ratios: JwtRatio[]; targets: JwtTarget[] } {
  const ratios: JwtRatio[] = [];
  const targets: JwtTarget[] = [];
  const line = (alg: BenchAlg, id: string): JwtLine => {
    const m = lines.find((l) => l.alg === alg && l.id === id);
    if (m === undefined) throw new Error(`missing measurement ${alg}/${id}`);
    return m;
  };
  /** Rate of a over rate of b, the median of the per-round ratios (a and b ran next to each other in each round). */
  const faster = (a: Measurement, b: Measurement): number => median(a.roundsNsPerOp.map((ns, r) => b.roundsNsPerOp[r]! / ns));
  for (const alg of JWT_ALGS) {
    const raw = line(alg, 'raw');
    const jose = line(alg, `jose-${JOSE_IN_FLIGHT}`);
    const joseSeq = line(alg, 'jose-sequential');
    const ratio = (name: string, measured: number, note: string, text = x(measured)): void => void ratios.push({ alg, name, measured, text, note });
    const cached = line(alg, 'authenticate-cached');
    const vt = line(alg, 'verifyToken');
    const unc = line(alg, 'authenticate-uncached');
    const dc = line(alg, 'decide-cached');
    const du = line(alg, 'decide-uncached');
    const da = line(alg, 'decide-auth');
    const dn = line(alg, 'decide-no-token');
    ratio(`authenticate, cached / jose, ${JOSE_IN_FLIGHT} in flight (verifications/s)`, faster(cached, jose), `target ≥ ${TARGET_CACHED_VS_JOSE}×`);
    ratio('authenticate, cached / jose, awaited in turn', faster(cached, joseSeq), '');
    ratio('verifyToken / raw crypto.verify', faster(vt, raw), `target ≥ ${TARGET_UNCACHED_VS_RAW}×`);
    ratio('authenticate, uncached / raw crypto.verify', faster(unc, raw), `target ≥ ${TARGET_UNCACHED_VS_RAW}×`);
    ratio('decide with Bearer, cached / jose, 16 in flight', faster(dc, jose), 'the whole decision against jose alone');
    ratio('decide with Bearer, uncached / raw crypto.verify', faster(du, raw), 'the whole decision against the signature alone');
    ratio(`jose, ${JOSE_IN_FLIGHT} in flight / awaited in turn`, faster(jose, joseSeq), 'threadpool on 2 cores');
    ratio(`jose, ${JOSE_IN_FLIGHT} in flight / raw crypto.verify`, faster(jose, raw), '');
    ratio('jose, awaited in turn / raw crypto.verify', faster(joseSeq, raw), '');
    const rawAsync = line(alg, `raw-async-${JOSE_IN_FLIGHT}`);
    const ua = line(alg, `authenticate-async-${JOSE_IN_FLIGHT}`);
    ratio(`authenticateAsync, uncached, ${JOSE_IN_FLIGHT} in flight / raw crypto.verify`, faster(ua, raw), `target ≥ ${TARGET_UNCACHED_VS_RAW}× (the proxy's path)`);
    ratio(`authenticateAsync, uncached / the limit on the threadpool (${JOSE_IN_FLIGHT} in flight each)`, faster(ua, rawAsync), 'what Rampart keeps of the threadpool');
    ratio(`limit on the threadpool, ${JOSE_IN_FLIGHT} in flight / raw crypto.verify`, faster(rawAsync, raw), 'both cores against one');
    ratio(`authenticateAsync / jose, ${JOSE_IN_FLIGHT} in flight each`, faster(ua, jose), 'the same concurrency');
    const delta = (a: JwtLine, b: JwtLine): string => `${a.nsPerOp >= b.nsPerOp ? '+' : ''}${us(a.nsPerOp - b.nsPerOp)} µs`;
    ratio('decide with Bearer, cached − decide with pre-verified auth', dc.nsPerOp - da.nsPerOp, 'what JWT adds to a decision (cache hit)', delta(dc, da));
    ratio('decide with Bearer, uncached − decide with pre-verified auth', du.nsPerOp - da.nsPerOp, 'what JWT adds (signature checked)', delta(du, da));
    ratio('decide with pre-verified auth − decide without token', da.nsPerOp - dn.nsPerOp, 'request.auth.* and the issuer/audience checks', delta(da, dn));
    ratio('decide with Bearer, cached − (decide with pre-verified auth + authenticate, cached)', dc.nsPerOp - da.nsPerOp - cached.nsPerOp,
      "the engine's own JWT work: extractTokens, request.auth for a new VerifiedJwt", `${us(dc.nsPerOp - da.nsPerOp - cached.nsPerOp)} µs`);

    const c = faster(cached, jose);
    targets.push({
      target: `${alg}: authenticate with the cache ≥ ${TARGET_CACHED_VS_JOSE}× bare jose (${JOSE_IN_FLIGHT} in flight)`,
      measured: `${x(c)}: ${int(cached.opsPerSec)}/s (${us(cached.nsPerOp)} µs) vs ${int(jose.opsPerSec)}/s; ${x(faster(cached, joseSeq))} jose in turn`,
      met: c >= TARGET_CACHED_VS_JOSE,
    });
    for (const [m, what] of [[vt, 'verifyToken (one thread)'], [unc, 'authenticate without the cache (one thread)'], [ua, `authenticateAsync without the cache (${JOSE_IN_FLIGHT} in flight)`]] as const) {
      const q = faster(m, raw);
      targets.push({
        target: `${alg}: ${what} ≥ ${TARGET_UNCACHED_VS_RAW}× the raw signature check`,
        measured: `${x(q)}: ${int(m.opsPerSec)}/s (${us(m.nsPerOp)} µs) vs ${int(raw.opsPerSec)}/s (${us(raw.nsPerOp)} µs)`,
        met: q >= TARGET_UNCACHED_VS_RAW,
      });
    }
  }
  return { ratios, targets };
}

// ---------------------------------------------------------------- report

function table(head: readonly string[], rows: readonly (readonly string[])[], rightFrom = 1): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i >= rightFrom ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** The JWT tables, ratios and targets as text (run.ts prints it). */
export function jwtReport(r: JwtResults, quick: boolean): string {
  const t = r.timing.rounds;
  const out: string[] = [];
  const section = (title: string, body: string): void => void out.push(`\n${title}\n${body}\n`);
  for (const alg of JWT_ALGS) {
    const ls = r.lines.filter((l) => l.alg === alg);
    const raw = ls.find((l) => l.id === 'raw')!;
    const jose = ls.find((l) => l.id === `jose-${JOSE_IN_FLIGHT}`)!;
    section(
      `JWT verification, ${alg} (${r.setup.keys[alg]}; tokens of ${r.setup.tokenChars[alg]} characters; one group, round-robin, ` +
        `median of ${t.rounds} rounds of ${t.roundMs} ms after ${t.warmupMs} ms warm-up)`,
      table(
        ['level', 'case', 'cache', 'in flight', 'per second', 'µs', '× raw check', `× jose ${JOSE_IN_FLIGHT}`, 'best round/s', 'spread'],
        ls.map((m) => [
          m.level, m.label, m.cache, String(m.inFlight), int(m.opsPerSec), us(m.nsPerOp), x(raw.nsPerOp / m.nsPerOp), x(jose.nsPerOp / m.nsPerOp),
          int(1e9 / m.bestNsPerOp), `${fixed(100 * m.spread, 0)}%`,
        ]),
        2,
      ) +
        `\n× raw check, × jose: verifications per second over the baseline's (ratios of the medians; the ratios below are medians of per-round ratios).` +
        `\nuncached: ${int(r.timing.pool)} distinct tokens in turn; every authenticator has the default cache (${int(DEFAULT_CACHE_SIZE)}), so none hits and each call inserts and evicts;` +
        `\ncached: ${HOT_TOKENS} tokens verified once, then repeated (the default cache). jose with ${JOSE_IN_FLIGHT} in flight: per-second = completed / wall time.`,
    );
  }
  section('JWT ratios', table(['alg', 'ratio', 'measured', 'note'], r.ratios.map((q) => [q.alg, q.name, q.text, q.note]), 2));
  section(
    quick ? 'JWT targets (--quick: short rounds, not comparable)' : 'JWT targets',
    table(['target', 'measured', ''], r.targets.map((q) => [q.target, q.measured, q.met ? 'met' : 'MISSED']), 1) +
      `\nbaseline of the cached target: jose with ${JOSE_IN_FLIGHT} in flight, its best throughput here (its checks run on libuv's threadpool, both cores).`,
  );
  return out.join('');
}
