import type { Decision } from './decision.ts';

/** Human-readable rendering of a decision and its trace, as `rampart check` prints it. */
export function formatDecision(d: Decision): string {
  const lines: string[] = [];
  const status = d.status === null ? `connection ${d.connection ?? 'closed'}` : String(d.status);
  lines.push(`${d.decision} (${status})  ${d.reason}`);
  if (d.policy !== null) lines.push(`  decided by: ${d.policy}${d.rule === null ? '' : ` rule ${d.rule}`}`);
  lines.push(`  mTLS mode: ${d.mtlsMode}`);
  if (d.customProvider !== null) lines.push(`  CUSTOM provider: ${d.customProvider}`);
  if (d.audit.length > 0) lines.push(`  audit: ${d.audit.map((a) => `${a.policy} rule ${a.rule}`).join(', ')}`);
  for (const dr of d.dryRun) lines.push(`  dry-run ${dr.action}: would be ${dr.result}${dr.policy === null ? '' : ` by ${dr.policy} rule ${dr.rule}`}`);
  if (d.trace.length > 0) {
    lines.push('trace:');
    d.trace.forEach((s, i) => {
      lines.push(`  ${String(i + 1).padStart(2)}. ${s.step.padEnd(7)} ${s.message}`);
      for (const p of s.policies ?? []) {
        const tag = p.dryRun ? ' [dry-run]' : '';
        lines.push(`        ${p.action} ${p.policy}${tag} (${p.file}:${p.line}): ${p.matched ? 'MATCHED' : 'no match'}`);
        for (const n of p.notes) lines.push(`          note: ${n}`);
        for (const sk of p.skipped) lines.push(`          rule ${sk.rule}: skipped: ${sk.reason}`);
        for (const r of p.rules) {
          const where = r.line === null ? '' : ` (line ${r.line})`;
          if (r.matched) lines.push(`          rule ${r.rule}${where}: matched`);
          else if (r.mismatches.length === 0) lines.push(`          rule ${r.rule}${where}: no match`);
          else for (const m of r.mismatches) lines.push(`          rule ${r.rule}${where}: ${m}`);
          for (const rm of r.removed) lines.push(`          rule ${r.rule}: condition dropped: ${rm}`);
        }
      }
    });
  }
  return lines.join('\n');
}
