import type { MtlsMode, PeerAuthentication, SecurityResource } from '../resources/types.ts';
import { selectorMatches, type ResourceIndex, type Workload } from './selection.ts';

export type EffectiveMode = Exclude<MtlsMode, 'UNSET'>;

export interface MtlsLevel {
  readonly level: 'mesh' | 'namespace' | 'workload';
  readonly policy: string;
  readonly mode: MtlsMode;
  /** Newer policies at the same level that were ignored because an older one wins. */
  readonly ignored: readonly string[];
}

/** PeerAuthentication resolved for one workload: the mode for every port, and how it was reached. */
export interface MtlsResolution {
  readonly mode: EffectiveMode;
  readonly levels: readonly MtlsLevel[];
  readonly portModes: ReadonlyMap<number, EffectiveMode>;
  /** Root-namespace selector policies that Istio ignores for PeerAuthentication. */
  readonly ignoredRootSelectors: readonly string[];
  modeFor(port: number | undefined): EffectiveMode;
}

const id = (p: PeerAuthentication): string => `${p.meta.namespace}/${p.meta.name}`;

/** Oldest first; without creation timestamps, load order decides (as list order does in istiod). */
function oldestFirst(a: PeerAuthentication, b: PeerAuthentication): number {
  const ta = a.meta.creationTimestamp ?? '';
  const tb = b.meta.creationTimestamp ?? '';
  if (ta !== tb) return Date.parse(ta || '1970-01-01T00:00:00Z') - Date.parse(tb || '1970-01-01T00:00:00Z');
  return a.source.order - b.source.order;
}

function hasLabels(p: PeerAuthentication): boolean {
  const ml = p.spec.selector?.matchLabels;
  return ml !== undefined && Object.keys(ml).length > 0;
}

/**
 * Mesh, then namespace, then workload mode, each applied only when not UNSET, then `portLevelMtls` of the workload
 * policy (pilot/pkg/security/authn/policy_applier.go ComposePeerAuthentication). No policy at all: PERMISSIVE.
 */
export function resolveMtls(index: ResourceIndex<SecurityResource>, rootNamespace: string, w: Workload): MtlsResolution {
  const pick = (ns: string, workloadLevel: boolean): PeerAuthentication[] =>
    index
      .ofKind('PeerAuthentication', ns)
      .filter((p) => (workloadLevel ? hasLabels(p) && selectorMatches(p.spec.selector, w.labels) : !hasLabels(p)))
      .sort(oldestFirst);
  const ignoredRootSelectors = index
    .ofKind('PeerAuthentication', rootNamespace)
    .filter((p) => hasLabels(p) && w.namespace !== rootNamespace && selectorMatches(p.spec.selector, w.labels))
    .map(id);
  const candidates: [MtlsLevel['level'], PeerAuthentication[]][] = [['mesh', pick(rootNamespace, false)]];
  if (w.namespace !== rootNamespace) candidates.push(['namespace', pick(w.namespace, false)]);
  candidates.push(['workload', pick(w.namespace, true)]);
  let mode: EffectiveMode = 'PERMISSIVE';
  const levels: MtlsLevel[] = [];
  let workloadPolicy: PeerAuthentication | undefined;
  for (const [level, list] of candidates) {
    const winner = list[0];
    if (winner === undefined) continue;
    const m = winner.spec.mtls?.mode ?? 'UNSET';
    levels.push({ level, policy: id(winner), mode: m, ignored: list.slice(1).map(id) });
    if (m !== 'UNSET') mode = m;
    if (level === 'workload') workloadPolicy = winner;
  }
  const portModes = new Map<number, EffectiveMode>();
  for (const [port, setting] of Object.entries(workloadPolicy?.spec.portLevelMtls ?? {})) {
    portModes.set(Number(port), setting.mode === 'UNSET' ? mode : setting.mode);
  }
  const base = mode;
  return {
    mode: base,
    levels,
    portModes,
    ignoredRootSelectors,
    modeFor: (port) => (port === undefined ? base : portModes.get(port) ?? base),
  };
}
