import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDiagnostic, type Diagnostic } from '../src/resources/diagnostic.ts';
import { loadResources } from '../src/resources/load.ts';
import type { ValidationContext } from '../src/resources/validate-context.ts';

/**
 * One row per validation rule of istiod (pkg/config/validation/validation.go, pkg/config/security/security.go) or of
 * the CRD schema (istio/api security/v1beta1/*.proto, type/v1beta1/selector.proto).
 *
 * Resources are built from spec lines: line 1 apiVersion, 2 kind, 3 metadata, 4 `spec:`, so spec line i is file line
 * 5 + i. A path pointing at a block mapping or block list reports the line of its first entry.
 */

type KindName = 'AuthorizationPolicy' | 'PeerAuthentication' | 'RequestAuthentication';

const META = 'metadata: {name: p, namespace: foo}';

function resource(kind: KindName, spec: readonly string[], meta: string = META): string {
  return [`apiVersion: security.istio.io/v1`, `kind: ${kind}`, meta, 'spec:', ...spec.map((l) => `  ${l}`)].join('\n') + '\n';
}
const ap = (spec: readonly string[], meta?: string): string => resource('AuthorizationPolicy', spec, meta);
const pa = (spec: readonly string[], meta?: string): string => resource('PeerAuthentication', spec, meta);
const ra = (spec: readonly string[], meta?: string): string => resource('RequestAuthentication', spec, meta);
const times = (n: number, line: (i: number) => string): string[] => Array.from({ length: n }, (_, i) => line(i));

interface Row {
  readonly name: string;
  readonly text: string;
  readonly code: string;
  readonly path: string;
  readonly line: number;
  /** A fragment the message must contain. */
  readonly message: string;
  readonly ctx?: ValidationContext;
}

const show = (ds: readonly Diagnostic[]): string => ds.map(formatDiagnostic).join('\n') || '(no diagnostics)';

function checkRow(row: Row, severity: 'error' | 'warning'): void {
  const { resources, diagnostics } = loadResources([{ file: 'x.yaml', text: row.text }], row.ctx);
  const hit = diagnostics.find((d) => d.code === row.code && d.path === row.path);
  assert.ok(hit, `expected ${row.code} at ${row.path}; got:\n${show(diagnostics)}`);
  assert.equal(hit.severity, severity, show([hit]));
  assert.equal(hit.file, 'x.yaml');
  assert.equal(hit.line, row.line, show([hit]));
  assert.ok(hit.message.includes(row.message), `message "${hit.message}" lacks "${row.message}"`);
  assert.match(hit.message, /^[^A-Z]/, 'messages start in lower case');
  assert.match(hit.code, severity === 'error' ? /^ERR_[A-Z0-9_]+$/ : /^WARN_[A-Z0-9_]+$/);
  if (severity === 'error') {
    assert.equal(resources.length, 0, 'a resource with an error is left out');
  } else {
    assert.deepEqual(diagnostics.filter((d) => d.severity === 'error'), [], 'a warning-only resource has no errors');
    assert.equal(resources.length, 1, 'a resource with only warnings is kept');
  }
}

// ------------------------------------------------------------------------------------------------ errors

