/**
 * Path normalization before authorization, per MeshConfig `pathNormalization.normalization`.
 * STUB: to be implemented.
 */
export type PathNormalization = 'NONE' | 'BASE' | 'MERGE_SLASHES' | 'DECODE_AND_MERGE_SLASHES';

export type NormalizedPath =
  | { readonly ok: true; readonly path: string; readonly query: string }
  | { readonly ok: false; readonly reason: string };

/**
 * Splits the raw request target into path and query (`?…`, kept as sent) and normalizes the path.
 * `ok: false` means the proxy rejects the request with 400.
 */
export function normalizePath(target: string, mode: PathNormalization): NormalizedPath {
  void mode;
  const q = target.indexOf('?');
  return q < 0 ? { ok: true, path: target, query: '' } : { ok: true, path: target.slice(0, q), query: target.slice(q) };
}
