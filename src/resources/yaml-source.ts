import { LineCounter, parseAllDocuments, isNode, type Document } from 'yaml';
import type { Diagnostic, PathSegment } from './diagnostic.ts';

/** One parsed YAML/JSON document with a way back from a field path to its line. */
export interface SourceDocument {
  readonly file: string;
  /** 1-based line of the document's first content. */
  readonly line: number;
  readonly value: unknown;
  /** Line of the deepest existing node along `path` (the document line when none exists). */
  lineOf(path: readonly PathSegment[]): number;
}

/**
 * Parses every document in `text`. A document with syntax errors is reported and skipped; the others still load.
 * JSON is accepted as the YAML subset it is.
 */
export function parseDocuments(text: string, file: string): { documents: SourceDocument[]; diagnostics: Diagnostic[] } {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const documents: SourceDocument[] = [];
  const diagnostics: Diagnostic[] = [];
  const list = Array.isArray(docs) ? docs : [];
  if (!Array.isArray(docs)) {
    // An EmptyStream: nothing but comments or whitespace.
    return { documents, diagnostics };
  }
  for (const doc of list) {
    const lineAt = (offset: number): number => lineCounter.linePos(offset).line;
    if (doc.errors.length > 0) {
      for (const err of doc.errors) {
        diagnostics.push({
          severity: 'error',
          code: 'ERR_YAML_SYNTAX',
          message: err.message.split('\n')[0] ?? 'YAML syntax error',
          file,
          line: lineAt(err.pos[0]),
          path: '',
        });
      }
      continue;
    }
    if (doc.contents === null) continue;
    const startLine = lineAt(doc.contents.range?.[0] ?? doc.range[0]);
    documents.push({
      file,
      line: startLine,
      value: doc.toJS({ maxAliasCount: 100 }),
      lineOf: (path) => locate(doc, path, startLine, lineAt),
    });
  }
  return { documents, diagnostics };
}

function locate(doc: Document.Parsed, path: readonly PathSegment[], fallback: number, lineAt: (o: number) => number): number {
  for (let n = path.length; n > 0; n--) {
    const node = doc.getIn(path.slice(0, n), true);
    if (isNode(node) && node.range) return lineAt(node.range[0]);
  }
  return fallback;
}
