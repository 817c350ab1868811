import assert from 'node:assert/strict';
import { cp, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runStatus } from '../src/cli/control-plane.ts';
import { runValidate } from '../src/cli/validate.ts';

const EXAMPLE = join(import.meta.dirname, '..', 'examples', 'mesh');

describe('rampart validate on a control plane directory', () => {
  it('reads mesh.yaml as the mesh file and leaves demo.yaml out, as the control plane does', async () => {
    const out = await runValidate({ paths: [EXAMPLE] });
    assert.equal(out.exitCode, 0, out.stdout);
    assert.equal(out.stdout, '4 resource(s) valid, 0 error(s), 0 warning(s)\n');
  });

  it('reports an invalid resource with file, line and field, and selectors against the mesh workloads', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rampart-validate-mesh-'));
    await cp(EXAMPLE, dir, { recursive: true });
    await writeFile(join(dir, 'extra.yaml'), `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad, namespace: default}
spec:
  action: ALLOWX
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: lonely, namespace: default}
spec:
  selector: {matchLabels: {app: nobody}}
  rules: [{}]
`);
    const out = await runValidate({ paths: [dir] });
    assert.equal(out.exitCode, 1);
    assert.match(out.stdout, /extra\.yaml:5: error \(AuthorizationPolicy default\/bad\) spec\.action: "ALLOWX"/);
    assert.match(out.stdout, /extra\.yaml:\d+: warning \(AuthorizationPolicy default\/lonely\).*select/);
  });

  it('a broken mesh file is an error with its line', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rampart-validate-mesh-'));
    await writeFile(join(dir, 'mesh.yaml'), 'workloads:\n- {name: Bad_Name, namespace: default, serviceAccount: x, address: 127.0.0.1}\n');
    const out = await runValidate({ paths: [dir] });
    assert.equal(out.exitCode, 1);
    assert.match(out.stdout, /mesh\.yaml:2: error .*workloads\[0\]\.name/);
  });
});

describe('rampart status', () => {
  it('says when the control plane cannot be reached (exit 2)', async () => {
    const out = await runStatus({ admin: 'http://127.0.0.1:9' });
    assert.equal(out.exitCode, 2);
    assert.match(out.stderr, /cannot reach the control plane at http:\/\/127\.0\.0\.1:9/);
  });
});
