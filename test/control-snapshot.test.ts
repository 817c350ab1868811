import assert from 'node:assert/strict';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { buildMeshState, documentsFor, MeshStateError, proxySnapshot, snapshotSources, toDocument, type SourceInput } from '../src/control/snapshot.ts';
import { LEDGER_FILE, persistentLedger } from '../src/io/token-ledger.ts';
import { loadResources } from '../src/resources/load.ts';
import { formatStatus } from '../src/control/status-text.ts';

const MESH = `meshConfig: {trustDomain: cluster.local}
workloads:
- {name: httpbin, namespace: default, serviceAccount: httpbin, labels: {app: httpbin}, address: 127.0.0.1, ports: [{name: http, port: 8000, targetPort: 18000}]}
- {name: sleep, namespace: default, serviceAccount: sleep, labels: {app: sleep}, address: 127.0.0.2}
- {name: ratings, namespace: other, serviceAccount: ratings, labels: {app: ratings}, address: 127.0.0.3, ports: [{name: http, port: 9080, targetPort: 19080}]}
services: []
`;

const policy = (name: string, ns: string, extra = ''): string => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ${name}, namespace: ${ns}}
spec:
${extra || '  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]}]'}
`;

const input = (files: Record<string, string>, mesh = MESH): SourceInput => ({
  mesh: { file: 'mesh.yaml', text: mesh },
  policies: Object.entries(files).map(([file, text]) => ({ file, text })),
});

describe('control plane snapshots', () => {
  it('a first mesh file with errors is refused whole', () => {
    assert.throws(() => buildMeshState(input({}, 'workloads: [{name: 1}]'), undefined), MeshStateError);
  });

  it('versions: 1 first, the same when nothing changed, +1 on a change', () => {
    const a = buildMeshState(input({ 'a.yaml': policy('a', 'default') }), undefined);
    assert.equal(a.version, 1);
    const same = buildMeshState(input({ 'a.yaml': policy('a', 'default') }), a);
    assert.equal(same.version, 1);
    const changed = buildMeshState(input({ 'a.yaml': policy('a', 'default', '  action: DENY\n  rules: [{}]') }), same);
    assert.equal(changed.version, 2);
  });

  it('a file with an error keeps its last good content; the other files still change', () => {
    const a = buildMeshState(input({ 'a.yaml': policy('a', 'default'), 'b.yaml': policy('b', 'default') }), undefined);
    const next = buildMeshState(input({ 'a.yaml': policy('a', 'default', '  action: NOPE'), 'b.yaml': policy('b2', 'default') }), a);
    assert.equal(next.version, 2);
    assert.deepEqual(next.rejectedFiles, ['a.yaml']);
    assert.deepEqual(next.resources.map((r) => r.meta.name), ['a', 'b2'], 'a stays as it was, b changed');
    assert.ok(next.diagnostics.some((d) => d.severity === 'error' && d.file === 'a.yaml' && d.path === 'spec.action'));
    // Fixed: the error is gone and the new content applies.
    const fixed = buildMeshState(input({ 'a.yaml': policy('a', 'default', '  action: DENY\n  rules: [{}]'), 'b.yaml': policy('b2', 'default') }), next);
    assert.deepEqual(fixed.rejectedFiles, []);
    assert.equal(fixed.version, 3);
  });

  it('a new file with an error contributes nothing', () => {
    const a = buildMeshState(input({ 'a.yaml': policy('a', 'default') }), undefined);
    const next = buildMeshState(input({ 'a.yaml': policy('a', 'default'), 'new.yaml': 'kind: AuthorizationPolicy\n: : :' }), a);
    assert.equal(next.version, 1);
    assert.deepEqual(next.rejectedFiles, ['new.yaml']);
  });

  it('a mesh file with an error keeps the last good mesh', () => {
    const a = buildMeshState(input({}), undefined);
    const next = buildMeshState(input({}, 'workloads: [{name: 1}]'), a);
    assert.equal(next.meshText.text, MESH);
    assert.deepEqual(next.rejectedFiles, ['mesh.yaml']);
  });

  it('each workload gets the policies that select it, and every PeerAuthentication', () => {
    const state = buildMeshState(input({
      'p.yaml': [
        policy('ns-wide', 'default'),
        policy('for-httpbin', 'default', '  selector: {matchLabels: {app: httpbin}}\n  rules: [{}]'),
        policy('for-sleep', 'default', '  selector: {matchLabels: {app: sleep}}\n  rules: [{}]'),
        policy('mesh-wide', 'istio-system'),
        policy('other-ns', 'other'),
        'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: other}\nspec: {mtls: {mode: DISABLE}}\n',
      ].join('---\n'),
    }), undefined);
    const names = (ns: string, name: string): string[] => documentsFor(state, state.mesh.workloads.find((w) => w.namespace === ns && w.name === name)!).map((d) => `${d.kind}/${d.namespace}/${d.name}`);
    assert.deepEqual(names('default', 'httpbin'), ['AuthorizationPolicy/default/ns-wide', 'AuthorizationPolicy/default/for-httpbin', 'AuthorizationPolicy/istio-system/mesh-wide', 'PeerAuthentication/other/default']);
    assert.deepEqual(names('other', 'ratings'), ['AuthorizationPolicy/istio-system/mesh-wide', 'AuthorizationPolicy/other/other-ns', 'PeerAuthentication/other/default']);
  });

  it('a resource survives the trip through a snapshot unchanged', async () => {
    const text = await readFile(join(import.meta.dirname, '..', 'examples', 'quickstart', 'policies.yaml'), 'utf8');
    const original = loadResources([{ file: 'policies.yaml', text }]).resources;
    assert.ok(original.length >= 3);
    const state = buildMeshState(input({ 'policies.yaml': text }), undefined);
    const snap = proxySnapshot(state, state.mesh.workloads[0]!, 'PEM');
    const again = loadResources(snapshotSources(snap));
    assert.deepEqual(again.diagnostics.filter((d) => d.severity === 'error'), []);
    for (const r of again.resources) {
      const o = original.find((x) => x.kind === r.kind && x.meta.name === r.meta.name && x.meta.namespace === r.meta.namespace)!;
      assert.deepEqual(r.spec, o.spec, `${r.kind} ${r.meta.name}`);
      assert.deepEqual(r.meta, o.meta);
      assert.equal(toDocument(r).json, toDocument(o).json);
    }
  });
});

describe('used bootstrap token ledger on disk', () => {
  it('a token recorded before a restart is still refused after it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rampart-ledger-'));
    const now = Date.parse('2026-12-31T23:59:59.000Z');
    const first = persistentLedger(dir);
    assert.equal(first.consume('jti-1', now + 60_000, now), true);
    assert.ok((await readFile(join(dir, LEDGER_FILE), 'utf8')).includes('jti-1'));
    const restarted = persistentLedger(dir);
    assert.equal(restarted.consume('jti-1', now + 60_000, now), false);
    assert.equal(restarted.consume('jti-2', now + 60_000, now), true);
  });

  it('expired entries are dropped', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rampart-ledger-'));
    const ledger = persistentLedger(dir);
    ledger.consume('old', 1_000, 0);
    ledger.consume('new', 10_000_000, 5_000);
    assert.equal(ledger.size, 1);
  });
});

describe('rampart status text', () => {
  it('names rejected files, a proxy behind, and a NACK with its error', () => {
    // One fixed instant, passed in: the text must not depend on when the test runs.
    const now = new Date('2026-12-31T23:59:30.000Z');
    const text = formatStatus({
      version: '3', source: 'directory cfg', lastChange: null, sourceError: null, rejected: ['a.yaml:4: error …'], rejectedFiles: ['a.yaml'], resources: 2,
      workloads: ['default/httpbin'], controlPlane: { identity: 'spiffe://cluster.local/ns/istio-system/sa/rampart-control-plane', port: 15012, certNotAfter: null },
      proxies: [
        { id: 1, workload: 'default/httpbin', identity: 'spiffe://x', address: '127.0.0.1:1', connectedAt: '', sentVersion: '3', ackedVersion: '3', state: 'ACK', error: null, certNotAfter: new Date(now.getTime() + 3_600_000 + 60_000).toISOString() },
        { id: 2, workload: 'default/sleep', identity: 'spiffe://y', address: '127.0.0.1:2', connectedAt: '', sentVersion: '3', ackedVersion: '2', state: 'NACK', error: 'bad', certNotAfter: null },
      ],
    }, now);
    assert.match(text, /rejected \(their last good content stays in force\):\n {2}a\.yaml:4/);
    assert.match(text, /1 +default\/httpbin .* 3 +SYNCED .*2027-01-01T01:00:30\.000Z \(in 1h1m\)/);
    assert.match(text, /2 +default\/sleep .* 2 \(sent 3\) +NACK: bad/);
  });

  it('prints the time left from the instant it is given, whatever the date', () => {
    const rows: Array<[string, number, string]> = [
      ['2026-12-31T23:59:30.000Z', 3_600_000 + 60_000, '(in 1h1m)'],
      ['2026-12-31T23:59:30.000Z', 3_600_000 + 60_000 - 1, '(in 1h0m)'],
      ['2027-02-28T23:59:59.999Z', 59_000, '(in 0m59s)'],
      ['2028-02-29T00:00:00.000Z', 0, '(in expired)'],
      ['2026-03-29T00:30:00.000Z', -1, '(in expired)'],
    ];
    for (const [at, left, expected] of rows) {
      const now = new Date(at);
      const text = formatStatus({
        version: '1', source: 'directory cfg', lastChange: null, sourceError: null, rejected: [], rejectedFiles: [], resources: 0, workloads: ['default/a'],
        controlPlane: { identity: 'spiffe://cluster.local/ns/istio-system/sa/rampart-control-plane', port: 15012, certNotAfter: null },
        proxies: [{ id: 1, workload: 'default/a', identity: 'spiffe://a', address: '127.0.0.1:1', connectedAt: '', sentVersion: '1', ackedVersion: '1', state: 'ACK', error: null, certNotAfter: new Date(now.getTime() + left).toISOString() }],
      }, now);
      assert.ok(text.includes(expected), `${at} + ${left} ms: ${text}`);
    }
  });
});
