import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { RampartError } from '../errors.ts';
import { inspectCertificates, type InspectReport } from '../identity/inspect.ts';
import { parseSpiffeId } from '../identity/spiffe-id.ts';
import { TrustBundle } from '../identity/trust-bundle.ts';
import { certificatesFromPem } from '../identity/x509.ts';
import { readStdin } from '../io/config-files.ts';
import type { CommandOutput } from './check.ts';
import { formatRemaining } from './duration.ts';

export interface InspectOptions {
  readonly file: string;
  /** root-cert.pem to verify the chain against; by default a root-cert.pem beside the file, if there is one. */
  readonly roots?: string;
  readonly trustDomain?: string;
  readonly json?: boolean;
  readonly now?: number;
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** `rampart cert inspect FILE|-`: exit 0 clean, 1 with warnings, 2 unreadable. */
export async function runCertInspect(opts: InspectOptions): Promise<CommandOutput> {
  try {
    const text = opts.file === '-' ? await readStdin() : await readFile(opts.file, 'utf8');
    const certs = certificatesFromPem(text, opts.file === '-' ? 'standard input' : opts.file);
    let rootsFile = opts.roots;
    let rootsText = rootsFile === undefined ? undefined : await readFile(rootsFile, 'utf8');
    if (rootsText === undefined && opts.file !== '-') {
      const beside = join(dirname(opts.file), 'root-cert.pem');
      if (beside !== opts.file) {
        rootsText = await readIfExists(beside);
        if (rootsText !== undefined) rootsFile = beside;
      }
    }
    let bundle: TrustBundle | undefined;
    if (rootsText !== undefined) {
      const leafUri = certs[0] === undefined ? undefined : /URI:(spiffe:\/\/[^,\s]+)/.exec(certs[0].subjectAltName ?? '')?.[1];
      let td = opts.trustDomain;
      if (td === undefined && leafUri !== undefined) {
        try {
          td = parseSpiffeId(leafUri).trustDomain;
        } catch {
          // reported by the inspection itself
        }
      }
      bundle = TrustBundle.fromPem(td ?? 'cluster.local', rootsText);
    }
    const report = inspectCertificates(certs, bundle, opts.now);
    const stdout = opts.json === true ? JSON.stringify({ file: opts.file, roots: rootsFile, ...report }, null, 2) + '\n' : formatReport(report, rootsFile);
    return { exitCode: report.warnings > 0 ? 1 : 0, stdout, stderr: '' };
  } catch (err) {
    if (err instanceof RampartError || (err instanceof Error && 'code' in err && err.code === 'ENOENT')) {
      return { exitCode: 2, stdout: '', stderr: `rampart cert inspect: ${(err as Error).message}\n` };
    }
    throw err;
  }
}

function formatReport(report: InspectReport, rootsFile: string | undefined): string {
  const lines: string[] = [];
  const n = report.certificates.length;
  report.certificates.forEach((c, i) => {
    if (i > 0) lines.push('');
    lines.push(`certificate ${i + 1} of ${n}: ${c.role}`);
    const row = (k: string, v: string): void => void lines.push(`  ${k.padEnd(14)}${v}`);
    if (c.role === 'leaf') row('SPIFFE ID', c.spiffeId ?? '(none)');
    row('subject', c.subject === '' ? '(empty)' : c.subject.replaceAll('\n', ', '));
    const signer = c.signedBy === 'self' ? ' (self-signed)' : typeof c.signedBy === 'number' ? ` (certificate ${c.signedBy + 1})` : c.signedBy === 'bundle' ? ' (a root of the bundle)' : '';
    row('issuer', (c.issuer === '' ? '(empty)' : c.issuer.replaceAll('\n', ', ')) + signer);
    row('valid', `${c.notBefore} to ${c.notAfter}`);
    row('time left', c.remainingMs > 0 ? `${formatRemaining(c.remainingMs)} of ${formatRemaining(c.lifetimeMs)}` : `expired ${formatRemaining(-c.remainingMs)} ago`);
    row('key', c.key);
    row('CA', c.isCA ? 'yes' : 'no');
    row('key usage', c.keyUsage === undefined ? '(none)' : c.keyUsage.join(', '));
    row('ext key usage', c.extKeyUsage === undefined ? '(none)' : c.extKeyUsage.join(', '));
    if (c.sans.length > 0 && (c.role === 'leaf' || c.sans.length > 0)) row('SANs', c.sans.join(', '));
    row('serial', c.serial);
    row('SHA-256', c.fingerprint256);
    for (const w of c.warnings) lines.push(`  warning: ${w}`);
  });
  lines.push('');
  const names = report.certificates.map((c) => (c.role === 'leaf' ? (c.spiffeId ?? 'leaf') : c.subject.replaceAll('\n', ', ') || '(empty subject)'));
  if (report.anchor !== undefined) names.push(`${report.anchor.subject.replaceAll('\n', ', ')} (root from ${rootsFile})`);
  lines.push(`chain: ${names.join(' <- ')}`);
  if (report.chain !== undefined) lines.push(`verification: ${report.chain}`);
  else if (report.certificates[0]?.role !== 'leaf') lines.push('verification: not an SVID (the first certificate is a CA), not checked');
  else lines.push('verification: no roots given (--roots root-cert.pem verifies the chain)');
  lines.push(report.warnings === 0 ? 'no warnings' : `${report.warnings} warning(s)`);
  return lines.join('\n') + '\n';
}
