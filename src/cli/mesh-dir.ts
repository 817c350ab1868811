import { DirectorySource } from '../control/source.ts';
import type { Diagnostic } from '../resources/diagnostic.ts';
import { loadResources } from '../resources/load.ts';
import { parseMeshFile, type MeshFile } from '../resources/mesh-file.ts';
import type { SecurityResource } from '../resources/types.ts';

export interface LoadedMeshDirectory {
  readonly meshFile: MeshFile;
  readonly resources: SecurityResource[];
  readonly diagnostics: Diagnostic[];
}

/** A mesh directory read and validated as the control plane reads it: mesh.yaml, then the policies beside it. */
export async function loadMeshDirectory(dir: string): Promise<LoadedMeshDirectory> {
  const input = await new DirectorySource(dir).read();
  const parsed = parseMeshFile(input.mesh.text, input.mesh.file);
  const loaded = loadResources(input.policies, { rootNamespace: parsed.mesh.mesh.rootNamespace });
  return { meshFile: parsed.mesh, resources: loaded.resources, diagnostics: [...parsed.diagnostics, ...loaded.diagnostics] };
}
