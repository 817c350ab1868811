import { OPERATION_FIELDS, SOURCE_FIELDS, type AuthorizationAction, type AuthorizationPolicy, type Operation, type Source } from '../resources/types.ts';
import { attribute, CompileFailure, fieldAttribute, type AttributeSpec, type CompileEnv, type RequestTest } from './attributes.ts';
import type { PreparedRequest } from './request.ts';

/**
 * AuthorizationPolicy → matchers, once per policy and traffic kind, as istiod's authz builder does per push.
 */

/** One constrained attribute of a rule: `from[0].source.notPrincipals`, `when[1]`… */
export interface FieldMatcher {
  /** Where it sits in the rule, e.g. `from[0].source.principals` or `when[1]`. */
  readonly path: string;
  readonly attribute: string;
  /** Values as effective after compilation (trust-domain aliases added, uncompilable values dropped). */
  readonly values: readonly string[];
  readonly negate: boolean;
  /** True when any value matches (before negation). */
  readonly test: RequestTest;
  /** The same test as JavaScript source, for generated rule matchers (see generateMatcher). */
  readonly emit: ((consts: unknown[]) => string) | undefined;
  readonly actual: (r: PreparedRequest) => string;
}

export interface CompiledRule {
  readonly index: number;
  /** Undefined when the rule has no `from`; each entry is an AND of fields, entries are ORed. */
  readonly from: readonly (readonly FieldMatcher[])[] | undefined;
  readonly to: readonly (readonly FieldMatcher[])[] | undefined;
  readonly when: readonly FieldMatcher[];
  readonly match: RequestTest;
  /** Conditions removed on this traffic kind (HTTP-only fields on TCP for DENY/AUDIT/CUSTOM), for explanations. */
  readonly removed: readonly string[];
  /** `namespace/name` of the policy the rule belongs to. */
  readonly policyId: string;
  /** Frozen decisions made by this rule, by traffic kind and mTLS mode (filled by the engine). */
  readonly decisionSlots: (object | undefined)[];
  /** Decision reasons, built once so that deciding allocates no strings. */
  readonly allowReason: string;
  readonly denyReason: string;
}

export interface SkippedRule {
  readonly index: number;
  readonly reason: string;
}

export interface CompiledPolicy {
  readonly id: string;
  readonly name: string;
  readonly namespace: string;
  readonly action: AuthorizationAction;
  readonly provider: string | undefined;
  readonly dryRun: boolean;
  /** Set when the dry-run annotation could not be parsed (the policy is then enforced, as in Istio). */
  readonly dryRunError: string | undefined;
  readonly file: string;
  readonly line: number;
  readonly rules: readonly CompiledRule[];
  readonly skipped: readonly SkippedRule[];
  /** True when the policy has no rules at all (ALLOW: allow-nothing). */
  readonly empty: boolean;
  /** Line of a rule in its file (for explanations; computed on demand). */
  ruleLine(index: number): number;
}


/** Go's strconv.ParseBool, which Istio uses for `istio.io/dry-run`. */
function parseGoBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}

export function compilePolicy(policy: AuthorizationPolicy, forTcp: boolean, env: Omit<CompileEnv, 'policyNamespace'>): CompiledPolicy {
  const action = policy.spec.action;
  const fullEnv: CompileEnv = { ...env, policyNamespace: policy.meta.namespace };
  const rules: CompiledRule[] = [];
  const skipped: SkippedRule[] = [];
  const specRules = policy.spec.rules ?? [];
  specRules.forEach((rule, index) => {
    if (rule === null) {
      skipped.push({ index, reason: 'null rule' });
      return;
    }
    try {
      rules.push(compileRule(rule, index, `${policy.meta.namespace}/${policy.meta.name}`, action, forTcp, fullEnv));
    } catch (e) {
      if (!(e instanceof CompileFailure)) throw e;
      skipped.push({ index, reason: e.message });
    }
  });
  // Rule lines are looked up in the source tree once, on the first explanation that needs them.
  const ruleLines: number[] = [];
  let dryRun = false;
  let dryRunError: string | undefined;
  const ann = policy.meta.annotations['istio.io/dry-run'];
  if (ann !== undefined) {
    const b = parseGoBool(ann);
    if (b === undefined) dryRunError = `istio.io/dry-run: "${ann}" is not a boolean; the policy is enforced`;
    else dryRun = b;
  }
  return {
    id: `${policy.meta.namespace}/${policy.meta.name}`,
    name: policy.meta.name,
    namespace: policy.meta.namespace,
    action,
    provider: policy.spec.provider?.name,
    dryRun,
    dryRunError,
    file: policy.source.file,
    line: policy.source.line,
    rules,
    skipped,
    empty: specRules.length === 0,
    ruleLine: (i) => (ruleLines[i] ??= policy.lineOf(['spec', 'rules', i])),
  };
}

type SpecRule = NonNullable<NonNullable<AuthorizationPolicy['spec']['rules']>[number]>;

