/**
 * The request target of an HTTP/1.1 request line, read as Envoy's HTTP/1 codec reads it (allow_absolute_url, on by
 * default): an absolute-form target (`GET http://secret.com/x HTTP/1.1`) names the authority the request is for, so
 * the Host header is ignored and replaced by it (RFC 9112 §3.2.2), and the path is the target's path and query as
 * sent. Deciding on the Host header instead would let `Host: public.com` walk past a DENY on `hosts: [secret.com]`
 * while the app, or any proxy after it, may well route on the target. Pure.
 */

export type RequestTarget =
  | { readonly ok: true; readonly path: string; readonly authority: string | undefined }
  | { readonly ok: false; readonly reason: string };

const ABSOLUTE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^#]*)/;

export function readRequestTarget(target: string): RequestTarget {
  // Origin-form and the asterisk of OPTIONS are the usual case; anything else that is not absolute-form is left to
  // the path checks (which refuse it as Envoy does).
  if (target.startsWith('/') || target === '*') return { ok: true, path: target, authority: undefined };
  const m = ABSOLUTE.exec(target);
  if (m === null) return { ok: true, path: target, authority: undefined };
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') return { ok: false, reason: `absolute-form target with scheme "${m[1]}"` };
  const authority = m[2]!;
  if (authority === '') return { ok: false, reason: 'absolute-form target without a host' };
  // Credentials in the target would make "which host" a parsing question; no client of a mesh sends them.
  if (authority.includes('@')) return { ok: false, reason: 'absolute-form target with user information' };
  if (!/^[A-Za-z0-9._~%!$&'()*+,;=:[\]-]+$/.test(authority)) return { ok: false, reason: `invalid authority ${JSON.stringify(authority)} in the request target` };
  const rest = m[3]!;
  return { ok: true, authority, path: rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest };
}
