import type { MeshFile } from '../resources/mesh-file.ts';

/**
 * The names a captured workload resolves mesh services by, as /etc/hosts lines: each service's address under
 * `<name>.<namespace>`, `<name>.<namespace>.svc` and `<name>.<namespace>.svc.cluster.local`, and the bare `<name>` for
 * services of the workload's own namespace (what Kubernetes' resolver search path gives a pod). Pure.
 */

const BEGIN = '# BEGIN rampart mesh services (written by the sidecar; edits inside are replaced)';
const END = '# END rampart mesh services';

export function hostsBlock(mesh: MeshFile, namespace: string): string {
  const lines = [BEGIN];
  const sorted = [...mesh.services].sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
  for (const s of sorted) {
    const names = [`${s.name}.${s.namespace}.svc.cluster.local`, `${s.name}.${s.namespace}.svc`, `${s.name}.${s.namespace}`];
    if (s.namespace === namespace) names.push(s.name);
    lines.push(`${s.address}\t${names.join(' ')}`);
  }
  lines.push(END);
  return `${lines.join('\n')}\n`;
}

/** The hosts file with the block replaced (or appended): every line outside it stays as it was. */
export function withHostsBlock(existing: string, block: string): string {
  const start = existing.indexOf(BEGIN);
  const end = existing.indexOf(END);
  if (start !== -1 && end > start) {
    const after = existing.indexOf('\n', end);
    return existing.slice(0, start) + block + (after === -1 ? '' : existing.slice(after + 1));
  }
  const base = existing === '' || existing.endsWith('\n') ? existing : `${existing}\n`;
  return base + block;
}
