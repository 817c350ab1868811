import type { StatusReport } from './protocol.ts';

/** `rampart status` as text: the configuration, what was rejected, and one row per connected proxy. */
export function formatStatus(r: StatusReport, now: Date): string {
  const lines: string[] = [];
  lines.push(`control plane ${r.controlPlane.identity} on port ${r.controlPlane.port ?? '-'}`);
  lines.push(`configuration version ${r.version ?? '-'} from ${r.source}${r.lastChange === null ? '' : ` (changed ${r.lastChange})`}: ${r.resources} resources, ${r.workloads.length} workloads`);
  if (r.sourceError !== null) lines.push(`source unreadable: ${r.sourceError}`);
  if (r.rejected.length > 0) {
    lines.push(`rejected (their last good content stays in force):`);
    for (const e of r.rejected) lines.push(`  ${e}`);
  }
  const head = ['PROXY', 'WORKLOAD', 'IDENTITY', 'VERSION', 'STATE', 'CERT EXPIRES'];
  const rows = r.proxies.map((p) => [
    String(p.id),
    p.workload,
    p.identity,
    `${p.ackedVersion ?? '-'}${p.sentVersion !== null && p.sentVersion !== p.ackedVersion ? ` (sent ${p.sentVersion})` : ''}`,
    p.state === 'NACK' ? `NACK: ${p.error ?? ''}` : p.ackedVersion === r.version ? 'SYNCED' : p.state,
    p.certNotAfter === null ? '-' : `${p.certNotAfter} (in ${remaining(new Date(p.certNotAfter).getTime() - now.getTime())})`,
  ]);
  if (rows.length === 0) {
    lines.push('no proxy connected');
  } else {
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
    for (const row of [head, ...rows]) lines.push(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
  }
  return `${lines.join('\n')}\n`;
}

function remaining(ms: number): string {
  if (ms <= 0) return 'expired';
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  return h > 0 ? `${h}h${m}m` : `${m}m${Math.floor((ms % 60_000) / 1000)}s`;
}
