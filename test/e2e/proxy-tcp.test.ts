import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import type { CertificateAuthority } from '../../src/identity/ca.ts';
import type { Svid } from '../../src/identity/svid.ts';
import { issueSvid } from '../support/certs.ts';
import { listenLocal, loopbackAddress, peerAuthentication, scenarioDir, startProxy, writeSidecarFiles, type RunningProxy } from '../support/proxy.ts';

/**
 * TCP through the sidecar: a `tcp` port decided on L4 fields at connection time (principals, ports), then piped; a
 * denial closes the connection before any byte reaches the app. A port without a declared protocol is detected:
 * HTTP goes through HTTP authorization, anything else is TCP.
 */

const HOST = loopbackAddress();
let dir: string;
let ca: CertificateAuthority;
let sleep: Svid;
let other: Svid;
let echo: net.Server;
let proxy: RunningProxy;
let echoed = 0;

before(async () => {
  ({ dir, ca } = await scenarioDir('rampart-tcp-'));
  sleep = await issueSvid(ca, 'default', 'sleep');
  other = await issueSvid(ca, 'default', 'other');
  echo = net.createServer((s) => {
    s.on('data', (c: Buffer) => {
      echoed += c.length;
      // An HTTP request gets an HTTP answer, anything else its bytes back.
      if (c.toString('latin1').startsWith('GET ')) s.end('HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nhttp');
      else s.write(c);
    });
    s.on('error', () => undefined);
  });
  const appPort = await listenLocal(echo);
  const files = await writeSidecarFiles(dir, `${peerAuthentication('STRICT')}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tcp-from-sleep, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]
    to: [{operation: {ports: ["9000", "9100"]}}]
`, `workloads:
- name: echo
  serviceAccount: echo
  labels: {app: echo}
  address: ${HOST}
  ports:
  - {name: tcp-echo, port: 9000, targetPort: ${appPort}}
  - {name: unnamed, port: 9100, targetPort: ${appPort}}
`);
  proxy = await startProxy([...files, '--workload', 'default/echo', '--admin-port', '0']);
});

after(async () => {
  await proxy?.stop();
  echo?.close();
  await rm(dir, { recursive: true, force: true });
});

/**
 * Connects with an SVID, writes, and collects what comes back until the connection closes, or until `enough` says
 * the answer is complete (an echo stays open), bounded at 10 s so that a slow machine is not mistaken for a refusal.
 */
async function exchange(svid: Svid, port: number, text: string, enough: (got: string) => boolean = () => false): Promise<{ got: string; closed: boolean }> {
  const s = tls.connect({ host: HOST, port, key: svid.keyPem, cert: svid.chainPem, ca: ca.trustBundle.pem, checkServerIdentity: () => undefined });
  s.on('error', () => undefined);
  await once(s, 'secureConnect');
  s.write(text);
  let got = '';
  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 10_000);
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (enough(got)) {
        clearTimeout(timer);
        resolve(false);
      }
    });
    s.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  s.destroy();
  return { got, closed };
}

test('a tcp port: the allowed principal gets its bytes echoed; another is closed before any byte reaches the app', async () => {
  const ok = await exchange(sleep, 9000, 'ping over tcp', (got) => got.length >= 13);
  assert.equal(ok.got, 'ping over tcp');
  const before = echoed;
  const denied = await exchange(other, 9000, 'should not arrive');
  assert.equal(denied.got, '');
  assert.ok(denied.closed, 'closed by the sidecar');
  assert.equal(echoed, before, 'nothing reached the app');
  const log = await proxy.waitFor('tcp deny log', (l) => l['kind'] === 'tcp' && l['decision'] === 'DENY');
  assert.equal(log['sourcePrincipal'], 'spiffe://cluster.local/ns/default/sa/other');
  await proxy.waitFor('tcp allow log', (l) => l['kind'] === 'tcp' && l['decision'] === 'ALLOW' && (l['bytesReceived'] as number) === 13);
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.ready['admin'] as number}/metrics`)).text();
  assert.match(metrics, /istio_tcp_connections_opened_total\{reporter="destination",source_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/sleep"[^}]*connection_security_policy="mutual_tls"\} [1-9]/);
  assert.doesNotMatch(metrics, /istio_tcp_connections_opened_total\{[^}]*sa\/other/, 'a denied connection was never opened to the app');
  assert.match(metrics, /istio_tcp_received_bytes_total\{[^}]*sa\/sleep[^}]*\} 13/);
});

test('a port without a protocol: HTTP is detected and authorized per request, other bytes are TCP', async () => {
  const http = await exchange(sleep, 9100, 'GET / HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n');
  assert.match(http.got, /^HTTP\/1\.1 200 /);
  await proxy.waitFor('detected http', (l) => l['kind'] === 'http' && l['port'] === 9100 && l['decision'] === 'ALLOW');
  const raw = await exchange(sleep, 9100, '\x00\x01binary', (got) => got.length >= 8);
  assert.equal(raw.got, '\x00\x01binary');
  const deniedHttp = await exchange(other, 9100, 'GET / HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n');
  assert.match(deniedHttp.got, /^HTTP\/1\.1 403 /);
  assert.match(deniedHttp.got, /RBAC: access denied$/);
});
