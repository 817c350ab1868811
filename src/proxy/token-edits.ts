import { decodeJwt } from 'jose';
import { upstreamEdits } from '../jwt/forwarding.ts';
import type { FoundToken, JwtRuleRef } from '../policy/request-authn.ts';

/** The payload of a token that already verified (reading it is safe then); undefined if it cannot be decoded. */
export function payloadOf(token: string): Record<string, unknown> | undefined {
  try {
    return decodeJwt(token) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/**
 * Header edits for tokens the request carried (it was allowed, so each verified): the rules that accepted a token
 * are those looking where it was found whose issuer and audiences fit it, as the authenticator decided.
 */
export function forwardingEdits(found: readonly FoundToken[], decoded: ReadonlyArray<Record<string, unknown> | undefined>): ReturnType<typeof upstreamEdits> {
  const accepted = new Map<string, JwtRuleRef[]>();
  const payloads = new Map<string, Record<string, unknown>>();
  found.forEach((f, i) => {
    const payload = decoded[i];
    if (payload === undefined) return;
    const iss = typeof payload['iss'] === 'string' ? payload['iss'] : undefined;
    const aud = typeof payload['aud'] === 'string' ? [payload['aud']] : Array.isArray(payload['aud']) ? (payload['aud'] as unknown[]).filter((a): a is string => typeof a === 'string') : [];
    accepted.set(f.token, f.rules.filter((ref) => (ref.rule.issuer === undefined || ref.rule.issuer === '' || ref.rule.issuer === iss) &&
      ((ref.rule.audiences ?? []).length === 0 || (ref.rule.audiences ?? []).some((a) => aud.includes(a)))));
    payloads.set(f.token, payload);
  });
  return upstreamEdits(found, accepted, payloads);
}
