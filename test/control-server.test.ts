import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PATH_CSR, PATH_STREAM } from '../src/control/protocol.ts';
import { ControlPlane } from '../src/control/server.ts';
import { DirectorySource } from '../src/control/source.ts';
import { clientTlsOptions, serverCheckingTlsOptions } from '../src/identity/tls.ts';
import { issueSvid, newCa } from './support/certs.ts';
import { waitUntil } from './support/proxy.ts';

/** The control plane in this process, with a real mTLS HTTP/2 client speaking to it. */

const MESH = `workloads:
- {name: httpbin, namespace: default, serviceAccount: httpbin, labels: {app: httpbin}, address: 127.0.0.1, ports: [{name: http, port: 8000, targetPort: 18000}]}
services: []
`;

const bigPolicy = (n: number): string => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: big, namespace: default}
spec:
  rules: [{to: [{operation: {paths: [${Array.from({ length: 2_000 }, (_, i) => `"/v${n}/path-${i}"`).join(', ')}]}}]}]
`;

describe('ControlPlane', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('cuts off a proxy that stops reading its stream instead of buffering every version for it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rampart-cp-slow-'));
    await writeFile(join(dir, 'mesh.yaml'), MESH);
    await writeFile(join(dir, 'p.yaml'), bigPolicy(0));
    const ca = await newCa();
    const warnings: Array<Record<string, unknown>> = [];
    const cp = new ControlPlane({
      source: new DirectorySource(dir), ca, port: 0, debounceMs: 10, maxBufferedPerProxy: 256 * 1024,
      log: { info: () => undefined, warn: (f) => void warnings.push(f as Record<string, unknown>), error: () => undefined },
    });
    await cp.start();
    cleanups.push(() => cp.stop());
    const svid = await issueSvid(ca, 'default', 'httpbin');
    const session = http2.connect(`https://127.0.0.1:${cp.port}`, { ...clientTlsOptions(svid, ca.trustBundle, { ids: [cp.identity.uri] }), servername: 'rampart-control-plane' });
    session.on('error', () => undefined);
    cleanups.push(() => void session.destroy());
    const req = session.request({ ':method': 'POST', ':path': PATH_STREAM }, { endStream: false });
    req.on('error', () => undefined);
    req.write(`${JSON.stringify({ type: 'subscribe', workload: 'default/httpbin' })}\n`);
    // Read the first snapshot's start, then stop reading.
    await new Promise<void>((resolve) => req.once('data', () => resolve()));
    req.pause();
    assert.equal(cp.status().proxies.length, 1);
    for (let v = 1; v <= 40 && cp.status().proxies.length > 0; v++) {
      await writeFile(join(dir, 'p.yaml'), bigPolicy(v));
      await cp.refresh();
    }
    await waitUntil('the slow proxy cut off', () => (cp.status().proxies.length === 0 ? true : undefined), 5_000);
    assert.ok(warnings.some((w) => w['event'] === 'proxy-too-slow'));
  });

  it('answers malformed or unauthenticated requests with a status, a stable code and the reason', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rampart-cp-bad-'));
    await writeFile(join(dir, 'mesh.yaml'), MESH);
    const ca = await newCa();
    const cp = new ControlPlane({ source: new DirectorySource(dir), ca, port: 0, log: { info: () => undefined, warn: () => undefined, error: () => undefined } });
    await cp.start();
    cleanups.push(() => cp.stop());
    const url = `https://127.0.0.1:${cp.port}`;
    const open = async (withSvid: boolean): Promise<http2.ClientHttp2Session> => {
      const expect = { ids: [cp.identity.uri] };
      const tls = withSvid ? clientTlsOptions(await issueSvid(ca, 'default', 'httpbin'), ca.trustBundle, expect) : serverCheckingTlsOptions(ca.trustBundle, expect);
      const s = http2.connect(url, { ...tls, servername: 'rampart-control-plane' });
      s.on('error', () => undefined);
      cleanups.push(() => void s.destroy());
      return s;
    };
    const call = (s: http2.ClientHttp2Session, path: string, body: string): Promise<{ status: number; code: string; error: string }> =>
      new Promise((resolve, reject) => {
        const req = s.request({ ':method': 'POST', ':path': path });
        let status = 0;
        let text = '';
        req.setEncoding('utf8');
        req.on('response', (h) => (status = Number(h[':status'])));
        req.on('data', (c: string) => (text += c));
        req.on('end', () => resolve({ status, ...(JSON.parse(text) as { code: string; error: string }) }));
        req.on('error', reject);
        req.end(body);
      });
    const anonymous = await open(false);
    const rows: Array<[string, string, number, string, RegExp]> = [
      ['a CSR body that is not JSON', 'nope', 400, 'ERR_CSR_REQUEST', /not a JSON object with a "csr"/],
      ['a CSR body without a csr', '{}', 400, 'ERR_CSR_REQUEST', /"csr" string/],
      ['a CSR with no credential', '{"csr":"x"}', 401, 'ERR_CSR_UNAUTHENTICATED', /present an SVID .* or a bootstrap token/],
    ];
    for (const [what, body, status, code, error] of rows) {
      const r = await call(anonymous, PATH_CSR, body);
      assert.equal(r.status, status, what);
      assert.equal(r.code, code, what);
      assert.match(r.error, error, what);
    }
    const noSvid = await call(anonymous, PATH_STREAM, '{"type":"subscribe","workload":"default/httpbin"}\n');
    assert.deepEqual([noSvid.status, noSvid.code], [401, 'ERR_STREAM_UNAUTHENTICATED']);
    const withSvid = await open(true);
    const notSubscribe = await call(withSvid, PATH_STREAM, '{"type":"ack","version":"1"}\n');
    assert.deepEqual([notSubscribe.status, notSubscribe.code], [400, 'ERR_STREAM_MESSAGE']);
    assert.match(notSubscribe.error, /first message must be/);
    const notJson = await call(withSvid, PATH_STREAM, 'hello\n');
    assert.deepEqual([notJson.status, notJson.code], [400, 'ERR_STREAM_MESSAGE']);
    const unknown = await call(withSvid, '/v1/nothing', '');
    assert.deepEqual([unknown.status, unknown.code], [404, 'ERR_NOT_FOUND']);
  });
});
