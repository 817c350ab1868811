import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { extAuthzHttpConfig, headerListMatches } from '../src/proxy/ext-authz.ts';
import { destinationByAddress, resolveDestination, splitHostPort } from '../src/proxy/registry.ts';
import { hostsBlock, withHostsBlock } from '../src/proxy/hosts-entries.ts';
import { xfccValue } from '../src/proxy/xfcc.ts';
import { parseMeshFile } from '../src/resources/mesh-file.ts';

const { mesh } = parseMeshFile(`workloads:
- {name: reviews-v1, namespace: bookinfo, serviceAccount: reviews, labels: {app: reviews, version: v1}, address: 127.0.1.1, ports: [{name: http, port: 9080, targetPort: 19080}]}
- {name: reviews-v2, namespace: bookinfo, serviceAccount: reviews-v2, labels: {app: reviews, version: v2}, address: 127.0.1.2, ports: [{name: http, port: 9080, targetPort: 19081}]}
- {name: ratings, namespace: bookinfo, serviceAccount: ratings, labels: {app: ratings}, address: 127.0.1.3, ports: [{name: http, port: 9080, targetPort: 19082}]}
- {name: other-ns, namespace: default, serviceAccount: default, labels: {app: reviews}, address: 127.0.1.4, ports: [{name: http, port: 9080, targetPort: 19083}]}
services:
- {name: reviews, namespace: bookinfo, selector: {app: reviews}, ports: [{name: http, port: 9080}]}
- {name: ratings, namespace: bookinfo, selector: {app: ratings}, ports: [{name: http, port: 80, targetPort: 9080}]}
`, 'mesh.yaml');

// One row per host form Kubernetes DNS would resolve for a caller in `from`.
const hosts: Array<[string, string, number, string | undefined]> = [
  ['bookinfo', 'reviews', 9080, 'outbound_.9080_._.reviews.bookinfo.svc.cluster.local'],
  ['default', 'reviews', 9080, undefined],
  ['default', 'reviews.bookinfo', 9080, 'outbound_.9080_._.reviews.bookinfo.svc.cluster.local'],
  ['default', 'reviews.bookinfo.svc', 9080, 'outbound_.9080_._.reviews.bookinfo.svc.cluster.local'],
  ['default', 'reviews.bookinfo.svc.cluster.local', 9080, 'outbound_.9080_._.reviews.bookinfo.svc.cluster.local'],
  ['default', 'REVIEWS.Bookinfo.svc.cluster.local.', 9080, 'outbound_.9080_._.reviews.bookinfo.svc.cluster.local'],
  ['default', 'reviews.bookinfo', 9090, undefined],
  ['default', 'reviews.bookinfo.svc.other.domain', 9080, undefined],
  ['default', 'ratings.bookinfo', 80, 'outbound_.80_._.ratings.bookinfo.svc.cluster.local'],
  ['default', 'example.com', 443, undefined],
];

for (const [from, host, port, cluster] of hosts) {
  test(`registry: ${host}:${port} from namespace ${from} → ${cluster ?? 'not in the mesh'}`, () => {
    assert.equal(resolveDestination(mesh, from, host, port)?.clusterName, cluster);
  });
}

test('registry: endpoints are the selected workloads of the service namespace, with their service accounts for secure naming', () => {
  const d = resolveDestination(mesh, 'bookinfo', 'reviews', 9080)!;
  assert.deepEqual(d.endpoints.map((e) => `${e.address}:${e.port}`), ['127.0.1.1:9080', '127.0.1.2:9080']);
  assert.deepEqual(d.serviceAccounts, ['bookinfo/reviews', 'bookinfo/reviews-v2']);
  const r = resolveDestination(mesh, 'bookinfo', 'ratings', 80)!;
  assert.deepEqual(r.endpoints.map((e) => e.port), [9080], 'the service port maps to the workload port');
});

test('registry by original destination: a service address and port, an endpoint of a service, nothing else', () => {
  const reviews = mesh.services.find((s) => s.name === 'reviews')!;
  assert.ok(reviews.allocated && reviews.address.startsWith('240.240.'), reviews.address);
  // Rows: address, port → cluster, endpoints, the service accounts the server must prove.
  const rows: Array<[string, number, string | undefined, string[], string[]]> = [
    [reviews.address, 9080, 'outbound_.9080_._.reviews.bookinfo.svc.cluster.local', ['127.0.1.1:9080', '127.0.1.2:9080'], ['bookinfo/reviews', 'bookinfo/reviews-v2']],
    [reviews.address, 9081, undefined, [], []],
    ['127.0.1.2', 9080, 'outbound_.9080_._.reviews.bookinfo.svc.cluster.local', ['127.0.1.2:9080'], ['bookinfo/reviews-v2']],
    ['127.0.1.3', 9080, 'outbound_.80_._.ratings.bookinfo.svc.cluster.local', ['127.0.1.3:9080'], ['bookinfo/ratings']],
    // other-ns is selected by no service of its namespace: outside the registry, as a pod IP of no service in Istio.
    ['127.0.1.4', 9080, undefined, [], []],
    ['10.0.0.9', 9080, undefined, [], []],
  ];
  for (const [address, port, cluster, endpoints, sas] of rows) {
    const d = destinationByAddress(mesh, address, port);
    assert.equal(d?.clusterName, cluster, `${address}:${port}`);
    assert.deepEqual(d?.endpoints.map((e) => `${e.address}:${e.port}`) ?? [], endpoints, `${address}:${port}`);
    assert.deepEqual(d?.serviceAccounts ?? [], sas, `${address}:${port}`);
  }
});

