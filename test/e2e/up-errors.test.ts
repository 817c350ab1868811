import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { exampleCopy, refused, run } from '../support/up.ts';

/**
 * `rampart up` meeting a taken port or a missing directory: exit 2 with one line that names the port, what it is
 * for, the process holding it and the flag or file field that moves it — and nothing of it left running.
 */

/** Another process holding host:port, as a user's stray server would. */
async function holder(host: string, port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${port}, '${host}', () => console.log('held'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await once(child.stdout!, 'data');
  return child;
}

describe('rampart up: port conflicts and a missing directory (real processes)', { timeout: 240_000 }, () => {
  type Copy = Awaited<ReturnType<typeof exampleCopy>>;
  const cases: Array<{ name: string; at: (c: Copy) => [string, number]; expect: (c: Copy) => RegExp }> = [
    { name: "the control plane's mTLS port", at: (c) => ['127.0.0.1', c.ports.cp], expect: (c) => new RegExp(`cannot listen on the control plane's mTLS port, 127\\.0\\.0\\.1:${c.ports.cp}: in use by pid \\d+ \\(.*node.*\\); stop that process, or move this port with --port$`, 'm') },
    { name: 'the admin port', at: (c) => ['127.0.0.1', c.ports.admin], expect: (c) => new RegExp(`cannot listen on the control plane's admin port \\(console, status\\), 127\\.0\\.0\\.1:${c.ports.admin}: in use by pid \\d+ .*move this port with --admin-port$`, 'm') },
    { name: "the demo issuer's port", at: (c) => ['127.0.0.1', c.ports.jwks], expect: (c) => new RegExp(`demo JWT issuer's port, 127\\.0\\.0\\.1:${c.ports.jwks}: in use by pid \\d+ .*move this port with issuer\\.listen in ${c.dir}/demo\\.yaml$`, 'm') },
    { name: 'a demo app port', at: (c) => ['127.0.0.1', c.ports.app], expect: (c) => new RegExp(`the demo app of default/httpbin, 127\\.0\\.0\\.1:${c.ports.app}: in use .*the targetPort of default/httpbin's port in ${c.dir}/mesh\\.yaml$`, 'm') },
    { name: "a client's outbound port", at: (c) => ['127.0.0.1', c.ports.sleep], expect: (c) => new RegExp(`the sidecar of default/sleep exited \\(2\\): cannot listen on the app's outbound HTTP proxy port, 127\\.0\\.0\\.1:${c.ports.sleep}: in use by pid \\d+ .*--outbound-port \\(rampart up sets it from the outboundPort of default/sleep in ${c.dir}/demo\\.yaml\\)$`, 'm') },
    { name: "a sidecar's inbound port", at: (c) => [`${c.prefix}1`, 8000], expect: (c) => new RegExp(`the sidecar of default/httpbin exited \\(2\\): cannot listen on the inbound port 8000 of default/httpbin, ${c.prefix.replaceAll('.', '\\.')}1:8000: in use .*the address and ports of workload default/httpbin in the mesh file .*\\(rampart up reads ${c.dir}/mesh\\.yaml\\)$`, 'm') },
  ];
  for (const k of cases) {
    it(`${k.name} taken: exit 2 naming port, holder and how to move it; nothing left listening`, async () => {
      const copy = await exampleCopy();
      const [host, port] = k.at(copy);
      const held = await holder(host, port);
      try {
        const r = run(copy.args);
        assert.equal(await r.exit, 2, r.out());
        assert.match(r.out(), k.expect(copy));
        assert.doesNotMatch(r.out(), /EADDRINUSE|\n\s+at /, 'no raw error or stack');
        for (const [h, p] of [['127.0.0.1', copy.ports.cp], ['127.0.0.1', copy.ports.admin], ['127.0.0.1', copy.ports.jwks], ['127.0.0.1', copy.ports.guest], [`${copy.prefix}2`, 8000]] as const) {
          if (h === host && p === port) continue;
          assert.ok(await refused(h, p), `${h}:${p} freed after the failed start`);
        }
      } finally {
        held.kill();
        await rm(copy.dir, { recursive: true, force: true });
      }
    });
  }

  it('a missing directory, or one without mesh.yaml, says what a mesh directory holds', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'rampart-up-empty-'));
    try {
      const missing = run([join(empty, 'nope')]);
      assert.equal(await missing.exit, 2);
      assert.match(missing.out(), new RegExp(`rampart up: ${empty}/nope: no such directory; a mesh directory holds mesh\\.yaml \\(meshConfig, workloads, services\\) and the Istio YAML beside it, as examples/mesh does`));
      const noMesh = run([empty]);
      assert.equal(await noMesh.exit, 2);
      assert.match(noMesh.out(), new RegExp(`rampart up: ${empty}/mesh\\.yaml: not found; a mesh directory holds mesh\\.yaml`));
      assert.doesNotMatch(missing.out() + noMesh.out(), /ENOENT/);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});
