import { readFile } from 'node:fs/promises';
import { ConfigError } from '../errors.ts';
import type { Diagnostic } from '../resources/diagnostic.ts';
import { loadResources } from '../resources/load.ts';
import { DEFAULT_MESH, parseMeshConfig, type MeshSettings } from '../resources/mesh-config.ts';
import type { SecurityResource } from '../resources/types.ts';
import { readConfigSources } from './config-files.ts';

export interface LoadedConfig {
  readonly mesh: MeshSettings;
  readonly resources: SecurityResource[];
  readonly diagnostics: Diagnostic[];
}

/** Reads mesh settings and resources from disk; validation is the pure loader's job. */
export async function loadConfig(opts: { paths: readonly string[]; meshFile?: string | undefined; stdin?: () => Promise<string> }): Promise<LoadedConfig> {
  let mesh = DEFAULT_MESH;
  const diagnostics: Diagnostic[] = [];
  if (opts.meshFile !== undefined) {
    let text: string;
    try {
      text = await readFile(opts.meshFile, 'utf8');
    } catch (e) {
      throw new ConfigError('ERR_CONFIG_NOT_FOUND', `${opts.meshFile}: cannot read mesh config`, { cause: e });
    }
    const parsed = parseMeshConfig(text, opts.meshFile);
    mesh = parsed.mesh;
    diagnostics.push(...parsed.diagnostics);
  }
  const sources = await readConfigSources(opts.paths, opts.stdin);
  const loaded = loadResources(sources, { rootNamespace: mesh.rootNamespace });
  diagnostics.push(...loaded.diagnostics);
  return { mesh, resources: loaded.resources, diagnostics };
}
