import { DEFAULT_MESH, type MeshSettings } from '../resources/mesh-config.ts';
import type { AuthorizationPolicy, RequestAuthentication, SecurityResource } from '../resources/types.ts';
import type { AttributeSpec } from './attributes.ts';
import { compilePolicy, explainMismatch, type CompiledPolicy, type CompiledRule } from './authz-compile.ts';
import type { Decision, DryRunResult, PolicyRef, PolicyTrace, RuleTrace, TraceStep } from './decision.ts';
import { resolveMtls, type MtlsResolution } from './peer-authn.ts';
import { authenticate, collectJwtRules, type JwtRuleRef, type JwtVerifier } from './request-authn.ts';
import { prepareAuth, prepareRequest, type CheckRequest, type PreparedAuth, type PreparedRequest } from './request.ts';
import { ResourceIndex, selectScoped, type Workload } from './selection.ts';
import { TrustDomainBundle } from './trust-domain.ts';

export interface DecideOptions {
  /** Build the explanation trace (costs allocations; off on the hot path). */
  readonly trace?: boolean;
  /** What a CUSTOM provider answers; unknown means the decision fails closed. */
  readonly extAuthz?: 'allow' | 'deny';
  /** Verifies raw tokens (jwt/); without it a raw token fails closed with 401. */
  readonly jwtVerifier?: JwtVerifier;
}

interface CompiledPair {
  http?: CompiledPolicy;
  tcp?: CompiledPolicy;
}

const EMPTY: readonly never[] = Object.freeze([]);

/**
 * The policy engine: a snapshot of validated resources and mesh settings, decided against per request.
 * Immutable; a new configuration means a new engine. Pure: no I/O, no clock.
 */
export class PolicyEngine {
  readonly mesh: MeshSettings;
  readonly resources: readonly SecurityResource[];
  private readonly index: ResourceIndex<SecurityResource>;
  private readonly bundle: TrustDomainBundle;
  private readonly compiled = new WeakMap<AuthorizationPolicy, CompiledPair>();
  private readonly attributeSpecs = new Map<string, AttributeSpec>();
  private readonly workloads = new Map<string, WorkloadPolicy>();
  /** Views by frozen label set: a sidecar asks for the same workload every time, with the same frozen labels. */
  private readonly byFrozenLabels = new WeakMap<object, { namespace: string; policy: WorkloadPolicy }>();

  constructor(resources: readonly SecurityResource[], mesh: MeshSettings = DEFAULT_MESH) {
    this.mesh = mesh;
    this.resources = resources;
    this.index = new ResourceIndex(resources);
    this.bundle = new TrustDomainBundle(mesh.trustDomain, mesh.trustDomainAliases);
  }

  /** The compiled view for one workload, built once and cached. */
  workload(namespace: string, labels: Readonly<Record<string, string>> = {}): WorkloadPolicy {
    // Only frozen label sets are remembered by identity: they cannot have changed since.
    const known = this.byFrozenLabels.get(labels);
    if (known !== undefined && known.namespace === namespace) return known.policy;
    const key = workloadKey(namespace, labels);
    let wp = this.workloads.get(key);
    if (wp === undefined) {
      wp = this.buildWorkload({ namespace, labels });
      this.workloads.set(key, wp);
    }
    if (Object.isFrozen(labels)) this.byFrozenLabels.set(labels, { namespace, policy: wp });
    return wp;
  }

  prepare(req: CheckRequest): PreparedRequest {
    return prepareRequest(req, this.mesh.pathNormalization);
  }

  decide(req: CheckRequest | PreparedRequest, opts: DecideOptions = {}): Decision {
    const r = 'raw' in req ? (req as PreparedRequest) : this.prepare(req as CheckRequest);
    return this.workload(r.namespace, r.labels).decide(r, opts);
  }

  /** Compiled form of one policy for HTTP or TCP traffic; shared by every workload it applies to. */
  compiledPolicy(p: AuthorizationPolicy, forTcp: boolean): CompiledPolicy {
    let pair = this.compiled.get(p);
    if (pair === undefined) this.compiled.set(p, (pair = {}));
    const key = forTcp ? 'tcp' : 'http';
    return (pair[key] ??= compilePolicy(p, forTcp, { bundle: this.bundle, attributes: this.attributeSpecs }));
  }

