import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { waitUntil } from '../support/proxy.ts';
import { exampleCopy, refused } from '../support/up.ts';

/**
 * `npm start` stopped every way a user or a supervisor stops it — a signal to the npm process itself, npm killed
 * outright, `rampart up` killed outright — leaves no process and no listener behind.
 */

const ROOT = join(import.meta.dirname, '..', '..');

/** Parent pid and state of every process, from /proc. */
function processTable(): Map<number, { ppid: number; state: string }> {
  const out = new Map<number, { ppid: number; state: string }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // The command name is in parentheses and may hold spaces: the fields after the last ')' are fixed.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(name), { state: rest[0]!, ppid: Number(rest[1]) });
    } catch {
      // Gone between the listing and the read.
    }
  }
  return out;
}

function descendants(pid: number): number[] {
  const table = processTable();
  const found: number[] = [];
  const walk = (p: number): void => {
    for (const [child, info] of table) if (info.ppid === p) {
      found.push(child);
      walk(child);
    }
  };
  walk(pid);
  return found;
}

/** Still running: present and not a zombie (a re-parented child may wait for a reaper that never comes). */
function alive(pid: number): boolean {
  const info = processTable().get(pid);
  return info !== undefined && info.state !== 'Z';
}

async function waitFor(what: string, f: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  for (const end = Date.now() + timeoutMs; ;) {
    if (await f()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `npm start -- DIR --port … --admin-port …` on a copy of the example with its own ports and addresses. */
async function npmStart(): Promise<{ npm: ReturnType<typeof spawn>; out: () => string; tree: number[]; up: number; listeners: Array<[string, number]> }> {
  const { args, ports, prefix } = await exampleCopy();
  const npm = spawn('npm', ['start', '--', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  npm.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  npm.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  await waitUntil('the mesh up', () => (out.includes('the mesh is up') ? true : undefined), 90_000, () => `\n${out}`);
  const tree = descendants(npm.pid!);
  // npm runs the script through a shell that execs node: rampart up is npm's child.
  const up = [...processTable()].find(([, info]) => info.ppid === npm.pid)?.[0];
  assert.ok(up !== undefined, 'rampart up runs under npm');
  assert.equal(descendants(up).filter((p) => processTable().get(p)?.ppid === up).length >= 3, true, 'three sidecars under rampart up');
  const listeners: Array<[string, number]> = [
    ['127.0.0.1', ports.cp], ['127.0.0.1', ports.admin], ['127.0.0.1', ports.jwks], ['127.0.0.1', ports.sleep], ['127.0.0.1', ports.guest],
    ['127.0.0.1', ports.app], [`${prefix}1`, 8000],
  ];
  for (const [host, port] of listeners) assert.equal(await refused(host, port), false, `${host}:${port} listening while up`);
  return { npm, out: () => out, tree: [npm.pid!, ...tree], up, listeners };
}

async function assertAllGone(run: Awaited<ReturnType<typeof npmStart>>): Promise<void> {
  await waitFor('every process of the mesh to exit', () => run.tree.every((p) => !alive(p)), 20_000).catch((e: Error) => {
    throw new Error(`${e.message}: still running ${run.tree.filter(alive).join(', ')}\n${run.out()}`);
  });
  for (const [host, port] of run.listeners) await waitFor(`${host}:${port} freed`, () => refused(host, port), 5_000);
}

describe('npm start stopped by its own pid (real processes)', { timeout: 300_000 }, () => {
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    it(`${signal} to the npm process stops rampart up and every sidecar, freeing every port`, async () => {
      const run = await npmStart();
      const exited = once(run.npm, 'close');
      run.npm.kill(signal);
      await exited;
      await assertAllGone(run);
    });
  }

  it('npm killed outright (SIGKILL): rampart up sees its parent gone and stops everything', async () => {
    const run = await npmStart();
    run.npm.kill('SIGKILL');
    await assertAllGone(run);
  });

  it('rampart up killed outright (SIGKILL): each sidecar sees its parent gone and exits', async () => {
    const run = await npmStart();
    process.kill(run.up, 'SIGKILL');
    await assertAllGone(run);
  });
});
