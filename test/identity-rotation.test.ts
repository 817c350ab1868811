import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { CertificateAuthority, createSelfSignedCa, type CaMaterial } from '../src/identity/ca.ts';
import { CertificateManager, renewalTime, type CertificateEvent, type SvidRequester } from '../src/identity/cert-manager.ts';
import { istioSpiffeId, type SpiffeId } from '../src/identity/spiffe-id.ts';
import { svidFromParts } from '../src/identity/svid.ts';
import { SvidError } from '../src/identity/svid-verify.ts';
import { clientTlsOptions, serverTlsOptions, verifyTlsPeer } from '../src/identity/tls.ts';
import { TrustBundle } from '../src/identity/trust-bundle.ts';
import { certificatesFromPem, createCsr, generateKeyPair } from '../src/identity/x509.ts';

const TD = 'cluster.local';
const SERVER_ID = istioSpiffeId(TD, 'default', 'httpbin');
const CLIENT_ID = istioSpiffeId(TD, 'default', 'sleep');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A requester that talks to `ca` in-process: a bootstrap token first, then the current SVID (as over mTLS). */
function requesterFor(ca: () => CertificateAuthority, id: SpiffeId, ttlMs: number, down: { value: boolean } = { value: false }): SvidRequester {
  return async (csrPem, current) => {
    if (down.value) throw new Error('connect ECONNREFUSED 127.0.0.1:15012');
    const parts = id.path.split('/');
    const credential = current === undefined
      ? { kind: 'bootstrap-token' as const, token: await ca().bootstrapToken(parts[2]!, parts[4]!) }
      : { kind: 'svid' as const, chain: current.chain };
    return ca().signCsr({ csr: csrPem, ttlMs }, credential);
  };
}

/** An mTLS echo server whose TLS context follows a certificate manager; answers each line with the client's principal. */
async function mtlsServer(manager: CertificateManager): Promise<{ server: tls.Server; port: number; rejections: string[]; close: () => Promise<void> }> {
  const rejections: string[] = [];
  const sockets = new Set<import('node:net').Socket>();
  const server = tls.createServer(serverTlsOptions(manager.svid!, manager.trustBundle!));
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (socket) => {
    try {
      const peer = verifyTlsPeer(socket, manager.trustBundle!);
      socket.on('data', (d) => socket.write(`${d.toString().trim()} from ${peer.principal} serial ${manager.svid!.chain[0]!.serialNumber}\n`));
    } catch (err) {
      rejections.push(err instanceof SvidError ? err.reason : String(err));
      socket.destroy();
    }
  });
  server.on('tlsClientError', () => undefined);
  manager.subscribe((e) => {
    if (e.type === 'rotated' || e.type === 'bundle-changed') {
      server.setSecureContext(serverTlsOptions(manager.svid!, manager.trustBundle!));
      // Sessions made under the old trust must not resume under the new one.
      if (e.type === 'bundle-changed' || (e.type === 'rotated' && e.previous !== undefined)) server.setTicketKeys(randomBytes(48));
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    rejections,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}

/** One request on a fresh mTLS connection; resolves with the reply line or rejects. */
function request(port: number, options: tls.ConnectionOptions, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ ...options, host: '127.0.0.1', port, servername: 'httpbin' });
    const timer = setTimeout(() => socket.destroy(new Error('timeout')), 5_000);
    let buf = '';
    socket.on('secureConnect', () => socket.write(`${line}\n`));
    socket.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\n')) {
        clearTimeout(timer);
        socket.end();
        resolve(buf.trim());
      }
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (!buf.includes('\n')) reject(new Error('closed before a response'));
    });
  });
}

/** A connection kept open, asked again and again. */
async function openConnection(port: number, options: tls.ConnectionOptions): Promise<{ ask: (line: string) => Promise<string>; close: () => void; serverSerial: () => string }> {
  const socket = tls.connect({ ...options, host: '127.0.0.1', port, servername: 'httpbin' });
  await once(socket, 'secureConnect');
  const serial = socket.getPeerX509Certificate()!.serialNumber;
  const lines: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  let buf = '';
  socket.on('data', (d) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w !== undefined) w(l);
      else lines.push(l);
    }
  });
  return {
    ask: (line) =>
      new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no answer on the open connection')), 5_000);
        waiters.push((l) => {
          clearTimeout(t);
          resolve(l);
        });
        socket.write(`${line}\n`);
      }),
    close: () => socket.destroy(),
    serverSerial: () => serial,
  };
}