  private buildWorkload(w: Workload): WorkloadPolicy {
    const root = this.mesh.rootNamespace;
    const authz = selectScoped(this.index, root, w, 'AuthorizationPolicy') as AuthorizationPolicy[];
    const authn = selectScoped(this.index, root, w, 'RequestAuthentication') as RequestAuthentication[];
    const mtls = resolveMtls(this.index, root, w);
    return new WorkloadPolicy(this, w, authz, authn, mtls);
  }
}

function workloadKey(namespace: string, labels: Readonly<Record<string, string>>): string {
  let key = namespace;
  const keys = Object.keys(labels);
  if (keys.length > 1) keys.sort();
  for (const k of keys) key += `\u0000${k}=${labels[k]}`;
  return key;
}

/** Policies of one action, compiled for one traffic kind. */
interface Layer {
  readonly enforced: readonly CompiledPolicy[];
  readonly dryRun: readonly CompiledPolicy[];
}

function layer(policies: readonly CompiledPolicy[]): Layer {
  return { enforced: policies.filter((p) => !p.dryRun), dryRun: policies.filter((p) => p.dryRun) };
}

interface Layers {
  readonly custom: Layer;
  readonly deny: Layer;
  readonly allow: Layer;
  readonly audit: Layer;
}

function firstMatchingRule(policies: readonly CompiledPolicy[], r: PreparedRequest): CompiledRule | undefined {
  for (let i = 0; i < policies.length; i++) {
    const rules = policies[i]!.rules;
    for (let j = 0; j < rules.length; j++) if (rules[j]!.match(r)) return rules[j]!;
  }
  return undefined;
}

const MODE_INDEX = { STRICT: 0, PERMISSIVE: 1, DISABLE: 2 } as const;

function firstMatch(policies: readonly CompiledPolicy[], r: PreparedRequest): { policy: CompiledPolicy; rule: CompiledRule } | undefined {
  for (let i = 0; i < policies.length; i++) {
    const p = policies[i]!;
    const rules = p.rules;
    for (let j = 0; j < rules.length; j++) if (rules[j]!.match(r)) return { policy: p, rule: rules[j]! };
  }
  return undefined;
}

/** Everything that applies to one workload, compiled, and its decision procedure. */
export class WorkloadPolicy {
  readonly workload: Workload;
  readonly authorizationPolicies: readonly AuthorizationPolicy[];
  readonly requestAuthentications: readonly RequestAuthentication[];
  readonly mtls: MtlsResolution;
  readonly jwtRules: readonly JwtRuleRef[];
  private readonly http: Layers;
  private tcpLayers: Layers | undefined;
  private readonly buildLayers: (forTcp: boolean) => Layers;
  private readonly mesh: MeshSettings;

  constructor(
    engine: PolicyEngine,
    workload: Workload,
    authz: readonly AuthorizationPolicy[],
    authn: readonly RequestAuthentication[],
    mtls: MtlsResolution,
  ) {
    this.workload = workload;
    this.authorizationPolicies = authz;
    this.requestAuthentications = authn;
    this.mtls = mtls;
    this.mesh = engine.mesh;
    this.jwtRules = collectJwtRules(authn);
    const build = (forTcp: boolean): Layers => {
      const by = (a: string): CompiledPolicy[] => authz.filter((p) => p.spec.action === a).map((p) => engine.compiledPolicy(p, forTcp));
      return { custom: layer(by('CUSTOM')), deny: layer(by('DENY')), allow: layer(by('ALLOW')), audit: layer(by('AUDIT')) };
    };
    this.buildLayers = build;
    this.http = build(false);
  }

