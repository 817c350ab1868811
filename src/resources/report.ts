import { formatPath, type Diagnostic, type PathSegment, type Severity } from './diagnostic.ts';
import type { SourceDocument } from './yaml-source.ts';

/** Collects diagnostics for one document, turning field paths into file positions. */
export class Reporter {
  readonly diagnostics: Diagnostic[] = [];
  private readonly doc: SourceDocument;
  private readonly base: readonly PathSegment[];
  resource: string | undefined;

  /** `base` is where the resource sits inside the document (e.g. `items[3]` of a List). */
  constructor(doc: SourceDocument, base: readonly PathSegment[] = [], resource?: string) {
    this.doc = doc;
    this.base = base;
    this.resource = resource;
  }

  get errorCount(): number {
    let n = 0;
    for (const d of this.diagnostics) if (d.severity === 'error') n++;
    return n;
  }

  lineOf(path: readonly PathSegment[]): number {
    return this.doc.lineOf([...this.base, ...path]);
  }

  error(path: readonly PathSegment[], code: string, message: string): void {
    this.add('error', path, code, message);
  }

  warn(path: readonly PathSegment[], code: string, message: string): void {
    this.add('warning', path, code, message);
  }

  notice(path: readonly PathSegment[], code: string, message: string): void {
    this.add('notice', path, code, message);
  }

  private add(severity: Severity, path: readonly PathSegment[], code: string, message: string): void {
    const d: Diagnostic = {
      severity,
      code,
      message,
      file: this.doc.file,
      line: this.lineOf(path),
      path: formatPath(path),
      ...(this.resource === undefined ? {} : { resource: this.resource }),
    };
    this.diagnostics.push(d);
  }
}
