import type { Diagnostic } from '../resources/diagnostic.ts';
import type { MeshSettings } from '../resources/mesh-config.ts';
import type { AuthorizationPolicy, Rule, SecurityResource, Source, Operation, WorkloadSelector } from '../resources/types.ts';
import { closest } from '../resources/similar.ts';
import { hasTargetRefs, selectorMatches, type Workload } from './selection.ts';

/**
 * Cross-resource checks beyond what istiod validates: the mistakes that load fine and then surprise.
 * Returns warnings; nothing here drops a resource.
 */
export function analyze(resources: readonly SecurityResource[], mesh: MeshSettings, workloads?: readonly Workload[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  const root = mesh.rootNamespace;
  const warn = (r: SecurityResource, code: string, message: string, path = '', line?: number): void => {
    out.push({ severity: 'warning', code, message, file: r.source.file, line: line ?? r.source.line, path, resource: `${r.kind} ${r.meta.namespace}/${r.meta.name}` });
  };
  const selectorOf = (r: SecurityResource): WorkloadSelector | undefined => (r.spec as { selector?: WorkloadSelector }).selector;
  const appliesTo = (r: SecurityResource, w: Workload): boolean => {
    if (hasTargetRefs(r.spec as { targetRef?: unknown })) return false;
    if (r.meta.namespace !== root && r.meta.namespace !== w.namespace) return false;
    return selectorMatches(selectorOf(r), w.labels);
  };
  const requestAuthns = resources.filter((r) => r.kind === 'RequestAuthentication');

  for (const r of resources) {
    if (workloads !== undefined && !hasTargetRefs(r.spec as { targetRef?: unknown })) {
      if (!workloads.some((w) => appliesTo(r, w))) {
        const sel = selectorOf(r)?.matchLabels;
        const scope = sel !== undefined && Object.keys(sel).length > 0
          ? `selector ${Object.entries(sel).map(([k, v]) => `${k}=${v}`).join(',')}`
          : `namespace ${r.meta.namespace}`;
        warn(r, 'WARN_SELECTS_NOTHING', `${scope} matches no known workload: this ${r.kind} has no effect`, selectorOf(r) === undefined ? 'metadata.namespace' : 'spec.selector');
      }
    }
    if (r.kind !== 'AuthorizationPolicy') continue;
    if (r.spec.action === 'CUSTOM') customProvider(r, mesh, warn);
    const rules = r.spec.rules ?? [];
    rules.forEach((rule, i) => {
      if (rule === null) return;
      const line = r.lineOf(['spec', 'rules', i]);
      if (usesRequestAuth(rule)) {
        const covered = workloads === undefined
          ? requestAuthns.some((ra) => ra.meta.namespace === root || ra.meta.namespace === r.meta.namespace)
          : workloads.filter((w) => appliesTo(r, w)).every((w) => requestAuthns.some((ra) => appliesTo(ra, w)));
        if (!covered) {
          warn(r, 'WARN_NO_REQUEST_AUTHENTICATION', 'uses requestPrincipals or request.auth.* but no RequestAuthentication applies to the workload: no request will ever carry a verified JWT, so these conditions never match', `spec.rules[${i}]`, line);
        }
      }
      for (const why of neverMatches(rule)) warn(r, 'WARN_RULE_NEVER_MATCHES', `rule can never match: ${why}`, `spec.rules[${i}]`, line);
    });
    if (r.spec.action === 'ALLOW') {
      rules.forEach((rule, i) => {
        if (rule === null) return;
        const shadow = shadowingDeny(r, rule, resources, root);
        if (shadow !== undefined) {
          warn(r, 'WARN_ALLOW_SHADOWED', `ALLOW rule ${i} is shadowed by DENY ${shadow}: every request it allows is denied first`, `spec.rules[${i}]`, r.lineOf(['spec', 'rules', i]));
        }
      });
    }
  }
  for (const r of requestAuthns) {
    if (hasTargetRefs(r.spec as { targetRef?: unknown })) continue;
    const targets: Workload[] = workloads !== undefined
      ? workloads.filter((w) => appliesTo(r, w))
      : [{ namespace: r.meta.namespace === root ? '' : r.meta.namespace, labels: selectorOf(r)?.matchLabels ?? {} }];
    // Policies that require a token, or at least look at one (requestPrincipals or request.auth.* somewhere), show
    // the author thought about tokens; the trap is a RequestAuthentication that nothing refers to.
    const refersToTokens = (p: AuthorizationPolicy): boolean => requiresToken(p) || (p.spec.rules ?? []).some((x) => x !== null && usesRequestAuth(x));
    const unprotected = targets.filter((w) => !resources.some((p) => p.kind === 'AuthorizationPolicy' && refersToTokens(p) && (w.namespace === '' ? p.meta.namespace === root : appliesTo(p, w))));
    if (targets.length > 0 && unprotected.length > 0) {
      warn(r, 'WARN_JWT_OPTIONAL', 'no AuthorizationPolicy of the workloads this selects looks at tokens: a request with no token passes, only a bad token is refused (401). To require one, add an ALLOW rule with requestPrincipals, or a DENY rule with notRequestPrincipals: ["*"]', selectorOf(r) === undefined ? 'metadata.namespace' : 'spec.selector');
    }
  }
  return out;
}

/**
 * A CUSTOM policy's provider must be one of meshConfig.extensionProviders: for a name it cannot find istiod builds
 * DENY rules from the policy's rules, so every request they match is denied (the engine decides the same).
 */
function customProvider(r: AuthorizationPolicy, mesh: MeshSettings, warn: (r: SecurityResource, code: string, message: string, path?: string, line?: number) => void): void {
  const name = r.spec.provider?.name;
  if (name === undefined || name === '') return;
  const line = r.lineOf(['spec', 'provider', 'name']);
  const provider = mesh.extensionProviders.find((p) => p.name === name);
  if (provider === undefined) {
    const names = mesh.extensionProviders.map((p) => p.name);
    const hint = closest(name, names);
    const known = names.length === 0 ? 'the mesh config defines no extensionProviders (validate a mesh directory, or pass --mesh)' : `defined: ${names.join(', ')}`;
    warn(r, 'WARN_CUSTOM_PROVIDER_UNDEFINED', `provider "${name}" is not in meshConfig.extensionProviders${hint === undefined ? '' : ` (did you mean "${hint}"?)`}; ${known}. istiod turns its rules into DENY rules (fail closed), so every request they match is denied`, 'spec.provider.name', line);
  } else if (provider.type !== 'envoyExtAuthzHttp') {
    warn(r, 'WARN_CUSTOM_PROVIDER_UNSUPPORTED', `provider "${name}" is ${provider.type}; Rampart's sidecar calls envoyExtAuthzHttp providers only, and fails closed (403) on the others`, 'spec.provider.name', line);
  }
}

/** Whether a policy turns away requests without a verified token: DENY with notRequestPrincipals, or ALLOW whose every rule needs one. */
function requiresToken(p: AuthorizationPolicy): boolean {
  const rules = (p.spec.rules ?? []).filter((x): x is Rule => x !== null);
  const action = p.spec.action ?? 'ALLOW';
  if (action === 'DENY') return rules.some((rule) => (rule.from ?? []).some((f) => (f.source?.notRequestPrincipals?.length ?? 0) > 0));
  if (action === 'ALLOW') {
    return rules.length > 0 && rules.every((rule) => (rule.from ?? []).length > 0 && (rule.from ?? []).every((f) => (f.source?.requestPrincipals?.length ?? 0) > 0));
  }
  return false;
}

function usesRequestAuth(rule: Rule): boolean {
  for (const f of rule.from ?? []) {
    const s = f.source;
    if ((s?.requestPrincipals?.length ?? 0) > 0 || (s?.notRequestPrincipals?.length ?? 0) > 0) return true;
  }
  return (rule.when ?? []).some((c) => c.key.startsWith('request.auth.') && (c.values?.length ?? 0) > 0);
}

const PAIRS: readonly [string, string][] = [
  ['principals', 'notPrincipals'], ['requestPrincipals', 'notRequestPrincipals'], ['namespaces', 'notNamespaces'],
  ['serviceAccounts', 'notServiceAccounts'], ['trustDomains', 'notTrustDomains'], ['ipBlocks', 'notIpBlocks'],
  ['remoteIpBlocks', 'notRemoteIpBlocks'], ['hosts', 'notHosts'], ['ports', 'notPorts'], ['methods', 'notMethods'],
  ['paths', 'notPaths'],
];

function neverMatches(rule: Rule): string[] {
  const out: string[] = [];
  const both = (o: Record<string, readonly string[] | undefined>, where: string): void => {
    for (const [pos, neg] of PAIRS) {
      const p = o[pos];
      const n = o[neg];
      if (p === undefined || n === undefined) continue;
      if (n.includes('*') || (p.length > 0 && p.every((v) => n.includes(v)))) out.push(`${where}.${pos} is entirely excluded by ${where}.${neg}`);
    }
  };
  const froms = rule.from ?? [];
  const tos = rule.to ?? [];
  const deadFroms: number[] = [];
  froms.forEach((f, i) => {
    const before = out.length;
    if (f.source !== undefined) both(f.source as Record<string, readonly string[] | undefined>, `from[${i}].source`);
    if (out.length > before) deadFroms.push(i);
  });
  tos.forEach((t, i) => {
    const op = t.operation as Operation | undefined;
    if (op === undefined) return;
    both(op as Record<string, readonly string[] | undefined>, `to[${i}].operation`);
    const lower = (op.methods ?? []).filter((m) => m !== '*' && m !== m.toUpperCase());
    // Envoy rejects requests whose method is not upper-case before authorization (400), so these never match.
    if (lower.length > 0 && lower.length === op.methods?.length) out.push(`to[${i}].operation.methods ${JSON.stringify(lower)} are not upper-case; methods compare case-sensitively`);
  });
  (rule.when ?? []).forEach((c, i) => {
    if (c.values !== undefined && c.notValues !== undefined && c.values.length > 0 && c.values.every((v) => c.notValues!.includes(v))) {
      out.push(`when[${i}] ${c.key}: every value is also in notValues`);
    }
    if (c.key.startsWith('experimental.envoy.filters.') && (c.values?.length ?? 0) > 0) {
      out.push(`when[${i}] ${c.key}: Envoy filter metadata does not exist in Rampart`);
    }
  });
  return out;
}

/** A DENY rule whose constraints are all implied by the ALLOW rule, in a DENY policy covering the ALLOW's workloads. */
function shadowingDeny(allow: AuthorizationPolicy, rule: Rule, resources: readonly SecurityResource[], root: string): string | undefined {
  for (const d of resources) {
    if (d.kind !== 'AuthorizationPolicy' || d.spec.action !== 'DENY') continue;
    if ((d.meta.annotations['istio.io/dry-run'] ?? '').toLowerCase() === 'true') continue;
    if (hasTargetRefs(d.spec) || hasTargetRefs(allow.spec)) continue;
    if (d.meta.namespace !== root && d.meta.namespace !== allow.meta.namespace) continue;
    const dl = d.spec.selector?.matchLabels ?? {};
    const al = allow.spec.selector?.matchLabels ?? {};
    if (!Object.entries(dl).every(([k, v]) => al[k] === v)) continue;
    const idx = (d.spec.rules ?? []).findIndex((dr) => dr !== null && implies(rule, dr));
    if (idx >= 0) return `${d.meta.namespace}/${d.meta.name} rule ${idx}`;
  }
  return undefined;
}

/** Every request matching `a` also matches `d` (conservative: only simple positive constraints are compared). */
function implies(a: Rule, d: Rule): boolean {
  if ((d.when?.length ?? 0) > 0) {
    for (const c of d.when ?? []) if (!(a.when ?? []).some((x) => JSON.stringify(x) === JSON.stringify(c))) return false;
  }
  const fieldsCovered = (aEntry: Record<string, readonly string[] | undefined> | undefined, dEntry: Record<string, readonly string[] | undefined>): boolean => {
    for (const [k, dv] of Object.entries(dEntry)) {
      if (dv === undefined || dv.length === 0) continue;
      if (k.startsWith('not')) return false;
      const av = aEntry?.[k];
      if (av === undefined || av.length === 0) return false;
      if (!dv.includes('*') && !av.every((v) => dv.includes(v))) return false;
    }
    return true;
  };
  const group = (aEntries: readonly (Source | Operation | undefined)[] | undefined, dEntries: readonly (Source | Operation | undefined)[] | undefined): boolean => {
    if (dEntries === undefined || dEntries.length === 0) return true;
    if (aEntries === undefined || aEntries.length === 0) return false;
    // Every alternative of the ALLOW rule must fall inside some alternative of the DENY rule.
    return aEntries.every((ae) => dEntries.some((de) => fieldsCovered(ae as Record<string, readonly string[]>, (de ?? {}) as Record<string, readonly string[]>)));
  };
  return group(a.from?.map((f) => f.source), d.from?.map((f) => f.source)) && group(a.to?.map((t) => t.operation), d.to?.map((t) => t.operation));
}