  decide(req: PreparedRequest, opts: DecideOptions = {}): Decision {
    const tracing = opts.trace === true;
    const trace: TraceStep[] | undefined = tracing ? [] : undefined;
    const mode = this.mtls.modeFor(req.destPort);
    if (trace !== undefined) this.traceSelection(trace, req);

    // mTLS: STRICT refuses plaintext at the connection; DISABLE never terminates mTLS, so no peer identity exists.
    let r = req;
    if (mode === 'STRICT' && r.peer === undefined) {
      trace?.push({ step: 'mtls', message: `port ${portText(r)}: STRICT${this.mtlsOrigin(r)}; plaintext connection refused` });
      return this.result(trace, mode, {
        decision: 'DENY', status: null, connection: 'refused', decidedBy: 'mtls',
        reason: 'plaintext connection refused: mTLS mode is STRICT',
      });
    }
    if (mode === 'DISABLE' && r.peer !== undefined) {
      r = { ...r, peer: undefined };
      trace?.push({ step: 'mtls', message: `port ${portText(r)}: DISABLE${this.mtlsOrigin(r)}; mTLS is not terminated, so the request has no peer identity` });
    } else {
      trace?.push({
        step: 'mtls',
        message: `port ${portText(r)}: ${mode}${this.mtlsOrigin(r)}; ${r.peer === undefined ? 'plaintext, no peer identity' : `peer ${r.peer.slice(9)}`}`,
      });
    }
    if (r.malformed !== undefined) {
      trace?.push({ step: 'request', message: `rejected before authorization (${r.malformed.status}): ${r.malformed.reason}` });
      return this.result(trace, mode, { decision: 'DENY', status: r.malformed.status, decidedBy: 'request', reason: `malformed request: ${r.malformed.reason}` });
    }
    if (r.http !== undefined && trace !== undefined) {
      const raw = r.raw.http?.path ?? '';
      const shown = r.http.path + r.http.query;
      trace.push({ step: 'request', message: `${r.http.method} ${shown}${shown !== raw ? ` (normalized from ${raw}, ${this.mesh.pathNormalization})` : ''}` });
    }

    // RequestAuthentication.
    if (r.http !== undefined && (this.jwtRules.length > 0 || r.raw.auth !== undefined)) {
      const outcome = authenticate(this.jwtRules, r, opts.jwtVerifier);
      trace?.push({ step: 'jwt', message: outcome.message });
      if (outcome.kind === 'rejected') {
        return this.result(trace, mode, { decision: 'DENY', status: outcome.status, decidedBy: 'jwt', reason: outcome.reason });
      }
      if (outcome.kind === 'verified') r = { ...r, auth: cachedAuth(outcome.jwt, outcome.spaceDelimited) };
    }

    const layers = r.http === undefined ? this.tcp() : this.http;
    const audit = this.auditOf(layers, r);
    const dryRun = layers.deny.dryRun.length + layers.allow.dryRun.length === 0 ? (EMPTY as readonly DryRunResult[]) : this.dryRunOf(layers, r);

    // CUSTOM, then DENY, then ALLOW (pilot/pkg/security/authz/builder: filters in that order).
    let customProvider: string | null = null;
    if (layers.custom.enforced.length > 0 || (trace !== undefined && layers.custom.dryRun.length > 0)) {
      const all = [...layers.custom.enforced, ...layers.custom.dryRun];
      trace?.push({ step: 'custom', message: `${all.length} CUSTOM polic${all.length === 1 ? 'y' : 'ies'}`, policies: this.tracePolicies(all, r) });
      const hit = firstMatch(all, r);
      const providers = new Set(layers.custom.enforced.map((p) => p.provider));
      if (providers.size > 1) {
        return this.result(trace, mode, {
          decision: 'DENY', status: 403, decidedBy: 'custom', audit, dryRun,
          reason: `more than one CUSTOM provider applies to this workload (${[...providers].join(', ')}); Istio supports one, failing closed`,
        });
      }
      if (hit !== undefined) {
        const name = hit.policy.provider ?? '';
        customProvider = name;
        const ref = { policy: hit.policy.id, rule: hit.rule.index };
        if (!this.mesh.extensionProviders.some((p) => p.name === name)) {
          return this.result(trace, mode, {
            decision: 'DENY', status: 403, decidedBy: 'custom', ...ref, audit, dryRun, customProvider,
            reason: `CUSTOM provider "${name}" is not defined in meshConfig.extensionProviders: denied (fail closed, as istiod does)`,
          });
        }
        if (opts.extAuthz === 'deny') {
          return this.result(trace, mode, { decision: 'DENY', status: 403, decidedBy: 'custom', ...ref, audit, dryRun, customProvider, reason: `denied by CUSTOM provider "${name}"` });
        }
        if (opts.extAuthz !== 'allow') {
          return this.result(trace, mode, {
            decision: 'DENY', status: 403, decidedBy: 'custom', ...ref, audit, dryRun, customProvider,
            reason: `delegated to CUSTOM provider "${name}", whose answer is not known here (pass extAuthz allow|deny); failing closed`,
          });
        }
        trace?.push({ step: 'custom', message: `provider "${name}" allowed; DENY and ALLOW policies still apply` });
      }
    }

    // The common case allocates nothing: no trace, audit, dry-run or delegation, so the outcome depends only on the
    // deciding rule (or the default), the traffic kind and the mTLS mode, and a frozen decision is reused.
    if (trace === undefined && audit.length === 0 && dryRun.length === 0 && customProvider === null) {
      const slot = (r.http === undefined ? 3 : 0) + MODE_INDEX[mode];
      const denyRule = firstMatchingRule(layers.deny.enforced, r);
      if (denyRule !== undefined) return this.sharedDecision(denyRule.decisionSlots, slot, mode, r, 'deny', denyRule);
      if (layers.allow.enforced.length === 0) return this.sharedDecision(this.defaultSlots, slot, mode, r, 'default', undefined);
      const allowRule = firstMatchingRule(layers.allow.enforced, r);
      if (allowRule !== undefined) return this.sharedDecision(allowRule.decisionSlots, slot, mode, r, 'allow', allowRule);
      return this.sharedDecision(this.noMatchSlots, slot, mode, r, 'nomatch', undefined);
    }

    if (trace !== undefined && layers.deny.enforced.length + layers.deny.dryRun.length > 0) {
      trace.push({ step: 'deny', message: `${layers.deny.enforced.length} DENY polic${layers.deny.enforced.length === 1 ? 'y' : 'ies'}`, policies: this.tracePolicies([...layers.deny.enforced, ...layers.deny.dryRun], r) });
    }
    const denied = firstMatch(layers.deny.enforced, r);
    if (denied !== undefined) {
      return this.result(trace, mode, {
        decision: 'DENY', status: r.http === undefined ? null : 403, ...(r.http === undefined ? { connection: 'reset' as const } : {}),
        decidedBy: 'deny', policy: denied.policy.id, rule: denied.rule.index, audit, dryRun, customProvider,
        reason: denied.rule.denyReason,
      });
    }

    const allow = layers.allow.enforced;
    if (trace !== undefined && allow.length + layers.allow.dryRun.length > 0) {
      trace.push({ step: 'allow', message: `${allow.length} ALLOW polic${allow.length === 1 ? 'y' : 'ies'}`, policies: this.tracePolicies([...allow, ...layers.allow.dryRun], r) });
    }
    if (allow.length === 0) {
      return this.result(trace, mode, { decision: 'ALLOW', status: 200, decidedBy: 'default', audit, dryRun, customProvider, reason: 'no ALLOW policy applies to the workload' });
    }
    const allowed = firstMatch(allow, r);
    if (allowed !== undefined) {
      return this.result(trace, mode, {
        decision: 'ALLOW', status: 200, decidedBy: 'allow', policy: allowed.policy.id, rule: allowed.rule.index, audit, dryRun, customProvider,
        reason: allowed.rule.allowReason,
      });
    }
    return this.result(trace, mode, {
      decision: 'DENY', status: r.http === undefined ? null : 403, ...(r.http === undefined ? { connection: 'reset' as const } : {}),
      decidedBy: 'allow', audit, dryRun, customProvider,
      reason: `no rule of the ${allow.length} ALLOW polic${allow.length === 1 ? 'y' : 'ies'} matched`,
    });
  }

