import type { SecurityResource, WorkloadSelector } from '../resources/types.ts';

/** The destination workload a decision is for. */
export interface Workload {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** Empty or absent `matchLabels` selects every workload; otherwise every label must be present with that value. */
export function selectorMatches(selector: WorkloadSelector | undefined, labels: Readonly<Record<string, string>>): boolean {
  const ml = selector?.matchLabels;
  if (ml === undefined) return true;
  for (const k in ml) if (labels[k] !== ml[k]) return false;
  return true;
}

export function hasTargetRefs(spec: { targetRef?: unknown; targetRefs?: readonly unknown[] }): boolean {
  return spec.targetRef !== undefined || (spec.targetRefs !== undefined && spec.targetRefs.length > 0);
}

/**
 * Resources indexed by namespace, so that finding what applies to one workload costs the same in a mesh of ten
 * policies as in a mesh of a hundred thousand.
 */
export class ResourceIndex<R extends SecurityResource = SecurityResource> {
  private readonly byNamespace = new Map<string, R[]>();
  private readonly byKind = new Map<string, R[]>();

  constructor(resources: readonly R[]) {
    for (const r of resources) {
      let list = this.byNamespace.get(r.meta.namespace);
      if (list === undefined) this.byNamespace.set(r.meta.namespace, (list = []));
      list.push(r);
      const key = `${r.kind}/${r.meta.namespace}`;
      let byKind = this.byKind.get(key);
      if (byKind === undefined) this.byKind.set(key, (byKind = []));
      byKind.push(r);
    }
  }

  inNamespace(ns: string): readonly R[] {
    return this.byNamespace.get(ns) ?? [];
  }

  /** Resources of one kind in one namespace, in load order. */
  ofKind<K extends R['kind']>(kind: K, ns: string): readonly Extract<R, { kind: K }>[] {
    return (this.byKind.get(`${kind}/${ns}`) ?? []) as unknown as readonly Extract<R, { kind: K }>[];
  }

  namespaces(): IterableIterator<string> {
    return this.byNamespace.keys();
  }
}

/**
 * AuthorizationPolicy and RequestAuthentication scoping for a sidecar (pilot/pkg/model/policyattachment.go): policies
 * of the root namespace and of the workload's namespace, with no selector or a matching one. A policy using
 * targetRef(s) is for gateways and waypoints and never applies to a sidecar.
 */
export function selectScoped<R extends SecurityResource>(index: ResourceIndex<R>, rootNamespace: string, w: Workload, kind: R['kind']): R[] {
  const out: R[] = [];
  const scan = (ns: string): void => {
    for (const r of index.ofKind(kind, ns)) {
      const spec = r.spec as { selector?: WorkloadSelector; targetRef?: unknown; targetRefs?: readonly unknown[] };
      if (hasTargetRefs(spec)) continue;
      if (selectorMatches(spec.selector, w.labels)) out.push(r);
    }
  };
  scan(rootNamespace);
  if (w.namespace !== rootNamespace) scan(w.namespace);
  return out;
}
