import { compareDiagnostics, type Diagnostic, type PathSegment } from './diagnostic.ts';
import { decodeObject, decodeString, decodeStringMap, isPlainObject } from './decode.ts';
import { decodeAuthorizationPolicy, decodePeerAuthentication, decodeRequestAuthentication } from './decode-kinds.ts';
import { SECURITY_KINDS, securityLookalike } from './lookalike.ts';
import { Reporter } from './report.ts';
import { SECURITY_GROUP, SECURITY_VERSIONS, type ResourceMeta, type SecurityResource } from './types.ts';
import { validateAuthorizationPolicy } from './validate-authorization-policy.ts';
import type { ValidationContext } from './validate-context.ts';
import { validatePeerAuthentication } from './validate-peer-authentication.ts';
import { validateRequestAuthentication } from './validate-request-authentication.ts';
import { parseDocuments, type SourceDocument } from './yaml-source.ts';

export interface LoadResult {
  /** Resources that passed validation, in load order. */
  readonly resources: SecurityResource[];
  /** Errors (the resource was left out), warnings and notices (it loaded), sorted by file and line. */
  readonly diagnostics: Diagnostic[];
}

export interface SourceText {
  readonly file: string;
  readonly text: string;
}

export const DEFAULT_VALIDATION_CONTEXT: ValidationContext = { rootNamespace: 'istio-system' };

/**
 * Parses and validates Istio security resources from already-read texts. One bad resource is reported and left out;
 * the good ones still load. Pure: reading files is the caller's job.
 */
export function loadResources(sources: readonly SourceText[], ctx: ValidationContext = DEFAULT_VALIDATION_CONTEXT): LoadResult {
  const resources: SecurityResource[] = [];
  const diagnostics: Diagnostic[] = [];
  let order = 0;
  for (const { file, text } of sources) {
    const parsed = parseDocuments(text, file);
    diagnostics.push(...parsed.diagnostics);
    for (const doc of parsed.documents) {
      const value = doc.value;
      if (isPlainObject(value) && value['kind'] === 'List' && Array.isArray(value['items'])) {
        value['items'].forEach((item, i) => {
          const res = loadOne(doc, item, ['items', i], order++, ctx, diagnostics);
          if (res !== undefined) resources.push(res);
        });
      } else {
        const res = loadOne(doc, value, [], order++, ctx, diagnostics);
        if (res !== undefined) resources.push(res);
      }
    }
  }
  diagnostics.sort(compareDiagnostics);
  return { resources, diagnostics };
}

function loadOne(
  doc: SourceDocument,
  value: unknown,
  base: readonly PathSegment[],
  order: number,
  ctx: ValidationContext,
  out: Diagnostic[],
): SecurityResource | undefined {
  const r = new Reporter(doc, base);
  try {
    return decodeResource(r, doc, value, base, order, ctx);
  } finally {
    out.push(...r.diagnostics);
  }
}

function decodeResource(
  r: Reporter,
  doc: SourceDocument,
  value: unknown,
  base: readonly PathSegment[],
  order: number,
  ctx: ValidationContext,
): SecurityResource | undefined {
  if (!isPlainObject(value)) {
    r.error([], 'ERR_RESOURCE_NOT_OBJECT', 'a resource must be a mapping with apiVersion, kind, metadata and spec');
    return undefined;
  }
  const apiVersion = typeof value['apiVersion'] === 'string' ? value['apiVersion'] : '';
  const kind = typeof value['kind'] === 'string' ? value['kind'] : '';
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/', 2) : ['', apiVersion];
  if (group !== SECURITY_GROUP || !(SECURITY_KINDS as readonly string[]).includes(kind)) {
    const look = securityLookalike(value);
    if (look !== undefined) {
      if (look.severity === 'error') r.error(look.path, look.code, look.message);
      else r.warn(look.path, look.code, look.message);
      return undefined;
    }
    const what = kind === '' ? 'a document without kind' : `${apiVersion || '(no apiVersion)'} ${kind}`;
    r.notice([], 'NOTICE_KIND_SKIPPED', `skipped ${what}: not an Istio security resource`);
    return undefined;
  }
  if (!(SECURITY_VERSIONS as readonly string[]).includes(version ?? '')) {
    r.error(['apiVersion'], 'ERR_API_VERSION', `${apiVersion} is not served; use ${SECURITY_GROUP}/v1 or ${SECURITY_GROUP}/v1beta1`);
    return undefined;
  }
  decodeObject(r, value, [], ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
  const meta = decodeMeta(r, value['metadata']);
  if (meta === undefined) return undefined;
  r.resource = `${kind} ${meta.namespace}/${meta.name}`;
  const source = { file: doc.file, line: r.lineOf([]), order };
  // Capture only the locator, not the document: its raw value would otherwise stay alive with every resource.
  const docLineOf = doc.lineOf;
  const lineOf = (path: readonly PathSegment[]): number => docLineOf([...base, ...path]);
  let res: SecurityResource;
  switch (kind) {
    case 'AuthorizationPolicy': {
      const spec = decodeAuthorizationPolicy(r, value['spec']);
      if (r.errorCount === 0) validateAuthorizationPolicy(spec, meta, r, ctx);
      res = { kind, apiVersion, meta, spec, source, lineOf };
      break;
    }
    case 'PeerAuthentication': {
      const spec = decodePeerAuthentication(r, value['spec']);
      if (r.errorCount === 0) validatePeerAuthentication(spec, meta, r, ctx);
      res = { kind, apiVersion, meta, spec, source, lineOf };
      break;
    }
    default: {
      const spec = decodeRequestAuthentication(r, value['spec']);
      if (r.errorCount === 0) validateRequestAuthentication(spec, meta, r, ctx);
      res = { kind: 'RequestAuthentication', apiVersion, meta, spec, source, lineOf };
      break;
    }
  }
  return r.errorCount === 0 ? res : undefined;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function decodeMeta(r: Reporter, value: unknown): ResourceMeta | undefined {
  if (!isPlainObject(value)) {
    r.error(['metadata'], 'ERR_METADATA_MISSING', 'metadata with a name is required');
    return undefined;
  }
  // Other metadata fields (uid, resourceVersion, managedFields…) come with exported objects and are ignored.
  const name = decodeString(r, value['name'], ['metadata', 'name']);
  const namespace = decodeString(r, value['namespace'], ['metadata', 'namespace']) ?? 'default';
  if (name === undefined || name === '') {
    r.error(['metadata', 'name'], 'ERR_METADATA_NAME', 'metadata.name is required');
    return undefined;
  }
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
    r.error(['metadata', 'name'], 'ERR_METADATA_NAME', `"${name}" is not a valid resource name (lowercase RFC 1123 subdomain)`);
  }
  if (namespace.length > 63 || !DNS_LABEL.test(namespace)) {
    r.error(['metadata', 'namespace'], 'ERR_METADATA_NAMESPACE', `"${namespace}" is not a valid namespace name (lowercase RFC 1123 label)`);
  }
  const ts = value['creationTimestamp'];
  const creationTimestamp = ts instanceof Date ? ts.toISOString() : typeof ts === 'string' ? ts : undefined;
  return {
    name,
    namespace,
    labels: decodeStringMap(r, value['labels'], ['metadata', 'labels']) ?? {},
    annotations: decodeStringMap(r, value['annotations'], ['metadata', 'annotations']) ?? {},
    ...(creationTimestamp === undefined ? {} : { creationTimestamp }),
  };
}
