import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { readLines } from '../src/control/protocol.ts';

function feed(chunks: ReadonlyArray<Buffer | string>, limit = 1_000): { lines: string[]; ends: Array<Error | undefined> } {
  const s = new PassThrough();
  const lines: string[] = [];
  const ends: Array<Error | undefined> = [];
  readLines(s, limit, (l) => lines.push(l), (e) => ends.push(e));
  for (const c of chunks) s.write(c);
  s.end();
  return { lines, ends };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('readLines (the NDJSON of the configuration stream)', () => {
  it('joins a line that comes in many chunks and splits several lines in one chunk', async () => {
    const r = feed(['{"a":', '1}\n{"b"', ':2}\n{"c":3}\n']);
    await tick();
    assert.deepEqual(r.lines, ['{"a":1}', '{"b":2}', '{"c":3}']);
    assert.deepEqual(r.ends, [undefined]);
  });

  it('decodes a UTF-8 character split between two chunks', async () => {
    const bytes = Buffer.from('{"name":"é"}\n', 'utf8');
    const cut = bytes.indexOf(0xc3) + 1;
    const r = feed([bytes.subarray(0, cut), bytes.subarray(cut)]);
    await tick();
    assert.deepEqual(r.lines, ['{"name":"é"}']);
  });

  it('skips blank lines', async () => {
    const r = feed(['\n  \n{"a":1}\n\n']);
    await tick();
    assert.deepEqual(r.lines, ['{"a":1}']);
  });

  it('ends with an error for a line longer than the limit, before its newline comes', async () => {
    const r = feed(['x'.repeat(600), 'y'.repeat(600)], 1_000);
    await tick();
    assert.deepEqual(r.lines, []);
    assert.match(String(r.ends[0]?.message), /longer than 1000 characters/);
  });
});
