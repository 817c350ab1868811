import type { MeshFile } from '../resources/mesh-file.ts';
import type { CompiledPolicy, CompiledRule, FieldMatcher } from './authz-compile.ts';
import type { PolicyEngine, WorkloadPolicy } from './engine.ts';
import { prepareRequest, type CheckRequest, type PreparedRequest } from './request.ts';

/**
 * Who may call what, computed from the compiled policies rather than by trying requests: each rule is evaluated as
 * far as the caller's identity, the port and the absence of a token decide it, and what is left over (paths,
 * methods, headers, claims, addresses…) becomes the cell's condition. A cell is `allowed` when no request of that
 * caller to that port can be denied by authorization, `denied` when none can be allowed, and `conditional`
 * otherwise, with the condition written out and kept as a test (`holds`) that agrees with `WorkloadPolicy.decide`.
 */

/** A caller, as the destination's sidecar would see it. */
export interface AccessSource {
  /** Shown in the matrix: `default/sleep`, `no mTLS`, `any JWT`. */
  readonly id: string;
  /** The verified peer, as policies write it (`cluster.local/ns/default/sa/sleep`); absent for a plaintext caller. */
  readonly principal?: string;
  /** A caller with a valid token from an issuer the destination accepts, whose peer identity is not known. */
  readonly jwt?: boolean;
}

export interface AccessDestination {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly ports: readonly { readonly port: number; readonly tcp: boolean }[];
}

/** What is left of a policy once the caller is known: a field test, a CUSTOM provider's answer, or a combination. */
export type AccessCondition =
  | { readonly kind: 'field'; readonly text: string; readonly test: (r: PreparedRequest) => boolean }
  | { readonly kind: 'custom'; readonly provider: string }
  | { readonly kind: 'and' | 'or'; readonly items: readonly AccessCondition[] }
  | { readonly kind: 'not'; readonly item: AccessCondition }
  | { readonly kind: 'rule'; readonly policy: string; readonly rule: number; readonly action: string; readonly item: AccessCondition | true };

type Tri = boolean | AccessCondition;

export type AccessOutcome = 'allowed' | 'denied' | 'conditional';

export interface AccessCell {
  readonly source: string;
  readonly destination: string;
  readonly port: number;
  readonly traffic: 'HTTP' | 'TCP';
  readonly mtlsMode: string;
  readonly outcome: AccessOutcome;
  /** One line: why the cell is what it is. */
  readonly reason: string;
  /** For a conditional cell: when a request is allowed, in words. */
  readonly condition?: string;
  /** For a conditional cell: the same condition as a test on a request of this caller to this port. */
  readonly allowedWhen?: AccessCondition;
}

export interface AccessMatrix {
  readonly sources: readonly string[];
  readonly destinations: readonly { readonly workload: string; readonly port: number; readonly traffic: 'HTTP' | 'TCP' }[];
  readonly cells: readonly AccessCell[];
}

/** Attributes decided by the caller alone (and the port): evaluated, never left as conditions. */
const PEER_ATTRIBUTES = new Set(['source.principal', 'source.namespace', 'source.serviceAccount', 'source.trustDomain']);

export function accessMatrix(engine: PolicyEngine, sources: readonly AccessSource[], destinations: readonly AccessDestination[]): AccessMatrix {
  const cells: AccessCell[] = [];
  const columns: AccessMatrix['destinations'][number][] = [];
  for (const d of destinations) {
    const wp = engine.workload(d.namespace, d.labels);
    for (const p of d.ports) {
      columns.push({ workload: `${d.namespace}/${d.name}`, port: p.port, traffic: p.tcp ? 'TCP' : 'HTTP' });
      for (const s of sources) cells.push(accessCell(engine, wp, s, d, p.port, p.tcp));
    }
  }
  return { sources: sources.map((s) => s.id), destinations: columns, cells };
}

/** Evaluates a cell's condition for one request (a CUSTOM provider answers `extAuthz`). */
export function holds(c: AccessCondition, r: PreparedRequest, extAuthz: 'allow' | 'deny' = 'deny'): boolean {
  switch (c.kind) {
    case 'field': return c.test(r);
    case 'custom': return extAuthz === 'allow';
    case 'and': return c.items.every((x) => holds(x, r, extAuthz));
    case 'or': return c.items.some((x) => holds(x, r, extAuthz));
    case 'not': return !holds(c.item, r, extAuthz);
    case 'rule': return c.item === true || holds(c.item, r, extAuthz);
  }
}

