import { readFile } from 'node:fs/promises';
import { RampartError } from '../errors.ts';
import { DEFAULT_INJECT, inject } from '../kube/inject.ts';
import type { CommandOutput } from './check.ts';

/** `rampart inject -f FILE|-`: the manifests with the sidecar added, on standard output; what was skipped on stderr. */
export async function runInject(o: { readonly file: string; readonly image?: string; readonly controlPlane?: string }): Promise<CommandOutput> {
  let text: string;
  try {
    text = o.file === '-' ? await readStdin() : await readFile(o.file, 'utf8');
  } catch (err) {
    return { stdout: '', stderr: `rampart inject: cannot read ${o.file}: ${(err as Error).message}\n`, exitCode: 2 };
  }
  try {
    const r = inject(text, o.file === '-' ? '(stdin)' : o.file, { image: o.image ?? DEFAULT_INJECT.image, controlPlane: o.controlPlane ?? DEFAULT_INJECT.controlPlane });
    const notes = r.skipped.map((s) => `rampart inject: ${s.workload} left as it is: ${s.reason}\n`).join('');
    return { stdout: r.text, stderr: notes, exitCode: 0 };
  } catch (err) {
    return { stdout: '', stderr: `rampart inject: ${err instanceof RampartError ? err.message : String(err)}\n`, exitCode: 2 };
  }
}

async function readStdin(): Promise<string> {
  let text = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) text += chunk as string;
  return text;
}
