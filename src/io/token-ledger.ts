import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsedTokenLedger } from '../identity/bootstrap-token.ts';

/** Where a control plane keeps the IDs of bootstrap tokens already used, beside its CA files. */
export const LEDGER_FILE = 'used-bootstrap-tokens.json';

/**
 * A used-token ledger kept in `dir`: loaded at start and rewritten (temporary file, then rename) after every CSR
 * it records, so a restarted control plane still refuses a token that was used before the restart. Written
 * synchronously: the CSR is answered only after its token is on disk.
 */
export function persistentLedger(dir: string): UsedTokenLedger {
  const file = join(dir, LEDGER_FILE);
  let entries: Array<[string, number]> = [];
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    if (Array.isArray(parsed)) entries = parsed.filter((e): e is [string, number] => Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'number');
  } catch {
    // No ledger yet, or unreadable: start empty (the tokens' own expiry still bounds any reuse).
  }
  return new UsedTokenLedger(entries, (live) => {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(live), { mode: 0o600 });
    renameSync(tmp, file);
  });
}
