export type Severity = 'error' | 'warning' | 'notice';

/**
 * One problem found in user input. Validation reports every problem at once, like a compiler,
 * instead of throwing on the first one.
 */
export interface Diagnostic {
  readonly severity: Severity;
  /** Stable identifier, e.g. `ERR_AUTHZ_EMPTY_RULE`. */
  readonly code: string;
  readonly message: string;
  readonly file: string;
  /** 1-based line of the offending field (or of the document when the field is absent). */
  readonly line: number;
  /** Field path inside the resource, e.g. `spec.rules[0].from[1].source.ipBlocks[2]`; empty for the whole document. */
  readonly path: string;
  /** `Kind namespace/name` of the resource, when known. */
  readonly resource?: string;
}

export type PathSegment = string | number;

/** Renders a field path as `spec.rules[0].from`. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = `${d.file}:${d.line}`;
  const field = d.path === '' ? '' : ` ${d.path}:`;
  const res = d.resource === undefined ? '' : ` (${d.resource})`;
  return `${where}: ${d.severity}${res}${field} ${d.message} [${d.code}]`;
}

export function compareDiagnostics(a: Diagnostic, b: Diagnostic): number {
  if (a.file !== b.file) return a.file < b.file ? -1 : 1;
  return a.line - b.line;
}