/** A field after the eager checks: which values survive; its matcher is not built yet. */
interface FieldPlan {
  /** Where the field sits, rendered as text only when the matcher is built (e.g. `from[0].source.principals`). */
  readonly where: readonly [group: 'from' | 'to' | 'when', entry: number, field: string];
  readonly attr: AttributeSpec;
  readonly values: readonly string[];
  readonly negate: boolean;
}

function buildField(p: FieldPlan): FieldMatcher {
  const c = p.attr.compile(p.values);
  // Values that cannot compile were removed while planning, so a test always exists here.
  const test = c.test ?? (() => false);
  const [group, entry, field] = p.where;
  const path = group === 'from' ? `from[${entry}].source.${field}` : group === 'to' ? `to[${entry}].operation.${field}` : `when[${entry}] ${field}`;
  return { path, attribute: p.attr.attribute, values: p.values, negate: p.negate, test, emit: c.emit, actual: p.attr.actual };
}

interface RulePlans {
  readonly from: readonly (readonly FieldPlan[])[] | undefined;
  readonly to: readonly (readonly FieldPlan[])[] | undefined;
  readonly when: readonly FieldPlan[];
}

/**
 * A rule whose shape (which rules, fields and values survive for this traffic kind) is decided at compile time and
 * whose matchers are built on first use: a large mesh pays only for the policies its workloads actually meet.
 */
class PlannedRule implements CompiledRule {
  readonly index: number;
  readonly removed: readonly string[];
  readonly policyId: string;
  readonly decisionSlots: (object | undefined)[] = [];
  private readonly plans: RulePlans;
  private built: Pick<CompiledRule, 'from' | 'to' | 'when'> | undefined;
  private reasons: readonly [string, string] | undefined;

  constructor(index: number, policyId: string, plans: RulePlans, removed: readonly string[]) {
    this.index = index;
    this.policyId = policyId;
    this.plans = plans;
    this.removed = removed;
  }

  private build(): Pick<CompiledRule, 'from' | 'to' | 'when'> {
    return (this.built ??= {
      from: this.plans.from?.map((e) => e.map(buildField)),
      to: this.plans.to?.map((e) => e.map(buildField)),
      when: this.plans.when.map(buildField),
    });
  }

  get from(): CompiledRule['from'] {
    return this.build().from;
  }

  get to(): CompiledRule['to'] {
    return this.build().to;
  }

  get when(): CompiledRule['when'] {
    return this.build().when;
  }

  private texts(): readonly [string, string] {
    return (this.reasons ??= [`allowed by ALLOW policy ${this.policyId} rule ${this.index}`, `denied by DENY policy ${this.policyId} rule ${this.index}`]);
  }

  get allowReason(): string {
    return this.texts()[0];
  }

  get denyReason(): string {
    return this.texts()[1];
  }

  /** Replaced by the generated function on first use. */
  match: RequestTest = (r) => {
    const b = this.build();
    const generated = generateMatcher(b.from, b.to, b.when);
    this.match = generated;
    return generated(r);
  };
}

function compileRule(
  rule: SpecRule,
  index: number,
  policyId: string,
  action: AuthorizationAction,
  forTcp: boolean,
  env: CompileEnv,
): CompiledRule {
  let removed: string[] | undefined;
  const plan = (where: FieldPlan['where'], attr: AttributeSpec, values: readonly string[], negate: boolean): FieldPlan | undefined => {
    const kept = planValues(where, attr, values, action, forTcp, env, (text) => (removed ??= []).push(text));
    return kept === undefined ? undefined : { where, attr, values: kept, negate };
  };
  const from = rule.from?.map((entry, i) => {
    const fields: FieldPlan[] = [];
    const src: Source = entry.source ?? {};
    for (const f of SOURCE_FIELDS) {
      const vals = src[f];
      if (vals === undefined || vals.length === 0) continue;
      const m = plan(['from', i, f], fieldAttribute(f, env), vals, f.startsWith('not'));
      if (m !== undefined) fields.push(m);
    }
    return fields;
  });
  const to = rule.to?.map((entry, i) => {
    const fields: FieldPlan[] = [];
    const op: Operation = entry.operation ?? {};
    for (const f of OPERATION_FIELDS) {
      const vals = op[f];
      if (vals === undefined || vals.length === 0) continue;
      const m = plan(['to', i, f], fieldAttribute(f, env), vals, f.startsWith('not'));
      if (m !== undefined) fields.push(m);
    }
    return fields;
  });
  const when: FieldPlan[] = [];
  (rule.when ?? []).forEach((c, i) => {
    const attr = attribute(c.key, env);
    if (c.values !== undefined && c.values.length > 0) {
      const m = plan(['when', i, `${c.key} values`], attr, c.values, false);
      if (m !== undefined) when.push(m);
    }
    if (c.notValues !== undefined && c.notValues.length > 0) {
      const m = plan(['when', i, `${c.key} notValues`], attr, c.notValues, true);
      if (m !== undefined) when.push(m);
    }
  });
  return new PlannedRule(index, policyId, { from, to, when }, removed ?? NOTHING_REMOVED);
}