test('renewal time: 50 % of the lifetime by default, ±jitter, clamped', () => {
  assert.equal(renewalTime(0, 1000, 0.5, 0, () => 0.3), 500);
  const times = Array.from({ length: 200 }, () => renewalTime(0, 86_400_000, 0.5, 0.01));
  assert.ok(times.every((t) => t >= 0.49 * 86_400_000 && t <= 0.51 * 86_400_000));
  assert.ok(new Set(times).size > 100, 'jitter spreads renewals');
  assert.equal(renewalTime(0, 1000, 0.99, 0.5, () => 0.9), 0, 'a grace ratio above 1 is clamped');
});

test('rotation: the manager renews at half the lifetime, servers swap context, an open connection survives', async () => {
  const root = await createSelfSignedCa({ trustDomain: TD });
  const ca = new CertificateAuthority(root, { trustDomain: TD });
  const serverMgr = new CertificateManager({ identity: SERVER_ID, requestSvid: requesterFor(() => ca, SERVER_ID, 3_000), graceRatioJitter: 0 });
  const clientMgr = new CertificateManager({ identity: CLIENT_ID, requestSvid: requesterFor(() => ca, CLIENT_ID, 60_000) });
  const events: CertificateEvent[] = [];
  serverMgr.subscribe((e) => events.push(e));
  const t0 = Date.now();
  const first = await serverMgr.start();
  const t1 = Date.now();
  await clientMgr.start();
  assert.equal(first.spiffeId.uri, SERVER_ID.uri);
  // Half of what was left when the SVID was installed, some instant in [t0, t1]: bounds, not a guess at the delay.
  const nb = first.notBefore.getTime();
  const na = first.notAfter.getTime();
  const renewAt = serverMgr.renewAt!;
  assert.ok(renewAt >= (Math.max(nb, t0) + na) / 2 - 1 && renewAt <= (Math.max(nb, t1) + na) / 2 + 1, `renewal planned at half the remaining lifetime (${renewAt - t0} ms after start)`);
  const srv = await mtlsServer(serverMgr);
  try {
    const opts = (): tls.ConnectionOptions => clientTlsOptions(clientMgr.svid!, clientMgr.trustBundle!, { ids: [SERVER_ID.uri] });
    const open = await openConnection(srv.port, opts());
    const before = await open.ask('hello');
    assert.match(before, /^hello from cluster\.local\/ns\/default\/sa\/sleep serial /);
    const serialBefore = open.serverSerial();
    await until('the server SVID to rotate', () => events.some((e) => e.type === 'rotated' && e.previous !== undefined), 6_000);
    const rotated = events.find((e) => e.type === 'rotated' && e.previous !== undefined);
    assert.ok(rotated !== undefined && rotated.type === 'rotated');
    assert.notEqual(rotated.svid.chain[0]!.serialNumber, serialBefore);
    assert.notEqual(rotated.svid.keyPem, first.keyPem, 'a fresh key per renewal');
    // New connections get the new certificate…
    const fresh = await openConnection(srv.port, opts());
    assert.equal(fresh.serverSerial(), rotated.svid.chain[0]!.serialNumber);
    fresh.close();
    // …and the connection opened before the swap still works.
    assert.match(await open.ask('still there?'), /^still there\? from cluster\.local\/ns\/default\/sa\/sleep/);
    open.close();
    assert.deepEqual(srv.rejections, []);
  } finally {
    serverMgr.stop();
    clientMgr.stop();
    await srv.close();
  }
});

test('CA down: retries with growing backoff, keeps the old SVID, recovers; reports expiry if it never comes back', async () => {
  const root = await createSelfSignedCa({ trustDomain: TD });
  const ca = new CertificateAuthority(root, { trustDomain: TD });
  const down = { value: false };
  const mgr = new CertificateManager({
    identity: SERVER_ID,
    requestSvid: requesterFor(() => ca, SERVER_ID, 2_000, down),
    graceRatioJitter: 0,
    initialBackoffMs: 40,
    maxBackoffMs: 200,
  });
  const events: CertificateEvent[] = [];
  mgr.subscribe((e) => events.push(e));
  try {
    const first = await mgr.start();
    down.value = true;
    await until('four failed renewals', () => events.filter((e) => e.type === 'renewal-failed').length >= 4, 5_000);
    assert.equal(mgr.svid, first, 'the old SVID stays in place while the CA is down');
    const delays = events.flatMap((e) => (e.type === 'renewal-failed' ? [e.retryInMs] : []));
    assert.ok(delays[0]! >= 32 && delays[0]! <= 48, `first retry ~40 ms, got ${delays[0]}`);
    assert.ok(delays[2]! > delays[0]!, `backoff grows: ${delays.join(', ')}`);
    assert.ok(delays.every((d) => d <= 240), `capped at 200 ms ±20 %: ${delays.join(', ')}`);
    await until('expiry reported', () => events.some((e) => e.type === 'expired'), 5_000);
    down.value = false;
    await until('recovery', () => mgr.svid !== first, 3_000);
    assert.ok(mgr.svid!.notAfter > first.notAfter);
  } finally {
    mgr.stop();
  }
});

