import type { PathNormalization } from '../match/path-normalize.ts';
import type { Diagnostic } from './diagnostic.ts';
import { decodeEnum, decodeList, decodeString, decodeStringList, isPlainObject } from './decode.ts';
import { Reporter } from './report.ts';
import { parseDocuments } from './yaml-source.ts';

/** An entry of MeshConfig `extensionProviders`; only what authorization needs is interpreted. */
export interface ExtensionProvider {
  readonly name: string;
  /** The provider's type key as written, e.g. `envoyExtAuthzHttp`. */
  readonly type: string;
  readonly config: Readonly<Record<string, unknown>>;
}

/** The MeshConfig settings the security plane reads, with Istio's defaults. */
export interface MeshSettings {
  readonly rootNamespace: string;
  readonly trustDomain: string;
  readonly trustDomainAliases: readonly string[];
  readonly pathNormalization: PathNormalization;
  readonly extensionProviders: readonly ExtensionProvider[];
  /** Where a sidecar may send traffic for destinations outside the registry (Istio: ALLOW_ANY by default). */
  readonly outboundTrafficPolicy: 'ALLOW_ANY' | 'REGISTRY_ONLY';
}

export const DEFAULT_MESH: MeshSettings = Object.freeze({
  rootNamespace: 'istio-system',
  trustDomain: 'cluster.local',
  trustDomainAliases: Object.freeze([]) as readonly string[],
  pathNormalization: 'BASE',
  extensionProviders: Object.freeze([]) as readonly ExtensionProvider[],
  outboundTrafficPolicy: 'ALLOW_ANY',
});