/**
 * Decides which values of one field survive. On a failure (an HTTP-only attribute on TCP, a value that cannot
 * compile), istiod drops the whole rule for ALLOW (a smaller allow) but only the failing values for DENY, AUDIT and
 * CUSTOM (a wider deny): model.go rule.checkError. A field left with no values is no constraint at all.
 */
const NOTHING_REMOVED: readonly string[] = Object.freeze([]);

function planValues(
  where: FieldPlan['where'],
  attr: AttributeSpec,
  rawValues: readonly string[],
  action: AuthorizationAction,
  forTcp: boolean,
  env: CompileEnv,
  remove: (text: string) => void,
): readonly string[] | undefined {
  const path = (): string => (where[0] === 'when' ? `when[${where[1]}] ${where[2]}` : `${where[0]}[${where[1]}].${where[0] === 'from' ? 'source' : 'operation'}.${where[2]}`);
  let values: readonly string[] = rawValues;
  if (attr.attribute === 'source.principal') values = env.bundle.replaceAliases(values);
  else if (attr.attribute === 'source.trustDomain') values = env.bundle.expandDomains(values);
  const fail = (reason: string): undefined => {
    if (action === 'ALLOW') throw new CompileFailure(`${path()}: ${reason}`);
    remove(`${path()} (${reason})`);
    return undefined;
  };
  if (forTcp && attr.httpOnly) return fail(`${attr.attribute} is HTTP-only and this is TCP traffic`);
  if (attr.check === undefined) return values;
  const checked = attr.check(values);
  for (const f of checked.failures) fail(f);
  return checked.kept.length === 0 ? undefined : checked.kept;
}

/**
 * One JavaScript function per rule, with every literal inlined: a tree of small closures shares its call sites
 * across all rules, which makes them megamorphic and several times slower. Policy text only enters the source
 * through JSON.stringify (see emitStringSet); anything without an emitter is called through the constants array.
 */
export function generateMatcher(
  from: readonly (readonly FieldMatcher[])[] | undefined,
  to: readonly (readonly FieldMatcher[])[] | undefined,
  when: readonly FieldMatcher[],
): RequestTest {
  const consts: unknown[] = [];
  const field = (f: FieldMatcher): string => {
    let e: string;
    if (f.emit !== undefined) e = f.emit(consts);
    else {
      consts.push(f.test);
      e = `c[${consts.length - 1}](r)`;
    }
    return f.negate ? `!${e}` : e;
  };
  const and = (fields: readonly FieldMatcher[]): string => (fields.length === 0 ? 'true' : fields.map(field).join(' && '));
  const parts: string[] = [];
  if (from !== undefined && from.length > 0) parts.push(`(${from.map((f) => `(${and(f)})`).join(' || ')})`);
  if (to !== undefined && to.length > 0) parts.push(`(${to.map((t) => `(${and(t)})`).join(' || ')})`);
  if (when.length > 0) parts.push(`(${and(when)})`);
  const body = `let v; return ${parts.length === 0 ? 'true' : parts.join(' && ')};`;
  let factory = factories.get(body);
  if (factory === undefined) {
    factory = new Function('c', `'use strict'; return function match(r) { ${body} };`) as (c: unknown[]) => RequestTest;
    if (factories.size < 10_000) factories.set(body, factory);
  }
  return factory(consts);
}

/**
 * Generated sources already compiled: identical rules (common in generated meshes) share one factory. Holds only
 * source text and factories, and is bounded.
 */
const factories = new Map<string, (c: unknown[]) => RequestTest>();

/** Why a rule did not match: the first failing field of each alternative, as human text. */
export function explainMismatch(rule: CompiledRule, r: PreparedRequest): string[] {
  const out: string[] = [];
  const fieldText = (f: FieldMatcher): string => {
    const vals = `[${f.values.map((v) => JSON.stringify(v)).join(', ')}]`;
    return f.negate ? `${f.path}: ${f.actual(r)} matches one of ${vals}` : `${f.path}: ${f.actual(r)} not in ${vals}`;
  };
  const firstFail = (fields: readonly FieldMatcher[]): FieldMatcher | undefined => fields.find((f) => f.test(r) === f.negate);
  const group = (entries: readonly (readonly FieldMatcher[])[] | undefined): void => {
    if (entries === undefined || entries.length === 0) return;
    const fails = entries.map(firstFail);
    if (fails.some((f) => f === undefined)) return; // one alternative matched
    for (const f of fails) out.push(fieldText(f!));
  };
  group(rule.from);
  group(rule.to);
  for (const w of rule.when) if (w.test(r) === w.negate) out.push(fieldText(w));
  return out;
}
