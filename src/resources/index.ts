export { loadResources, DEFAULT_VALIDATION_CONTEXT, type LoadResult, type SourceText } from './load.ts';
export { parseMeshConfig, DEFAULT_MESH, type MeshSettings, type ExtensionProvider } from './mesh-config.ts';
export { formatDiagnostic, type Diagnostic, type Severity } from './diagnostic.ts';
export type * from './types.ts';
