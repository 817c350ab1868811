import { meshAccessMatrix, type AccessCell, type AccessMatrix } from '../policy/access-matrix.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { formatDiagnostic } from '../resources/diagnostic.ts';
import { loadMeshDirectory } from './mesh-dir.ts';
import type { CommandOutput } from './check.ts';

export interface AccessOptions {
  readonly dir: string;
  readonly json?: boolean;
}

/** `rampart access DIR`: who may call what in a mesh directory. Exit 0, or 2 when the configuration has errors. */
export async function runAccess(o: AccessOptions): Promise<CommandOutput> {
  let loaded;
  try {
    loaded = await loadMeshDirectory(o.dir);
  } catch (e) {
    return { exitCode: 2, stdout: '', stderr: `rampart access: ${(e as Error).message}\n` };
  }
  const errors = loaded.diagnostics.filter((d) => d.severity === 'error');
  // A matrix over a partly loaded configuration would claim access the full one does not give.
  if (errors.length > 0) {
    return { exitCode: 2, stdout: '', stderr: [...errors.map(formatDiagnostic), `rampart access: ${errors.length} error(s) in the configuration; no matrix computed`].join('\n') + '\n' };
  }
  const matrix = meshAccessMatrix(new PolicyEngine(loaded.resources, loaded.meshFile.mesh), loaded.meshFile);
  if (o.json === true) {
    const cells = matrix.cells.map(({ allowedWhen: _, ...c }) => c);
    return { exitCode: 0, stdout: `${JSON.stringify({ sources: matrix.sources, destinations: matrix.destinations, cells }, null, 2)}\n`, stderr: '' };
  }
  return { exitCode: 0, stdout: formatAccessMatrix(matrix, o.dir), stderr: '' };
}

const SHORT: Record<AccessCell['outcome'], string> = { allowed: 'allowed', denied: 'denied', conditional: 'if' };

/** Rows are callers, columns destination ports; every cell is numbered and explained below the table. */
export function formatAccessMatrix(m: AccessMatrix, dir: string): string {
  const columns = m.destinations.map((d) => `${d.workload}:${d.port} ${d.traffic}`);
  const notes: string[] = [];
  const rows = m.sources.map((s) => [s, ...m.destinations.map((d) => {
    const c = m.cells.find((x) => x.source === s && x.destination === d.workload && x.port === d.port)!;
    notes.push(`[${notes.length + 1}] ${s} → ${d.workload}:${d.port}: ${c.outcome === 'conditional' ? `allowed when ${c.condition ?? ''}` : `${c.outcome}: ${c.reason}`}`);
    return `${SHORT[c.outcome]} [${notes.length}]`;
  })]);
  const table = [['caller', ...columns], ...rows];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  const lines = table.map((r) => r.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd());
  return [`rampart access ${dir}: ${m.sources.length} callers, ${m.destinations.length} destination port(s); "if" is allowed on a condition`, '',
    ...lines, '', ...notes, ''].join('\n');
}
