import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  SpiffeIdError,
  formatSpiffeId,
  fromPrincipal,
  istioSpiffeId,
  parseIstioIdentity,
  parseSpiffeId,
  toPrincipal,
  type SpiffeIdProblem,
} from '../src/identity/spiffe-id.ts';

// One row per rule of the SPIFFE ID specification (standards/SPIFFE-ID.md, sections 2.1-2.3).
const valid: [string, string, string][] = [
  ['spiffe://cluster.local/ns/foo/sa/bar', 'cluster.local', '/ns/foo/sa/bar'],
  ['spiffe://example.org', 'example.org', ''],
  ['spiffe://td_with-chars.0/Path.With_Mixed-Case/1', 'td_with-chars.0', '/Path.With_Mixed-Case/1'],
  ['spiffe://a/...', 'a', '/...'],
];

const invalid: [string, SpiffeIdProblem][] = [
  ['', 'empty'],
  ['cluster.local/ns/foo/sa/bar', 'scheme'],
  ['SPIFFE://cluster.local/ns/foo', 'scheme'],
  ['https://cluster.local/ns/foo', 'scheme'],
  ['spiffe:///ns/foo', 'trust-domain-missing'],
  ['spiffe://', 'trust-domain-missing'],
  ['spiffe://Cluster.Local/ns/foo', 'trust-domain-chars'],
  ['spiffe://clu$ter/ns/foo', 'trust-domain-chars'],
  ['spiffe://cluster.local:8080/ns/foo', 'port-or-userinfo'],
  ['spiffe://user@cluster.local/ns/foo', 'port-or-userinfo'],
  ['spiffe://cluster.local/ns/foo?x=1', 'query-or-fragment'],
  ['spiffe://cluster.local/ns/foo#frag', 'query-or-fragment'],
  ['spiffe://cluster.local/ns//sa/bar', 'empty-segment'],
  ['spiffe://cluster.local/ns/./sa', 'dot-segment'],
  ['spiffe://cluster.local/ns/../sa', 'dot-segment'],
  ['spiffe://cluster.local/ns/foo/', 'trailing-slash'],
  ['spiffe://cluster.local/', 'trailing-slash'],
  ['spiffe://cluster.local/ns/f%20o', 'path-chars'],
  ['spiffe://cluster.local/ns/f o', 'path-chars'],
  [`spiffe://${'a'.repeat(256)}/x`, 'trust-domain-length'],
  [`spiffe://td/${'a'.repeat(2100)}`, 'too-long'],
];

for (const [uri, td, path] of valid) {
  test(`spiffe id: accepts ${uri}`, () => {
    const id = parseSpiffeId(uri);
    assert.deepEqual([id.trustDomain, id.path, id.uri], [td, path, uri]);
  });
}

for (const [value, problem] of invalid) {
  test(`spiffe id: rejects ${JSON.stringify(value.slice(0, 60))} (${problem})`, () => {
    assert.throws(() => parseSpiffeId(value), (e: unknown) => {
      assert.ok(e instanceof SpiffeIdError);
      assert.equal(e.code, 'ERR_SPIFFE_ID_INVALID');
      assert.equal(e.problem, problem);
      return true;
    });
  });
}

test('istio form: formats ns/sa, replaces @ in the trust domain, and parses back', () => {
  const id = istioSpiffeId('corp@example', 'foo', 'sleep');
  assert.equal(id.uri, 'spiffe://corp.example/ns/foo/sa/sleep');
  const back = parseIstioIdentity(id.uri);
  assert.deepEqual([back.trustDomain, back.namespace, back.serviceAccount], ['corp.example', 'foo', 'sleep']);
});

test('istio form: other paths are valid SPIFFE IDs but not Istio identities', () => {
  for (const uri of ['spiffe://td/ns/foo', 'spiffe://td/sa/x/ns/y', 'spiffe://td/ns/foo/sa/bar/extra', 'spiffe://td']) {
    assert.doesNotThrow(() => parseSpiffeId(uri));
    assert.throws(() => parseIstioIdentity(uri), (e: unknown) => e instanceof SpiffeIdError && e.problem === 'not-istio-form');
  }
});

test('principal form: without spiffe://, both ways, validated', () => {
  const id = formatSpiffeId('cluster.local', 'ns', 'foo', 'sa', 'bar');
  assert.equal(toPrincipal(id), 'cluster.local/ns/foo/sa/bar');
  assert.equal(fromPrincipal('cluster.local/ns/foo/sa/bar').uri, id.uri);
  assert.throws(() => fromPrincipal('spiffe://cluster.local/ns/foo/sa/bar'), SpiffeIdError);
  assert.throws(() => fromPrincipal('cluster.local/ns/foo/sa/'), SpiffeIdError);
});
