import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A security setting Rampart does not implement is an error where it is written, never silently ignored:
 * `defaultConfig.gatewayTopology` (numTrustedProxies would move remote.ip to X-Forwarded-For in Istio).
 */

const BIN = join(import.meta.dirname, '..', 'src', 'cli', 'bin.ts');
const EX = join(import.meta.dirname, '..', 'examples', 'quickstart');

function rampart(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('gatewayTopology.numTrustedProxies: rampart validate and rampart proxy refuse it with file, line and field', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-topology-'));
  try {
    writeFileSync(join(dir, 'meshconfig.yaml'), 'trustDomain: cluster.local\ndefaultConfig:\n  gatewayTopology:\n    numTrustedProxies: 1\n');
    const v = rampart(['validate', join(EX, 'policies.yaml'), '--mesh', join(dir, 'meshconfig.yaml')]);
    assert.equal(v.code, 1, v.stdout + v.stderr);
    assert.match(v.stdout + v.stderr, /meshconfig\.yaml:4: error .*defaultConfig\.gatewayTopology\.numTrustedProxies.*X-Forwarded-For/);
    writeFileSync(join(dir, 'mesh.yaml'), [
      'meshConfig:', '  defaultConfig:', '    gatewayTopology: {numTrustedProxies: 2}',
      'workloads:', '- {name: httpbin, namespace: default, labels: {app: httpbin}, address: 127.0.0.1, ports: [{name: http, port: 8000, targetPort: 18000}]}', '',
    ].join('\n'));
    const p = rampart(['proxy', '--mesh', join(dir, 'mesh.yaml'), '-c', join(EX, 'policies.yaml'), '--workload', 'default/httpbin', '--ca', join(dir, 'no-ca-needed')]);
    assert.equal(p.code, 2, p.stdout + p.stderr);
    assert.match(p.stderr, /mesh\.yaml:3: error .*meshConfig\.defaultConfig\.gatewayTopology\.numTrustedProxies/);
    // numTrustedProxies 0 is what Rampart does anyway: accepted.
    writeFileSync(join(dir, 'meshconfig.yaml'), 'defaultConfig: {gatewayTopology: {numTrustedProxies: 0}}\n');
    assert.equal(rampart(['validate', join(EX, 'policies.yaml'), '--mesh', join(dir, 'meshconfig.yaml')]).code, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
