import { load as fastLoad, YAMLException } from 'js-yaml';
import { LineCounter, parseDocument, isNode, type Document } from 'yaml';
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

// A line that starts with `---` or `...` followed by a space or the end of the line is always a document
// boundary in YAML (such lines are forbidden inside content), so a stream can be cut there before parsing.
const MARKER = /^(?:---|\.\.\.)(?:[ \t]|$)/;

interface Chunk {
  readonly text: string;
  /** 0-based line of the chunk's first line in the file. */
  readonly offset: number;
}

function splitDocuments(text: string): Chunk[] {
  const chunks: Chunk[] = [];
  let start = 0;
  let startLine = 0;
  let line = 0;
  let pos = 0;
  while (pos <= text.length) {
    const nl = text.indexOf('\n', pos);
    const end = nl < 0 ? text.length : nl;
    if (pos > start && text.startsWith('---', pos) && MARKER.test(text.slice(pos, Math.min(end, pos + 4)))) {
      chunks.push({ text: text.slice(start, pos), offset: startLine });
      start = pos;
      startLine = line;
    }
    if (nl < 0) break;
    pos = nl + 1;
    line++;
  }
  chunks.push({ text: text.slice(start), offset: startLine });
  return chunks;
}

/** 0-based index of the first line holding content (not blank, a comment, a directive or a marker). */
function firstContentLine(chunk: string): number {
  const lines = chunk.split('\n', 200);
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!.trim();
    if (l === '' || l.startsWith('#') || l.startsWith('%') || l === '---' || l === '...') continue;
    return i;
  }
  return 0;
}

/**
 * Parses every document in `text`. A document with syntax errors is reported and skipped; the others still load.
 * JSON is accepted as the YAML subset it is. Values come from js-yaml (fast enough for a hundred thousand
 * documents); positions come from `yaml`'s source-mapped tree, built only for documents whose lines are asked for.
 */
export function parseDocuments(text: string, file: string): { documents: SourceDocument[]; diagnostics: Diagnostic[] } {
  const documents: SourceDocument[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const chunk of splitDocuments(text)) {
    let value: unknown;
    try {
      value = fastLoad(chunk.text, { filename: file });
    } catch (e) {
      if (!(e instanceof YAMLException)) throw e;
      diagnostics.push({
        severity: 'error',
        code: 'ERR_YAML_SYNTAX',
        message: e.reason || 'YAML syntax error',
        file,
        line: chunk.offset + (e.mark?.line ?? 0) + 1,
        path: '',
      });
      continue;
    }
    if (value === undefined || value === null) continue;
    const docLine = chunk.offset + firstContentLine(chunk.text) + 1;
    let tree: { doc: Document.Parsed; lc: LineCounter } | undefined;
    documents.push({
      file,
      line: docLine,
      value,
      lineOf: (path) => {
        if (path.length === 0) return docLine;
        if (tree === undefined) {
          const lc = new LineCounter();
          tree = { doc: parseDocument(chunk.text, { lineCounter: lc, uniqueKeys: false }), lc };
        }
        return locate(tree.doc, path, docLine, (o) => chunk.offset + tree!.lc.linePos(o).line);
      },
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
