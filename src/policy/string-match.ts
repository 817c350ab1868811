/**
 * Istio's string matching for policy values (pilot/pkg/security/authz/matcher): `*` alone is presence,
 * one leading `*` a suffix match, one trailing `*` a prefix match, anything else exact. A `*` elsewhere is literal.
 */
export type StringTest = (value: string | undefined) => boolean;

export interface StringMatchOptions {
  /** Hosts compare case-insensitively; the request side must already be lower-cased. */
  readonly ignoreCase?: boolean;
  /**
   * What `*` means: `nonEmpty` is Envoy's `.+` regex (claims, principals, SNI); `present` is a header
   * present-match, which an empty value also satisfies.
   */
  readonly star?: 'nonEmpty' | 'present';
  /** Prepended to the pattern (e.g. `spiffe://` for principals). */
  readonly prefix?: string;
}

export function compileStringMatch(pattern: string, opts: StringMatchOptions = {}): StringTest {
  const base = opts.prefix ?? '';
  const fold = (s: string): string => (opts.ignoreCase === true ? s.toLowerCase() : s);
  if (pattern === '*') {
    if (opts.star === 'present') return (v) => v !== undefined;
    if (base !== '') return (v) => v !== undefined && v.length > 0;
    return (v) => v !== undefined && v.length > 0;
  }
  if (pattern.startsWith('*')) {
    const suffix = fold(pattern.slice(1));
    if (base !== '') {
      // Istio compiles `*x` with a prefix to the regex `<prefix>.*x`: the value must still start with the prefix.
      return (v) => v !== undefined && v.length >= base.length + suffix.length && v.startsWith(base) && v.endsWith(suffix);
    }
    return (v) => v !== undefined && v.endsWith(suffix);
  }
  if (pattern.endsWith('*')) {
    const prefix = base + fold(pattern.slice(0, -1));
    return (v) => v !== undefined && v.startsWith(prefix);
  }
  const exact = base + fold(pattern);
  return (v) => v === exact;
}

/** OR of several patterns. */
export function compileStringSet(patterns: readonly string[], opts: StringMatchOptions = {}): StringTest {
  const tests = patterns.map((p) => compileStringMatch(p, opts));
  if (tests.length === 1) return tests[0]!;
  return (v) => {
    for (let i = 0; i < tests.length; i++) if (tests[i]!(v)) return true;
    return false;
  };
}
