import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { ConfigError } from '../errors.ts';
import type { SourceText } from '../resources/load.ts';

const CONFIG_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

/**
 * Reads configuration files: each path is a file, `-` for standard input, or a directory searched recursively for
 * .yaml, .yml and .json files (in name order, so load order is stable).
 */
export async function readConfigSources(paths: readonly string[], stdin?: () => Promise<string>): Promise<SourceText[]> {
  const out: SourceText[] = [];
  for (const p of paths) {
    if (p === '-') {
      if (stdin === undefined) throw new ConfigError('ERR_CONFIG_STDIN', 'standard input is not available here');
      out.push({ file: '<stdin>', text: await stdin() });
      continue;
    }
    let st;
    try {
      st = await stat(p);
    } catch (e) {
      throw new ConfigError('ERR_CONFIG_NOT_FOUND', `${p}: no such file or directory`, { cause: e });
    }
    if (st.isDirectory()) {
      for (const f of await listConfigFiles(p)) out.push({ file: f, text: await readFile(f, 'utf8') });
    } else {
      out.push({ file: p, text: await readFile(p, 'utf8') });
    }
  }
  return out;
}

async function listConfigFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const full = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listConfigFiles(full)));
    else if (e.isFile() && CONFIG_EXTENSIONS.has(extname(e.name).toLowerCase())) out.push(full);
  }
  return out;
}

export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
