import { statSync, watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ConfigError } from '../errors.ts';
import { readConfigSources } from '../io/config-files.ts';
import type { Diagnostic } from '../resources/diagnostic.ts';
import type { SourceInput } from './snapshot.ts';

/**
 * Where the control plane's configuration comes from. A directory now; Kubernetes (a CRD watch) is meant to be a
 * second implementation behind the same two calls.
 */
export interface ConfigSource {
  /** A human name for logs and status ("directory examples/mesh"). */
  readonly description: string;
  /** The current texts. Throws when the source cannot be read at all (the caller keeps what it has). */
  read(): Promise<SourceInput>;
  /** Calls `onChange` (possibly many times per change: the caller debounces) until the returned function is called. */
  watch(onChange: () => void): () => void;
  /**
   * What the last read amounted to, for a source that tells its users where they look (a cluster: each resource's
   * status and an Event); files have the log. Called after every build; must not throw.
   */
  report?(result: { readonly diagnostics: readonly Diagnostic[]; readonly rejectedFiles: readonly string[] }): void;
}

export const MESH_FILE_NAME = 'mesh.yaml';
/** Settings of `rampart up`'s demo apps, beside the mesh file; not configuration for proxies. */
export const DEMO_FILE_NAME = 'demo.yaml';

/**
 * A directory: `mesh.yaml` (mesh settings, workloads, services) and Istio YAML in every other .yaml, .yml and .json
 * file, recursively, but `demo.yaml` at the top (what `rampart up` runs beside the mesh).
 */
export class DirectorySource implements ConfigSource {
  readonly dir: string;
  readonly description: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
    this.description = `directory ${dir}`;
  }

  async read(): Promise<SourceInput> {
    const meshFile = join(this.dir, MESH_FILE_NAME);
    let meshText: string;
    try {
      meshText = await readFile(meshFile, 'utf8');
    } catch (err) {
      throw missingMesh(this.dir, meshFile, err);
    }
    const all = await readConfigSources([this.dir]);
    return { mesh: { file: meshFile, text: meshText }, policies: all.filter((s) => resolve(s.file) !== meshFile && resolve(s.file) !== join(this.dir, DEMO_FILE_NAME)) };
  }

  watch(onChange: () => void): () => void {
    let w: FSWatcher | undefined;
    try {
      // Recursive watching is native on Linux from Node 20 on; editors that replace files are seen as renames.
      w = watch(this.dir, { recursive: true, persistent: false }, () => onChange());
      w.on('error', () => undefined);
    } catch {
      w = undefined;
    }
    // A slow poll as well: watchers miss changes on some file systems, and a directory replaced whole. It compares
    // names, sizes and modification times, so an unchanged directory costs a few stat calls, not a parse.
    let last: string | undefined;
    const poll = setInterval(() => {
      void signature(this.dir).then((sig) => {
        if (last !== undefined && sig !== last) onChange();
        last = sig;
      }, () => undefined);
    }, 2_000);
    poll.unref();
    return () => {
      w?.close();
      clearInterval(poll);
    };
  }
}

/** What was expected where the mesh file could not be read, instead of a bare ENOENT. */
function missingMesh(dir: string, meshFile: string, err: unknown): ConfigError {
  const code = (err as NodeJS.ErrnoException).code;
  const expected = `a mesh directory holds ${MESH_FILE_NAME} (meshConfig, workloads, services) and the Istio YAML beside it, as examples/mesh does`;
  const dirExists = (() => {
    try {
      return statSync(dir).isDirectory();
    } catch {
      return false;
    }
  })();
  if (!dirExists) return new ConfigError('ERR_MESH_DIR_MISSING', `${dir}: no such directory; ${expected}`, { cause: err });
  if (code === 'ENOENT') return new ConfigError('ERR_MESH_FILE_MISSING', `${meshFile}: not found; ${expected}`, { cause: err });
  return new ConfigError('ERR_MESH_FILE_UNREADABLE', `${meshFile}: cannot be read (${code ?? (err as Error).message})`, { cause: err });
}

/** Names, sizes and modification times of everything under `dir`. */
async function signature(dir: string): Promise<string> {
  const parts: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of (await readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const full = join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else {
        const st = await stat(full);
        parts.push(`${full}:${st.size}:${st.mtimeMs}`);
      }
    }
  };
  await walk(dir);
  return parts.join('\n');
}
