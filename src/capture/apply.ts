/**
 * Installs, lists and removes the capture rules of rules.ts in a network namespace, with nft or iptables-restore.
 * The I/O edge of src/capture: every command goes through `run`, which runs it in the namespace (`ip netns exec`),
 * bounds its time, and turns a missing command, a missing namespace, a refusal and a failure into CaptureErrors that
 * carry the command's stderr.
 *
 * What is ours and nothing else: the nftables table `inet rampart`; the iptables nat chains RAMPART_* and the rules of
 * PREROUTING and OUTPUT that jump to them. Whatever else a namespace has is left as it is.
 */
import { spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { CaptureError } from '../errors.ts';
import { IPTABLES_CHAINS, NFT_TABLE, iptablesRules, nftRuleset, type CaptureOptions } from './rules.ts';

export type CaptureBackend = 'nft' | 'iptables';

export interface CaptureTarget {
  /** A named network namespace (`ip netns list`); the current namespace when absent. */
  readonly netns?: string;
}

export interface CaptureApplyOptions extends CaptureTarget {
  /** Detected when absent: nft where it works, else iptables. */
  readonly backend?: CaptureBackend;
  /** Build the rules for the backend and run nothing (no root needed; the backend is the installed one, or nft). */
  readonly dryRun?: boolean;
}

export interface CaptureApplied {
  readonly backend: CaptureBackend;
  /** The text given to `nft -f -`, or to iptables-restore then ip6tables-restore (without the deletions of old jumps). */
  readonly rules: string;
}

export interface InstalledCapture {
  readonly backend: CaptureBackend;
  /** `nft list table inet rampart`, or the RAMPART lines of iptables-save and ip6tables-save. */
  readonly rules: string;
}

/** Every command is bounded: a wedged nft or a held xtables lock must not hang `rampart capture`. */
const COMMAND_TIMEOUT_MS = 30_000;
/** iptables-restore waits this long for the xtables lock (iptables-legacy; iptables-nft ignores it). */
const XTABLES_WAIT_S = '5';

const INSTALL_HINT = 'install nftables (nft) or iptables (iptables-restore), e.g. apt-get install nftables';

/**
 * nft when the binary exists and can list the namespace's tables, else iptables when iptables-save can read its nat
 * table. A refusal (not root) or a missing namespace is reported as such, not as a missing backend.
 */
export async function detectBackend(netns?: string): Promise<CaptureBackend> {
  const t = target(netns === undefined ? {} : { netns });
  const reasons: string[] = [];
  const works = async (backend: CaptureBackend, probe: () => Promise<unknown>): Promise<boolean> => {
    try {
      await probe();
      return true;
    } catch (err) {
      if (err instanceof CaptureError && (err.code === 'ERR_CAPTURE_PERMISSION' || err.code === 'ERR_CAPTURE_NETNS')) throw err;
      reasons.push(`${backend}: ${(err as Error).message}`);
      return false;
    }
  };
  const nft = await toolsOf('nft');
  if (nft === undefined) reasons.push('nft is not installed');
  else if (await works('nft', () => run(t, nft.nft, ['list', 'tables']))) return 'nft';
  const ipt = await toolsOf('iptables');
  if (ipt === undefined) reasons.push('iptables-restore, ip6tables-restore, iptables-save or ip6tables-save is not installed');
  else if (await works('iptables', () => run(t, ipt.save4, ['-t', 'nat']))) return 'iptables';
  throw new CaptureError('ERR_CAPTURE_NO_BACKEND', `no packet-filter backend works here (${reasons.join('; ')}): ${INSTALL_HINT}`);
}

/**
 * Installs the rules, replacing an earlier apply's in one transaction per tool (so a reapply leaves no moment without
 * capture and never a second copy), then removes the other backend's rules if an earlier apply left some: two sets of
 * nat rules at the same hook priority would both redirect, and which one acts is not defined (with iptables-nft here,
 * the one installed last wins).
 */
export async function applyCapture(o: CaptureOptions, opts: CaptureApplyOptions = {}): Promise<CaptureApplied> {
  const t = target(opts);
  if (opts.dryRun === true) {
    const backend = opts.backend ?? ((await toolsOf('nft')) !== undefined || (await toolsOf('iptables')) === undefined ? 'nft' : 'iptables');
    return { backend, rules: rulesFor(o, backend) };
  }
  const backend = opts.backend ?? (await detectBackend(opts.netns));
  const rules = rulesFor(o, backend);
  if (backend === 'nft') {
    const { nft } = await need('nft');
    await run(t, nft, ['-f', '-'], rules);
  } else {
    const tools = await need('iptables');
    for (const family of [4, 6] as const) {
      const saved = await run(t, family === 4 ? tools.save4 : tools.save6, ['-t', 'nat']);
      const input = withOldJumpsDeleted(iptablesRules(o, family), saved);
      await run(t, family === 4 ? tools.restore4 : tools.restore6, ['-w', XTABLES_WAIT_S, '--noflush'], input);
    }
  }
  await removeFrom(t, backend === 'nft' ? 'iptables' : 'nft', false);
  return { backend, rules };
}

/**
 * Removes what applyCapture added: with `backend`, that backend's rules; without, both backends' where their tools
 * are installed and work. Idempotent: nothing to remove is `{ removed: false }`, not an error.
 */
export async function removeCapture(opts: CaptureTarget & { readonly backend?: CaptureBackend } = {}): Promise<{ removed: boolean }> {
  const t = target(opts);
  let removed = false;
  for (const backend of opts.backend === undefined ? (['nft', 'iptables'] as const) : [opts.backend]) {
    if (await removeFrom(t, backend, opts.backend !== undefined)) removed = true;
  }
  return { removed };
}

/** The backends whose capture rules are present in the namespace, with the rules as the tools list them. */
export async function captureInstalled(opts: CaptureTarget = {}): Promise<InstalledCapture[]> {
  const t = target(opts);
  const found: InstalledCapture[] = [];
  for (const backend of ['nft', 'iptables'] as const) {
    const rules = (await listed(t, backend, false))?.text;
    if (rules !== undefined) found.push({ backend, rules });
  }
  return found;
}

// ---------------------------------------------------------------------------------------------------------------
// Backends

function rulesFor(o: CaptureOptions, backend: CaptureBackend): string {
  return backend === 'nft' ? nftRuleset(o) : `${iptablesRules(o, 4)}\n${iptablesRules(o, 6)}`;
}

interface Listed {
  /** Our rules as the tool lists them. */
  readonly text: string;
  /** iptables: our lines per family, to delete them by. */
  readonly families?: readonly { readonly family: 4 | 6; readonly lines: OurLines }[];
}

/**
 * Our rules in the namespace, or undefined when there are none. A backend that was not asked for by name and whose
 * tools are missing, or fail to list (no nf_tables in the kernel, say), has none: it cannot have been applied.
 * Refusals and a missing namespace are errors either way.
 */
async function listed(t: CaptureTarget, backend: CaptureBackend, named: boolean): Promise<Listed | undefined> {
  const tools = named ? await need(backend) : await toolsOf(backend);
  if (tools === undefined) return undefined;
  try {
    if ('nft' in tools) {
      try {
        return { text: await run(t, tools.nft, ['list', 'table', ...NFT_TABLE.split(' ')]) };
      } catch (err) {
        // nft says "Error: No such file or directory" for a table that is not there.
        if (err instanceof CaptureError && err.code === 'ERR_CAPTURE_COMMAND' && /No such file or directory/.test(err.message)) return undefined;
        throw err;
      }
    }
    const families: { family: 4 | 6; lines: OurLines }[] = [];
    const parts: string[] = [];
    for (const family of [4, 6] as const) {
      const lines = ourIptablesLines(await run(t, family === 4 ? tools.save4 : tools.save6, ['-t', 'nat']));
      if (lines.chains.length + lines.rules.length === 0) continue;
      families.push({ family, lines });
      parts.push(`# IPv${family} (${family === 4 ? 'iptables-save' : 'ip6tables-save'} -t nat)`, '*nat', ...lines.chains, ...lines.rules, 'COMMIT', '');
    }
    return families.length === 0 ? undefined : { text: parts.join('\n'), families };
  } catch (err) {
    if (!named && err instanceof CaptureError && err.code === 'ERR_CAPTURE_COMMAND') return undefined;
    throw err;
  }
}

/** Removes our rules of one backend; true when there were some. */
async function removeFrom(t: CaptureTarget, backend: CaptureBackend, named: boolean): Promise<boolean> {
  const ours = await listed(t, backend, named);
  if (ours === undefined) return false;
  if (backend === 'nft') {
    // The create-then-delete pair succeeds whether or not the table is still there when nft runs.
    await run(t, (await need('nft')).nft, ['-f', '-'], `table ${NFT_TABLE} {}\ndelete table ${NFT_TABLE}\n`);
    return true;
  }
  const tools = await need('iptables');
  for (const { family, lines } of ours.families ?? []) {
    // One transaction: the jumps out of PREROUTING/OUTPUT, then our chains emptied (they jump to each other), then
    // deleted. An empty `table ip nat` made by iptables-nft stays: it is iptables' own table, not ours.
    const input = [
      '*nat',
      ...lines.jumps.map((j) => j.replace(/^-A /, '-D ')),
      ...lines.chainNames.map((c) => `-F ${c}`),
      ...lines.chainNames.map((c) => `-X ${c}`),
      'COMMIT',
      '',
    ].join('\n');
    await run(t, family === 4 ? tools.restore4 : tools.restore6, ['-w', XTABLES_WAIT_S, '--noflush'], input);
  }
  return true;
}

const OUR_CHAIN = new RegExp(`\\b(${IPTABLES_CHAINS.join('|')})\\b`);

interface OurLines {
  /** `:RAMPART_… - [0:0]` declarations, and the chains' names. */
  readonly chains: string[];
  readonly chainNames: string[];
  /** Every `-A` rule in or into our chains. */
  readonly rules: string[];
  /** The rules of other chains (PREROUTING, OUTPUT) that jump into ours. */
  readonly jumps: string[];
}

/** Our lines in `iptables-save -t nat` output. */
function ourIptablesLines(saved: string): OurLines {
  const chains: string[] = [];
  const chainNames: string[] = [];
  const rules: string[] = [];
  const jumps: string[] = [];
  for (const line of saved.split('\n')) {
    const decl = /^:(\S+) /.exec(line);
    if (decl !== null && (IPTABLES_CHAINS as readonly string[]).includes(decl[1]!)) {
      chains.push(line);
      chainNames.push(decl[1]!);
    } else if (line.startsWith('-A ') && OUR_CHAIN.test(line)) {
      rules.push(line);
      const chain = line.split(' ', 2)[1]!;
      if (!(IPTABLES_CHAINS as readonly string[]).includes(chain)) jumps.push(line);
    }
  }
  return { chains, chainNames, rules, jumps };
}

/**
 * The fresh rules with the current jumps into our chains deleted first, in the same restore transaction: declaring
 * a chain empties it, but the base chains' jumps would otherwise be added a second time.
 */
function withOldJumpsDeleted(fresh: string, saved: string): string {
  const deletes = ourIptablesLines(saved).jumps.map((j) => j.replace(/^-A /, '-D '));
  if (deletes.length === 0) return fresh;
  const lines = fresh.split('\n');
  let last = -1;
  lines.forEach((l, i) => {
    if (l.startsWith(':')) last = i;
  });
  lines.splice(last + 1, 0, ...deletes);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// Tools and commands

interface NftTools {
  readonly nft: string;
}
interface IptablesTools {
  readonly restore4: string;
  readonly restore6: string;
  readonly save4: string;
  readonly save6: string;
}

async function toolsOf(backend: 'nft'): Promise<NftTools | undefined>;
async function toolsOf(backend: 'iptables'): Promise<IptablesTools | undefined>;
async function toolsOf(backend: CaptureBackend): Promise<NftTools | IptablesTools | undefined>;
async function toolsOf(backend: CaptureBackend): Promise<NftTools | IptablesTools | undefined> {
  if (backend === 'nft') {
    const nft = await locate('nft');
    return nft === undefined ? undefined : { nft };
  }
  const [restore4, restore6, save4, save6] = await Promise.all(['iptables-restore', 'ip6tables-restore', 'iptables-save', 'ip6tables-save'].map(locate));
  if (restore4 === undefined || restore6 === undefined || save4 === undefined || save6 === undefined) return undefined;
  return { restore4, restore6, save4, save6 };
}

async function need(backend: 'nft'): Promise<NftTools>;
async function need(backend: 'iptables'): Promise<IptablesTools>;
async function need(backend: CaptureBackend): Promise<NftTools | IptablesTools>;
async function need(backend: CaptureBackend): Promise<NftTools | IptablesTools> {
  const tools = await toolsOf(backend);
  if (tools === undefined) {
    throw new CaptureError(
      'ERR_CAPTURE_NO_BACKEND',
      backend === 'nft'
        ? 'the nft backend needs nft: install nftables (apt-get install nftables)'
        : 'the iptables backend needs iptables-restore, ip6tables-restore, iptables-save and ip6tables-save: install iptables (apt-get install iptables)',
    );
  }
  return tools;
}

/**
 * A command's absolute path. The sbin directories are searched too: an unprivileged shell's PATH often lacks them,
 * and `--dry-run` (no root) still picks the installed backend. The path also serves inside a namespace, since
 * `ip netns exec` keeps the file system.
 */
async function locate(name: string): Promise<string | undefined> {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter).filter((d) => d !== ''), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    const file = join(dir, name);
    try {
      await access(file, constants.X_OK);
      return file;
    } catch {
      // next directory
    }
  }
  return undefined;
}

