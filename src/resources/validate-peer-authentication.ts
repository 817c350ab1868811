import type { PathSegment } from './diagnostic.ts';
import { parsePortNumber } from './port-number.ts';
import type { Reporter } from './report.ts';
import type { PeerAuthenticationSpec, ResourceMeta } from './types.ts';
import { validateIstioAnnotations } from './validate-annotations.ts';
import type { ValidationContext } from './validate-context.ts';
import { validateWorkloadSelector } from './validate-selector.ts';

/** Istio's semantic checks for PeerAuthentication (pkg/config/validation). Reports through `r`; paths start at `spec`. */
export function validatePeerAuthentication(spec: PeerAuthenticationSpec, meta: ResourceMeta, r: Reporter, ctx: ValidationContext): void {
  validateIstioAnnotations(r, meta, 'PeerAuthentication');
  validateWorkloadSelector(r, spec.selector, ['spec', 'selector']);
  const hasLabels = Object.keys(spec.selector?.matchLabels ?? {}).length > 0;

  const ports = spec.portLevelMtls;
  if (ports !== undefined) {
    const keys = Object.keys(ports);
    if (!hasLabels) {
      r.error(['spec', 'portLevelMtls'], 'ERR_PEER_AUTHN_PORT_LEVEL_WITHOUT_SELECTOR', 'portLevelMtls needs a selector with matchLabels: mesh-wide and namespace-wide PeerAuthentications cannot set per-port modes');
    }
    if (keys.length === 0) {
      r.error(['spec', 'portLevelMtls'], 'ERR_PEER_AUTHN_PORT_LEVEL_EMPTY', 'portLevelMtls is present but empty; remove it or add at least one port');
    }
    for (const key of keys) {
      const port = parsePortNumber(key);
      if (port === undefined || port < 1) {
        r.error(['spec', 'portLevelMtls', portSegment(key)], 'ERR_PEER_AUTHN_PORT_INVALID', `portLevelMtls key "${key}" is not a port; expected a number from 1 to 65535 (the workload's container port)`);
      }
    }
  }

  // ComposePeerAuthentication (pilot/pkg/security/authn/policy_applier.go) skips selector policies that live in the
  // root namespace; the resource is accepted but never has any effect.
  if (hasLabels && meta.namespace === ctx.rootNamespace) {
    r.warn(
      ['spec', 'selector'],
      'WARN_PEER_AUTHN_ROOT_SELECTOR_IGNORED',
      `a PeerAuthentication with a selector in the root namespace "${ctx.rootNamespace}" is ignored by Istio; move it to the workload's namespace, or drop the selector to make it mesh-wide`,
    );
  }
}

/** YAML reads `8080:` as a number key; pointing at it with a number lets the reporter find its line. */
function portSegment(key: string): PathSegment {
  const n = Number(key);
  return key !== '' && Number.isFinite(n) && String(n) === key ? n : key;
}