const ERRORS: readonly Row[] = [
  // ---- selector / targetRef (validateOneOfSelectorType, validateWorkloadSelector, validatePolicyTargetReference, CRD)
  {
    name: 'selector and targetRef together',
    text: ap(['selector:', '  matchLabels: {app: a}', 'targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}']),
    code: 'ERR_SELECTOR_EXCLUSIVE', path: 'spec.targetRef', line: 7, message: 'only one of selector, targetRef and targetRefs',
  },
  {
    name: 'selector with an empty targetRefs list (CRD counts present fields)',
    text: ra(['selector: {matchLabels: {app: a}}', 'targetRefs: []']),
    code: 'ERR_SELECTOR_EXCLUSIVE', path: 'spec.targetRefs', line: 6, message: 'selector and targetRefs',
  },
  {
    name: 'targetRef without a name',
    text: ap(['targetRef: {kind: Service, name: ""}']),
    code: 'ERR_TARGET_REF_NAME_EMPTY', path: 'spec.targetRef.name', line: 5, message: 'name must be set',
  },
  {
    name: 'targetRef name longer than 253',
    text: ap([`targetRef: {kind: Service, name: ${'a'.repeat(254)}}`]),
    code: 'ERR_TARGET_REF_NAME_TOO_LONG', path: 'spec.targetRef.name', line: 5, message: 'at most 253',
  },
  {
    name: 'targetRefs entry with a namespace',
    text: ap(['targetRefs:', '- kind: Gateway', '  group: gateway.networking.k8s.io', '  name: gw', '  namespace: other']),
    code: 'ERR_TARGET_REF_NAMESPACE', path: 'spec.targetRefs[0].namespace', line: 9, message: 'cross-namespace',
  },
  {
    name: 'targetRef to an unsupported kind',
    text: ra(['targetRef:', '  group: apps', '  kind: Deployment', '  name: d']),
    code: 'ERR_TARGET_REF_KIND', path: 'spec.targetRef.kind', line: 7, message: 'apps/Deployment',
  },
  {
    name: 'targetRef Gateway without the Gateway API group',
    text: ap(['targetRef: {kind: Gateway, name: gw}']),
    code: 'ERR_TARGET_REF_KIND', path: 'spec.targetRef.kind', line: 5, message: 'gateway.networking.k8s.io/Gateway',
  },
  {
    name: 'more than 16 targetRefs (CRD)',
    text: ap(['targetRefs:', ...times(17, (i) => `- {kind: Service, name: s${i}}`)]),
    code: 'ERR_TARGET_REFS_TOO_MANY', path: 'spec.targetRefs', line: 6, message: 'at most 16',
  },
  {
    name: 'wildcard in a selector label key',
    text: ap(['selector:', '  matchLabels:', '    "app*": web']),
    code: 'ERR_SELECTOR_WILDCARD', path: 'spec.selector.matchLabels["app*"]', line: 7, message: 'wildcards are not supported',
  },
  {
    name: 'wildcard in a selector label value',
    text: pa(['selector:', '  matchLabels: {app: "web*"}']),
    code: 'ERR_SELECTOR_WILDCARD', path: 'spec.selector.matchLabels.app', line: 6, message: '"web*"',
  },
  {
    name: 'empty selector label key',
    text: ra(['selector:', '  matchLabels: {"": web}', 'jwtRules: [{issuer: i}]']),
    code: 'ERR_SELECTOR_LABEL_KEY_EMPTY', path: 'spec.selector.matchLabels[""]', line: 6, message: 'must not be empty',
  },
  {
    name: 'selector label value longer than 63 (CRD)',
    text: ap(['selector:', `  matchLabels: {app: ${'v'.repeat(64)}}`]),
    code: 'ERR_SELECTOR_LABEL_VALUE_TOO_LONG', path: 'spec.selector.matchLabels.app', line: 6, message: 'at most 63',
  },

  {
    name: 'more than 4096 selector labels (CRD)',
    text: pa(['selector:', `  matchLabels: {${times(4097, (i) => `l${i}: v`).join(', ')}}`]),
    code: 'ERR_SELECTOR_TOO_MANY_LABELS', path: 'spec.selector.matchLabels', line: 6, message: 'at most 4096',
  },

  // ---- metadata (validateMetadata, checkDryRunAnnotation)
  {
    name: 'dry-run annotation that is not a boolean',
    text: ap(['action: DENY', 'rules: [{}]'], 'metadata: {name: p, namespace: foo, annotations: {istio.io/dry-run: "maybe"}}'),
    code: 'ERR_DRY_RUN_VALUE', path: 'metadata.annotations["istio.io/dry-run"]', line: 3, message: '"maybe"',
  },
  {
    name: 'dry-run annotation on a CUSTOM policy',
    text: ap(['action: CUSTOM', 'provider: {name: ext}', 'rules: [{}]'], 'metadata: {name: p, namespace: foo, annotations: {istio.io/dry-run: "true"}}'),
    code: 'ERR_DRY_RUN_ACTION', path: 'metadata.annotations["istio.io/dry-run"]', line: 3, message: 'ALLOW or DENY',
  },
  {
    name: 'dry-run annotation on a PeerAuthentication',
    text: pa(['mtls: {mode: STRICT}'], 'metadata: {name: p, namespace: foo, annotations: {istio.io/dry-run: "true"}}'),
    code: 'ERR_DRY_RUN_UNSUPPORTED', path: 'metadata.annotations["istio.io/dry-run"]', line: 3, message: 'only supported on AuthorizationPolicy',
  },
  {
    name: 'dry-run annotation on a RequestAuthentication',
    text: ra(['jwtRules: [{issuer: i}]'], 'metadata: {name: p, namespace: foo, annotations: {istio.io/dry-run: "false"}}'),
    code: 'ERR_DRY_RUN_UNSUPPORTED', path: 'metadata.annotations["istio.io/dry-run"]', line: 3, message: 'RequestAuthentication',
  },
  {
    name: 'internal annotation set by a user',
    text: ap([], 'metadata: {name: p, namespace: foo, annotations: {internal.istio.io/parent-namespace: bar}}'),
    code: 'ERR_ANNOTATION_RESERVED', path: 'metadata.annotations["internal.istio.io/parent-namespace"]', line: 3, message: 'reserved',
  },

  // ---- AuthorizationPolicy: action, provider, rules (ValidateAuthorizationPolicy)
  {
    name: 'CUSTOM without rules',
    text: ap(['action: CUSTOM', 'provider: {name: ext}']),
    code: 'ERR_AUTHZ_CUSTOM_NO_RULES', path: 'spec.action', line: 5, message: 'never calls its provider',
  },
  {
    name: 'CUSTOM without provider',
    text: ap(['action: CUSTOM', 'rules: [{}]']),
    code: 'ERR_AUTHZ_CUSTOM_NO_PROVIDER', path: 'spec.provider', line: 5, message: 'provider.name',
  },
  {
    name: 'CUSTOM with an empty provider name',
    text: ap(['action: CUSTOM', 'provider: {name: ""}', 'rules: [{}]']),
    code: 'ERR_AUTHZ_CUSTOM_NO_PROVIDER', path: 'spec.provider.name', line: 6, message: 'provider.name',
  },
  {
    name: 'CUSTOM with principals',
    text: ap(['action: CUSTOM', 'provider: {name: ext}', 'rules:', '- from:', '  - source:', '      principals: ["cluster.local/ns/foo/sa/bar"]']),
    code: 'ERR_AUTHZ_CUSTOM_UNSUPPORTED_FIELD', path: 'spec.rules[0].from[0].source.principals', line: 10, message: 'principals is not supported with action CUSTOM',
  },
  {
    name: 'CUSTOM with notRequestPrincipals',
    text: ap(['action: CUSTOM', 'provider: {name: ext}', 'rules:', '- from:', '  - source:', '      notRequestPrincipals: ["*"]']),
    code: 'ERR_AUTHZ_CUSTOM_UNSUPPORTED_FIELD', path: 'spec.rules[0].from[0].source.notRequestPrincipals', line: 10, message: 'notRequestPrincipals',
  },
  {
    name: 'CUSTOM with a request.auth.claims condition',
    text: ap(['action: CUSTOM', 'provider: {name: ext}', 'rules:', '- when:', '  - key: request.auth.claims[iss]', '    values: ["x"]']),
    code: 'ERR_AUTHZ_CUSTOM_UNSUPPORTED_KEY', path: 'spec.rules[0].when[0].key', line: 9, message: 'request.auth.claims[iss]',
  },
  {
    name: 'CUSTOM with a source.principal condition',
    text: ap(['action: CUSTOM', 'provider: {name: ext}', 'rules:', '- when:', '  - key: source.principal', '    values: ["x"]']),
    code: 'ERR_AUTHZ_CUSTOM_UNSUPPORTED_KEY', path: 'spec.rules[0].when[0].key', line: 9, message: 'source.principal',
  },
  {
    name: 'provider with action ALLOW',
    text: ap(['provider: {name: ext}', 'rules: [{}]']),
    code: 'ERR_AUTHZ_PROVIDER_NOT_CUSTOM', path: 'spec.provider', line: 5, message: 'only allowed with action CUSTOM',
  },
  {
    name: 'DENY without rules',
    text: ap(['action: DENY']),
    code: 'ERR_AUTHZ_DENY_NO_RULES', path: 'spec.action', line: 5, message: 'never denies anything',
  },
  {
    name: 'DENY with an empty rules list',
    text: ap(['action: DENY', 'rules: []']),
    code: 'ERR_AUTHZ_DENY_NO_RULES', path: 'spec.rules', line: 6, message: 'rules: [{}]',
  },
  {
    name: 'more than 512 rules (CRD)',
    text: ap(['rules:', ...times(513, () => '- {}')]),
    code: 'ERR_AUTHZ_TOO_MANY_RULES', path: 'spec.rules', line: 6, message: 'at most 512',
  },
  {
    name: 'null rule',
    text: ap(['rules:', '- {}', '- null']),
    code: 'ERR_AUTHZ_NULL_RULE', path: 'spec.rules[1]', line: 7, message: 'must not be null',
  },
  {
    name: 'from present but empty',
    text: ap(['rules:', '- from: []']),
    code: 'ERR_AUTHZ_EMPTY_RULE_FROM', path: 'spec.rules[0].from', line: 6, message: '`from` is present but empty',
  },
  {
    name: 'to present but empty',
    text: ap(['rules:', '- to: []']),
    code: 'ERR_AUTHZ_EMPTY_RULE_TO', path: 'spec.rules[0].to', line: 6, message: '`to` is present but empty',
  },
  {
    name: 'more than 512 from entries (CRD)',
    text: ap(['rules:', '- from:', ...times(513, (i) => `  - source: {namespaces: [ns${i}]}`)]),
    code: 'ERR_AUTHZ_TOO_MANY_FROM', path: 'spec.rules[0].from', line: 7, message: 'at most 512',
  },
  {
    name: 'from entry without source',
    text: ap(['rules:', '- from:', '  - {}']),
    code: 'ERR_AUTHZ_FROM_NO_SOURCE', path: 'spec.rules[0].from[0]', line: 7, message: 'must have a `source`',
  },
  {
    name: 'to entry without operation',
    text: ap(['rules:', '- to:', '  - operation: {methods: [GET]}', '  - {}']),
    code: 'ERR_AUTHZ_TO_NO_OPERATION', path: 'spec.rules[0].to[1]', line: 8, message: 'must have an `operation`',
  },
  {
    name: 'source with no field set',
    text: ap(['rules:', '- from:', '  - source: {}']),
    code: 'ERR_AUTHZ_EMPTY_SOURCE', path: 'spec.rules[0].from[0].source', line: 7, message: 'sets no field',
  },
  {
    name: 'source whose only field is an empty list',
    text: ap(['rules:', '- from:', '  - source: {principals: []}']),
    code: 'ERR_AUTHZ_EMPTY_SOURCE', path: 'spec.rules[0].from[0].source', line: 7, message: 'sets no field',
  },
  {
    name: 'operation with no field set',
    text: ap(['rules:', '- to:', '  - operation: {}']),
    code: 'ERR_AUTHZ_EMPTY_OPERATION', path: 'spec.rules[0].to[0].operation', line: 7, message: 'sets no field',
  },

  // ---- empty strings (CheckEmptyValues)
  ...(['principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks',
    'remoteIpBlocks', 'notRemoteIpBlocks', 'serviceAccounts', 'trustDomains'] as const).map((field): Row => ({
    name: `empty string in source.${field}`,
    text: ap(['rules:', '- from:', '  - source:', `      ${field}: ["${field.toLowerCase().includes('ip') ? '10.0.0.1' : 'x'}", ""]`]),
    code: 'ERR_AUTHZ_EMPTY_VALUE', path: `spec.rules[0].from[0].source.${field}[1]`, line: 8, message: `${field} must not contain an empty string`,
  })),
  ...(['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'] as const).map((field): Row => ({
    name: `empty string in operation.${field}`,
    text: ap(['rules:', '- to:', '  - operation:', `      ${field}: [""]`]),
    code: 'ERR_AUTHZ_EMPTY_VALUE', path: `spec.rules[0].to[0].operation.${field}[0]`, line: 8, message: `${field} must not contain an empty string`,
  })),

  // ---- IPs (ValidateIPs); the good value next to the bad one must not be what is reported
  {
    name: 'CIDR prefix out of range in ipBlocks',
    text: ap(['rules:', '- from:', '  - source:', '      ipBlocks: ["10.0.0.0/8", "10.0.0.0/33"]']),
    code: 'ERR_AUTHZ_INVALID_IP', path: 'spec.rules[0].from[0].source.ipBlocks[1]', line: 8, message: '"10.0.0.0/33" is not an IP address or CIDR',
  },
  {
    name: 'not an address in notRemoteIpBlocks',
    text: ap(['rules:', '- from:', '  - source:', '      notRemoteIpBlocks: ["2001:db8::/32", "1.2.3.4.5"]']),
    code: 'ERR_AUTHZ_INVALID_IP', path: 'spec.rules[0].from[0].source.notRemoteIpBlocks[1]', line: 8, message: '"1.2.3.4.5"',
  },
  {
    name: 'hostname in remoteIpBlocks',
    text: ap(['rules:', '- from:', '  - source:', '      remoteIpBlocks: ["example.com"]']),
    code: 'ERR_AUTHZ_INVALID_IP', path: 'spec.rules[0].from[0].source.remoteIpBlocks[0]', line: 8, message: 'remoteIpBlocks',
  },

  // ---- ports (ValidatePorts)
  {
    name: 'named port',
    text: ap(['rules:', '- to:', '  - operation:', '      ports: ["80", "http"]']),
    code: 'ERR_AUTHZ_INVALID_PORT', path: 'spec.rules[0].to[0].operation.ports[1]', line: 8, message: '"http" is not a port',
  },
  {
    name: 'port above 65535',
    text: ap(['rules:', '- to:', '  - operation:', '      notPorts: ["65536"]']),
    code: 'ERR_AUTHZ_INVALID_PORT', path: 'spec.rules[0].to[0].operation.notPorts[0]', line: 8, message: '0 to 65535',
  },
  {
    name: 'negative port',
    text: ap(['rules:', '- to:', '  - operation:', '      ports: ["-1"]']),
    code: 'ERR_AUTHZ_INVALID_PORT', path: 'spec.rules[0].to[0].operation.ports[0]', line: 8, message: '"-1"',
  },
  {
    name: 'port range',
    text: ap(['rules:', '- to:', '  - operation:', '      ports: ["8000-9000"]']),
    code: 'ERR_AUTHZ_INVALID_PORT', path: 'spec.rules[0].to[0].operation.ports[0]', line: 8, message: 'ranges',
  },

  // ---- serviceAccounts (CheckServiceAccount, CRD)
  {
    name: 'serviceAccounts with namespaces',
    text: ap(['rules:', '- from:', '  - source:', '      serviceAccounts: ["foo/bar"]', '      namespaces: ["foo"]']),
    code: 'ERR_AUTHZ_SA_WITH_PRINCIPALS', path: 'spec.rules[0].from[0].source.serviceAccounts', line: 8, message: 'cannot be combined with namespaces',
  },
  {
    name: 'notServiceAccounts with principals',
    text: ap(['rules:', '- from:', '  - source:', '      principals: ["cluster.local/ns/a/sa/b"]', '      notServiceAccounts: ["foo/bar"]']),
    code: 'ERR_AUTHZ_SA_WITH_PRINCIPALS', path: 'spec.rules[0].from[0].source.notServiceAccounts', line: 9, message: 'principals',
  },
  {
    name: 'more than 16 serviceAccounts',
    text: ap(['rules:', '- from:', '  - source:', `      serviceAccounts: [${times(17, (i) => `sa${i}`).join(', ')}]`]),
    code: 'ERR_AUTHZ_SA_TOO_MANY', path: 'spec.rules[0].from[0].source.serviceAccounts', line: 8, message: 'at most 16',
  },
  {
    name: 'wildcard in serviceAccounts',
    text: ap(['rules:', '- from:', '  - source:', '      serviceAccounts: ["foo/*"]']),
    code: 'ERR_AUTHZ_SA_INVALID', path: 'spec.rules[0].from[0].source.serviceAccounts[0]', line: 8, message: 'wildcards are not supported',
  },
  {
    name: 'serviceAccount with two slashes',
    text: ap(['rules:', '- from:', '  - source:', '      notServiceAccounts: ["ns/sa/extra"]']),
    code: 'ERR_AUTHZ_SA_INVALID', path: 'spec.rules[0].from[0].source.notServiceAccounts[0]', line: 8, message: '"namespace/serviceAccount"',
  },
  {
    name: 'serviceAccount with an empty namespace',
    text: ap(['rules:', '- from:', '  - source:', '      serviceAccounts: ["/sa"]']),
    code: 'ERR_AUTHZ_SA_INVALID', path: 'spec.rules[0].from[0].source.serviceAccounts[0]', line: 8, message: 'empty namespace',
  },
  {
    name: 'serviceAccount with an empty name',
    text: ap(['rules:', '- from:', '  - source:', '      serviceAccounts: ["ns/"]']),
    code: 'ERR_AUTHZ_SA_INVALID', path: 'spec.rules[0].from[0].source.serviceAccounts[0]', line: 8, message: 'empty service account name',
  },
  {
    name: 'serviceAccount longer than 320',
    text: ap(['rules:', '- from:', '  - source:', `      serviceAccounts: ["ns/${'s'.repeat(320)}"]`]),
    code: 'ERR_AUTHZ_SA_INVALID', path: 'spec.rules[0].from[0].source.serviceAccounts[0]', line: 8, message: 'at most 320',
  },

  // ---- trustDomains (CheckTrustDomainValues)
  {
    name: 'two wildcards in trustDomains',
    text: ap(['rules:', '- from:', '  - source:', '      trustDomains: ["*.example.*"]']),
    code: 'ERR_AUTHZ_TRUST_DOMAIN_INVALID', path: 'spec.rules[0].from[0].source.trustDomains[0]', line: 8, message: 'at most one "*"',
  },
  {
    name: 'wildcard in the middle of notTrustDomains',
    text: ap(['rules:', '- from:', '  - source:', '      notTrustDomains: ["a*b"]']),
    code: 'ERR_AUTHZ_TRUST_DOMAIN_INVALID', path: 'spec.rules[0].from[0].source.notTrustDomains[0]', line: 8, message: 'in the middle',
  },
  {
    name: 'slash in trustDomains',
    text: ap(['rules:', '- from:', '  - source:', '      trustDomains: ["cluster.local/ns/foo"]']),
    code: 'ERR_AUTHZ_TRUST_DOMAIN_INVALID', path: 'spec.rules[0].from[0].source.trustDomains[0]', line: 8, message: 'contains "/"',
  },

  // ---- paths (CheckValidPathTemplate)
  {
    name: 'braces that are not a template operator',
    text: ap(['rules:', '- to:', '  - operation:', '      paths: ["/api/{id}"]']),
    code: 'ERR_AUTHZ_PATH_TEMPLATE_INVALID', path: 'spec.rules[0].to[0].operation.paths[0]', line: 8, message: 'braces are only allowed',
  },
  {
    name: '{**} followed by another operator',
    text: ap(['rules:', '- to:', '  - operation:', '      paths: ["/ok", "/a/{**}/{*}"]']),
    code: 'ERR_AUTHZ_PATH_TEMPLATE_INVALID', path: 'spec.rules[0].to[0].operation.paths[1]', line: 8, message: 'not a valid path template',
  },
  {
    name: 'operator mixed with text in a segment',
    text: ap(['rules:', '- to:', '  - operation:', '      notPaths: ["/files/{*}.txt"]']),
    code: 'ERR_AUTHZ_PATH_TEMPLATE_INVALID', path: 'spec.rules[0].to[0].operation.notPaths[0]', line: 8, message: 'notPaths',
  },
  {
    name: '* in a template path',
    text: ap(['rules:', '- to:', '  - operation:', '      paths: ["/a/*/{**}"]']),
    code: 'ERR_AUTHZ_PATH_TEMPLATE_INVALID', path: 'spec.rules[0].to[0].operation.paths[0]', line: 8, message: '/a/*/{**}',
  },

  // ---- when (ValidateAuthorizationPolicy, ValidateAttribute)
  {
    name: 'condition without key',
    text: ap(['rules:', '- when:', '  - values: ["x"]']),
    code: 'ERR_AUTHZ_WHEN_KEY_EMPTY', path: 'spec.rules[0].when[0].key', line: 7, message: 'needs a key',
  },
  {
    name: 'condition without values or notValues',
    text: ap(['rules:', '- when:', '  - key: source.ip']),
    code: 'ERR_AUTHZ_WHEN_NO_VALUES', path: 'spec.rules[0].when[0]', line: 7, message: 'values or notValues',
  },
  {
    name: 'condition with empty values and no notValues',
    text: ap(['rules:', '- when:', '  - key: request.headers[x-a]', '    values: []']),
    code: 'ERR_AUTHZ_WHEN_NO_VALUES', path: 'spec.rules[0].when[0]', line: 7, message: '"request.headers[x-a]"',
  },
  {
    name: 'empty condition value',
    text: ap(['rules:', '- when:', '  - key: request.headers[x-a]', '    values: ["a", ""]']),
    code: 'ERR_AUTHZ_EMPTY_VALUE', path: 'spec.rules[0].when[0].values[1]', line: 8, message: 'values must not contain an empty string',
  },
  {
    name: 'empty condition notValue',
    text: ap(['rules:', '- when:', '  - key: connection.sni', '    notValues: [""]']),
    code: 'ERR_AUTHZ_EMPTY_VALUE', path: 'spec.rules[0].when[0].notValues[0]', line: 8, message: 'notValues',
  },
  {
    name: 'unknown condition key',
    text: ap(['rules:', '- when:', '  - key: source.user', '    values: ["x"]']),
    code: 'ERR_AUTHZ_WHEN_KEY_UNKNOWN', path: 'spec.rules[0].when[0].key', line: 7, message: 'unknown condition key "source.user"',
  },
  {
    name: 'condition key in the wrong case',
    text: ap(['rules:', '- when:', '  - key: source.IP', '    values: ["10.0.0.1"]']),
    code: 'ERR_AUTHZ_WHEN_KEY_UNKNOWN', path: 'spec.rules[0].when[0].key', line: 7, message: 'did you mean "source.ip"',
  },
  ...(['destination.namespace', 'destination.labels[app]', 'destination.name', 'destination.user'] as const).map((key): Row => ({
    name: `rejected condition key ${key}`,
    text: ap(['rules:', '- when:', `  - key: ${key}`, '    values: ["x"]']),
    code: 'ERR_AUTHZ_WHEN_KEY_UNSUPPORTED', path: 'spec.rules[0].when[0].key', line: 7, message: `"${key}"`,
  })),
  ...(['request.headers[]', 'request.headers', 'request.headersfoo[x]', 'request.auth.claims', 'request.auth.claims[]', 'request.auth.claims[a]x',
    'experimental.envoy.filters.foo'] as const).map((key): Row => ({
    name: `malformed condition key ${key}`,
    text: ap(['rules:', '- when:', `  - key: "${key}"`, '    values: ["x"]']),
    code: 'ERR_AUTHZ_WHEN_KEY_MALFORMED', path: 'spec.rules[0].when[0].key', line: 7, message: 'expected the form',
  })),
  {
    name: 'bad IP for source.ip',
    text: ap(['rules:', '- when:', '  - key: source.ip', '    values: ["10.0.0.1", "999.1.1.1"]']),
    code: 'ERR_AUTHZ_INVALID_IP', path: 'spec.rules[0].when[0].values[1]', line: 8, message: '"999.1.1.1"',
  },
  {
    name: 'bad CIDR for remote.ip notValues',
    text: ap(['rules:', '- when:', '  - key: remote.ip', '    notValues: ["10.0.0.0/40"]']),
    code: 'ERR_AUTHZ_INVALID_IP', path: 'spec.rules[0].when[0].notValues[0]', line: 8, message: 'notValues',
  },
  {
    name: 'bad IP for destination.ip',
    text: ap(['rules:', '- when:', '  - key: destination.ip', '    values: ["localhost"]']),
    code: 'ERR_AUTHZ_INVALID_IP', path: 'spec.rules[0].when[0].values[0]', line: 8, message: '"localhost"',
  },
  {
    name: 'bad port for destination.port',
    text: ap(['rules:', '- when:', '  - key: destination.port', '    values: ["8080", "99999"]']),
    code: 'ERR_AUTHZ_INVALID_PORT', path: 'spec.rules[0].when[0].values[1]', line: 8, message: '"99999"',
  },
  {
    name: 'bad serviceAccount for source.serviceAccount',
    text: ap(['rules:', '- when:', '  - key: source.serviceAccount', '    values: ["ns/sa/x"]']),
    code: 'ERR_AUTHZ_SA_INVALID', path: 'spec.rules[0].when[0].values[0]', line: 8, message: '"ns/sa/x"',
  },
  {
    name: 'bad wildcard for source.trustDomain',
    text: ap(['rules:', '- when:', '  - key: source.trustDomain', '    notValues: ["a*b"]']),
    code: 'ERR_AUTHZ_TRUST_DOMAIN_INVALID', path: 'spec.rules[0].when[0].notValues[0]', line: 8, message: 'in the middle',
  },

  // ---- PeerAuthentication (ValidatePeerAuthentication, CRD)
  {
    name: 'portLevelMtls without selector',
    text: pa(['mtls: {mode: STRICT}', 'portLevelMtls:', '  8080: {mode: DISABLE}']),
    code: 'ERR_PEER_AUTHN_PORT_LEVEL_WITHOUT_SELECTOR', path: 'spec.portLevelMtls', line: 7, message: 'needs a selector with matchLabels',
  },
  {
    name: 'portLevelMtls with a selector that has no labels',
    text: pa(['selector: {matchLabels: {}}', 'portLevelMtls:', '  8080: {mode: DISABLE}']),
    code: 'ERR_PEER_AUTHN_PORT_LEVEL_WITHOUT_SELECTOR', path: 'spec.portLevelMtls', line: 7, message: 'namespace-wide',
  },
  {
    name: 'portLevelMtls present but empty',
    text: pa(['selector: {matchLabels: {app: a}}', 'portLevelMtls: {}']),
    code: 'ERR_PEER_AUTHN_PORT_LEVEL_EMPTY', path: 'spec.portLevelMtls', line: 6, message: 'present but empty',
  },
  {
    name: 'portLevelMtls port 0',
    text: pa(['selector: {matchLabels: {app: a}}', 'portLevelMtls:', '  80: {mode: STRICT}', '  0: {mode: DISABLE}']),
    code: 'ERR_PEER_AUTHN_PORT_INVALID', path: 'spec.portLevelMtls[0]', line: 8, message: '1 to 65535',
  },
  {
    name: 'portLevelMtls port above 65535',
    text: pa(['selector: {matchLabels: {app: a}}', 'portLevelMtls:', '  65536: {mode: DISABLE}']),
    code: 'ERR_PEER_AUTHN_PORT_INVALID', path: 'spec.portLevelMtls[65536]', line: 7, message: '"65536"',
  },
  {
    name: 'portLevelMtls named port',
    text: pa(['selector: {matchLabels: {app: a}}', 'portLevelMtls:', '  http: {mode: DISABLE}']),
    code: 'ERR_PEER_AUTHN_PORT_INVALID', path: 'spec.portLevelMtls.http', line: 7, message: '"http" is not a port',
  },

  // ---- RequestAuthentication (ValidateRequestAuthentication, validateJwtRule, CRD)
  {
    name: 'jwt rule with neither issuer nor jwksUri',
    text: ra(['jwtRules:', '- fromParams: ["token"]']),
    code: 'ERR_JWT_ISSUER_REQUIRED', path: 'spec.jwtRules[0]', line: 6, message: 'needs an issuer',
  },
  {
    name: 'empty issuer and no jwksUri',
    text: ra(['jwtRules:', '- issuer: ""']),
    code: 'ERR_JWT_ISSUER_REQUIRED', path: 'spec.jwtRules[0].issuer', line: 6, message: 'needs an issuer',
  },
  {
    name: 'explicit empty issuer next to jwksUri (CRD minLength)',
    text: ra(['jwtRules:', '- issuer: ""', '  jwksUri: https://example.com/jwks.json']),
    code: 'ERR_JWT_ISSUER_EMPTY', path: 'spec.jwtRules[0].issuer', line: 6, message: 'must not be an empty string',
  },
  {
    name: 'jwksUri with an unsupported scheme',
    text: ra(['jwtRules:', '- issuer: i', '  jwksUri: ftp://example.com/jwks.json']),
    code: 'ERR_JWT_JWKS_URI_INVALID', path: 'spec.jwtRules[0].jwksUri', line: 7, message: 'scheme "ftp"',
  },
  {
    name: 'jwksUri that is not a URL',
    text: ra(['jwtRules:', '- issuer: i', '  jwksUri: "not a url"']),
    code: 'ERR_JWT_JWKS_URI_INVALID', path: 'spec.jwtRules[0].jwksUri', line: 7, message: 'not a valid URL',
  },
  {
    name: 'jwksUri with a space in the host',
    text: ra(['jwtRules:', '- issuer: i', '  jwksUri: "https://exa mple.com/jwks"']),
    code: 'ERR_JWT_JWKS_URI_INVALID', path: 'spec.jwtRules[0].jwksUri', line: 7, message: 'http:// or https://',
  },
  {
    name: 'empty jwksUri next to an issuer (CRD minLength)',
    text: ra(['jwtRules:', '- issuer: i', '  jwksUri: ""']),
    code: 'ERR_JWT_JWKS_URI_INVALID', path: 'spec.jwtRules[0].jwksUri', line: 7, message: 'is empty',
  },
  {
    name: 'jwksUri longer than 2048 (CRD)',
    text: ra(['jwtRules:', '- issuer: i', `  jwksUri: https://example.com/${'a'.repeat(2030)}`]),
    code: 'ERR_JWT_JWKS_URI_TOO_LONG', path: 'spec.jwtRules[0].jwksUri', line: 7, message: 'at most 2048',
  },
  // Keys are never fetched from link-local or metadata addresses (stricter than istiod: server-side request forgery).
  {
    name: 'jwksUri at the cloud metadata address',
    text: ra(['jwtRules:', '- issuer: i', '  jwksUri: http://169.254.169.254/latest/meta-data/iam/security-credentials/']),
    code: 'ERR_JWT_JWKS_URI_FORBIDDEN', path: 'spec.jwtRules[0].jwksUri', line: 7, message: 'link-local address (169.254.0.0/16',
  },
  {
    name: 'jwksUri at 169.254.169.254 written as one decimal number',
    text: ra(['jwtRules:', '- issuer: i', '  jwksUri: http://2852039166/keys']),
    code: 'ERR_JWT_JWKS_URI_FORBIDDEN', path: 'spec.jwtRules[0].jwksUri', line: 7, message: '169.254.169.254 is a link-local address',
  },
  {
    name: 'jwksUri at an IPv6 link-local address',
    text: ra(['jwtRules:', '- issuer: i', '  jwksUri: "https://[fe80::a9fe:a9fe]/keys"']),
    code: 'ERR_JWT_JWKS_URI_FORBIDDEN', path: 'spec.jwtRules[0].jwksUri', line: 7, message: 'fe80::/10',
  },
  {
    name: 'jwksUri at a metadata host name',
    text: ra(['jwtRules:', '- issuer: i', '  jwksUri: http://metadata.google.internal/computeMetadata/v1/']),
    code: 'ERR_JWT_JWKS_URI_FORBIDDEN', path: 'spec.jwtRules[0].jwksUri', line: 7, message: 'metadata.google.internal is a cloud metadata service',
  },
  {
    name: 'issuer at a metadata address with neither jwks nor jwksUri (OIDC discovery would fetch there)',
    text: ra(['jwtRules:', '- issuer: "http://169.254.169.254"']),
    code: 'ERR_JWT_ISSUER_FORBIDDEN', path: 'spec.jwtRules[0].issuer', line: 6, message: 'openid-configuration, which is never fetched',
  },
  {
    name: 'jwks and jwksUri together (CRD)',
    text: ra(['jwtRules:', '- issuer: i', '  jwksUri: https://example.com/jwks.json', `  jwks: '{"keys": []}'`]),
    code: 'ERR_JWT_JWKS_EXCLUSIVE', path: 'spec.jwtRules[0].jwks', line: 8, message: 'only one of jwks and jwksUri',
  },
  {
    name: 'inline jwks that is not JSON',
    text: ra(['jwtRules:', '- issuer: i', '  jwks: "not json"']),
    code: 'ERR_JWT_JWKS_INVALID', path: 'spec.jwtRules[0].jwks', line: 7, message: 'not valid JSON',
  },
  {
    name: 'inline jwks that is a JSON list',
    text: ra(['jwtRules:', '- issuer: i', `  jwks: '[{"kty": "RSA"}]'`]),
    code: 'ERR_JWT_JWKS_INVALID', path: 'spec.jwtRules[0].jwks', line: 7, message: 'JSON object with a "keys" list',
  },
  {
    name: 'inline jwks that is a bare JWK',
    text: ra(['jwtRules:', '- issuer: i', `  jwks: '{"kty": "RSA", "n": "abc", "e": "AQAB"}'`]),
    code: 'ERR_JWT_JWKS_INVALID', path: 'spec.jwtRules[0].jwks', line: 7, message: 'single JWK',
  },
  {
    name: 'inline jwks whose keys is not a list',
    text: ra(['jwtRules:', '- issuer: i', `  jwks: '{"keys": {"kty": "RSA"}}'`]),
    code: 'ERR_JWT_JWKS_INVALID', path: 'spec.jwtRules[0].jwks', line: 7, message: 'list of JWK objects',
  },
  {
    name: 'inline jwks key without kty',
    text: ra(['jwtRules:', '- issuer: i', `  jwks: '{"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}, {"n": "abc", "e": "AQAB"}]}'`]),
    code: 'ERR_JWT_JWKS_INVALID', path: 'spec.jwtRules[0].jwks', line: 7, message: 'key #1 has no "kty"',
  },
  {
    name: 'inline jwks key with an unknown kty',
    text: ra(['jwtRules:', '- issuer: i', `  jwks: '{"keys": [{"kty": "DSA"}]}'`]),
    code: 'ERR_JWT_JWKS_INVALID', path: 'spec.jwtRules[0].jwks', line: 7, message: 'unsupported kty "DSA"',
  },
  {
    name: 'empty audience',
    text: ra(['jwtRules:', '- issuer: i', '  audiences: ["a", ""]']),
    code: 'ERR_JWT_AUDIENCE_EMPTY', path: 'spec.jwtRules[0].audiences[1]', line: 7, message: 'audiences must not contain an empty string',
  },
  {
    name: 'fromHeaders entry with an empty name',
    text: ra(['jwtRules:', '- issuer: i', '  fromHeaders:', '  - name: ""', '    prefix: "Bearer "']),
    code: 'ERR_JWT_HEADER_NAME_EMPTY', path: 'spec.jwtRules[0].fromHeaders[0].name', line: 8, message: 'need a header name',
  },
  {
    name: 'fromHeaders entry without a name',
    text: ra(['jwtRules:', '- issuer: i', '  fromHeaders:', '  - prefix: "Bearer "']),
    code: 'ERR_JWT_HEADER_NAME_EMPTY', path: 'spec.jwtRules[0].fromHeaders[0].name', line: 8, message: 'need a header name',
  },
  {
    name: 'empty fromParams entry',
    text: ra(['jwtRules:', '- issuer: i', '  fromParams: ["token", ""]']),
    code: 'ERR_JWT_PARAM_EMPTY', path: 'spec.jwtRules[0].fromParams[1]', line: 7, message: 'empty query parameter name',
  },
  {
    name: 'empty fromCookies entry',
    text: ra(['jwtRules:', '- issuer: i', '  fromCookies: [""]']),
    code: 'ERR_JWT_COOKIE_EMPTY', path: 'spec.jwtRules[0].fromCookies[0]', line: 7, message: 'empty cookie name',
  },
  {
    name: 'outputClaimToHeaders header with a space',
    text: ra(['jwtRules:', '- issuer: i', '  outputClaimToHeaders:', '  - header: "x jwt sub"', '    claim: sub']),
    code: 'ERR_JWT_CLAIM_TO_HEADER_INVALID', path: 'spec.jwtRules[0].outputClaimToHeaders[0].header', line: 8, message: 'letters, digits, "-" and "_"',
  },
  {
    name: 'outputClaimToHeaders header with a colon',
    text: ra(['jwtRules:', '- issuer: i', '  outputClaimToHeaders:', '  - header: ":authority"', '    claim: sub']),
    code: 'ERR_JWT_CLAIM_TO_HEADER_INVALID', path: 'spec.jwtRules[0].outputClaimToHeaders[0].header', line: 8, message: '":authority"',
  },
  {
    name: 'outputClaimToHeaders with an empty header',
    text: ra(['jwtRules:', '- issuer: i', '  outputClaimToHeaders:', '  - header: ""', '    claim: sub']),
    code: 'ERR_JWT_CLAIM_TO_HEADER_EMPTY', path: 'spec.jwtRules[0].outputClaimToHeaders[0].header', line: 8, message: 'need a header name',
  },
  {
    name: 'outputClaimToHeaders with an empty claim',
    text: ra(['jwtRules:', '- issuer: i', '  outputClaimToHeaders:', '  - header: x-sub', '    claim: ""']),
    code: 'ERR_JWT_CLAIM_TO_HEADER_EMPTY', path: 'spec.jwtRules[0].outputClaimToHeaders[0].claim', line: 9, message: 'need a claim name',
  },
  ...([
    ['not a duration', 'abc', 'ERR_JWT_TIMEOUT_INVALID', 'is not a duration'],
    ['a number without unit', '5', 'ERR_JWT_TIMEOUT_INVALID', 'is not a duration'],
    ['an unknown unit', '5d', 'ERR_JWT_TIMEOUT_INVALID', 'is not a duration'],
    ['zero', '0s', 'ERR_JWT_TIMEOUT_TOO_SHORT', 'minimum of 1ms'],
    ['below 1ms', '500us', 'ERR_JWT_TIMEOUT_TOO_SHORT', 'minimum of 1ms'],
    ['negative', '-1s', 'ERR_JWT_TIMEOUT_TOO_SHORT', 'minimum of 1ms'],
    ['a fraction of a millisecond', '1.5ms', 'ERR_JWT_TIMEOUT_PRECISION', 'whole number of milliseconds'],
    ['nanosecond precision', '1s500ns', 'ERR_JWT_TIMEOUT_PRECISION', 'whole number of milliseconds'],
  ] as const).map(([what, value, code, message]): Row => ({
    name: `timeout that is ${what}`,
    text: ra(['jwtRules:', '- issuer: i', `  timeout: "${value}"`]),
    code, path: 'spec.jwtRules[0].timeout', line: 7, message,
  })),
  {
    name: 'more than 4096 jwtRules (CRD)',
    text: ra(['jwtRules:', ...times(4097, (i) => `- {issuer: i${i}}`)]),
    code: 'ERR_JWT_RULES_TOO_MANY', path: 'spec.jwtRules', line: 6, message: 'at most 4096',
  },
  {
    name: 'more than 64 spaceDelimitedClaims (CRD)',
    text: ra(['jwtRules:', '- issuer: i', `  spaceDelimitedClaims: [${times(65, (i) => `c${i}`).join(', ')}]`]),
    code: 'ERR_JWT_SPACE_DELIMITED_CLAIMS_TOO_MANY', path: 'spec.jwtRules[0].spaceDelimitedClaims', line: 7, message: 'at most 64',
  },
  {
    name: 'empty spaceDelimitedClaims entry (CRD minLength)',
    text: ra(['jwtRules:', '- issuer: i', '  spaceDelimitedClaims: ["roles", ""]']),
    code: 'ERR_JWT_SPACE_DELIMITED_CLAIM_EMPTY', path: 'spec.jwtRules[0].spaceDelimitedClaims[1]', line: 7, message: 'empty claim name',
  },
  {
    name: 'second jwt rule is the bad one',
    text: ra(['jwtRules:', '- issuer: good', '- issuer: bad', '  jwksUri: "file:///etc/jwks.json"']),
    code: 'ERR_JWT_JWKS_URI_INVALID', path: 'spec.jwtRules[1].jwksUri', line: 8, message: 'scheme "file"',
  },
];

