import type { FoundToken, JwtRuleRef } from '../policy/request-authn.ts';

/**
 * What a proxy changes in a request it forwards after the JWT step accepted it (Envoy's jwt_authn with Istio's
 * settings): the token is removed from the headers it came in unless `forwardOriginalToken`;
 * `outputPayloadToHeader` gets the token's payload section (base64url JSON); `outputClaimToHeaders` copies
 * string, number and boolean claims (dotted paths for nested ones), overwriting incoming values and never
 * setting a header for a missing or structured claim. Pure: the proxy applies the edits.
 */

export interface UpstreamEdits {
  /** Lower-case header names to remove. */
  readonly removeHeaders: readonly string[];
  /** Lower-case header name → value, replacing any incoming value. */
  readonly setHeaders: Readonly<Record<string, string>>;
}

function claimAt(payload: Readonly<Record<string, unknown>>, path: string): string | undefined {
  let v: unknown = payload;
  for (const part of path.split('.')) {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)) ? String(v) : undefined;
}

/**
 * A claim as a header value: none when it holds control characters (CR, LF, NUL…: a signed token must not be able
 * to add headers or split the request on its way to the app), its UTF-8 bytes one character each otherwise, as
 * HTTP/1.1 carries header bytes (proxies write header text as latin1).
 */
export function claimHeaderValue(v: string): string | undefined {
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(v)) return undefined;
  return /[^\x00-\x7f]/.test(v) ? Buffer.from(v, 'utf8').toString('latin1') : v;
}

/** Edits for verified tokens; `accepted` are the rules that accepted each token (by token value). */
export function upstreamEdits(found: readonly FoundToken[], accepted: ReadonlyMap<string, readonly JwtRuleRef[]>, payloads: ReadonlyMap<string, Readonly<Record<string, unknown>>>): UpstreamEdits {
  const remove = new Set<string>();
  const set: Record<string, string> = {};
  for (const f of found) {
    const rules = accepted.get(f.token) ?? [];
    const payload = payloads.get(f.token) ?? {};
    for (const src of f.sources) {
      if (src.kind === 'header' && rules.includes(src.rule) && src.rule.rule.forwardOriginalToken !== true) remove.add(src.name);
    }
    for (const ref of rules) {
      const out = ref.rule.outputPayloadToHeader;
      if (out !== undefined && out !== '') set[out.toLowerCase()] = f.token.split('.')[1] ?? '';
      for (const c of ref.rule.outputClaimToHeaders ?? []) {
        const claim = claimAt(payload, c.claim);
        const v = claim === undefined ? undefined : claimHeaderValue(claim);
        if (v !== undefined) set[c.header.toLowerCase()] = v;
      }
    }
  }
  for (const h of Object.keys(set)) remove.delete(h);
  return { removeHeaders: [...remove], setHeaders: set };
}