/** The condition in words, rule by rule. */
export function conditionText(c: AccessCondition): string {
  switch (c.kind) {
    case 'field': return c.text;
    case 'custom': return `CUSTOM provider "${c.provider}" allows`;
    case 'and': return c.items.map((x) => (x.kind === 'or' ? `(${conditionText(x)})` : conditionText(x))).join(' and ');
    case 'or': return c.items.map((x) => (x.kind === 'and' ? `(${conditionText(x)})` : conditionText(x))).join(' or ');
    case 'not': return `not ${c.item.kind === 'rule' || c.item.kind === 'field' ? conditionText(c.item) : `(${conditionText(c.item)})`}`;
    case 'rule': return `${c.action} ${c.policy} rule ${c.rule}${c.item === true ? '' : ` [${conditionText(c.item)}]`}`;
  }
}

function accessCell(engine: PolicyEngine, wp: WorkloadPolicy, s: AccessSource, d: AccessDestination, port: number, tcp: boolean): AccessCell {
  const mode = wp.mtls.modeFor(port);
  const base = { source: s.id, destination: `${d.namespace}/${d.name}`, port, traffic: tcp ? 'TCP' as const : 'HTTP' as const, mtlsMode: mode };
  // The caller's peer as the policies will see it: DISABLE never terminates mTLS; a token holder's peer is unknown.
  const peerKnown = !(s.jwt === true && mode !== 'DISABLE');
  const peer = mode === 'DISABLE' ? undefined : s.principal;
  if (mode === 'STRICT' && peerKnown && peer === undefined) {
    return { ...base, outcome: 'denied', reason: 'connection refused: the port is STRICT and the caller has no mTLS' };
  }
  // A token only reaches the policies where a RequestAuthentication applies (elsewhere Istio ignores it).
  const tokenKnown = !(s.jwt === true && wp.jwtRules.length > 0) || tcp;
  const probeRequest: CheckRequest = {
    destination: { namespace: d.namespace, labels: d.labels, port },
    source: peer === undefined ? {} : { principal: peer },
    ...(tcp ? {} : { http: { method: 'GET', path: '/', host: d.name } }),
  };
  const probe = prepareRequest(probeRequest, engine.mesh.pathNormalization);
  const known = (f: FieldMatcher): boolean | undefined => {
    if (PEER_ATTRIBUTES.has(f.attribute) && peerKnown) return f.test(probe) !== f.negate;
    if (f.attribute === 'destination.port') return f.test(probe) !== f.negate;
    if (f.attribute.startsWith('request.auth.')) {
      if (tokenKnown) return f.test(probe) !== f.negate;
      // Any valid token has a principal.
      if (f.attribute === 'request.auth.principal' && f.values.includes('*')) return !f.negate;
    }
    return undefined;
  };
  const layers = wp.enforcedPolicies(tcp ? 'tcp' : 'http');

  // CUSTOM (dry-run is refused by validation for it): more than one provider fails closed for every request; the
  // first matching rule delegates to its provider, whose answer is a condition; an undefined provider denies.
  const providers = new Set(layers.custom.map((p) => p.provider));
  if (providers.size > 1) return { ...base, outcome: 'denied', reason: `more than one CUSTOM provider applies (${[...providers].join(', ')}): fails closed` };
  let customPass: Tri = true;
  for (const p of [...layers.custom].reverse()) {
    const defined = engine.mesh.extensionProviders.some((x) => x.name === p.provider);
    const answer: Tri = defined ? { kind: 'custom', provider: p.provider ?? '' } : false;
    for (const rule of [...p.rules].reverse()) {
      const t = ruleResidual(rule, known);
      if (t === false) continue;
      if (t === true) {
        customPass = answer;
        continue;
      }
      const hit: AccessCondition = { kind: 'rule', policy: p.id, rule: rule.index, action: 'CUSTOM', item: t };
      customPass = or([and([hit, answer]), and([{ kind: 'not', item: hit }, customPass])]);
    }
  }
  return finish(base, customPass, anyRule(layers.deny, 'DENY', known), layers.allow.length === 0 ? 'no-policy' : anyRule(layers.allow, 'ALLOW', known));
}

type Base = Pick<AccessCell, 'source' | 'destination' | 'port' | 'traffic' | 'mtlsMode'>;

