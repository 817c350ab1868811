import { createHash } from 'node:crypto';
import { ConfigError } from '../errors.ts';
import { formatDiagnostic, type Diagnostic } from '../resources/diagnostic.ts';
import { loadResources, type SourceText } from '../resources/load.ts';
import { parseMeshFile, type MeshFile, type MeshWorkload } from '../resources/mesh-file.ts';
import type { SecurityResource } from '../resources/types.ts';
import { ResourceIndex, selectScoped } from '../policy/selection.ts';

/**
 * The control plane's view of the configuration, and what each proxy receives of it. Pure: texts in, snapshots out.
 *
 * Invalid input never replaces valid input. A policy file with any error keeps the resources it last loaded without
 * one (the Kubernetes API server rejects an invalid object the same way and keeps the stored version), and the
 * other files still apply; a mesh file with any error keeps the last good mesh file. A file seen for the first time
 * with an error contributes nothing. Every rejection is reported with file, line and field path.
 */

/** What a configuration source yields: the mesh file and the policy files, as texts. */
export interface SourceInput {
  readonly mesh: SourceText;
  readonly policies: readonly SourceText[];
}

/** One accepted policy document as it travels to proxies: JSON of the resource, named by where it came from. */
export interface ResourceDocument {
  readonly file: string;
  readonly line: number;
  readonly kind: SecurityResource['kind'];
  readonly namespace: string;
  readonly name: string;
  /** The resource as a Kubernetes object (apiVersion, kind, metadata, spec), JSON text. */
  readonly json: string;
}

export interface MeshState {
  /** Increases by one for every accepted change. */
  readonly version: number;
  readonly mesh: MeshFile;
  readonly meshText: SourceText;
  readonly resources: readonly SecurityResource[];
  readonly documents: readonly ResourceDocument[];
  /** Errors of the last read: what was refused, and why. Warnings too. */
  readonly diagnostics: readonly Diagnostic[];
  /** Files whose last read was refused (their last good content stays in force). */
  readonly rejectedFiles: readonly string[];
  /** Accepted content per file, for the next build. */
  readonly goodFiles: ReadonlyMap<string, { readonly text: string }>;
}

/** What one proxy is sent. */
export interface ProxySnapshot {
  readonly version: string;
  /**
   * SHA-256 of the content (mesh file, resources, bundle). Versions count from 1 again when the control plane
   * restarts; a proxy that already runs this content acknowledges it without rebuilding anything.
   */
  readonly digest: string;
  readonly mesh: SourceText;
  readonly resources: readonly ResourceDocument[];
  /** PEM of the trusted roots. */
  readonly trustBundle: string;
}

export class MeshStateError extends ConfigError {
  readonly diagnostics: readonly Diagnostic[];
  constructor(diagnostics: readonly Diagnostic[]) {
    super('ERR_MESH_INVALID', `the mesh configuration has errors:\n${diagnostics.filter((d) => d.severity === 'error').map(formatDiagnostic).join('\n')}`);
    this.diagnostics = diagnostics;
  }
}

/**
 * The next state from freshly read input and the previous state. With no previous state, a mesh file with errors
 * throws MeshStateError (there is nothing to keep). Returns the previous state itself when nothing changed.
 */
export function buildMeshState(input: SourceInput, previous: MeshState | undefined): MeshState {
  const diagnostics: Diagnostic[] = [];
  const rejected: string[] = [];
  const parsedMesh = parseMeshFile(input.mesh.text, input.mesh.file);
  let meshText = input.mesh;
  let mesh = parsedMesh.mesh;
  diagnostics.push(...parsedMesh.diagnostics);
  if (parsedMesh.diagnostics.some((d) => d.severity === 'error')) {
    if (previous === undefined) throw new MeshStateError(parsedMesh.diagnostics);
    rejected.push(input.mesh.file);
    meshText = previous.meshText;
    mesh = previous.mesh;
  }
  const ctx = { rootNamespace: mesh.mesh.rootNamespace };
  // Each file alone first: a file with an error falls back to its last good text.
  const good = new Map<string, { text: string }>();
  const texts: SourceText[] = [];
  for (const f of input.policies) {
    const alone = loadResources([f], ctx);
    const errors = alone.diagnostics.filter((d) => d.severity === 'error');
    if (errors.length === 0) {
      good.set(f.file, { text: f.text });
      texts.push(f);
      continue;
    }
    diagnostics.push(...alone.diagnostics);
    rejected.push(f.file);
    const last = previous?.goodFiles.get(f.file);
    if (last !== undefined) {
      good.set(f.file, last);
      texts.push({ file: f.file, text: last.text });
    }
  }
  const loaded = loadResources(texts, ctx);
  // Errors that only show across files (none today) would refuse the whole change: keep the previous state.
  if (loaded.diagnostics.some((d) => d.severity === 'error') && previous !== undefined) {
    return { ...previous, diagnostics: [...diagnostics, ...loaded.diagnostics], rejectedFiles: [...rejected, ...texts.map((t) => t.file)] };
  }
  for (const d of loaded.diagnostics) if (d.severity !== 'error' && !diagnostics.some((x) => sameDiagnostic(x, d))) diagnostics.push(d);
  const documents = loaded.resources.map(toDocument);
  const unchanged = previous !== undefined && previous.meshText.text === meshText.text && sameDocuments(previous.documents, documents);
  const version = previous === undefined ? 1 : unchanged ? previous.version : previous.version + 1;
  return { version, mesh, meshText, resources: loaded.resources, documents, diagnostics, rejectedFiles: rejected, goodFiles: good };
}