const NORMALIZATIONS = ['DEFAULT', 'NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const;

/**
 * Reads MeshConfig YAML (Istio's own field names), either bare or as the `mesh` key of the `istio` ConfigMap.
 * Fields Rampart does not use are accepted and ignored, so a full mesh config can be brought unchanged.
 */
export function parseMeshConfig(text: string, file: string): { mesh: MeshSettings; diagnostics: Diagnostic[] } {
  const parsed = parseDocuments(text, file);
  const diagnostics = [...parsed.diagnostics];
  const doc = parsed.documents[0];
  if (doc === undefined) return { mesh: DEFAULT_MESH, diagnostics };
  let value = doc.value;
  let inner = doc;
  if (isPlainObject(value) && value['kind'] === 'ConfigMap') {
    const data = value['data'];
    const meshText = isPlainObject(data) ? data['mesh'] : undefined;
    if (typeof meshText !== 'string') {
      const r = new Reporter(doc);
      r.error(['data', 'mesh'], 'ERR_MESH_CONFIGMAP', 'a mesh ConfigMap must carry the MeshConfig as text under data.mesh');
      return { mesh: DEFAULT_MESH, diagnostics: [...diagnostics, ...r.diagnostics] };
    }
    const sub = parseDocuments(meshText, `${file} (data.mesh)`);
    diagnostics.push(...sub.diagnostics);
    if (sub.documents[0] === undefined) return { mesh: DEFAULT_MESH, diagnostics };
    inner = sub.documents[0];
    value = inner.value;
  }
  const r = new Reporter(inner);
  const mesh = decodeMesh(r, value);
  return { mesh, diagnostics: [...diagnostics, ...r.diagnostics] };
}

export function decodeMesh(r: Reporter, value: unknown): MeshSettings {
  if (value === null || value === undefined) return DEFAULT_MESH;
  if (!isPlainObject(value)) {
    r.error([], 'ERR_FIELD_TYPE', 'MeshConfig must be a mapping');
    return DEFAULT_MESH;
  }
  const rootNamespace = decodeString(r, value['rootNamespace'], ['rootNamespace']) || DEFAULT_MESH.rootNamespace;
  const trustDomain = decodeString(r, value['trustDomain'], ['trustDomain']) || DEFAULT_MESH.trustDomain;
  const trustDomainAliases = decodeStringList(r, value['trustDomainAliases'], ['trustDomainAliases']) ?? [];
  let pathNormalization: PathNormalization = DEFAULT_MESH.pathNormalization;
  const pn = value['pathNormalization'];
  if (pn !== undefined && pn !== null) {
    if (!isPlainObject(pn)) r.error(['pathNormalization'], 'ERR_FIELD_TYPE', 'must be a mapping with a normalization field');
    else {
      const n = decodeEnum(r, pn['normalization'], ['pathNormalization', 'normalization'], NORMALIZATIONS);
      // Istio treats DEFAULT as BASE (pilot/pkg/networking/core/listener_builder.go).
      if (n !== undefined) pathNormalization = n === 'DEFAULT' ? 'BASE' : n;
    }
  }
  const extensionProviders: ExtensionProvider[] = [];
  const providers = decodeList(r, value['extensionProviders'], ['extensionProviders']) ?? [];
  providers.forEach((p, i) => {
    if (!isPlainObject(p)) {
      r.error(['extensionProviders', i], 'ERR_FIELD_TYPE', 'must be a mapping');
      return;
    }
    const name = decodeString(r, p['name'], ['extensionProviders', i, 'name']);
    if (name === undefined || name === '') {
      r.error(['extensionProviders', i, 'name'], 'ERR_PROVIDER_NAME', 'an extension provider needs a name');
      return;
    }
    const types = Object.keys(p).filter((k) => k !== 'name');
    if (types.length !== 1) {
      r.error(['extensionProviders', i], 'ERR_PROVIDER_TYPE', `provider "${name}" must set exactly one provider type (e.g. envoyExtAuthzHttp)`);
      return;
    }
    if (extensionProviders.some((e) => e.name === name)) {
      r.error(['extensionProviders', i, 'name'], 'ERR_PROVIDER_DUPLICATE', `extension provider "${name}" is defined twice`);
      return;
    }
    const type = types[0]!;
    const config = p[type];
    extensionProviders.push({ name, type, config: isPlainObject(config) ? config : {} });
  });
  for (const alias of trustDomainAliases) {
    if (alias === '') r.error(['trustDomainAliases'], 'ERR_TRUST_DOMAIN', 'a trust domain alias must not be empty');
  }
  checkGatewayTopology(r, value['defaultConfig']);
  let outboundTrafficPolicy: MeshSettings['outboundTrafficPolicy'] = 'ALLOW_ANY';
  const otp = value['outboundTrafficPolicy'];
  if (otp !== undefined && otp !== null) {
    if (!isPlainObject(otp)) r.error(['outboundTrafficPolicy'], 'ERR_FIELD_TYPE', 'must be a mapping with a mode field');
    else outboundTrafficPolicy = decodeEnum(r, otp['mode'], ['outboundTrafficPolicy', 'mode'], ['ALLOW_ANY', 'REGISTRY_ONLY'] as const) ?? 'ALLOW_ANY';
  }
  return Object.freeze({ rootNamespace, trustDomain, trustDomainAliases, pathNormalization, extensionProviders, outboundTrafficPolicy });
}

/**
 * `defaultConfig.gatewayTopology` changes who the client is: with `numTrustedProxies` Istio has Envoy take the
 * client address (remote.ip, remoteIpBlocks) from X-Forwarded-For, and `forwardClientCertDetails` / `proxyProtocol`
 * change how identity and addresses are passed on. Rampart decides on the connection's peer address (what Istio
 * does with no trusted proxies), so a setting asking for anything else is refused rather than ignored: a security
 * setting that silently does nothing is worse than an error.
 */
function checkGatewayTopology(r: Reporter, defaultConfig: unknown): void {
  if (!isPlainObject(defaultConfig)) return;
  const topology = defaultConfig['gatewayTopology'];
  if (topology === undefined || topology === null) return;
  const path = ['defaultConfig', 'gatewayTopology'];
  if (!isPlainObject(topology)) {
    r.error(path, 'ERR_FIELD_TYPE', 'must be a mapping');
    return;
  }
  for (const [field, v] of Object.entries(topology)) {
    const neutral = (field === 'numTrustedProxies' && v === 0) || v === null;
    if (neutral) continue;
    const what = field === 'numTrustedProxies'
      ? `numTrustedProxies ${JSON.stringify(v)} would take the client address for remote.ip and remoteIpBlocks from X-Forwarded-For`
      : `${field} changes what proxies pass on about the client`;
    r.error([...path, field], 'ERR_MESH_GATEWAY_TOPOLOGY_UNSUPPORTED',
      `${what}; Rampart decides on the connection's peer address (Istio's behaviour with numTrustedProxies 0) and does not support gatewayTopology: remove it, or set numTrustedProxies: 0`);
  }
}
