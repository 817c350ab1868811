import { parseAllDocuments, stringify } from 'yaml';
import { ConfigError } from '../errors.ts';

/**
 * `rampart inject`, as `istioctl kube-inject`: every workload manifest (Pod, Deployment, StatefulSet, DaemonSet,
 * ReplicaSet, ReplicationController, Job, CronJob) gets, in its pod template, the capture init step and the sidecar
 * container; the app's containers, and every other document, are left as they are. Pure: text in, text out.
 *
 * - init container `rampart-init`: `rampart capture apply` in the pod's network namespace (NET_ADMIN and NET_RAW,
 *   nothing else), with Istio's `traffic.sidecar.istio.io/*` annotations as include/exclude lists;
 * - container `rampart-proxy`: `rampart proxy --capture` as uid/gid 1337, its workload the pod
 *   (`$(POD_NAMESPACE)/$(POD_NAME)`), its first certificate from the pod's projected service-account token
 *   (audience istio-ca), the mesh roots from the `istio-ca-root-cert` ConfigMap, as Istio mounts them;
 * - a pod annotated `sidecar.istio.io/inject: "false"`, or already injected, is left alone.
 */

export interface InjectOptions {
  /** The image holding Rampart (deploy/kubernetes/Dockerfile). */
  readonly image: string;
  /** The control plane's mTLS address, `https://HOST:PORT`. */
  readonly controlPlane: string;
  readonly proxyUid?: number;
}

export const DEFAULT_INJECT: InjectOptions = {
  image: 'rampart:0.1.0',
  controlPlane: 'https://rampart-control-plane.istio-system.svc:15012',
};

const TEMPLATE_PATH: Readonly<Record<string, readonly string[]>> = {
  Pod: [],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

/** Istio's capture annotations → `rampart capture apply` flags. */
const CAPTURE_ANNOTATIONS: ReadonlyArray<readonly [string, string]> = [
  ['traffic.sidecar.istio.io/includeInboundPorts', '--include-inbound-ports'],
  ['traffic.sidecar.istio.io/excludeInboundPorts', '--exclude-inbound-ports'],
  ['traffic.sidecar.istio.io/includeOutboundIPRanges', '--include-outbound-cidrs'],
  ['traffic.sidecar.istio.io/excludeOutboundIPRanges', '--exclude-outbound-cidrs'],
  ['traffic.sidecar.istio.io/excludeOutboundPorts', '--exclude-outbound-ports'],
];

export const PROXY_CONTAINER = 'rampart-proxy';
export const INIT_CONTAINER = 'rampart-init';
export const INJECTED_ANNOTATION = 'sidecar.rampart.io/status';
const TOKEN_DIR = '/var/run/secrets/tokens';
const ROOTS_DIR = '/var/run/secrets/rampart';

type Obj = Record<string, unknown>;

export interface InjectResult {
  readonly text: string;
  /** `Kind namespace/name` of each workload injected, and of each left alone with the reason. */
  readonly injected: readonly string[];
  readonly skipped: ReadonlyArray<{ readonly workload: string; readonly reason: string }>;
}

export function inject(text: string, file: string, options: InjectOptions = DEFAULT_INJECT): InjectResult {
  const docs = parseAllDocuments(text);
  const out: string[] = [];
  const injected: string[] = [];
  const skipped: Array<{ workload: string; reason: string }> = [];
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!;
      throw new ConfigError('ERR_INJECT_YAML', `${file}:${e.linePos?.[0]?.line ?? 0}: ${e.message.split('\n')[0]}`);
    }
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    out.push(stringify(injectObject(value as Obj, options, injected, skipped), { lineWidth: 0 }));
  }
  return { text: out.join('---\n'), injected, skipped };
}