// ------------------------------------------------------------------------------------------------ warnings

const WARNINGS: readonly Row[] = [
  {
    name: 'jwksUri over plain http (Istio accepts it; the keys can be swapped in transit)',
    text: ra(['jwtRules:', '- issuer: i', '  jwksUri: http://jwks.example.com/keys']),
    code: 'WARN_JWKS_URI_PLAINTEXT', path: 'spec.jwtRules[0].jwksUri', line: 7, message: 'plain http',
  },
  {
    name: 'inline jwks with an RSA exponent of 1 (the key set skips it)',
    text: ra(['jwtRules:', '- issuer: i', `  jwks: '{"keys":[{"kty":"RSA","n":"${'q'.repeat(342)}","e":"AQ"}]}'`]),
    code: 'WARN_JWT_JWKS_KEY_UNUSABLE', path: 'spec.jwtRules[0].jwks', line: 7, message: 'exponent is 1 (smaller than 3',
  },
  {
    name: 'inline jwks with an even RSA exponent',
    text: ra(['jwtRules:', '- issuer: i', `  jwks: '{"keys":[{"kty":"RSA","n":"${'q'.repeat(342)}","e":"AQAA"}]}'`]),
    code: 'WARN_JWT_JWKS_KEY_UNUSABLE', path: 'spec.jwtRules[0].jwks', line: 7, message: 'exponent is 65536, an even number',
  },
  {
    name: 'AuthorizationPolicy selector without labels (validateWorkloadSelector)',
    text: ap(['selector: {}']),
    code: 'WARN_SELECTOR_NO_LABELS', path: 'spec.selector', line: 5, message: 'selects every workload',
  },
  {
    name: 'PeerAuthentication matchLabels empty (validateWorkloadSelector)',
    text: pa(['selector:', '  matchLabels: {}', 'mtls: {mode: STRICT}']),
    code: 'WARN_SELECTOR_NO_LABELS', path: 'spec.selector', line: 6, message: 'no labels',
  },
  {
    name: 'AuthorizationPolicy with targetRefs is ignored by sidecars (policyattachment.go)',
    text: ap(['targetRefs:', '- {kind: Gateway, group: gateway.networking.k8s.io, name: gw}', 'rules: [{}]']),
    code: 'WARN_TARGET_REF_SIDECAR_IGNORED', path: 'spec.targetRefs', line: 6, message: 'sidecars ignore',
  },
  {
    name: 'RequestAuthentication with targetRef is ignored by sidecars (policyattachment.go)',
    text: ra(['targetRef: {kind: Service, name: reviews}', 'jwtRules: [{issuer: i}]']),
    code: 'WARN_TARGET_REF_SIDECAR_IGNORED', path: 'spec.targetRef', line: 5, message: 'targetRef',
  },
  {
    name: 'DENY rule whose source only has requestPrincipals (ValidateAuthorizationPolicy)',
    text: ap(['action: DENY', 'rules:', '- from:', '  - source:', '      requestPrincipals: ["*"]']),
    code: 'WARN_AUTHZ_DENY_ALL_TCP', path: 'spec.rules[0]', line: 7, message: 'denies all TCP traffic',
  },
  {
    name: 'DENY rule whose operation has only methods (ValidateAuthorizationPolicy)',
    text: ap(['action: DENY', 'rules:', '- {}', '- to:', '  - operation: {methods: [DELETE]}']),
    code: 'WARN_AUTHZ_DENY_ALL_TCP', path: 'spec.rules[1]', line: 8, message: 'add ports',
  },
  {
    name: 'DENY rule with TCP sources but an HTTP-only operation (ValidateAuthorizationPolicy)',
    text: ap(['action: DENY', 'rules:', '- from:', '  - source: {namespaces: [foo]}', '  to:', '  - operation: {paths: ["/admin*"]}']),
    code: 'WARN_AUTHZ_DENY_ALL_TCP', path: 'spec.rules[0]', line: 7, message: 'HTTP attributes',
  },
  {
    name: 'DENY rule made only of HTTP conditions (Rampart: widened the same way in authz/model)',
    text: ap(['action: DENY', 'rules:', '- when:', '  - key: request.auth.claims[role]', '    values: ["guest"]']),
    code: 'WARN_AUTHZ_DENY_ALL_TCP', path: 'spec.rules[0]', line: 7, message: 'plain TCP',
  },
  {
    name: 'PeerAuthentication with a selector in the root namespace (ComposePeerAuthentication)',
    text: pa(['selector:', '  matchLabels: {app: a}', 'mtls: {mode: STRICT}'], 'metadata: {name: p, namespace: istio-system}'),
    code: 'WARN_PEER_AUTHN_ROOT_SELECTOR_IGNORED', path: 'spec.selector', line: 6, message: 'is ignored by Istio',
  },
  {
    name: 'PeerAuthentication with a selector in a configured root namespace',
    text: pa(['selector: {matchLabels: {app: a}}', 'portLevelMtls:', '  80: {mode: DISABLE}'], 'metadata: {name: p, namespace: mesh-root}'),
    code: 'WARN_PEER_AUTHN_ROOT_SELECTOR_IGNORED', path: 'spec.selector', line: 5, message: '"mesh-root"',
    ctx: { rootNamespace: 'mesh-root' },
  },
  {
    name: 'inline jwks with an RSA private key',
    text: ra(['jwtRules:', '- issuer: i', `  jwks: '{"keys": [{"kty": "RSA", "n": "abc", "e": "AQAB", "d": "secret", "p": "x"}]}'`]),
    code: 'WARN_JWT_JWKS_PRIVATE_KEY', path: 'spec.jwtRules[0].jwks', line: 7, message: 'private key material ("d", "p")',
  },
  {
    name: 'inline jwks with an EC private key as the second key',
    text: ra(['jwtRules:', '- issuer: i', `  jwks: '{"keys": [{"kty": "RSA", "n": "abc", "e": "AQAB"}, {"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "c"}]}'`]),
    code: 'WARN_JWT_JWKS_PRIVATE_KEY', path: 'spec.jwtRules[0].jwks', line: 7, message: 'key #1',
  },
  {
    name: 'inline jwks with a symmetric key',
    text: ra(['jwtRules:', '- issuer: i', `  jwks: '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'`]),
    code: 'WARN_JWT_JWKS_PRIVATE_KEY', path: 'spec.jwtRules[0].jwks', line: 7, message: 'symmetric (oct)',
  },
  {
    name: 'inline jwks with no keys',
    text: ra(['jwtRules:', '- issuer: i', `  jwks: '{"keys": []}'`]),
    code: 'WARN_JWT_JWKS_NO_KEYS', path: 'spec.jwtRules[0].jwks', line: 7, message: 'every token',
  },
];

