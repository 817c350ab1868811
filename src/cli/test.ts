import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MESH_FILE_NAME } from '../control/source.ts';
import { RampartError } from '../errors.ts';
import { loadConfig } from '../io/load-config.ts';
import { JwtAuthenticator } from '../jwt/authenticator.ts';
import { KeyFetchRefused } from '../jwt/key-fetch.ts';
import { KeyRegistry } from '../jwt/key-registry.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { formatDiagnostic, type Diagnostic } from '../resources/diagnostic.ts';
import type { MeshFile } from '../resources/mesh-file.ts';
import type { RequestAuthentication } from '../resources/types.ts';
import { diffCases, runCases, type CaseResult } from '../suite/run.ts';
import { diffJson, formatDiff, formatRun, runJson, runJunit, type FileResults } from '../suite/report.ts';
import { parseSuite, type Suite } from '../suite/suite-file.ts';
import type { CommandOutput } from './check.ts';
import { readJwksOverrides } from './jwks-overrides.ts';
import { loadMeshDirectory } from './mesh-dir.ts';

export interface TestOptions {
  readonly suites: readonly string[];
  /** Policy files or directories, or one mesh directory (mesh.yaml beside the policies). */
  readonly config?: readonly string[];
  /** MeshConfig for a policy directory (a mesh directory has its own in mesh.yaml). */
  readonly mesh?: string;
  /** `--diff OLD NEW`: each a policy path or a mesh directory. */
  readonly diff?: readonly string[];
  readonly jwks?: readonly string[];
  readonly json?: boolean;
  readonly junit?: string;
}

/** One version of the policies, ready to decide. */
interface Target {
  readonly label: string;
  readonly engine: PolicyEngine;
  readonly authns: readonly RequestAuthentication[];
  readonly meshFile: MeshFile | undefined;
}

class BadInput extends RampartError {
  constructor(message: string) {
    super('ERR_TEST_INPUT', message);
  }
}

/**
 * `rampart test`: exit 0 when every case gets its expected decision (with `--diff`: when no decision changes),
 * 1 otherwise, 2 on bad input — a configuration or suite with errors decides nothing, as a partial one could pass
 * cases the whole would fail.
 */
export async function runTest(o: TestOptions): Promise<CommandOutput> {
  try {
    return await run(o);
  } catch (e) {
    if (e instanceof RampartError) return { exitCode: 2, stdout: '', stderr: `rampart test: ${e.message}\n` };
    throw e;
  }
}

