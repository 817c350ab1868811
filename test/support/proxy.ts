import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeCaDir } from '../../src/io/ca-dir.ts';
import { newCa } from './certs.ts';

/** `rampart proxy` as a child process, its JSON log lines collected as they come. */
export interface RunningProxy {
  readonly child: ChildProcess;
  readonly lines: Array<Record<string, unknown>>;
  readonly ready: Record<string, unknown>;
  waitFor(what: string, match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

const BIN = join(import.meta.dirname, '..', '..', 'src', 'cli', 'bin.ts');

export async function waitUntil<T>(what: string, f: () => T | undefined, timeoutMs: number, context: () => string = () => ''): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${context()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A random loopback address (127.x.y.z), so that sidecars can use the ports of the scenario without clashes. */
export function loopbackAddress(): string {
  return `127.${10 + Math.floor(Math.random() * 200)}.${Math.floor(Math.random() * 250)}.${2 + Math.floor(Math.random() * 250)}`;
}

/** A `rampart` command as a child process, its JSON log lines collected as they come; not waited for. */
export function spawnRampart(command: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env,
  launch: { readonly prefix?: readonly string[]; readonly gid?: number } = {}): Omit<RunningProxy, 'ready'> & { context(): string } {
  // `prefix` runs it under another command (`ip netns exec NS`); `gid` as the sidecar's group (traffic capture's exclusion).
  const argv = [process.execPath, '--import', 'tsx', BIN, command, ...args];
  const [file, ...rest] = [...(launch.prefix ?? []), ...argv];
  const child = spawn(file!, rest, { stdio: ['ignore', 'pipe', 'pipe'], env, ...(launch.gid === undefined ? {} : { gid: launch.gid }) });
  const lines: Array<Record<string, unknown>> = [];
  let buf = '';
  child.stdout!.on('data', (c: Buffer) => {
    buf += c.toString('utf8');
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ raw: line });
      }
    }
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  child.once('exit', (code) => lines.push({ exited: code, stderr }));
  const context = (): string => `; ${command} said:\n${lines.map((l) => JSON.stringify(l)).join('\n')}\n${stderr}`;
  const waitFor = (what: string, match: (line: Record<string, unknown>) => boolean, timeoutMs = 15_000): Promise<Record<string, unknown>> =>
    waitUntil(what, () => lines.find(match), timeoutMs, context);
  return {
    child, lines, waitFor, context,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

/** Waits for a spawned command's ready line; throws with its output when it exits first. */
export async function whenReady(p: ReturnType<typeof spawnRampart>, timeoutMs = 30_000): Promise<RunningProxy> {
  const ready = await p.waitFor('ready', (l) => l['event'] === 'ready' || l['exited'] !== undefined, timeoutMs);
  if (ready['exited'] !== undefined) throw new Error(`the process exited${p.context()}`);
  return { ...p, ready };
}

export async function startProxy(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<RunningProxy> {
  return whenReady(spawnRampart('proxy', args, env));
}

/** Writes raw bytes to host:port, then reads (as latin1) until the server closes or `waitMs` passes. */
export async function rawExchange(host: string, port: number, data: string | Buffer, waitMs: number): Promise<{ text: string; ms: number; closed: boolean }> {
  const start = Date.now();
  const s = net.connect({ host, port });
  await once(s, 'connect');
  s.write(data);
  let text = '';
  s.on('data', (c: Buffer) => (text += c.toString('latin1')));
  const closed = await Promise.race([
    new Promise<boolean>((r) => s.once('close', () => r(true))),
    new Promise<boolean>((r) => setTimeout(() => r(false), waitMs)),
  ]);
  s.destroy();
  return { text, ms: Date.now() - start, closed };
}

/** A scenario directory (under the OS temp dir) holding a new CA in ca/; the CA for tests that issue more. */
export async function scenarioDir(prefix: string): Promise<{ dir: string; ca: Awaited<ReturnType<typeof newCa>> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const ca = await newCa();
  await writeCaDir(join(dir, 'ca'), ca.material, false);
  return { dir, ca };
}

/**
 * Requests one after another (a pause between) until stopped; counts answers with status 200 and keeps every other
 * outcome, for tests that change something under traffic and expect no failure.
 */
export function steadyLoad(request: () => Promise<number>, pauseMs: number): { readonly ok: () => number; stop(): Promise<{ ok: number; failures: string[] }> } {
  let ok = 0;
  const failures: string[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        const status = await request();
        if (status === 200) ok++;
        else failures.push(`status ${status}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  })();
  return {
    ok: () => ok,
    async stop() {
      running = false;
      await loop;
      return { ok, failures };
    },
  };
}

/** A port free on 127.0.0.1 a moment ago (for processes that must be told their port). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  const port = await listenLocal(s);
  s.close();
  await once(s, 'close');
  return port;
}

/** Listens on 127.0.0.1, any free port; the port. */
export async function listenLocal(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

/** Writes a sidecar's configuration in `dir` (policies/p.yaml and mesh.yaml, beside ca/); the proxy arguments naming them. */
export async function writeSidecarFiles(dir: string, policies: string, mesh: string): Promise<string[]> {
  await mkdir(join(dir, 'policies'), { recursive: true });
  await writeFile(join(dir, 'policies', 'p.yaml'), policies);
  await writeFile(join(dir, 'mesh.yaml'), mesh);
  return ['--mesh', join(dir, 'mesh.yaml'), '--config', join(dir, 'policies'), '--ca', join(dir, 'ca')];
}

/** The namespace-wide PeerAuthentication of namespace default, as the first document of a policies file. */
export function peerAuthentication(mode: 'STRICT' | 'PERMISSIVE' | 'DISABLE'): string {
  return `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: ${mode}}}
`;
}

/** A DENY of path /admin for namespace default (policy deny-admin); `moreRules` are YAML list items added to its rules. */
export function denyAdmin(moreRules = ''): string {
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin"]}}]
${moreRules}`;
}
