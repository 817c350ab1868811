import { readFile } from 'node:fs/promises';
import { RampartError, RequestError } from '../errors.ts';
import { loadConfig } from '../io/load-config.ts';
import { readStdin } from '../io/config-files.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { formatDecision } from '../policy/explain.ts';
import { parseCheckRequest, prepareRequest } from '../policy/request.ts';
import { collectJwtRules, extractTokens } from '../policy/request-authn.ts';
import { formatDiagnostic } from '../resources/diagnostic.ts';
import type { RequestAuthentication } from '../resources/types.ts';
import { JwtAuthenticator } from '../jwt/authenticator.ts';
import { KeyFetchRefused } from '../jwt/key-fetch.ts';
import { KeyRegistry } from '../jwt/key-registry.ts';
import { readJwksOverrides } from './jwks-overrides.ts';

export interface CheckOptions {
  readonly config: readonly string[];
  readonly request: string;
  readonly mesh?: string;
  readonly extAuthz?: 'allow' | 'deny';
  readonly json?: boolean;
  /** `ISSUER=FILE`: that issuer's keys come from FILE (a JWKS) instead of the rule's jwks/jwksUri. */
  readonly jwks?: readonly string[];
  /** Fetch jwksUri (and OIDC discovery) from the network; off by default, so a check answers the same anywhere. */
  readonly fetchJwks?: boolean;
}

export interface CommandOutput {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** `rampart check`: exit 0 allowed, 1 denied, 2 bad input (configuration errors included: a partial config could mislead). */
export async function runCheck(opts: CheckOptions): Promise<CommandOutput> {
  const usesStdin = opts.request === '-' || opts.config.includes('-');
  if (opts.request === '-' && opts.config.includes('-')) return bad('--request - and --config - cannot both read standard input');
  let cfg;
  try {
    cfg = await loadConfig({ paths: opts.config, meshFile: opts.mesh, stdin: usesStdin ? readStdin : undefined });
  } catch (e) {
    if (e instanceof RampartError) return bad(e.message);
    throw e;
  }
  const errors = cfg.diagnostics.filter((d) => d.severity === 'error');
  const warnings = cfg.diagnostics.filter((d) => d.severity !== 'error').map(formatDiagnostic);
  if (errors.length > 0) {
    return { exitCode: 2, stdout: '', stderr: [...errors.map(formatDiagnostic), `${errors.length} error(s) in the configuration; no decision made`].join('\n') + '\n' };
  }
  let requestText: string;
  try {
    requestText = opts.request === '-' ? await readStdin() : await readFile(opts.request, 'utf8');
  } catch {
    return bad(`${opts.request}: cannot read the request file`);
  }
  let request;
  try {
    request = parseCheckRequest(JSON.parse(requestText));
  } catch (e) {
    if (e instanceof SyntaxError) return bad(`${opts.request}: not valid JSON: ${e.message}`);
    if (e instanceof RequestError) return bad(`${opts.request}: ${e.message}`);
    throw e;
  }
  const engine = new PolicyEngine(cfg.resources, cfg.mesh);
  // Raw tokens are verified against the rules' keys: inline jwks, --jwks files, or jwksUri fetched once.
  const authns = cfg.resources.filter((r): r is RequestAuthentication => r.kind === 'RequestAuthentication');
  let jwtVerifier: JwtAuthenticator | undefined;
  const unfetched = new Map<string, string>();
  // Keys are loaded (and jwksUri fetched) only when the request carries a token some rule would find.
  const carriesToken = authns.length > 0 && extractTokens(collectJwtRules(authns), prepareRequest(request, cfg.mesh.pathNormalization)).length > 0;
  if (carriesToken) {
    let overrides;
    try {
      overrides = await readJwksOverrides(opts.jwks ?? []);
    } catch (e) {
      if (e instanceof RampartError) return bad(e.message);
      throw e;
    }
    const offline = opts.fetchJwks !== true;
    const registry = await KeyRegistry.create(authns, {
      overrides,
      // Offline by default: the answer must not depend on the network of the machine that asks.
      ...(offline ? {
        fetch: async (url: string) => {
          throw new KeyFetchRefused(`rampart check does not fetch keys without --fetch-jwks (${url})`);
        },
      } : {}),
      onEvent: (e) => {
        if (e.type === 'fetch-failed') unfetched.set(e.uri, e.error);
      },
    });
    jwtVerifier = new JwtAuthenticator({ keysFor: (ref) => registry.keysFor(ref) });
  }
  const decision = engine.decide(request, {
    trace: true,
    ...(opts.extAuthz === undefined ? {} : { extAuthz: opts.extAuthz }),
    ...(jwtVerifier === undefined ? {} : { jwtVerifier }),
  });
  // Said only where it changed the decision: a token met keys that were not there.
  if (decision.reason.includes('Jwks remote fetch is failed')) {
    for (const [uri, error] of unfetched) {
      warnings.push(opts.fetchJwks === true
        ? `note: keys at ${uri} could not be fetched (${error}), so the token got 401 as Envoy answers it; give them with --jwks ISSUER=FILE`
        : `note: keys at ${uri} were not fetched (rampart check is offline unless --fetch-jwks), so the token got 401; give them with --jwks ISSUER=FILE, or allow fetching with --fetch-jwks`);
    }
  }
  const stdout = opts.json === true ? JSON.stringify(decision, null, 2) : formatDecision(decision);
  return { exitCode: decision.decision === 'ALLOW' ? 0 : 1, stdout: stdout + '\n', stderr: warnings.length > 0 ? warnings.join('\n') + '\n' : '' };
}

function bad(message: string): CommandOutput {
  return { exitCode: 2, stdout: '', stderr: `rampart check: ${message}\n` };
}
