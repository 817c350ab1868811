import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { NETNS_SKIP, sh } from '../support/netns.ts';
import { waitUntil } from '../support/proxy.ts';
import { exampleCopy, run } from '../support/up.ts';

/**
 * `rampart up` with network namespaces (what `npm start` does as root on Linux): each workload in a namespace of its
 * own, its traffic captured, so that the README's requests need no proxy setting — `ip netns exec sleep curl
 * http://httpbin.default:8000/headers`. Namespace names get a prefix of this run's own; everything is gone after.
 */

const exec = promisify(execFile);

/** The example's arguments for namespaces: --hosts netns and a prefix instead of --hosts loopback. */
async function netnsCopy(): Promise<{ args: string[]; prefix: string; ports: Awaited<ReturnType<typeof exampleCopy>>['ports'] }> {
  const copy = await exampleCopy();
  const prefix = `t${randomBytes(2).toString('hex')}-`;
  const args = copy.args.slice(0, -2).concat(['--hosts', 'netns', '--netns-prefix', prefix]);
  return { args, prefix, ports: copy.ports };
}

async function leftoverNamespaces(prefix: string): Promise<string[]> {
  return (await sh('ip', ['netns', 'list'])).split('\n').filter((l) => l.startsWith(prefix));
}

/** curl inside a namespace; its -w status, or `exit N` when no response came. */
async function curlIn(netns: string, args: readonly string[]): Promise<string> {
  try {
    return (await exec('ip', ['netns', 'exec', netns, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', ...args])).stdout;
  } catch (err) {
    return `exit ${(err as { code?: number }).code ?? '?'}`;
  }
}

describe('rampart up in network namespaces (real namespaces, as root)', { skip: NETNS_SKIP, timeout: 120_000 }, () => {
  it('--demo: the walk-through from inside the client namespaces is decided as Istio decides it, and nothing is left', async () => {
    const { args, prefix } = await netnsCopy();
    const r = run([...args, '--demo']);
    const code = await r.exit;
    const out = r.out();
    assert.equal(code, 0, out);
    assert.match(out, new RegExp(`network namespaces: ${prefix}httpbin 10\\.250\\.\\d+\\.2, ${prefix}sleep 10\\.250\\.\\d+\\.3, ${prefix}guest 10\\.250\\.\\d+\\.4`));
    assert.match(out, /all 7 requests decided as Istio decides them/);
    assert.match(out, /4 +guest calls httpbin over mTLS with a valid token .* 200 +200 +default\/require-jwt-or-mtls rule 1/);
    assert.match(out, /6 +an outside client .* reset +reset +mTLS mode/);
    assert.deepEqual(await leftoverNamespaces(prefix), []);
    assert.equal(existsSync(`/etc/netns/${prefix}sleep`), false);
  });

  it("prints the README's requests without -x, and they work: the app names the service, capture does the rest", async () => {
    const { args, prefix, ports } = await netnsCopy();
    const r = run(args);
    try {
      await waitUntil('the mesh up', () => (r.out().includes('the mesh is up') ? true : undefined), 60_000, () => `\n${r.out()}`);
      assert.match(r.out(), new RegExp(`^  ip netns exec ${prefix}sleep curl http://httpbin\\.default:8000/headers   # as default/sleep$`, 'm'));
      assert.match(r.out(), new RegExp(`^  ip netns exec ${prefix}guest curl -H "authorization: Bearer \\$\\(curl -s http://127\\.0\\.0\\.1:${ports.jwks}/token\\)" http://httpbin\\.default:8000/headers`, 'm'));
      assert.doesNotMatch(r.out(), /curl -x/);
      assert.equal(await curlIn(`${prefix}sleep`, ['http://httpbin.default:8000/headers']), '200');
      assert.equal(await curlIn(`${prefix}guest`, ['http://httpbin.default:8000/headers']), '403');
      const token = (await (await fetch(`http://127.0.0.1:${ports.jwks}/token`)).text()).trim();
      assert.equal(await curlIn(`${prefix}guest`, ['-H', `authorization: Bearer ${token}`, 'http://httpbin.default:8000/headers']), '200');
      await waitUntil('the live lines', () => (/guest → httpbin {2}GET \/headers {2}200 ALLOW: allowed by default\/require-jwt-or-mtls rule 1 {2}\(mTLS, JWT/.test(r.out()) ? true : undefined), 15_000, () => `\n${r.out()}`);
      assert.doesNotMatch(r.out(), /Bind .* failed/);
    } finally {
      r.child.kill('SIGINT');
      await r.exit;
    }
    assert.deepEqual(await leftoverNamespaces(prefix), []);
    assert.equal((await sh('ip', ['-o', 'link'])).includes(`rup${r.child.pid!.toString(36).slice(-6)}`), false, 'the bridge is gone');
  });
});
