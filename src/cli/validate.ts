import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DirectorySource, MESH_FILE_NAME } from '../control/source.ts';
import { loadResources } from '../resources/load.ts';
import { parseMeshFile } from '../resources/mesh-file.ts';
import { RampartError } from '../errors.ts';
import { loadConfig } from '../io/load-config.ts';
import { readStdin } from '../io/config-files.ts';
import { analyze } from '../policy/analyze.ts';
import type { Workload } from '../policy/selection.ts';
import { compareDiagnostics, formatDiagnostic, type Diagnostic } from '../resources/diagnostic.ts';
import { parseDocuments } from '../resources/yaml-source.ts';
import type { CommandOutput } from './check.ts';

export interface ValidateOptions {
  readonly paths: readonly string[];
  readonly mesh?: string;
  readonly workloads?: string;
  readonly json?: boolean;
}

/** `rampart validate`: every error and warning, exit 1 when there is any error. */
export async function runValidate(opts: ValidateOptions): Promise<CommandOutput> {
  const only = opts.paths.length === 1 ? opts.paths[0]! : undefined;
  if (only !== undefined && opts.mesh === undefined && opts.workloads === undefined && existsSync(join(only, MESH_FILE_NAME))) return validateMeshDirectory(only, opts.json === true);
  let cfg;
  let workloads: Workload[] | undefined;
  try {
    cfg = await loadConfig({ paths: opts.paths, meshFile: opts.mesh, stdin: readStdin });
    if (opts.workloads !== undefined) workloads = parseWorkloads(await readFile(opts.workloads, 'utf8'), opts.workloads);
  } catch (e) {
    if (e instanceof RampartError) return { exitCode: 2, stdout: '', stderr: `rampart validate: ${e.message}\n` };
    if (e instanceof Error && 'code' in e && e.code === 'ENOENT') return { exitCode: 2, stdout: '', stderr: `rampart validate: ${e.message}\n` };
    throw e;
  }
  return report([...cfg.diagnostics, ...analyze(cfg.resources, cfg.mesh, workloads)], cfg.resources.length, opts.json === true);
}

/**
 * A control plane's directory (mesh.yaml beside the policies): checked as `rampart control-plane` reads it — the mesh
 * file with its own rules, the policies with its settings, and the selector warnings against its workloads.
 */
async function validateMeshDirectory(dir: string, json: boolean): Promise<CommandOutput> {
  let input;
  try {
    input = await new DirectorySource(dir).read();
  } catch (e) {
    return { exitCode: 2, stdout: '', stderr: `rampart validate: ${(e as Error).message}\n` };
  }
  const mesh = parseMeshFile(input.mesh.text, input.mesh.file);
  const loaded = loadResources(input.policies, { rootNamespace: mesh.mesh.mesh.rootNamespace });
  const workloads = mesh.mesh.workloads.map((w) => ({ namespace: w.namespace, labels: w.labels }));
  return report([...mesh.diagnostics, ...loaded.diagnostics, ...analyze(loaded.resources, mesh.mesh.mesh, workloads)], loaded.resources.length, json);
}

function report(all: readonly Diagnostic[], resources: number, json: boolean): CommandOutput {
  const diagnostics = [...all].sort(compareDiagnostics);
  const errors = diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = diagnostics.filter((d) => d.severity === 'warning').length;
  const summary = `${resources} resource(s) valid, ${errors} error(s), ${warnings} warning(s)`;
  const stdout = json
    ? JSON.stringify({ resources, errors, warnings, diagnostics }, null, 2) + '\n'
    : [...diagnostics.map(formatDiagnostic), summary].join('\n') + '\n';
  return { exitCode: errors > 0 ? 1 : 0, stdout, stderr: '' };
}

/** A workload list: YAML or JSON, a list of `{namespace, labels}` (or `{workloads: [...]}` as in a mesh file). */
export function parseWorkloads(text: string, file: string): Workload[] {
  const { documents, diagnostics } = parseDocuments(text, file);
  if (diagnostics.length > 0) throw new RampartError('ERR_WORKLOADS_INVALID', diagnostics.map(formatDiagnostic).join('\n'));
  const v = documents[0]?.value;
  const list = Array.isArray(v) ? v : typeof v === 'object' && v !== null && Array.isArray((v as { workloads?: unknown }).workloads) ? (v as { workloads: unknown[] }).workloads : undefined;
  if (list === undefined) throw new RampartError('ERR_WORKLOADS_INVALID', `${file}: expected a list of workloads ({namespace, labels})`);
  return list.map((w, i) => {
    if (typeof w !== 'object' || w === null) throw new RampartError('ERR_WORKLOADS_INVALID', `${file}: workloads[${i}] must be a mapping`);
    const o = w as { namespace?: unknown; labels?: unknown };
    const labels = o.labels ?? {};
    if (typeof labels !== 'object' || labels === null || Object.values(labels).some((x) => typeof x !== 'string')) {
      throw new RampartError('ERR_WORKLOADS_INVALID', `${file}: workloads[${i}].labels must map strings to strings`);
    }
    return { namespace: typeof o.namespace === 'string' ? o.namespace : 'default', labels: labels as Record<string, string> };
  });
}