test('the first SVID is retried until the CA answers; the CA must issue the identity asked for', async () => {
  const root = await createSelfSignedCa({ trustDomain: TD });
  const ca = new CertificateAuthority(root, { trustDomain: TD });
  const down = { value: true };
  const mgr = new CertificateManager({ identity: CLIENT_ID, requestSvid: requesterFor(() => ca, CLIENT_ID, 60_000, down), initialBackoffMs: 20, maxBackoffMs: 50 });
  setTimeout(() => (down.value = false), 150);
  try {
    assert.equal((await mgr.start()).spiffeId.uri, CLIENT_ID.uri);
  } finally {
    mgr.stop();
  }
  // A CA that answers with someone else's certificate is not believed.
  const liar = new CertificateManager({
    identity: CLIENT_ID,
    requestSvid: async (_csr) => {
      const keys = await generateKeyPair();
      return ca.issue({ csr: createCsr(keys, SERVER_ID.uri) }, SERVER_ID);
    },
  });
  await assert.rejects(liar.renewNow(), /private key does not belong|expected spiffe/);
  liar.stop();
});

/**
 * Root rotation in four steps with mTLS traffic running throughout: (0) root A signs; (1) root B is trusted beside A;
 * (2) B becomes the signer and workloads renew one by one; (3) A is retired. No request may fail at any step.
 */
test('root rotation: introduce, trust both, switch signer, retire — no request fails', async () => {
  const rootA = await createSelfSignedCa({ trustDomain: TD, organization: 'root A' });
  const rootB = await createSelfSignedCa({ trustDomain: TD, organization: 'root B' });
  const ca = new CertificateAuthority(rootA, { trustDomain: TD });
  const setCa = (m: CaMaterial): void => ca.setMaterial(m);
  const serverMgr = new CertificateManager({ identity: SERVER_ID, requestSvid: requesterFor(() => ca, SERVER_ID, 60_000) });
  const clientMgr = new CertificateManager({ identity: CLIENT_ID, requestSvid: requesterFor(() => ca, CLIENT_ID, 60_000) });
  await serverMgr.start();
  await clientMgr.start();
  const srv = await mtlsServer(serverMgr);
  const stats = { ok: 0, failed: [] as string[] };
  let running = true;
  const opts = (): tls.ConnectionOptions => clientTlsOptions(clientMgr.svid!, clientMgr.trustBundle!, { ids: [SERVER_ID.uri] });
  const open = await openConnection(srv.port, opts());
  const traffic = (async () => {
    while (running) {
      // Four concurrent fresh connections per round, so handshakes overlap the swaps.
      const round = await Promise.allSettled(Array.from({ length: 4 }, (_, i) => request(srv.port, opts(), `ping ${i}`)));
      for (const r of round) {
        if (r.status === 'fulfilled' && r.value.includes('from cluster.local/ns/default/sa/sleep')) stats.ok++;
        else stats.failed.push(r.status === 'rejected' ? String(r.reason) : r.value);
      }
    }
  })();
  const okAfter = async (label: string, n = 20): Promise<void> => {
    const target = stats.ok + n;
    await until(`${n} more requests after ${label}`, () => stats.ok >= target, 10_000);
    assert.deepEqual(stats.failed, [], `failures after ${label}`);
    assert.ok((await open.ask(label)).startsWith(`${label} from `), `the open connection after ${label}`);
  };
  const signedBy = (m: CertificateManager): string => m.svid!.chain[0]!.issuer ?? '';
  try {
    await okAfter('step 0');
    assert.equal(signedBy(serverMgr), 'O=root A');

    // Step 1: introduce B. The CA hands out both roots; workloads pick them up on their next renewal.
    setCa({ ...rootA, roots: [...rootA.roots, ...rootB.roots] });
    await serverMgr.renewNow();
    await clientMgr.renewNow();
    assert.equal(serverMgr.trustBundle!.roots.length, 2);
    assert.equal(clientMgr.trustBundle!.roots.length, 2);
    await okAfter('step 1');

    // Step 2: B signs. The server renews first: for a while the server holds a B certificate and the client an A one.
    setCa({ ...rootB, roots: [...rootA.roots, ...rootB.roots] });
    await serverMgr.renewNow();
    assert.equal(signedBy(serverMgr), 'O=root B');
    assert.equal(signedBy(clientMgr), 'O=root A');
    await okAfter('step 2 (mixed)');
    await clientMgr.renewNow();
    assert.equal(signedBy(clientMgr), 'O=root B');
    await okAfter('step 2 (all on B)');

    // Step 3: retire A once every SVID is signed by B.
    setCa({ ...rootB, roots: rootB.roots });
    await serverMgr.renewNow();
    await clientMgr.renewNow();
    assert.equal(serverMgr.trustBundle!.roots.length, 1);
    assert.equal(serverMgr.trustBundle!.roots[0]!.fingerprint256, rootB.signingCert.fingerprint256);
    await okAfter('step 3');
    running = false;
    await traffic;

    // Control: the retirement took effect. A certificate from root A is now refused by the server.
    const legacyCa = new CertificateAuthority(rootA, { trustDomain: TD });
    const keys = await generateKeyPair();
    const legacy = svidFromParts(keys.privateKey, certificatesFromPem(legacyCa.issue({ csr: createCsr(keys, CLIENT_ID.uri) }, CLIENT_ID).chainPem, 'legacy'));
    const bundleA = new TrustBundle(TD, [...rootA.roots, ...rootB.roots]);
    await assert.rejects(request(srv.port, clientTlsOptions(legacy, bundleA, { ids: [SERVER_ID.uri] }), 'ping'));
    await until('the server to log the rejection', () => srv.rejections.length > 0, 3_000);
    assert.equal(srv.rejections.at(-1), 'untrusted');
    assert.ok(stats.ok >= 100, `traffic ran throughout (${stats.ok} requests)`);
  } finally {
    running = false;
    await traffic;
    open.close();
    serverMgr.stop();
    clientMgr.stop();
    await srv.close();
  }
});

