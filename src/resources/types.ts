/**
 * The Istio security kinds as Rampart holds them after loading. `security.istio.io/v1` and `v1beta1`
 * share one schema, so one set of types serves both.
 */

export const SECURITY_GROUP = 'security.istio.io';
export const SECURITY_VERSIONS = ['v1', 'v1beta1'] as const;

export type Kind = 'AuthorizationPolicy' | 'PeerAuthentication' | 'RequestAuthentication';

export interface ResourceMeta {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** RFC 3339 text as written; used for "oldest wins" among PeerAuthentications. */
  readonly creationTimestamp?: string;
}

export interface SourceRef {
  readonly file: string;
  /** 1-based line where the document starts. */
  readonly line: number;
  /** Position of the document among all loaded documents; breaks creation-time ties as list order does. */
  readonly order: number;
}

export interface Resource<K extends Kind, S> {
  readonly kind: K;
  readonly apiVersion: string;
  readonly meta: ResourceMeta;
  readonly spec: S;
  readonly source: SourceRef;
  /** Line of a field inside this resource, e.g. `['spec', 'rules', 2]`; computed on demand. */
  lineOf(path: readonly (string | number)[]): number;
}

export interface WorkloadSelector {
  readonly matchLabels?: Readonly<Record<string, string>>;
}

export interface PolicyTargetReference {
  readonly group?: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string;
}

// ---------------------------------------------------------------- AuthorizationPolicy

export type AuthorizationAction = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';

export interface Source {
  readonly principals?: readonly string[];
  readonly notPrincipals?: readonly string[];
  readonly requestPrincipals?: readonly string[];
  readonly notRequestPrincipals?: readonly string[];
  readonly namespaces?: readonly string[];
  readonly notNamespaces?: readonly string[];
  readonly serviceAccounts?: readonly string[];
  readonly notServiceAccounts?: readonly string[];
  readonly ipBlocks?: readonly string[];
  readonly notIpBlocks?: readonly string[];
  readonly remoteIpBlocks?: readonly string[];
  readonly notRemoteIpBlocks?: readonly string[];
  readonly trustDomains?: readonly string[];
  readonly notTrustDomains?: readonly string[];
}

/** The fields of a `from.source`, in the order explanations list them. */
export const SOURCE_FIELDS = [
  'principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces',
  'serviceAccounts', 'notServiceAccounts', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks',
  'trustDomains', 'notTrustDomains',
] as const satisfies readonly (keyof Source)[];

/** The fields of a `to.operation`, in the order explanations list them. */
export const OPERATION_FIELDS = [
  'hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths',
] as const satisfies readonly (keyof Operation)[];

export interface Operation {
  readonly hosts?: readonly string[];
  readonly notHosts?: readonly string[];
  readonly ports?: readonly string[];
  readonly notPorts?: readonly string[];
  readonly methods?: readonly string[];
  readonly notMethods?: readonly string[];
  readonly paths?: readonly string[];
  readonly notPaths?: readonly string[];
}

export interface Condition {
  readonly key: string;
  readonly values?: readonly string[];
  readonly notValues?: readonly string[];
}

export interface Rule {
  /** `undefined` when the field is absent; an empty array is a validation error. */
  readonly from?: readonly { readonly source?: Source }[];
  readonly to?: readonly { readonly operation?: Operation }[];
  readonly when?: readonly Condition[];
}

export interface AuthorizationPolicySpec {
  readonly selector?: WorkloadSelector;
  readonly targetRef?: PolicyTargetReference;
  readonly targetRefs?: readonly PolicyTargetReference[];
  /** `null` entries are kept so validation can report them. */
  readonly rules?: readonly (Rule | null)[];
  readonly action: AuthorizationAction;
  readonly provider?: { readonly name?: string };
}

// ---------------------------------------------------------------- PeerAuthentication

export type MtlsMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';

export interface PeerAuthenticationSpec {
  readonly selector?: WorkloadSelector;
  readonly mtls?: { readonly mode: MtlsMode };
  /** Keys as written (validated to be 1..65535). */
  readonly portLevelMtls?: Readonly<Record<string, { readonly mode: MtlsMode }>>;
}

// ---------------------------------------------------------------- RequestAuthentication

export interface JwtHeader {
  readonly name: string;
  readonly prefix?: string;
}

export interface ClaimToHeader {
  readonly header: string;
  readonly claim: string;
}

export interface JwtRule {
  readonly issuer?: string;
  readonly audiences?: readonly string[];
  readonly jwksUri?: string;
  readonly jwks?: string;
  readonly fromHeaders?: readonly JwtHeader[];
  readonly fromParams?: readonly string[];
  readonly fromCookies?: readonly string[];
  readonly outputPayloadToHeader?: string;
  readonly forwardOriginalToken?: boolean;
  readonly outputClaimToHeaders?: readonly ClaimToHeader[];
  /** Duration text as written, e.g. `5s`. */
  readonly timeout?: string;
  readonly spaceDelimitedClaims?: readonly string[];
}

export interface RequestAuthenticationSpec {
  readonly selector?: WorkloadSelector;
  readonly targetRef?: PolicyTargetReference;
  readonly targetRefs?: readonly PolicyTargetReference[];
  readonly jwtRules?: readonly JwtRule[];
}

export type AuthorizationPolicy = Resource<'AuthorizationPolicy', AuthorizationPolicySpec>;
export type PeerAuthentication = Resource<'PeerAuthentication', PeerAuthenticationSpec>;
export type RequestAuthentication = Resource<'RequestAuthentication', RequestAuthenticationSpec>;
export type SecurityResource = AuthorizationPolicy | PeerAuthentication | RequestAuthentication;

export function resourceId(r: { kind: string; meta: { namespace: string; name: string } }): string {
  return `${r.kind} ${r.meta.namespace}/${r.meta.name}`;
}
