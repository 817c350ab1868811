import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, chmod, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { RampartError } from '../errors.ts';
import { caMaterialFromPem, caMaterialToPem, type CaMaterial } from '../identity/ca.ts';

/**
 * CA and workload credential files on disk, named as Istio names them: a CA directory holds `ca-cert.pem`,
 * `ca-key.pem`, `cert-chain.pem` and `root-cert.pem` (the `cacerts` layout, so a plug-in CA directory is used as is);
 * a workload directory holds `key.pem`, `cert-chain.pem` and `root-cert.pem`. Private keys are 0600; every file is
 * written to a temporary name and renamed, so a reader never sees half a file and a crash leaves the old one.
 */

export const CA_FILES = { cert: 'ca-cert.pem', key: 'ca-key.pem', chain: 'cert-chain.pem', root: 'root-cert.pem' } as const;
export const WORKLOAD_FILES = { key: 'key.pem', chain: 'cert-chain.pem', root: 'root-cert.pem' } as const;

export class FileExistsError extends RampartError {
  constructor(readonly files: readonly string[]) {
    super('ERR_FILE_EXISTS', `${files.join(', ')} already exist${files.length === 1 ? 's' : ''}; pass --force to overwrite`);
  }
}

export interface FileToWrite {
  readonly name: string;
  readonly text: string;
  /** Private material: created 0600. */
  readonly secret?: boolean;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** Writes one file atomically: a temporary file in the same directory, fsync'd, then renamed over the target. */
export async function writeFileAtomic(path: string, text: string, mode = 0o644): Promise<void> {
  const tmp = join(dirname(path), `.${randomBytes(6).toString('hex')}.tmp`);
  // The mode is set at creation, so a secret is never readable by others, not even for a moment.
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await chmod(tmp, mode); // the umask may have narrowed a public file's mode
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/** Writes a set of files into `dir` (created 0700 if missing); refuses to replace any existing one unless `force`. */
export async function writeFiles(dir: string, files: readonly FileToWrite[], force: boolean): Promise<string[]> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (!force) {
    const present: string[] = [];
    for (const f of files) if (await exists(join(dir, f.name))) present.push(join(dir, f.name));
    if (present.length > 0) throw new FileExistsError(present);
  }
  const written: string[] = [];
  for (const f of files) {
    const path = join(dir, f.name);
    await writeFileAtomic(path, f.text, f.secret === true ? 0o600 : 0o644);
    written.push(path);
  }
  return written;
}

export async function writeCaDir(dir: string, material: CaMaterial, force: boolean): Promise<string[]> {
  const pem = caMaterialToPem(material);
  return writeFiles(
    dir,
    [
      { name: CA_FILES.key, text: pem.caKeyPem, secret: true },
      { name: CA_FILES.cert, text: pem.caCertPem },
      { name: CA_FILES.chain, text: pem.certChainPem },
      { name: CA_FILES.root, text: pem.rootCertPem },
    ],
    force,
  );
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Reads a CA directory (self-signed or plug-in); a missing or broken file is an error naming it. */
export async function readCaDir(dir: string): Promise<CaMaterial> {
  const caCertPem = await readOptional(join(dir, CA_FILES.cert));
  const caKeyPem = await readOptional(join(dir, CA_FILES.key));
  if (caCertPem === undefined || caKeyPem === undefined) {
    throw new RampartError('ERR_CA_NOT_FOUND', `${dir} is not a CA directory (it needs ${CA_FILES.cert} and ${CA_FILES.key}; create one with "rampart ca init ${dir}")`);
  }
  const certChainPem = await readOptional(join(dir, CA_FILES.chain));
  const rootCertPem = await readOptional(join(dir, CA_FILES.root));
  try {
    return caMaterialFromPem({ caCertPem, caKeyPem, ...(certChainPem === undefined ? {} : { certChainPem }), ...(rootCertPem === undefined ? {} : { rootCertPem }) });
  } catch (err) {
    if (err instanceof RampartError) throw new RampartError(err.code, `${dir}: ${err.message}`, { cause: err });
    throw err;
  }
}