for (const row of ERRORS) test(`error ${row.code}: ${row.name}`, () => checkRow(row, 'error'));
for (const row of WARNINGS) test(`warning ${row.code}: ${row.name}`, () => checkRow(row, 'warning'));

test('every row is about a distinct case', () => {
  const names = [...ERRORS, ...WARNINGS].map((r) => r.name);
  assert.equal(new Set(names).size, names.length);
});

// ------------------------------------------------------------------------------------------------ valid resources

interface ValidRow {
  readonly name: string;
  readonly text: string;
  /** Number of security resources in `text`. */
  readonly count: number;
  /** Warning codes expected, in order; none by default. */
  readonly warnings?: readonly string[];
  readonly ctx?: ValidationContext;
}

// RS256 public key from istio/istio security/tools/jwt/samples/jwks.json.
const SAMPLE_JWKS = JSON.stringify({
  keys: [{
    e: 'AQAB',
    kid: 'DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ',
    kty: 'RSA',
    n: 'xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV2He95lZdHtOcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ignkgXfkiEm4sw-4sfb4qdt5oLbyVpmW6x9cfa7vs2WTfURiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZbDAa_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0ua3DRrWnKqTZ0BJ_EyxOGuHJrLsn00fnMQ',
  }],
});

const VALID: readonly ValidRow[] = [
  {
    name: 'allow-nothing (istio.io authorization/authz-http)',
    text: 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow-nothing\n  namespace: default\nspec:\n  {}\n',
    count: 1,
  },
  {
    name: 'deny-method-get with a header condition (istio.io authorization/authz-deny); Istio itself warns about TCP',
    text: `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-method-get
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  action: DENY
  rules:
  - to:
    - operation:
        methods: ["GET"]
    when:
    - key: request.headers[x-token]
      notValues: ["admin"]
`,
    count: 1,
    warnings: ['WARN_AUTHZ_DENY_ALL_TCP'],
  },
  {
    name: 'httpbin viewer with principals, methods and paths (istio.io authorization/authz-http)',
    text: `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: "get-only"
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
      version: v1
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
    - source:
        namespaces: ["dev"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/info*", "*/headers", "/ip"]
        notPaths: ["/info/secret"]
    when:
    - key: request.auth.claims[iss]
      values: ["https://accounts.google.com"]
`,
    count: 1,
  },
  {
    name: 'tcp-policy on ports (istio.io authorization/authz-tcp)',
    text: `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: tcp-policy
  namespace: foo
spec:
  selector:
    matchLabels:
      app: tcp-echo
  action: ALLOW
  rules:
  - to:
    - operation:
        ports: ["9000", "9001"]
`,
    count: 1,
  },
  {
    name: 'ingress gateway JWT: RequestAuthentication + DENY notRequestPrincipals (istio.io authorization/authz-jwt)',
    text: `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: "jwt-example"
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  jwtRules:
  - issuer: "testing@secure.istio.io"
    jwksUri: "https://raw.githubusercontent.com/istio/istio/master/security/tools/jwt/samples/jwks.json"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: "frontend-ingress"
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  action: DENY
  rules:
  - from:
    - source:
        notRequestPrincipals: ["*"]
`,
    count: 2,
    warnings: ['WARN_AUTHZ_DENY_ALL_TCP'],
  },
  {
    name: 'require-jwt with a group claim (istio.io authorization/authz-jwt)',
    text: `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: require-jwt
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  action: ALLOW
  rules:
  - from:
    - source:
       requestPrincipals: ["testing@secure.istio.io/testing@secure.istio.io"]
    when:
    - key: request.auth.claims[groups]
      values: ["group1"]
`,
    count: 1,
  },
  {
    name: 'mesh-wide, namespace and workload PeerAuthentications with portLevelMtls (istio.io authentication/authn-policy)',
    text: `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: "default"
  namespace: "istio-system"
spec:
  mtls:
    mode: STRICT
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: "default"
  namespace: "foo"
spec:
  mtls:
    mode: PERMISSIVE
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: "overwrite-example"
  namespace: "foo"
spec:
  selector:
    matchLabels:
      app: httpbin
  mtls:
    mode: STRICT
  portLevelMtls:
    8080:
      mode: DISABLE
    "9000":
      mode: UNSET
`,
    count: 3,
  },
  {
    name: 'ext-authz CUSTOM policy (istio.io authorization/authz-custom)',
    text: `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ext-authz
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  action: CUSTOM
  provider:
    name: sample-ext-authz-grpc
  rules:
  - to:
    - operation:
        paths: ["/headers"]
    when:
    - key: request.headers[x-ext-authz]
      values: ["deny"]
`,
    count: 1,
  },
  {
    name: 'dry-run DENY policy (istio.io authorization/authz-dry-run)',
    text: `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-path-headers
  namespace: foo
  annotations:
    "istio.io/dry-run": "true"
spec:
  selector:
    matchLabels:
      app: httpbin
  action: DENY
  rules:
  - to:
    - operation:
        ports: ["8000"]
        paths: ["/headers"]
`,
    count: 1,
  },
  {
    name: 'dry-run values Go accepts',
    text: ['T', '0', 'False'].map((v, i) => ap(['rules: [{}]'], `metadata: {name: d${i}, namespace: foo, annotations: {istio.io/dry-run: "${v}"}}`)).join('---\n'),
    count: 3,
  },
  {
    name: 'serviceAccounts and trustDomains, including the accepted forms',
    text: ap(['rules:', '- from:', '  - source:', '      serviceAccounts: ["sleep", "bar/sleep"]', '      notTrustDomains: ["*-td", "td.*", "*"]']),
    count: 1,
  },
  {
    name: 'DENY with only trustDomains in the source: TCP-capable, so no warning (Istio would warn)',
    text: ap(['action: DENY', 'rules:', '- from:', '  - source: {notTrustDomains: ["cluster.local"]}']),
    count: 1,
  },
  {
    name: 'DENY with ports, port 0 and a header condition: no warning',
    text: ap(['action: DENY', 'rules:', '- to:', '  - operation: {ports: ["0", "08080"], methods: [POST]}', '  when:', '  - key: request.headers[x-a]', '    values: ["1"]']),
    count: 1,
  },
  {
    name: 'every supported condition key, not relying on IP parsing',
    text: ap(['rules:', '- when:', ...[
      'request.headers[User-Agent]', 'source.namespace', 'source.principal', 'source.serviceAccount', 'source.trustDomain',
      'request.auth.principal', 'request.auth.audiences', 'request.auth.presenter', 'request.auth.claims[a][b.c/d]', 'connection.sni',
      'experimental.envoy.filters.network.mysql_proxy[db.table]',
    ].flatMap((key) => [`  - key: "${key}"`, '    values: ["v"]']), '  - key: destination.port', '    notValues: ["8080"]']),
    count: 1,
  },
  {
    name: 'source.trustDomain values may contain "/" (istiod checks only wildcards there)',
    text: ap(['rules:', '- when:', '  - key: source.trustDomain', '    values: ["td/x"]']),
    count: 1,
  },
  {
    name: 'AuthorizationPolicy selector in the root namespace applies mesh-wide: no warning',
    text: ap(['selector: {matchLabels: {app: a}}', 'rules: [{}]'], 'metadata: {name: p, namespace: istio-system}'),
    count: 1,
  },
  {
    name: 'PeerAuthentication selector in istio-system when the root namespace is elsewhere',
    text: pa(['selector: {matchLabels: {app: a}}', 'mtls: {mode: STRICT}'], 'metadata: {name: p, namespace: istio-system}'),
    count: 1,
    ctx: { rootNamespace: 'mesh-root' },
  },
  {
    name: 'targetRefs to every supported kind; only the sidecar warning',
    text: ap(['targetRefs:', '- {kind: Service, name: s}', '- {kind: Service, group: "", name: s2}', '- {kind: ServiceEntry, group: networking.istio.io, name: se}',
      '- {kind: Gateway, group: gateway.networking.k8s.io, name: gw}', '- {kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}', 'rules: [{}]']),
    count: 1,
    warnings: ['WARN_TARGET_REF_SIDECAR_IGNORED'],
  },
  {
    name: 'RequestAuthentication with custom locations, claim headers, durations and inline public JWKS',
    text: `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  jwtRules:
  - issuer: "testing@secure.istio.io"
    jwks: '${SAMPLE_JWKS}'
    audiences: ["bookstore"]
    fromHeaders:
    - name: x-jwt-assertion
      prefix: "Bearer "
    fromParams: ["my_token"]
    fromCookies: ["session"]
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders:
    - header: x-jwt-claim-foo_bar
      claim: nested.key1
    forwardOriginalToken: true
    timeout: 1.5s
    spaceDelimitedClaims: ["roles"]
  - jwksUri: https://jwks.example.internal:8080/keys
    timeout: 1m30s
  - issuer: https://accounts.example.com
    timeout: 100ms
  - issuer: https://other.example.com
    timeout: 5
`,
    count: 1,
  },
  {
    name: 'path templates (istio.io authorization/authz-http)',
    text: ap(['rules:', '- to:', '  - operation:', '      paths: ["/store/{**}/cart", "/foo/{*}/bar/{**}", "/allow/admin/{**}"]']),
    count: 1,
  },
  {
    name: 'ipBlocks and remoteIpBlocks from istio.io ingress task',
    text: `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ingress-policy
  namespace: istio-system
spec:
  selector:
    matchLabels:
      app: istio-ingressgateway
  action: ALLOW
  rules:
  - from:
    - source:
        ipBlocks: ["1.2.3.4", "5.6.7.0/24"]
        notRemoteIpBlocks: ["2001:db8::/32", "::1"]
    when:
    - key: source.ip
      values: ["10.0.0.0/8"]
    - key: remote.ip
      notValues: ["192.168.0.1"]
    - key: destination.ip
      values: ["fd00::1"]
`,
    count: 1,
  },
];

