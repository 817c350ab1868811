import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort, scenarioDir, waitUntil } from '../support/proxy.ts';

/**
 * The README's in-process example as a user runs it: examples/in-process/httpbin.mjs (Express) and two
 * caller.mjs (Fastify) processes, as sleep and as guest, on a CA directory of their own; the seed's three requests.
 * The examples import `rampart/node` from the built package (dist/, made by `npm ci`).
 */

const ROOT = join(import.meta.dirname, '..', '..');

function get(host: string, port: number, path: string): Promise<{ status: number; body: string } | 'reset'> {
  return new Promise((resolve, reject) => {
    http.get({ host, port, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve('reset') : reject(err)));
  });
}

describe('examples/in-process (the README lines)', { timeout: 60_000 }, () => {
  const children: ChildProcess[] = [];
  const ports = { sleep: 0, guest: 0 };

  const run = async (script: string, args: string[], ready: RegExp): Promise<void> => {
    const child = spawn(process.execPath, [join(ROOT, 'examples', 'in-process', script), ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let err = '';
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    await waitUntil(`${script} ready`, () => (ready.test(err) ? true : child.exitCode !== null ? (() => { throw new Error(`${script} exited: ${err}`); })() : undefined), 30_000, () => `\n${err}`);
  };

  before(async () => {
    const { dir } = await scenarioDir('rampart-example-');
    const ca = join(dir, 'ca');
    ports.sleep = await freePort();
    ports.guest = await freePort();
    await run('httpbin.mjs', [ca], /httpbin as spiffe:\/\/cluster\.local\/ns\/default\/sa\/httpbin on 127\.0\.0\.10:8000/);
    await run('caller.mjs', [ca, 'sleep', String(ports.sleep)], /sleep as spiffe:\/\/cluster\.local\/ns\/default\/sa\/my-service-account/);
    await run('caller.mjs', [ca, 'guest', String(ports.guest)], /guest as spiffe:\/\/cluster\.local\/ns\/default\/sa\/guest/);
  });

  after(async () => {
    for (const c of children) {
      if (c.exitCode !== null) continue;
      c.kill('SIGTERM');
      await once(c, 'exit');
    }
  });

  it('answers the seed scenario: sleep in, /admin denied, guest denied, plaintext reset', async () => {
    const headers = await get('127.0.0.1', ports.sleep, '/call/headers');
    assert.notEqual(headers, 'reset');
    assert.equal(headers !== 'reset' && headers.status, 200);
    assert.equal(headers !== 'reset' && (JSON.parse(headers.body) as Record<string, unknown>)['caller'], 'cluster.local/ns/default/sa/my-service-account');
    assert.deepEqual(await get('127.0.0.1', ports.sleep, '/call/admin'), { status: 403, body: 'RBAC: access denied' });
    assert.deepEqual(await get('127.0.0.1', ports.guest, '/call/headers'), { status: 403, body: 'RBAC: access denied' });
    assert.equal(await get('127.0.0.10', 8000, '/headers'), 'reset');
  });

  it('stops on SIGTERM', async () => {
    for (const c of children) c.kill('SIGTERM');
    const codes = await Promise.all(children.map(async (c) => (c.exitCode !== null ? c.exitCode : (await once(c, 'exit'))[0] as number | null)));
    assert.deepEqual(codes, [0, 0, 0]);
  });
});
