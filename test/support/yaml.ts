/** Builders for test resources. JSON is valid YAML, so each document is written as one JSON line. */
type Obj = Record<string, unknown>;

function doc(kind: string, name: string, ns: string, spec: Obj, meta: Obj = {}): string {
  return JSON.stringify({ apiVersion: 'security.istio.io/v1', kind, metadata: { name, namespace: ns, ...meta }, spec });
}

export const ap = (name: string, spec: Obj, ns = 'foo', meta: Obj = {}): string => doc('AuthorizationPolicy', name, ns, spec, meta);
export const pa = (name: string, spec: Obj, ns = 'foo', meta: Obj = {}): string => doc('PeerAuthentication', name, ns, spec, meta);
export const ra = (name: string, spec: Obj, ns = 'foo', meta: Obj = {}): string => doc('RequestAuthentication', name, ns, spec, meta);
export const docs = (...d: string[]): string => d.join('\n---\n');
