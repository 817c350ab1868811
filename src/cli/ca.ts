import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RampartError } from '../errors.ts';
import { CertificateAuthority, createSelfSignedCa, signerRoots, type CaMaterial } from '../identity/ca.ts';
import { certificateFacts } from '../identity/certificate.ts';
import { istioSpiffeId } from '../identity/spiffe-id.ts';
import { normalizeFingerprint } from '../identity/trust-bundle.ts';
import { certificatesFromPem, createCsr, generateKeyPair, privateKeyPem, type KeyType } from '../identity/x509.ts';
import { readCaDir, writeCaDir, writeFiles, WORKLOAD_FILES, CA_FILES } from '../io/ca-dir.ts';
import type { CommandOutput } from './check.ts';
import { parseTtl } from './duration.ts';

function ok(stdout: string): CommandOutput {
  return { exitCode: 0, stdout, stderr: '' };
}

async function guarded(command: string, run: () => Promise<CommandOutput>): Promise<CommandOutput> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof RampartError || (err instanceof Error && 'code' in err && typeof err.code === 'string' && err.code.startsWith('E'))) {
      return { exitCode: 2, stdout: '', stderr: `rampart ${command}: ${(err as Error).message}\n` };
    }
    throw err;
  }
}

function describeRoot(m: CaMaterial): string {
  const f = certificateFacts(m.signingCert);
  return `${f.subject.replaceAll('\n', ', ')} (${f.keyDescription}, valid to ${f.notAfter.toISOString()}, SHA-256 ${f.fingerprint256})`;
}

export interface CaInitOptions {
  readonly dir: string;
  readonly keyType: KeyType;
  readonly ttl: string;
  readonly trustDomain: string;
  readonly force?: boolean;
}

/** `rampart ca init DIR`: a new self-signed root that signs workload certificates. */
export function runCaInit(o: CaInitOptions): Promise<CommandOutput> {
  return guarded('ca init', async () => {
    const material = await createSelfSignedCa({ trustDomain: o.trustDomain, keyType: o.keyType, ttlMs: parseTtl(o.ttl, '--ttl') });
    const files = await writeCaDir(o.dir, material, o.force === true);
    return ok(`created a root CA for trust domain ${o.trustDomain}: ${describeRoot(material)}\n${files.map((f) => `  wrote ${f}`).join('\n')}\n`);
  });
}

export interface CaIssueOptions {
  readonly ca: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly trustDomain: string;
  readonly ttl?: string;
  readonly maxTtl?: string;
  readonly keyType: KeyType;
  readonly out: string;
  readonly force?: boolean;
}

/** `rampart ca issue`: a key and SVID for manual use, as key.pem, cert-chain.pem and root-cert.pem. */
export function runCaIssue(o: CaIssueOptions): Promise<CommandOutput> {
  return guarded('ca issue', async () => {
    const material = await readCaDir(o.ca);
    const ca = new CertificateAuthority(material, {
      trustDomain: o.trustDomain,
      ...(o.maxTtl === undefined ? {} : { maxTtlMs: parseTtl(o.maxTtl, '--max-ttl') }),
    });
    const identity = istioSpiffeId(o.trustDomain, o.namespace, o.serviceAccount);
    const keys = await generateKeyPair(o.keyType);
    const issued = ca.issue({ csr: createCsr(keys, identity.uri), ...(o.ttl === undefined ? {} : { ttlMs: parseTtl(o.ttl, '--ttl') }) }, identity);
    const files = await writeFiles(
      o.out,
      [
        { name: WORKLOAD_FILES.key, text: privateKeyPem(keys.privateKey), secret: true },
        { name: WORKLOAD_FILES.chain, text: issued.chainPem },
        { name: WORKLOAD_FILES.root, text: issued.rootsPem },
      ],
      o.force === true,
    );
    return ok(
      `issued ${identity.uri}\n  serial ${issued.serial}, valid ${issued.notBefore.toISOString()} to ${issued.notAfter.toISOString()}\n` +
        files.map((f) => `  wrote ${f}`).join('\n') +
        '\n',
    );
  });
}

