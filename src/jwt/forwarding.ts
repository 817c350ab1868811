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
        const v = claimAt(payload, c.claim);
        if (v !== undefined) set[c.header.toLowerCase()] = v;
      }
    }
  }
  for (const h of Object.keys(set)) remove.delete(h);
  return { removeHeaders: [...remove], setHeaders: set };
}
