import { readFile } from 'node:fs/promises';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { RampartError } from '../errors.ts';
import { KeySet } from '../jwt/key-set.ts';
import { audiencesOf, CLOCK_SKEW_SECONDS, decodeToken, JwtError, verifyToken } from '../jwt/verify.ts';
import { readStdin } from '../io/config-files.ts';
import type { CommandOutput } from './check.ts';
import { formatRemaining } from './duration.ts';

export interface JwtDecodeOptions {
  readonly token: string;
  /** A JWKS file to check the signature with. */
  readonly jwks?: string;
  readonly json?: boolean;
  readonly now?: number;
}

function when(seconds: unknown, now: number): string {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return String(seconds);
  const ms = seconds * 1000 - now;
  return `${new Date(seconds * 1000).toISOString()} (${ms >= 0 ? `in ${formatRemaining(ms)}` : `${formatRemaining(-ms)} ago`})`;
}

/**
 * `rampart jwt decode TOKEN|-`: header, claims, times in human form, and every reason Rampart (as Envoy) would
 * refuse the token. Decoding is not verifying: without --jwks the signature is not checked, and it says so.
 * Exit 0 when the signature verified and nothing would fail, 1 when something would fail, 2 when the input is not a
 * token at all, 3 when nothing else would fail but the signature was not checked (no --jwks).
 */
export async function runJwtDecode(o: JwtDecodeOptions): Promise<CommandOutput> {
  const now = o.now ?? Date.now();
  let token = (o.token === '-' ? await readStdin() : o.token).trim();
  if (/^bearer\s+/i.test(token)) token = token.replace(/^bearer\s+/i, '');
  let header: Record<string, unknown>;
  let payload: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(token) as Record<string, unknown>;
    payload = decodeJwt(token) as Record<string, unknown>;
  } catch (err) {
    return { exitCode: 2, stdout: '', stderr: `rampart jwt decode: not a signed JWT (${(err as Error).message})\n` };
  }
  const problems: string[] = [];
  try {
    decodeToken(token);
  } catch (err) {
    if (err instanceof JwtError) problems.push(err.message);
  }
  const nowS = Math.floor(now / 1000);
  if (typeof payload['exp'] === 'number' && nowS > payload['exp'] + CLOCK_SKEW_SECONDS) problems.push(`Jwt is expired (exp ${when(payload['exp'], now)}, ${CLOCK_SKEW_SECONDS} s of skew allowed)`);
  if (typeof payload['nbf'] === 'number' && nowS + CLOCK_SKEW_SECONDS < payload['nbf']) problems.push(`Jwt not yet valid (nbf ${when(payload['nbf'], now)})`);
  const notes: string[] = [];
  if (payload['exp'] === undefined) notes.push('no exp: the token never expires (Envoy accepts it; a leaked token works forever)');
  if (typeof payload['iss'] !== 'string') notes.push('no iss: only a rule without issuer (jwksUri only) accepts it');
  if (typeof payload['sub'] !== 'string') notes.push('no sub: request.auth.principal stays empty');
  for (const h of ['jwk', 'jku', 'x5u', 'x5c']) if (header[h] !== undefined) notes.push(`header "${h}" is ignored: keys come only from the rule's JWKS`);
  let signature: string;
  if (o.jwks === undefined) {
    signature = 'not checked (pass --jwks FILE to check it)';
  } else {
    try {
      const keys = await KeySet.fromJwks(await readFile(o.jwks, 'utf8'), o.jwks);
      verifyToken(token, keys, nowS);
      signature = `verified with ${o.jwks}`;
    } catch (err) {
      if (err instanceof JwtError && (err.reason === 'expired' || err.reason === 'not-yet-valid')) {
        // The time is checked after the signature: reaching it means the signature verified.
        signature = `verified with ${o.jwks}`;
      } else if (err instanceof JwtError || err instanceof RampartError) {
        signature = `FAILED: ${err.message}`;
        if (!problems.includes(err.message)) problems.push(err.message);
      } else if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return { exitCode: 2, stdout: '', stderr: `rampart jwt decode: ${o.jwks}: no such file\n` };
      } else throw err;
    }
  }
  const iss = typeof payload['iss'] === 'string' ? payload['iss'] : undefined;
  const sub = typeof payload['sub'] === 'string' ? payload['sub'] : undefined;
  const principal = iss !== undefined && sub !== undefined ? `${iss}/${sub}` : undefined;
  // "Nothing would fail" is only said of a token whose signature was checked: an unverified decode exits 3, so
  // `rampart jwt decode T && …` never reads as "this token is good".
  const verified = o.jwks !== undefined && !signature.startsWith('FAILED');
  const exitCode = problems.length > 0 ? 1 : verified ? 0 : 3;
  if (o.json === true) {
    const out = { header, claims: payload, principal, audiences: audiencesOf(payload), signature, verified, problems, notes };
    return { exitCode, stdout: JSON.stringify(out, null, 2) + '\n', stderr: '' };
  }
  const lines = [
    `header     ${JSON.stringify(header)}`,
    `claims     ${JSON.stringify(payload, null, 2).replaceAll('\n', '\n           ')}`,
    `principal  ${principal ?? '(none: needs iss and sub)'}`,
    `audiences  ${JSON.stringify(audiencesOf(payload))}`,
  ];
  for (const k of ['iat', 'nbf', 'exp'] as const) if (payload[k] !== undefined) lines.push(`${k.padEnd(10)} ${when(payload[k], now)}`);
  lines.push(`signature  ${signature}`);
  for (const n of notes) lines.push(`note: ${n}`);
  if (problems.length > 0) lines.push(problems.map((p) => `would fail: ${p}`).join('\n'));
  else lines.push(verified ? 'no problems found' : 'UNVERIFIED: the signature was not checked, so this says nothing about whether the token is genuine; pass --jwks FILE (no other problems found)');
  return { exitCode, stdout: lines.join('\n') + '\n', stderr: '' };
}
