import type { PathSegment } from './diagnostic.ts';
import type { Reporter } from './report.ts';
import { closest } from './similar.ts';

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
      const hint = closest(key, known);
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
