import assert from 'node:assert/strict';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DirectorySource } from '../src/control/source.ts';

describe('DirectorySource', () => {
  it('reads mesh.yaml as the mesh file and every other YAML/JSON file but demo.yaml as policies, subdirectories too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rampart-source-'));
    await writeFile(join(dir, 'mesh.yaml'), 'workloads: []\n');
    await writeFile(join(dir, 'demo.yaml'), 'apps: []\n');
    await writeFile(join(dir, 'b.yaml'), 'b');
    await mkdir(join(dir, 'team'));
    await writeFile(join(dir, 'team', 'a.json'), '{}');
    await writeFile(join(dir, 'notes.txt'), 'not configuration');
    const input = await new DirectorySource(dir).read();
    assert.equal(input.mesh.file, join(dir, 'mesh.yaml'));
    assert.equal(input.mesh.text, 'workloads: []\n');
    assert.deepEqual(input.policies.map((p) => p.file), [join(dir, 'b.yaml'), join(dir, 'team', 'a.json')]);
  });

  it('without mesh.yaml, read() fails with the path', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rampart-source-'));
    await assert.rejects(new DirectorySource(dir).read(), /mesh\.yaml/);
  });

  it('tells of a change to a file, in a subdirectory too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rampart-source-'));
    await writeFile(join(dir, 'mesh.yaml'), 'workloads: []\n');
    await mkdir(join(dir, 'team'));
    let changes = 0;
    const stop = new DirectorySource(dir).watch(() => changes++);
    try {
      // A recursive watch on Linux is set up asynchronously (Node walks the tree): a write made before it is in place
      // goes unseen, so write again until one is seen, within a bound.
      for (let i = 0, end = Date.now() + 5_000; changes === 0 && Date.now() < end; i++) {
        await writeFile(join(dir, 'team', 'p.yaml'), `x${i}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(changes > 0, 'the change was seen');
    } finally {
      stop();
    }
  });
});