for (const row of VALID) {
  test(`valid: ${row.name}`, () => {
    const { resources, diagnostics } = loadResources([{ file: 'ok.yaml', text: row.text }], row.ctx);
    assert.deepEqual(diagnostics.filter((d) => d.severity === 'error'), [], show(diagnostics));
    assert.equal(resources.length, row.count);
    assert.deepEqual(diagnostics.filter((d) => d.severity === 'warning').map((d) => d.code), row.warnings ?? [], show(diagnostics));
  });
}

// ------------------------------------------------------------------------------------------------ whole-resource behaviour

test('every problem of a resource is reported, in line order, and the resource is left out', () => {
  const text = ap([
    'action: DENY', //                                            5
    'provider: {name: ext}', //                                   6  provider without CUSTOM
    'rules:', //                                                  7
    '- from: []', //                                              8  empty from
    '  to:', //                                                   9
    '  - operation: {ports: ["99999"], methods: [""]}', //        10 bad port, empty method
    '  when:', //                                                 11
    '  - key: destination.name', //                              12 removed key
    '    values: ["x"]', //                                       13
    '- null', //                                                  14 null rule
  ]);
  const { resources, diagnostics } = loadResources([{ file: 'm.yaml', text }]);
  assert.equal(resources.length, 0);
  assert.deepEqual(diagnostics.map((d) => `${d.line} ${d.code}`).sort(), [
    '10 ERR_AUTHZ_EMPTY_VALUE',
    '10 ERR_AUTHZ_INVALID_PORT',
    '12 ERR_AUTHZ_WHEN_KEY_UNSUPPORTED',
    '14 ERR_AUTHZ_NULL_RULE',
    '6 ERR_AUTHZ_PROVIDER_NOT_CUSTOM',
    '8 ERR_AUTHZ_EMPTY_RULE_FROM',
  ]);
  const lines = diagnostics.map((d) => d.line);
  assert.deepEqual(lines, [...lines].sort((a, b) => a - b), 'diagnostics are sorted by line');
  assert.ok(diagnostics.every((d) => d.resource === 'AuthorizationPolicy foo/p'));
});

test('CUSTOM with neither rules nor provider reports both', () => {
  const { diagnostics } = loadResources([{ file: 'c.yaml', text: ap(['action: CUSTOM']) }]);
  assert.deepEqual(diagnostics.map((d) => d.code).sort(), ['ERR_AUTHZ_CUSTOM_NO_PROVIDER', 'ERR_AUTHZ_CUSTOM_NO_RULES']);
});

test('a bad resource does not stop a good one in the same file', () => {
  const text = `${pa(['portLevelMtls: {}'])}---\n${pa(['mtls: {mode: STRICT}'], 'metadata: {name: ok, namespace: foo}')}`;
  const { resources, diagnostics } = loadResources([{ file: 'two.yaml', text }]);
  assert.deepEqual(resources.map((r) => r.meta.name), ['ok']);
  assert.deepEqual(diagnostics.map((d) => d.code), ['ERR_PEER_AUTHN_PORT_LEVEL_WITHOUT_SELECTOR', 'ERR_PEER_AUTHN_PORT_LEVEL_EMPTY']);
});
