import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { join } from 'node:path';
import { freePort } from './proxy.ts';

/** `rampart up` as a user runs it, on a copy of examples/mesh moved to free ports and a loopback range of its own. */

export const BIN = join(import.meta.dirname, '..', '..', 'src', 'cli', 'bin.ts');

export async function exampleCopy(): Promise<{ dir: string; args: string[]; ports: { jwks: number; sleep: number; guest: number; app: number; cp: number; admin: number }; prefix: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'rampart-up-test-'));
  await cp(join(import.meta.dirname, '..', '..', 'examples', 'mesh'), dir, { recursive: true });
  const ports = { jwks: await freePort(), sleep: await freePort(), guest: await freePort(), app: await freePort(), cp: await freePort(), admin: await freePort() };
  const prefix = `127.${20 + Math.floor(Math.random() * 200)}.${Math.floor(Math.random() * 250)}.`;
  for (const f of ['mesh.yaml', 'policies.yaml', 'demo.yaml']) {
    const text = (await readFile(join(dir, f), 'utf8'))
      .replaceAll('15180', String(ports.jwks)).replaceAll('15101', String(ports.sleep)).replaceAll('15102', String(ports.guest))
      .replaceAll('18100', String(ports.app)).replaceAll('127.0.100.', prefix);
    await writeFile(join(dir, f), text);
  }
  // Loopback hosts: these tests run side by side, and network namespaces have names of their own (up-netns.test.ts).
  return { dir, args: [dir, '--port', String(ports.cp), '--admin-port', String(ports.admin), '--hosts', 'loopback'], ports, prefix };
}

export function run(args: readonly string[]): { child: ReturnType<typeof spawn>; out: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', BIN, 'up', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  // 'close', not 'exit': the exit can come before the last of the output has been read.
  const exit = once(child, 'close').then(([code]) => code as number | null);
  return { child, out: () => out, exit };
}


/** Whether host:port refuses a connection (nothing listens there). */
export function refused(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}