  /** The enforced CUSTOM, DENY and ALLOW policies compiled for one traffic kind (for the access matrix). */
  enforcedPolicies(kind: 'http' | 'tcp'): { readonly custom: readonly CompiledPolicy[]; readonly deny: readonly CompiledPolicy[]; readonly allow: readonly CompiledPolicy[] } {
    const l = kind === 'tcp' ? this.tcp() : this.http;
    return { custom: l.custom.enforced, deny: l.deny.enforced, allow: l.allow.enforced };
  }

  private readonly defaultSlots: (object | undefined)[] = [];
  private readonly noMatchSlots: (object | undefined)[] = [];

  private sharedDecision(
    slots: (object | undefined)[],
    slot: number,
    mode: Decision['mtlsMode'],
    r: PreparedRequest,
    outcome: 'deny' | 'default' | 'allow' | 'nomatch',
    rule: CompiledRule | undefined,
  ): Decision {
    const hit = slots[slot];
    if (hit !== undefined) return hit as Decision;
    const tcp = r.http === undefined;
    const layers = tcp ? this.tcp() : this.http;
    const allowCount = layers.allow.enforced.length;
    let made: Decision;
    switch (outcome) {
      case 'deny':
        made = this.make(undefined, mode, {
          decision: 'DENY', status: tcp ? null : 403, ...(tcp ? { connection: 'reset' as const } : {}),
          decidedBy: 'deny', policy: rule!.policyId, rule: rule!.index, reason: rule!.denyReason,
        });
        break;
      case 'allow':
        made = this.make(undefined, mode, {
          decision: 'ALLOW', status: 200, decidedBy: 'allow', policy: rule!.policyId, rule: rule!.index, reason: rule!.allowReason,
        });
        break;
      case 'default':
        made = this.make(undefined, mode, { decision: 'ALLOW', status: 200, decidedBy: 'default', reason: 'no ALLOW policy applies to the workload' });
        break;
      default:
        made = this.make(undefined, mode, {
          decision: 'DENY', status: tcp ? null : 403, ...(tcp ? { connection: 'reset' as const } : {}), decidedBy: 'allow',
          reason: `no rule of the ${allowCount} ALLOW polic${allowCount === 1 ? 'y' : 'ies'} matched`,
        });
    }
    Object.freeze(made);
    slots[slot] = made;
    return made;
  }

