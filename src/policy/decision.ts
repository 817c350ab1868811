import type { AuthorizationAction } from '../resources/types.ts';
import type { EffectiveMode } from './peer-authn.ts';

export type TraceStepKind = 'select' | 'mtls' | 'request' | 'jwt' | 'custom' | 'deny' | 'allow' | 'audit' | 'dry-run';

/** Evaluation of one rule of one policy. */
export interface RuleTrace {
  readonly rule: number;
  readonly line: number | null;
  readonly matched: boolean;
  /** For a miss: which field of which alternative did not match. */
  readonly mismatches: readonly string[];
  /** Conditions that were dropped for this traffic kind (wider DENY on TCP). */
  readonly removed: readonly string[];
}

export interface PolicyTrace {
  readonly policy: string;
  readonly action: AuthorizationAction;
  readonly file: string;
  readonly line: number;
  readonly matched: boolean;
  readonly dryRun: boolean;
  readonly rules: readonly RuleTrace[];
  /** Rules that do not exist for this traffic kind (ALLOW rules with HTTP-only fields on TCP) or were null. */
  readonly skipped: readonly { readonly rule: number; readonly reason: string }[];
  readonly notes: readonly string[];
}

export interface TraceStep {
  readonly step: TraceStepKind;
  readonly message: string;
  readonly policies?: readonly PolicyTrace[];
}

export interface PolicyRef {
  readonly policy: string;
  readonly rule: number;
}

export interface DryRunResult {
  readonly action: 'ALLOW' | 'DENY';
  /** What the shadow engine reports: would the dry-run policies of this action have allowed or denied. */
  readonly result: 'allowed' | 'denied';
  readonly policy: string | null;
  readonly rule: number | null;
}

export interface Decision {
  readonly decision: 'ALLOW' | 'DENY';
  /** What the client sees: 200, 400/404 (malformed), 401/403 (JWT), 403 (RBAC), or null when the connection is refused. */
  readonly status: 200 | 400 | 401 | 403 | 404 | null;
  /** Set when status is null: `refused` (plaintext to STRICT) or `reset` (TCP denied); otherwise undefined. */
  readonly connection: 'refused' | 'reset' | undefined;
  readonly reason: string;
  /** `namespace/name` of the deciding policy, if a policy decided. */
  readonly policy: string | null;
  readonly rule: number | null;
  /** Which layer decided. */
  readonly decidedBy: 'mtls' | 'request' | 'jwt' | 'custom' | 'deny' | 'allow' | 'default';
  readonly mtlsMode: EffectiveMode;
  readonly audit: readonly PolicyRef[];
  readonly dryRun: readonly DryRunResult[];
  /** The CUSTOM provider the request was delegated to, if any. */
  readonly customProvider: string | null;
  readonly trace: readonly TraceStep[];
}