function sameDiagnostic(a: Diagnostic, b: Diagnostic): boolean {
  return a.file === b.file && a.line === b.line && a.code === b.code && a.path === b.path;
}

function sameDocuments(a: readonly ResourceDocument[], b: readonly ResourceDocument[]): boolean {
  return a.length === b.length && a.every((d, i) => d.json === b[i]!.json && d.file === b[i]!.file && d.line === b[i]!.line);
}

/** A loaded resource back in its Kubernetes form, as JSON (a proxy loads it through the same validation). */
export function toDocument(r: SecurityResource): ResourceDocument {
  const metadata: Record<string, unknown> = { name: r.meta.name, namespace: r.meta.namespace };
  if (Object.keys(r.meta.labels).length > 0) metadata['labels'] = r.meta.labels;
  if (Object.keys(r.meta.annotations).length > 0) metadata['annotations'] = r.meta.annotations;
  if (r.meta.creationTimestamp !== undefined) metadata['creationTimestamp'] = r.meta.creationTimestamp;
  return {
    file: r.source.file,
    line: r.source.line,
    kind: r.kind,
    namespace: r.meta.namespace,
    name: r.meta.name,
    json: JSON.stringify({ apiVersion: r.apiVersion, kind: r.kind, metadata, spec: r.spec }),
  };
}

/**
 * The resources one workload's proxy needs: the AuthorizationPolicies and RequestAuthentications that apply to it
 * (root namespace and its own, selector matching, as istiod scopes them), and every PeerAuthentication, which the
 * proxy also reads for the destinations it calls (auto mTLS). In load order, so ties break as they do at the source.
 */
export function documentsFor(state: MeshState, workload: MeshWorkload): ResourceDocument[] {
  let index = indexes.get(state);
  if (index === undefined) indexes.set(state, (index = new ResourceIndex(state.resources)));
  const root = state.mesh.mesh.rootNamespace;
  const w = { namespace: workload.namespace, labels: workload.labels };
  const keep = new Set<SecurityResource>([
    ...selectScoped(index, root, w, 'AuthorizationPolicy'),
    ...selectScoped(index, root, w, 'RequestAuthentication'),
  ]);
  const out: ResourceDocument[] = [];
  state.resources.forEach((r, i) => {
    if (r.kind === 'PeerAuthentication' || keep.has(r)) out.push(state.documents[i]!);
  });
  return out;
}

const indexes = new WeakMap<MeshState, ResourceIndex>();

/** The snapshot for one proxy. */
export function proxySnapshot(state: MeshState, workload: MeshWorkload, trustBundlePem: string): ProxySnapshot {
  const resources = documentsFor(state, workload);
  const h = createHash('sha256').update(state.meshText.file).update('\0').update(state.meshText.text).update('\0').update(trustBundlePem);
  for (const d of resources) h.update('\0').update(d.file).update(String(d.line)).update(d.json);
  return { version: String(state.version), digest: h.digest('hex'), mesh: state.meshText, resources, trustBundle: trustBundlePem };
}

/** The policy texts a proxy loads from a snapshot (the same loader as files on disk). */
export function snapshotSources(s: ProxySnapshot): SourceText[] {
  return s.resources.map((d) => ({ file: `${d.file}:${d.line}`, text: d.json }));
}