  /** TCP forms are compiled on the first TCP connection: most workloads only ever see HTTP. */
  private tcp(): Layers {
    return (this.tcpLayers ??= this.buildLayers(true));
  }

  private result(
    trace: TraceStep[] | undefined,
    mtlsMode: Decision['mtlsMode'],
    d: Pick<Decision, 'decision' | 'status' | 'reason' | 'decidedBy'> & Partial<Omit<Decision, 'decision' | 'status' | 'reason' | 'decidedBy'>>,
  ): Decision {
    if (trace !== undefined) {
      if (d.audit !== undefined && d.audit.length > 0) trace.push({ step: 'audit', message: `marked for audit by ${d.audit.map((a) => `${a.policy} rule ${a.rule}`).join(', ')}` });
      for (const dr of d.dryRun ?? []) {
        trace.push({ step: 'dry-run', message: `dry-run ${dr.action} policies would have ${dr.result} the request${dr.policy === null ? '' : ` (${dr.policy} rule ${dr.rule})`}` });
      }
    }
    return this.make(trace, mtlsMode, d);
  }

  private make(
    trace: TraceStep[] | undefined,
    mtlsMode: Decision['mtlsMode'],
    d: Pick<Decision, 'decision' | 'status' | 'reason' | 'decidedBy'> & Partial<Omit<Decision, 'decision' | 'status' | 'reason' | 'decidedBy'>>,
  ): Decision {
    // One object shape for every decision (connection is always present, undefined when not applicable), so the
    // call sites reading decisions stay monomorphic.
    return {
      decision: d.decision,
      status: d.status,
      connection: d.connection,
      reason: d.reason,
      policy: d.policy ?? null,
      rule: d.rule ?? null,
      decidedBy: d.decidedBy,
      mtlsMode,
      audit: d.audit ?? EMPTY,
      dryRun: d.dryRun ?? EMPTY,
      customProvider: d.customProvider ?? null,
      trace: trace ?? EMPTY,
    };
  }

  private auditOf(layers: Layers, r: PreparedRequest): readonly PolicyRef[] {
    const policies = layers.audit.enforced;
    if (policies.length === 0) return EMPTY;
    const out: PolicyRef[] = [];
    for (const p of policies) {
      const rule = p.rules.find((x) => x.match(r));
      if (rule !== undefined) out.push({ policy: p.id, rule: rule.index });
    }
    return out;
  }