/** Combines CUSTOM (must pass), DENY (must not match) and ALLOW (some rule must match, or no ALLOW policy). */
function finish(base: Base, customPass: Tri, deny: Tri, allow: Tri | 'no-policy'): AccessCell {
  if (deny === true) return { ...base, outcome: 'denied', reason: 'a DENY rule matches every request of this caller' };
  if (customPass === false) return { ...base, outcome: 'denied', reason: 'a CUSTOM policy that cannot allow covers every request' };
  if (allow === false) return { ...base, outcome: 'denied', reason: 'no ALLOW rule can match this caller' };
  const parts: AccessCondition[] = [];
  if (allow !== 'no-policy' && allow !== true) parts.push(allow);
  if (deny !== false) parts.push({ kind: 'not', item: deny });
  if (customPass !== true) parts.push(customPass);
  const allowedBy = allow === 'no-policy' ? 'no ALLOW policy applies' : 'an ALLOW rule matches every request of this caller';
  if (parts.length === 0) return { ...base, outcome: 'allowed', reason: allowedBy };
  const allowedWhen: AccessCondition = parts.length === 1 ? parts[0]! : { kind: 'and', items: parts };
  return { ...base, outcome: 'conditional', reason: 'depends on the request', condition: conditionText(allowedWhen), allowedWhen };
}

/** OR over every rule of the policies, each partially evaluated: true, false, or what is left. */
function anyRule(policies: readonly CompiledPolicy[], action: string, known: (f: FieldMatcher) => boolean | undefined): Tri {
  const left: AccessCondition[] = [];
  for (const p of policies) {
    for (const rule of p.rules) {
      const t = ruleResidual(rule, known);
      if (t === false) continue;
      if (t === true) return true;
      left.push({ kind: 'rule', policy: p.id, rule: rule.index, action, item: t });
    }
  }
  if (left.length === 0) return false;
  return left.length === 1 ? left[0]! : { kind: 'or', items: left };
}

function ruleResidual(rule: CompiledRule, known: (f: FieldMatcher) => boolean | undefined): Tri {
  const parts: AccessCondition[] = [];
  for (const group of [rule.from, rule.to]) {
    if (group === undefined) continue;
    const t = or(group.map((fields) => and(fields.map((f) => leaf(f, known)))));
    if (t === false) return false;
    if (t !== true) parts.push(t);
  }
  const w = and(rule.when.map((f) => leaf(f, known)));
  if (w === false) return false;
  if (w !== true) parts.push(w);
  return parts.length === 0 ? true : parts.length === 1 ? parts[0]! : { kind: 'and', items: parts };
}

function leaf(f: FieldMatcher, known: (f: FieldMatcher) => boolean | undefined): Tri {
  const k = known(f);
  if (k !== undefined) return k;
  const values = f.values.map((v) => JSON.stringify(v)).join(', ');
  return { kind: 'field', text: `${f.path} ${f.negate ? 'not in' : 'in'} [${values}]`, test: (r) => f.test(r) !== f.negate };
}

function and(items: readonly Tri[]): Tri {
  const left: AccessCondition[] = [];
  for (const t of items) {
    if (t === false) return false;
    if (t !== true) left.push(t);
  }
  return left.length === 0 ? true : left.length === 1 ? left[0]! : { kind: 'and', items: left };
}

function or(items: readonly Tri[]): Tri {
  const left: AccessCondition[] = [];
  for (const t of items) {
    if (t === true) return true;
    if (t !== false) left.push(t);
  }
  return left.length === 0 ? false : left.length === 1 ? left[0]! : { kind: 'or', items: left };
}

/**
 * The matrix of a mesh file: every service account of its workloads, a plaintext caller and a token holder, against
 * every port of every workload. A port is TCP when its protocol is; HTTP otherwise (a detected port carrying HTTP).
 */
export function meshAccessMatrix(engine: PolicyEngine, mesh: Pick<MeshFile, 'workloads'>): AccessMatrix {
  const td = engine.mesh.trustDomain;
  const accounts = [...new Set(mesh.workloads.map((w) => `${w.namespace}/${w.serviceAccount}`))].sort();
  const sources: AccessSource[] = [
    ...accounts.map((a) => ({ id: a, principal: `${td}/ns/${a.split('/')[0]}/sa/${a.split('/')[1]}` })),
    { id: 'no mTLS' },
    { id: 'any JWT', jwt: true },
  ];
  const destinations = mesh.workloads.filter((w) => w.ports.length > 0).map((w) => ({
    namespace: w.namespace, name: w.name, labels: w.labels, ports: w.ports.map((p) => ({ port: p.port, tcp: p.protocol === 'TCP' })),
  }));
  return accessMatrix(engine, sources, destinations);
}