export interface CaTokenOptions {
  readonly ca: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly trustDomain: string;
  readonly ttl: string;
}

/** `rampart ca token`: a single-use bootstrap token for one namespace/service account, on stdout. */
export function runCaToken(o: CaTokenOptions): Promise<CommandOutput> {
  return guarded('ca token', async () => {
    const ca = new CertificateAuthority(await readCaDir(o.ca), { trustDomain: o.trustDomain });
    return ok(`${await ca.bootstrapToken(o.namespace, o.serviceAccount, parseTtl(o.ttl, '--ttl'))}\n`);
  });
}

export interface CaTrustOptions {
  readonly ca: string;
  readonly add?: readonly string[];
  readonly remove?: readonly string[];
}

/**
 * `rampart ca trust DIR`: lists, adds or retires roots of root-cert.pem (the trust bundle handed out with every
 * certificate). A root that anchors the current signer cannot be retired.
 */
export function runCaTrust(o: CaTrustOptions): Promise<CommandOutput> {
  return guarded('ca trust', async () => {
    const material = await readCaDir(o.ca);
    let roots = [...material.roots];
    for (const file of o.add ?? []) roots.push(...certificatesFromPem(await readFile(file, 'utf8'), file));
    for (const fp of o.remove ?? []) {
      const want = normalizeFingerprint(fp);
      const victim = roots.find((r) => r.fingerprint256 === want);
      if (victim === undefined) throw new RampartError('ERR_ROOT_NOT_FOUND', `no root with fingerprint ${want} in ${join(o.ca, CA_FILES.root)}`);
      if (anchorsSigner(material, victim)) {
        throw new RampartError('ERR_ROOT_IN_USE', `root ${want} anchors the current signer; switch the signer first ("rampart ca use")`);
      }
      roots = roots.filter((r) => r !== victim);
    }
    for (const r of roots) if (o.add !== undefined && !certificateFacts(r).isCA) throw new RampartError('ERR_ROOT_NOT_CA', `certificate ${r.fingerprint256} is not a CA certificate (basic constraints CA=false); a trusted root must be one`);
    const changed = (o.add?.length ?? 0) + (o.remove?.length ?? 0) > 0;
    const next: CaMaterial = { ...material, roots: dedupe(roots) };
    if (changed) await writeCaDir(o.ca, next, true);
    const list = next.roots.map((r) => {
      const f = certificateFacts(r);
      return `  ${f.fingerprint256}  ${f.subject.replaceAll('\n', ', ')}  valid to ${f.notAfter.toISOString()}${anchorsSigner(next, r) ? '  (signer)' : ''}`;
    });
    return ok(`${changed ? 'updated' : 'trusted'} roots in ${join(o.ca, CA_FILES.root)}:\n${list.join('\n')}\n`);
  });
}

export interface CaUseOptions {
  readonly ca: string;
  readonly signer: string;
}

/** `rampart ca use DIR --signer NEWDIR`: NEWDIR's CA becomes DIR's signer; DIR keeps trusting every root it had. */
export function runCaUse(o: CaUseOptions): Promise<CommandOutput> {
  return guarded('ca use', async () => {
    const current = await readCaDir(o.ca);
    const incoming = await readCaDir(o.signer);
    const roots = dedupe([...current.roots, ...incoming.roots]);
    const next: CaMaterial = { ...incoming, roots };
    await writeCaDir(o.ca, next, true);
    return ok(`${o.ca} now signs with ${describeRoot(next)}\ntrusted roots: ${roots.length}\n`);
  });
}

function anchorsSigner(m: CaMaterial, root: { fingerprint256: string }): boolean {
  return signerRoots(m).some((r) => r.fingerprint256 === root.fingerprint256);
}

function dedupe<T extends { fingerprint256: string }>(certs: readonly T[]): T[] {
  const seen = new Set<string>();
  return certs.filter((c) => (seen.has(c.fingerprint256) ? false : (seen.add(c.fingerprint256), true)));
}