  /** Shadow evaluation of dry-run policies, as Envoy's shadow rules report it. */
  private dryRunOf(layers: Layers, r: PreparedRequest): DryRunResult[] {
    const out: DryRunResult[] = [];
    if (layers.deny.dryRun.length > 0) {
      const hit = firstMatch(layers.deny.dryRun, r);
      out.push({ action: 'DENY', result: hit === undefined ? 'allowed' : 'denied', policy: hit?.policy.id ?? null, rule: hit?.rule.index ?? null });
    }
    if (layers.allow.dryRun.length > 0) {
      const hit = firstMatch(layers.allow.dryRun, r);
      out.push({ action: 'ALLOW', result: hit === undefined ? 'denied' : 'allowed', policy: hit?.policy.id ?? null, rule: hit?.rule.index ?? null });
    }
    return out;
  }

  private mtlsOrigin(r: PreparedRequest): string {
    const parts: string[] = [];
    if (r.destPort !== undefined && this.mtls.portModes.has(r.destPort)) parts.push(`portLevelMtls[${r.destPort}]`);
    for (const l of this.mtls.levels) parts.push(`${l.level} ${l.policy}=${l.mode}`);
    if (parts.length === 0) return ' (no PeerAuthentication: default)';
    return ` (${parts.join(', ')})`;
  }

  private traceSelection(trace: TraceStep[], r: PreparedRequest): void {
    const labels = Object.entries(this.workload.labels).map(([k, v]) => `${k}=${v}`).join(',');
    const names = (list: readonly { meta: { namespace: string; name: string } }[]): string =>
      list.length === 0 ? 'none' : list.map((p) => `${p.meta.namespace}/${p.meta.name}`).join(', ');
    trace.push({
      step: 'select',
      message: `workload ${this.workload.namespace}${labels === '' ? '' : ` {${labels}}`}, ${r.http === undefined ? 'TCP' : 'HTTP'}: ` +
        `AuthorizationPolicies: ${names(this.authorizationPolicies)}; RequestAuthentications: ${names(this.requestAuthentications)}` +
        (this.mtls.ignoredRootSelectors.length > 0 ? `; ignored root-namespace selector PeerAuthentications: ${this.mtls.ignoredRootSelectors.join(', ')}` : ''),
    });
  }

  private tracePolicies(policies: readonly CompiledPolicy[], r: PreparedRequest): PolicyTrace[] {
    return policies.map((p) => {
      const rules: RuleTrace[] = p.rules.map((rule) => {
        // The generated matcher decides; the field-by-field closures explain. Both are computed so that an
        // explanation can never contradict the decision (tests assert matched === no mismatches).
        const matched = rule.match(r);
        const mismatches = explainMismatch(rule, r);
        return { rule: rule.index, line: p.ruleLine(rule.index), matched, mismatches: matched && mismatches.length === 0 ? EMPTY : mismatches, removed: rule.removed };
      });
      const notes: string[] = [];
      if (p.empty) notes.push(p.action === 'ALLOW' ? 'no rules: allow-nothing (matches no request)' : 'no rules: matches no request');
      else if (p.rules.length === 0) notes.push('no rule survives for this traffic kind: matches no request');
      if (p.dryRun) notes.push('dry-run: evaluated, never enforced');
      if (p.dryRunError !== undefined) notes.push(p.dryRunError);
      return {
        policy: p.id, action: p.action, file: p.file, line: p.line, matched: rules.some((x) => x.matched), dryRun: p.dryRun, rules,
        skipped: p.skipped.map((s) => ({ rule: s.index, reason: s.reason })), notes,
      };
    });
  }
}

function portText(r: PreparedRequest): string {
  return r.destPort === undefined ? '(unknown)' : String(r.destPort);
}

const authCache = new WeakMap<object, { set: ReadonlySet<string>; auth: PreparedAuth }>();

/** request.auth.* is derived once per verified token and rule set. */
function cachedAuth(jwt: Parameters<typeof prepareAuth>[0], spaceDelimited: ReadonlySet<string>): PreparedAuth {
  const hit = authCache.get(jwt);
  if (hit !== undefined && sameSet(hit.set, spaceDelimited)) return hit.auth;
  const auth = prepareAuth(jwt, spaceDelimited);
  authCache.set(jwt, { set: spaceDelimited, auth });
  return auth;
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}
