import type { Decision } from '../policy/decision.ts';
import type { PolicyEngine } from '../policy/engine.ts';
import type { JwtVerifier } from '../policy/request-authn.ts';
import type { ExpectedDecision, SuiteCase } from './suite-file.ts';

/** Running policy test cases against an engine, and comparing two engines on the same cases. Pure. */

export interface CaseResult {
  readonly case: SuiteCase;
  readonly decision: Decision;
  /** What differs from the expectation, one line per field; empty when the case passed. */
  readonly mismatches: readonly string[];
}

export function runCases(engine: PolicyEngine, cases: readonly SuiteCase[], jwtVerifier: JwtVerifier | undefined): CaseResult[] {
  return cases.map((c) => {
    const decision = engine.decide(c.request, { trace: true, ...(c.extAuthz === undefined ? {} : { extAuthz: c.extAuthz }), ...(jwtVerifier === undefined ? {} : { jwtVerifier }) });
    return { case: c, decision, mismatches: c.expect === undefined ? [] : mismatches(c.expect, decision) };
  });
}

/** A decision in one line: `ALLOW 200 default/p rule 0`, `DENY 403 (no policy)`, `DENY refused`. */
export function decisionText(d: Pick<Decision, 'decision' | 'status' | 'connection' | 'policy' | 'rule'>): string {
  const answer = d.status === null ? (d.connection ?? 'closed') : String(d.status);
  const by = d.policy === null ? '' : ` ${d.policy}${d.rule === null ? '' : ` rule ${d.rule}`}`;
  return `${d.decision} ${answer}${by}`;
}

export function mismatches(e: ExpectedDecision, d: Decision): string[] {
  const out: string[] = [];
  const show = (v: unknown): string => (v === null ? 'none' : String(v));
  if (e.decision !== d.decision) out.push(`decision: expected ${e.decision}, got ${d.decision}`);
  if (e.status !== undefined && e.status !== d.status) out.push(`status: expected ${show(e.status)}, got ${show(d.status)}`);
  if (e.connection !== undefined && e.connection !== d.connection) out.push(`connection: expected ${e.connection}, got ${show(d.connection ?? null)}`);
  if (e.policy !== undefined && e.policy !== d.policy) out.push(`policy: expected ${show(e.policy)}, got ${show(d.policy)}`);
  if (e.rule !== undefined && e.rule !== d.rule) out.push(`rule: expected ${show(e.rule)}, got ${show(d.rule)}`);
  if (e.decidedBy !== undefined && e.decidedBy !== d.decidedBy) out.push(`decided by: expected ${e.decidedBy}, got ${d.decidedBy}`);
  if (e.reason !== undefined && !d.reason.includes(e.reason)) out.push(`reason: expected it to contain ${JSON.stringify(e.reason)}, got ${JSON.stringify(d.reason)}`);
  return out;
}

export interface DecisionChange {
  readonly case: SuiteCase;
  readonly before: Decision;
  readonly after: Decision;
  /** `widens`: denied before, allowed after; `narrows`: the reverse; `moves`: the same outcome, decided otherwise. */
  readonly kind: 'widens' | 'narrows' | 'moves';
}

/** Every case whose decision (outcome, answer, deciding policy or rule) differs between the two engines. */
export function diffCases(before: readonly CaseResult[], after: readonly CaseResult[]): DecisionChange[] {
  const changes: DecisionChange[] = [];
  before.forEach((b, i) => {
    const a = after[i]!;
    if (decisionText(b.decision) === decisionText(a.decision)) return;
    const kind = b.decision.decision === a.decision.decision ? 'moves' : a.decision.decision === 'ALLOW' ? 'widens' : 'narrows';
    changes.push({ case: b.case, before: b.decision, after: a.decision, kind });
  });
  return changes;
}
