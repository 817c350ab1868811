import { formatDecision } from '../policy/explain.ts';
import { decisionText, type CaseResult, type DecisionChange } from './run.ts';

/**
 * What `rampart test` prints: one line per case as test runners do, the explanation of every failure, a summary;
 * the same as JSON, and as JUnit XML for CI systems that draw test reports. Pure: results in, text out.
 */

export interface FileResults {
  readonly file: string;
  readonly results: readonly CaseResult[];
}

export interface RunSummary {
  readonly passed: number;
  readonly failed: number;
  readonly files: number;
}

export function summarize(files: readonly FileResults[]): RunSummary {
  let passed = 0;
  let failed = 0;
  for (const f of files) for (const r of f.results) r.mismatches.length === 0 ? passed++ : failed++;
  return { passed, failed, files: files.length };
}

const indent = (text: string, by: string): string => text.split('\n').map((l) => `${by}${l}`).join('\n');

export function formatRun(files: readonly FileResults[]): string {
  const out: string[] = [];
  for (const f of files) {
    out.push(f.file);
    for (const r of f.results) {
      if (r.mismatches.length === 0) {
        out.push(`  ✔ ${r.case.name}  ${decisionText(r.decision)}`);
        continue;
      }
      out.push(`  ✖ ${r.case.name}  (${r.case.file}:${r.case.line})`);
      for (const m of r.mismatches) out.push(`      ${m}`);
      out.push(indent(formatDecision(r.decision), '      │ '));
    }
  }
  const s = summarize(files);
  out.push('', `${s.passed + s.failed} case(s) in ${s.files} file(s): ${s.passed} passed, ${s.failed} failed`);
  return `${out.join('\n')}\n`;
}

export function runJson(files: readonly FileResults[]): string {
  return `${JSON.stringify({
    ...summarize(files),
    suites: files.map((f) => ({
      file: f.file,
      cases: f.results.map((r) => ({
        name: r.case.name, line: r.case.line, passed: r.mismatches.length === 0, mismatches: r.mismatches,
        expect: r.case.expect ?? null, decision: r.decision,
      })),
    })),
  }, null, 2)}\n`;
}

function xml(s: string): string {
  // Characters XML 1.0 cannot carry at all are dropped; the five specials are escaped.
  return s.replace(/[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd]/gu, '').replace(/&/g, '&amp;').replace(/</g, '&lt;')
    .replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** JUnit XML as Jenkins, GitLab and GitHub reporters read it: a testsuite per file, a testcase per case. */
export function runJunit(files: readonly FileResults[]): string {
  const s = summarize(files);
  const out = ['<?xml version="1.0" encoding="UTF-8"?>', `<testsuites name="rampart test" tests="${s.passed + s.failed}" failures="${s.failed}">`];
  for (const f of files) {
    const failures = f.results.filter((r) => r.mismatches.length > 0).length;
    out.push(`  <testsuite name="${xml(f.file)}" tests="${f.results.length}" failures="${failures}" errors="0">`);
    for (const r of f.results) {
      const head = `    <testcase name="${xml(r.case.name)}" classname="${xml(f.file)}" file="${xml(r.case.file)}" line="${r.case.line}"`;
      if (r.mismatches.length === 0) {
        out.push(`${head}/>`);
        continue;
      }
      out.push(`${head}>`, `      <failure message="${xml(r.mismatches.join('; '))}" type="decision">${xml(`${r.mismatches.join('\n')}\n\n${formatDecision(r.decision)}`)}</failure>`, '    </testcase>');
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return `${out.join('\n')}\n`;
}

export function formatDiff(changes: readonly DecisionChange[], total: number, oldLabel: string, newLabel: string): string {
  const out = [`rampart test --diff ${oldLabel} ${newLabel}: ${changes.length} of ${total} decision(s) change`];
  const count = (k: DecisionChange['kind']): number => changes.filter((c) => c.kind === k).length;
  if (changes.length > 0) out.push(`  ${count('widens')} widen access, ${count('narrows')} narrow it, ${count('moves')} decided otherwise`);
  for (const c of changes) {
    out.push('', `${c.kind.toUpperCase().padEnd(7)} ${c.case.name}  (${c.case.file}:${c.case.line})`,
      `  before: ${decisionText(c.before)}  ${c.before.reason}`, `  after:  ${decisionText(c.after)}  ${c.after.reason}`);
  }
  return `${out.join('\n')}\n`;
}

export function diffJson(changes: readonly DecisionChange[], total: number): string {
  return `${JSON.stringify({
    cases: total,
    changes: changes.map((c) => ({ name: c.case.name, file: c.case.file, line: c.case.line, kind: c.kind, before: c.before, after: c.after })),
  }, null, 2)}\n`;
}