function injectObject(o: Obj, options: InjectOptions, injected: string[], skipped: Array<{ workload: string; reason: string }>): Obj {
  if (o['kind'] === 'List' && Array.isArray(o['items'])) return { ...o, items: (o['items'] as Obj[]).map((i) => injectObject(i, options, injected, skipped)) };
  const kind = typeof o['kind'] === 'string' ? o['kind'] : '';
  const path = TEMPLATE_PATH[kind];
  if (path === undefined) return o;
  const meta = (o['metadata'] ?? {}) as Obj;
  const name = `${kind} ${String(meta['namespace'] ?? 'default')}/${String(meta['name'] ?? '')}`;
  const copy = structuredClone(o);
  let template: Obj = copy;
  for (const key of path) {
    const next = template[key];
    if (next === null || typeof next !== 'object') {
      skipped.push({ workload: name, reason: `no ${path.join('.')}` });
      return o;
    }
    template = next as Obj;
  }
  const tmeta = (template['metadata'] ??= {}) as Obj;
  const annotations = (tmeta['annotations'] ?? {}) as Record<string, string>;
  const spec = (template['spec'] ?? {}) as Obj;
  if (String(annotations['sidecar.istio.io/inject'] ?? '') === 'false') {
    skipped.push({ workload: name, reason: 'annotated sidecar.istio.io/inject: "false"' });
    return o;
  }
  if (spec['hostNetwork'] === true) {
    // Capture rules in the host's namespace would capture the node: Istio skips these pods too.
    skipped.push({ workload: name, reason: 'hostNetwork: true' });
    return o;
  }
  const containers = (spec['containers'] ?? []) as Obj[];
  if (containers.some((c) => c['name'] === PROXY_CONTAINER)) {
    skipped.push({ workload: name, reason: 'already injected' });
    return o;
  }
  const uid = options.proxyUid ?? 1337;
  const captureArgs = ['capture', 'apply', '--proxy-uid', String(uid), '--proxy-gid', String(uid)];
  for (const [annotation, flag] of CAPTURE_ANNOTATIONS) {
    const v = annotations[annotation];
    if (v !== undefined) captureArgs.push(flag, String(v));
  }
  const init: Obj = {
    name: INIT_CONTAINER, image: options.image, command: ['rampart'], args: captureArgs,
    securityContext: {
      // The rules need NET_ADMIN (and NET_RAW for iptables) in the pod's namespace, as istio-init does; nothing else.
      runAsUser: 0, runAsGroup: 0, runAsNonRoot: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    },
    resources: { requests: { cpu: '10m', memory: '40Mi' }, limits: { cpu: '1', memory: '256Mi' } },
  };
  const proxy: Obj = {
    name: PROXY_CONTAINER, image: options.image, command: ['rampart'],
    args: ['proxy', '--capture', '--workload', '$(POD_NAMESPACE)/$(POD_NAME)', '--control-plane', options.controlPlane,
      '--token', `${TOKEN_DIR}/istio-token`, '--root-cert', `${ROOTS_DIR}/root-cert.pem`],
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    ],
    securityContext: {
      // The capture rules exempt this uid and gid: the sidecar's own connections are never captured.
      runAsUser: uid, runAsGroup: uid, runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false,
      capabilities: { drop: ['ALL'] },
    },
    resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '2', memory: '1Gi' } },
    volumeMounts: [
      { name: 'istio-token', mountPath: TOKEN_DIR, readOnly: true },
      { name: 'rampart-ca-root', mountPath: ROOTS_DIR, readOnly: true },
    ],
  };
  spec['initContainers'] = [...((spec['initContainers'] ?? []) as Obj[]), init];
  spec['containers'] = [...containers, proxy];
  spec['volumes'] = [
    ...((spec['volumes'] ?? []) as Obj[]),
    // The pod's own token for the control plane (audience istio-ca), rotated by the kubelet, as Istio mounts it.
    { name: 'istio-token', projected: { sources: [{ serviceAccountToken: { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' } }] } },
    { name: 'rampart-ca-root', configMap: { name: 'istio-ca-root-cert', items: [{ key: 'root-cert.pem', path: 'root-cert.pem' }] } },
  ];
  template['spec'] = spec;
  tmeta['annotations'] = { ...annotations, [INJECTED_ANNOTATION]: JSON.stringify({ initContainers: [INIT_CONTAINER], containers: [PROXY_CONTAINER], volumes: ['istio-token', 'rampart-ca-root'] }) };
  injected.push(name);
  return copy;
}