test('hosts entries: every service under its three names, the bare name in the workload namespace; the block replaced in place', () => {
  const block = hostsBlock(mesh, 'bookinfo');
  const ratings = mesh.services.find((s) => s.name === 'ratings')!.address;
  assert.match(block, new RegExp(`^${ratings.replaceAll('.', '\\.')}\tratings\.bookinfo\.svc\.cluster\.local ratings\.bookinfo\.svc ratings\.bookinfo ratings$`, 'm'));
  assert.doesNotMatch(hostsBlock(mesh, 'default'), / ratings$/m, 'no bare name from another namespace');
  const original = '127.0.0.1\tlocalhost\n10.0.0.1 gateway # mine\n';
  const once = withHostsBlock(original, block);
  assert.ok(once.startsWith(original) && once.endsWith(block));
  const other = hostsBlock({ ...mesh, services: [] }, 'bookinfo');
  const twice = withHostsBlock(once, other);
  assert.equal(twice, original + other, 'the old block is replaced, the lines around it kept');
  assert.equal(withHostsBlock(twice, other), twice);
});

test('splitHostPort: names, IPv4, bracketed IPv6, default port', () => {
  assert.deepEqual(splitHostPort('reviews:9080', 80), { host: 'reviews', port: 9080 });
  assert.deepEqual(splitHostPort('Reviews', 443), { host: 'reviews', port: 443 });
  assert.deepEqual(splitHostPort('127.0.0.1:8080', 80), { host: '127.0.0.1', port: 8080 });
  assert.deepEqual(splitHostPort('[::1]:8443', 80), { host: '::1', port: 8443 });
  assert.deepEqual(splitHostPort('[::1]', 80), { host: '::1', port: 80 });
});

test("x-forwarded-client-cert as Envoy writes it: By, Hash (SHA-256 of the peer's DER), Subject, URI", () => {
  const der = Buffer.from('not really a certificate');
  const v = xfccValue('spiffe://cluster.local/ns/default/sa/httpbin', der, 'spiffe://cluster.local/ns/default/sa/sleep');
  assert.equal(v, `By=spiffe://cluster.local/ns/default/sa/httpbin;Hash=${createHash('sha256').update(der).digest('hex')};Subject="";URI=spiffe://cluster.local/ns/default/sa/sleep`);
  assert.match(xfccValue('a', der, 'b', 'CN="x"'), /Subject="CN=\\"x\\""/, 'quotes in a subject are escaped');
});

test('ext authz header lists: exact, prefix* and *suffix, lower-case', () => {
  const rows: Array<[string[], string, boolean]> = [
    [['x-ext-authz'], 'x-ext-authz', true],
    [['x-ext-authz'], 'x-ext-authz-2', false],
    [['x-ext-*'], 'x-ext-authz-check-result', true],
    [['*-id'], 'x-request-id', true],
    [['*-id'], 'x-request-ids', false],
    [[], 'anything', false],
  ];
  for (const [list, name, want] of rows) assert.equal(headerListMatches(list, name), want, `${list.join(',')} ~ ${name}`);
});

test("ext authz provider settings: Istio's defaults, and unusable providers named", () => {
  const c = extAuthzHttpConfig({ name: 'p', type: 'envoyExtAuthzHttp', config: { service: 'ext-authz.foo.svc.cluster.local', port: 8000, includeRequestHeadersInCheck: ['X-Ext-Authz'] } });
  assert.ok(typeof c !== 'string');
  assert.equal(c.timeoutMs, 600_000);
  assert.equal(c.statusOnError, 403);
  assert.equal(c.failOpen, false);
  assert.deepEqual(c.includeRequestHeaders, ['x-ext-authz']);
  assert.equal(c.headersToDownstreamOnDeny, undefined);
  const t = extAuthzHttpConfig({ name: 'p', type: 'envoyExtAuthzHttp', config: { service: 's', port: 1, timeout: '250ms', statusOnError: '503', failOpen: true } });
  assert.ok(typeof t !== 'string' && t.timeoutMs === 250 && t.statusOnError === 503 && t.failOpen);
  assert.match(String(extAuthzHttpConfig({ name: 'g', type: 'envoyExtAuthzGrpc', config: { service: 's', port: 1 } })), /only envoyExtAuthzHttp/);
  assert.match(String(extAuthzHttpConfig({ name: 'n', type: 'envoyExtAuthzHttp', config: { port: 1 } })), /no service/);
  assert.match(String(extAuthzHttpConfig({ name: 'n', type: 'envoyExtAuthzHttp', config: { service: 's', port: 70000 } })), /no valid port/);
});

test("gRPC local replies: HTTP status to grpc-status as Envoy maps them", async () => {
  const { grpcStatusOf } = await import('../src/proxy/request-view.ts');
  const rows: Array<[number, number]> = [[401, 16], [403, 7], [404, 12], [400, 13], [431, 13], [429, 14], [502, 14], [503, 14], [504, 14], [500, 2]];
  for (const [http, grpc] of rows) assert.equal(grpcStatusOf(http), grpc, String(http));
});