function target(opts: CaptureTarget): CaptureTarget {
  if (opts.netns === undefined) return {};
  // `ip netns` names are file names under /var/run/netns.
  if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]*$/.test(opts.netns) || opts.netns === '.' || opts.netns === '..') {
    throw new CaptureError('ERR_CAPTURE_NETNS', `not a network namespace name: ${JSON.stringify(opts.netns)}`);
  }
  return { netns: opts.netns };
}

/** Runs a command (in the namespace), feeding `input` on stdin; resolves with stdout. */
async function run(t: CaptureTarget, file: string, args: readonly string[], input?: string): Promise<string> {
  let cmd = file;
  let argv = [...args];
  if (t.netns !== undefined) {
    const ip = await locate('ip');
    if (ip === undefined) throw new CaptureError('ERR_CAPTURE_NETNS', `--netns ${t.netns} needs ip (iproute2): install iproute2`);
    cmd = ip;
    argv = ['netns', 'exec', t.netns, file, ...args];
  }
  const shown = `${[file.slice(file.lastIndexOf('/') + 1), ...args].join(' ')}${t.netns === undefined ? '' : ` (netns ${t.netns})`}`;
  return new Promise<string>((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'], timeout: COMMAND_TIMEOUT_MS, killSignal: 'SIGKILL' });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => undefined); // a command that exits early closes its stdin; its exit status tells why
    child.once('error', (e: NodeJS.ErrnoException) => {
      reject(e.code === 'ENOENT'
        ? new CaptureError('ERR_CAPTURE_NO_BACKEND', `${shown}: ${cmd} is not installed`, { cause: e })
        : new CaptureError('ERR_CAPTURE_COMMAND', `${shown}: ${e.message}`, { cause: e }));
    });
    child.once('close', (code, signal) => {
      const stderr = Buffer.concat(err).toString('utf8').trim().replace(/\s*\n\s*/g, '; ');
      if (code === 0) return resolve(Buffer.concat(out).toString('utf8'));
      if (signal !== null) return reject(new CaptureError('ERR_CAPTURE_COMMAND', `${shown}: no answer within ${COMMAND_TIMEOUT_MS / 1000} s (killed)`));
      reject(classify(shown, t, stderr || `exit status ${code}`));
    });
    child.stdin.end(input ?? '');
  });
}

function classify(shown: string, t: CaptureTarget, stderr: string): CaptureError {
  if (t.netns !== undefined && /Cannot open network namespace/.test(stderr)) {
    return new CaptureError('ERR_CAPTURE_NETNS', `no network namespace ${JSON.stringify(t.netns)} (ip netns list): ${stderr}`);
  }
  if (/^exec of ".*" failed: No such file or directory/m.test(stderr)) {
    return new CaptureError('ERR_CAPTURE_NO_BACKEND', `${shown}: ${stderr}`);
  }
  if (/Operation not permitted|Permission denied|must be root/.test(stderr)) {
    return new CaptureError('ERR_CAPTURE_PERMISSION', `${shown}: ${stderr} (capture rules need root, or CAP_NET_ADMIN${t.netns === undefined ? '' : ' and CAP_SYS_ADMIN for ip netns exec'})`);
  }
  return new CaptureError('ERR_CAPTURE_COMMAND', `${shown}: ${stderr}`);
}