test('setTrustBundle: the trust domain aliases it brings stay through the next renewal', async () => {
  const root = await createSelfSignedCa({ trustDomain: TD });
  const ca = new CertificateAuthority(root, { trustDomain: TD });
  const mgr = new CertificateManager({ identity: CLIENT_ID, requestSvid: requesterFor(() => ca, CLIENT_ID, 60_000) });
  const events: CertificateEvent[] = [];
  mgr.subscribe((e) => events.push(e));
  try {
    await mgr.start();
    mgr.setTrustBundle(mgr.trustBundle!.withAliases(['old.example']));
    await mgr.renewNow();
    assert.deepEqual(mgr.trustBundle!.aliases, ['old.example']);
    assert.equal(events.filter((e) => e.type === 'bundle-changed').length, 1, 'the renewal did not change the bundle back');
  } finally {
    mgr.stop();
  }
});

test('setTrustBundle: a changed bundle is announced once; the same bundle again is not', async () => {
  const root = await createSelfSignedCa({ trustDomain: TD });
  const other = await createSelfSignedCa({ trustDomain: TD });
  const ca = new CertificateAuthority(root, { trustDomain: TD });
  const mgr = new CertificateManager({ identity: CLIENT_ID, requestSvid: requesterFor(() => ca, CLIENT_ID, 60_000) });
  const events: CertificateEvent[] = [];
  mgr.subscribe((e) => events.push(e));
  try {
    await mgr.start();
    const svid = mgr.svid;
    const both = mgr.trustBundle!.withRoots(...other.roots);
    mgr.setTrustBundle(both);
    mgr.setTrustBundle(new TrustBundle(TD, [...both.roots]));
    const changes = events.filter((e) => e.type === 'bundle-changed');
    assert.equal(changes.length, 1);
    assert.equal(mgr.trustBundle!.roots.length, 2);
    assert.equal(mgr.svid, svid, 'the SVID is untouched');
    mgr.setTrustBundle(both.withoutRoots(other.signingCert.fingerprint256.replaceAll(':', '').toLowerCase()));
    assert.equal(events.filter((e) => e.type === 'bundle-changed').length, 2);
    assert.deepEqual(mgr.trustBundle!.fingerprints(), [root.signingCert.fingerprint256]);
  } finally {
    mgr.stop();
  }
});
