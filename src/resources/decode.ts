import type { PathSegment } from './diagnostic.ts';
import type { Reporter } from './report.ts';

/**
 * Strict structural decoding of untyped YAML values: wrong types and unknown fields are errors,
 * as the Kubernetes API server rejects them for Istio's structural CRD schemas.
 */

export type Path = readonly PathSegment[];

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Date) return 'a timestamp';
  if (typeof v === 'object') return 'a mapping';
  return `a ${typeof v}`;
}

/** Returns the mapping at `path`, reporting any key not in `known`. `undefined` when absent or not a mapping. */
export function decodeObject(
  r: Reporter,
  value: unknown,
  path: Path,
  known: readonly string[],
): Record<string, unknown> | undefined {
  if (value === undefined) return undefined;
  if (!isPlainObject(value)) {
    r.error(path, 'ERR_FIELD_TYPE', `must be a mapping, got ${typeName(value)}`);
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      const hint = suggest(key, known);
      r.error([...path, key], 'ERR_FIELD_UNKNOWN', `unknown field "${key}"${hint === undefined ? '' : ` (did you mean "${hint}"?)`}`);
    }
  }
  return value;
}

export function decodeString(r: Reporter, value: unknown, path: Path): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') {
    const quoteHint = typeof value === 'number' || typeof value === 'boolean' ? ` (quote it: "${String(value)}")` : '';
    r.error(path, 'ERR_FIELD_TYPE', `must be a string, got ${typeName(value)}${quoteHint}`);
    return undefined;
  }
  return value;
}

export function decodeBoolean(r: Reporter, value: unknown, path: Path): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') {
    r.error(path, 'ERR_FIELD_TYPE', `must be a boolean, got ${typeName(value)}`);
    return undefined;
  }
  return value;
}

/** A list of strings. A `null` field counts as absent, as it does for Kubernetes. */
export function decodeStringList(r: Reporter, value: unknown, path: Path): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) {
    r.error(path, 'ERR_FIELD_TYPE', `must be a list of strings, got ${typeName(value)}`);
    return undefined;
  }
  const out: string[] = [];
  value.forEach((item, i) => {
    const s = decodeString(r, item, [...path, i]);
    if (s !== undefined) out.push(s);
  });
  return out;
}

export function decodeList(r: Reporter, value: unknown, path: Path): unknown[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) {
    r.error(path, 'ERR_FIELD_TYPE', `must be a list, got ${typeName(value)}`);
    return undefined;
  }
  return value;
}

export function decodeStringMap(r: Reporter, value: unknown, path: Path): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isPlainObject(value)) {
    r.error(path, 'ERR_FIELD_TYPE', `must be a mapping of strings, got ${typeName(value)}`);
    return undefined;
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    const s = decodeString(r, v, [...path, k]);
    if (s !== undefined) out[k] = s;
  }
  return out;
}

export function decodeEnum<T extends string>(r: Reporter, value: unknown, path: Path, allowed: readonly T[]): T | undefined {
  const s = decodeString(r, value, path);
  if (s === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(s)) {
    r.error(path, 'ERR_FIELD_ENUM', `"${s}" is not one of ${allowed.join(', ')}`);
    return undefined;
  }
  return s as T;
}

/** Closest known key by edit distance, for "did you mean" hints on typos. */
function suggest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDist = 3;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestDist) {
      best = k;
      bestDist = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}