async function run(o: TestOptions): Promise<CommandOutput> {
  if (o.suites.length === 0) throw new BadInput('name at least one suite file');
  if (o.diff !== undefined && o.config !== undefined) throw new BadInput('--diff OLD NEW replaces -c: give one or the other');
  if (o.diff !== undefined && o.diff.length !== 2) throw new BadInput('--diff takes two paths: the old and the new policies');
  if (o.diff === undefined && o.config === undefined) throw new BadInput('say what to test against: -c PATH... or --diff OLD NEW');
  const overrides = await readJwksOverrides(o.jwks ?? []);
  const targets = o.diff === undefined ? [await loadTarget(o.config!, o.mesh)] : await Promise.all(o.diff.map((p) => loadTarget([p], o.mesh)));
  const meshFile = targets.find((t) => t.meshFile !== undefined)?.meshFile;
  const suites: Suite[] = [];
  const errors: Diagnostic[] = [];
  for (const file of o.suites) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      throw new BadInput(`${file}: cannot read the suite file`);
    }
    const parsed = parseSuite(text, file, meshFile);
    errors.push(...parsed.diagnostics.filter((d) => d.severity === 'error'));
    if (o.diff === undefined) {
      for (const c of parsed.suite.cases) {
        if (c.expect === undefined) errors.push({ severity: 'error', code: 'ERR_FIELD_REQUIRED', message: 'a case needs `expect` (only --diff runs cases without one)', file, line: c.line, path: 'expect' });
      }
    }
    suites.push(parsed.suite);
  }
  if (errors.length > 0) {
    return { exitCode: 2, stdout: '', stderr: [...errors.map(formatDiagnostic), `rampart test: ${errors.length} error(s) in the suites; nothing run`].join('\n') + '\n' };
  }
  const notes = new Set<string>();
  const runAll = async (t: Target): Promise<FileResults[]> => {
    const unfetched = new Set<string>();
    // Offline by design: a test must give the same answer wherever and whenever it runs.
    const registry = await KeyRegistry.create(t.authns, {
      overrides,
      fetch: async (url) => {
        throw new KeyFetchRefused(`rampart test does not fetch keys (${url}); give the issuer's keys with --jwks ISSUER=FILE or an inline jwks`);
      },
      onEvent: (e) => {
        if (e.type === 'fetch-failed') unfetched.add(e.uri);
      },
    });
    try {
      const files = suites.map((s) => {
        const verifier = new JwtAuthenticator({ keysFor: (ref) => registry.keysFor(ref), ...(s.now === undefined ? {} : { now: () => s.now! }) });
        return { file: s.file, results: runCases(t.engine, s.cases, verifier) };
      });
      // Said only where it changed a decision: a token met keys that were never loaded.
      if (files.some((f) => f.results.some((r) => r.decision.reason.includes('Jwks remote fetch is failed')))) {
        for (const uri of unfetched) notes.add(`note: keys at ${uri} were not fetched (rampart test fetches no keys), so tokens for them got 401; give them with --jwks ISSUER=FILE`);
      }
      return files;
    } finally {
      registry.stop();
    }
  };
  if (o.diff === undefined) {
    const files = await runAll(targets[0]!);
    if (o.junit !== undefined) await writeFile(o.junit, runJunit(files));
    const failed = files.some((f) => f.results.some((r) => r.mismatches.length > 0));
    return { exitCode: failed ? 1 : 0, stdout: o.json === true ? runJson(files) : formatRun(files), stderr: [...notes].map((n) => `${n}\n`).join('') };
  }
  const [before, after] = [await runAll(targets[0]!), await runAll(targets[1]!)];
  const flat = (f: FileResults[]): CaseResult[] => f.flatMap((x) => x.results);
  const changes = diffCases(flat(before), flat(after));
  const total = flat(before).length;
  return {
    exitCode: changes.length > 0 ? 1 : 0,
    stdout: o.json === true ? diffJson(changes, total) : formatDiff(changes, total, targets[0]!.label, targets[1]!.label),
    stderr: [...notes].map((n) => `${n}\n`).join(''),
  };
}

async function isMeshDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory() && (await stat(join(path, MESH_FILE_NAME))).isFile();
  } catch {
    return false;
  }
}

/** A mesh directory as the control plane reads it, or policy paths with an optional MeshConfig, as `rampart check`. */
async function loadTarget(paths: readonly string[], meshConfig: string | undefined): Promise<Target> {
  const label = paths.join(' ');
  let diagnostics: Diagnostic[];
  let engine: PolicyEngine;
  let resources;
  let meshFile: MeshFile | undefined;
  if (paths.length === 1 && await isMeshDirectory(paths[0]!)) {
    if (meshConfig !== undefined) throw new BadInput(`${paths[0]} is a mesh directory: its settings are in ${MESH_FILE_NAME}, not --mesh`);
    const loaded = await loadMeshDirectory(paths[0]!);
    diagnostics = loaded.diagnostics;
    resources = loaded.resources;
    meshFile = loaded.meshFile;
    engine = new PolicyEngine(resources, meshFile.mesh);
  } else {
    const cfg = await loadConfig({ paths, meshFile: meshConfig });
    diagnostics = cfg.diagnostics;
    resources = cfg.resources;
    engine = new PolicyEngine(resources, cfg.mesh);
  }
  const errors = diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) {
    throw new BadInput(`${label}: ${errors.length} error(s) in the configuration; nothing run\n${errors.map(formatDiagnostic).join('\n')}`);
  }
  return { label, engine, authns: resources.filter((r): r is RequestAuthentication => r.kind === 'RequestAuthentication'), meshFile };
}
