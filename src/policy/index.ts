export { PolicyEngine, WorkloadPolicy, type DecideOptions } from './engine.ts';
export type { Decision, DryRunResult, PolicyRef, PolicyTrace, RuleTrace, TraceStep, TraceStepKind } from './decision.ts';
export { parseCheckRequest, prepareRequest, type CheckRequest, type PreparedRequest, type VerifiedJwt } from './request.ts';
export { formatDecision } from './explain.ts';
export { resolveMtls, type EffectiveMode, type MtlsResolution } from './peer-authn.ts';
export { selectorMatches, type Workload } from './selection.ts';
export { compilePolicy, type CompiledPolicy, type CompiledRule } from './authz-compile.ts';
