import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import tls, { type ConnectionOptions, type TLSSocket, type TlsOptions } from 'node:tls';
import * as asn from '@peculiar/asn1-x509';
import { CertificateAuthority, createIntermediateCa, createSelfSignedCa } from '../src/identity/ca.ts';
import { istioSpiffeId } from '../src/identity/spiffe-id.ts';
import type { Svid } from '../src/identity/svid.ts';
import { SvidError, verifySvid, type IdentityExpectation, type SvidRejection, type SvidRole, type VerifiedSvid } from '../src/identity/svid-verify.ts';
import { clientTlsOptions, peerChain, serverTlsOptions, verifyTlsPeer } from '../src/identity/tls.ts';
import { TrustBundle } from '../src/identity/trust-bundle.ts';
import { extension, generateKeyPair } from '../src/identity/x509.ts';
import { forgeLeaf, issueSvid, newCa, type Credentials, type ForgeOptions } from './support/certs.ts';

/**
 * Real mTLS handshakes on 127.0.0.1 with node:tls: SVIDs from the CA are accepted both ways, and certificates the CA
 * would never issue are refused by the server (verifyTlsPeer, fail closed) and by the client (chain check and
 * checkServerIdentity), with the same reasons verifySvid gives without TLS.
 */

const TD = 'cluster.local';
const ALIAS_TD = 'old.example';
const HOUR = 3_600_000;
/** Upper bound for any single wait on the network; every test also has its own timeout. */
const IO_TIMEOUT_MS = 5_000;
const TEST_TIMEOUT = { timeout: 30_000 };
const VERSIONS = ['TLSv1.3', 'TLSv1.2'] as const;
type TlsVersion = (typeof VERSIONS)[number];

// ---- fixtures ----

interface Fixtures {
  readonly ca: CertificateAuthority;
  /** Same trust domain, unrelated root: nothing it signs is trusted by `ca`'s bundle. */
  readonly foreign: CertificateAuthority;
  readonly bundle: TrustBundle;
  readonly server: Svid;
  readonly client: Svid;
}

let fixtures: Promise<Fixtures> | undefined;
function fx(): Promise<Fixtures> {
  fixtures ??= (async () => {
    const ca = await newCa(TD);
    const foreign = await newCa(TD);
    return {
      ca,
      foreign,
      bundle: ca.trustBundle,
      server: await issueSvid(ca, 'default', 'httpbin'),
      client: await issueSvid(ca, 'default', 'sleep'),
    };
  })();
  return fixtures;
}

const principalOf = (svid: Svid): string => svid.spiffeId.uri.slice('spiffe://'.length);
const fingerprints = (chain: readonly X509Certificate[]): string[] => chain.map((c) => c.fingerprint256);

/** TLS options with the credentials swapped for `creds` (which may be a certificate no Svid can hold). */
function presenting<T extends TlsOptions | ConnectionOptions>(options: T, creds: Credentials): T {
  assert.equal(typeof options.key, 'string', 'the options under test carry a PEM key');
  assert.equal(typeof options.cert, 'string', 'the options under test carry a PEM chain');
  return { ...options, key: creds.keyPem, cert: creds.chainPem };
}

// ---- a server that checks each client with verifyTlsPeer and fails closed ----

type ServerEvent =
  | { readonly kind: 'accepted'; readonly peer: VerifiedSvid; readonly chain: readonly X509Certificate[] }
  | { readonly kind: 'rejected'; readonly error: unknown }
  | { readonly kind: 'tls-error'; readonly error: Error };

interface TestServer {
  readonly port: number;
  /** Everything that happened so far, in order (the reason of every rejection is recorded here). */
  readonly events: readonly ServerEvent[];
  /** The next event not yet taken; fails after IO_TIMEOUT_MS. */
  next(): Promise<ServerEvent>;
  close(): Promise<void>;
}

async function startServer(options: TlsOptions, bundle: TrustBundle): Promise<TestServer> {
  const events: ServerEvent[] = [];
  let taken = 0;
  const waiters: Array<() => void> = [];
  const sockets = new Set<TLSSocket>();
  const record = (e: ServerEvent): void => {
    events.push(e);
    for (const w of waiters.splice(0)) w();
  };
  const server = tls.createServer(options);
  server.on('secureConnection', (socket: TLSSocket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {}); // the client may reset; the outcome is recorded below
    socket.setTimeout(IO_TIMEOUT_MS, () => socket.destroy());
    let peer: VerifiedSvid;
    try {
      peer = verifyTlsPeer(socket, bundle, 'client');
    } catch (error) {
      record({ kind: 'rejected', error });
      socket.destroy(); // fail closed: nothing is written to a peer that is not an acceptable SVID
      return;
    }
    record({ kind: 'accepted', peer, chain: peerChain(socket) });
    socket.end(`${peer.principal}\n`);
  });
  server.on('tlsClientError', (error: Error) => record({ kind: 'tls-error', error }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    events,
    next: () =>
      new Promise<ServerEvent>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the server saw no connection outcome within ${IO_TIMEOUT_MS} ms`)), IO_TIMEOUT_MS);
        const take = (): void => {
          const e = events[taken];
          if (e === undefined) {
            waiters.push(take);
            return;
          }
          taken++;
          clearTimeout(timer);
          resolve(e);
        };
        take();
      }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

async function withServer<T>(options: TlsOptions, bundle: TrustBundle, fn: (server: TestServer) => Promise<T>): Promise<T> {
  const server = await startServer(options, bundle);
  try {
    return await fn(server);
  } finally {
    await server.close();
  }
}

// ---- a client that records what it saw ----

interface ClientResult {
  readonly secureConnected: boolean;
  /** verifyTlsPeer(socket, bundle, 'server') at secureConnect. */
  readonly serverPeer: VerifiedSvid | undefined;
  readonly serverPeerError: unknown;
  readonly serverChain: readonly X509Certificate[];
  /** Everything read before the connection closed. */
  readonly received: string;
  readonly error: (Error & { code?: string }) | undefined;
  readonly timedOut: boolean;
}

function dial(port: number, options: ConnectionOptions, bundle: TrustBundle, maxVersion: TlsVersion = 'TLSv1.3'): Promise<ClientResult> {
  return new Promise<ClientResult>((resolve) => {
    let secureConnected = false;
    let serverPeer: VerifiedSvid | undefined;
    let serverPeerError: unknown;
    let serverChain: X509Certificate[] = [];
    let received = '';
    let error: (Error & { code?: string }) | undefined;
    let timedOut = false;
    const socket = tls.connect({ ...options, host: '127.0.0.1', port, maxVersion });
    const timer = setTimeout(() => {
      timedOut = true;
      socket.destroy();
    }, IO_TIMEOUT_MS);
    socket.setEncoding('utf8');
    socket.on('secureConnect', () => {
      secureConnected = true;
      try {
        serverPeer = verifyTlsPeer(socket, bundle, 'server');
      } catch (err) {
        serverPeerError = err;
      }
      serverChain = peerChain(socket);
    });
    socket.on('data', (chunk: string) => (received += chunk));
    socket.on('error', (err: Error) => (error ??= err));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ secureConnected, serverPeer, serverPeerError, serverChain, received, error, timedOut });
    });
  });
}

/** What a client got, in one word: a response line, or how it failed ("closed before a response" is a failure). */
function outcome(r: ClientResult): string {
  if (r.timedOut) return 'timed out';
  if (r.received.endsWith('\n')) return `response ${r.received.trim()}`;
  if (r.error instanceof SvidError) return `svid ${r.error.reason}`;
  if (r.error !== undefined) return `tls ${r.error.code ?? r.error.message}`;
  return 'closed before a response';
}

/** The server refused the connection with `reason` and the client never got a response (nor waited for our timeout). */
async function assertServerRejected(server: TestServer, client: ClientResult, reason: SvidRejection): Promise<SvidError> {
  const event = await server.next();
  assert.equal(event.kind, 'rejected', `server outcome: ${JSON.stringify(event.kind === 'accepted' ? event.peer.principal : event)}`);
  const error = (event as { error: unknown }).error;
  assert.ok(error instanceof SvidError, `the server's rejection is an SvidError (got ${String(error)})`);
  assert.equal(error.reason, reason, error.message);
  assert.equal(client.received, '', 'the client read nothing from a server that rejected it');
  assert.equal(client.timedOut, false, 'the server closed the connection itself (fail closed), not our timeout');
  assert.match(outcome(client), /^(closed before a response|tls )/);
  return error;
}

async function assertSvidRejection(fn: () => unknown, reason: SvidRejection): Promise<void> {
  await assert.rejects(
    async () => fn(),
    (err: unknown) => {
      assert.ok(err instanceof SvidError, `expected an SvidError, got ${String(err)}`);
      assert.equal(err.reason, reason, err.message);
      return true;
    },
  );
}

// ---- certificates the CA would never issue ----

interface BadCertCase {
  readonly name: string;
  readonly forge: (f: Fixtures) => ForgeOptions | Promise<ForgeOptions>;
  /** What verifySvid says (and, unless tlsReason says otherwise, verifyTlsPeer on the server). */
  readonly reason: SvidRejection;
  /** verifyTlsPeer's reason when OpenSSL rejects first with a code that maps to something else. */
  readonly tlsReason?: SvidRejection;
  /** The OpenSSL verification code named in the server's message, when OpenSSL catches it first. */
  readonly opensslCode?: string;
}

const now = (): number => Date.now();
const uri = (ns: string, sa: string, td = TD): string => istioSpiffeId(td, ns, sa).uri;

const CLIENT_CERT_CASES: readonly BadCertCase[] = [
  { name: 'signed by a foreign CA', forge: (f) => ({ issuer: f.foreign.material }), reason: 'untrusted', opensslCode: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' },
  {
    name: 'our issuer name, signed with another key',
    forge: async (f) => ({ issuer: f.ca.material, signWith: (await generateKeyPair()).privateKey }),
    reason: 'untrusted',
    opensslCode: 'CERT_SIGNATURE_FAILURE',
  },
  {
    name: 'expired',
    forge: (f) => ({ issuer: f.ca.material, notBefore: new Date(now() - 2 * HOUR), notAfter: new Date(now() - HOUR) }),
    reason: 'expired',
    opensslCode: 'CERT_HAS_EXPIRED',
  },
  {
    name: 'not yet valid',
    forge: (f) => ({ issuer: f.ca.material, notBefore: new Date(now() + HOUR), notAfter: new Date(now() + 2 * HOUR) }),
    reason: 'not-yet-valid',
    opensslCode: 'CERT_NOT_YET_VALID',
  },
  {
    name: 'another trust domain, signed by our CA',
    forge: (f) => ({ issuer: f.ca.material, uris: [uri('default', 'sleep', 'example.org')] }),
    reason: 'foreign-trust-domain',
  },
  {
    name: 'two URI SANs',
    forge: (f) => ({ issuer: f.ca.material, uris: [uri('default', 'sleep'), uri('default', 'admin')] }),
    reason: 'multiple-uri-sans',
  },
  { name: 'CA=true', forge: (f) => ({ issuer: f.ca.material, isCA: true }), reason: 'ca-certificate' },
  { name: 'a non-SPIFFE URI SAN', forge: (f) => ({ issuer: f.ca.material, uris: ['https://cluster.local/ns/default/sa/sleep'] }), reason: 'not-spiffe' },
  { name: 'no SAN at all', forge: (f) => ({ issuer: f.ca.material, uris: [], subject: [['CN', 'sleep']] }), reason: 'no-uri-san' },
  {
    name: 'a DNS SAN and no URI SAN',
    forge: (f) => ({ issuer: f.ca.material, uris: [], dnsNames: ['sleep.default.svc.cluster.local'] }),
    reason: 'no-uri-san',
  },
  {
    name: 'EKU serverAuth only (no clientAuth)',
    forge: (f) => ({ issuer: f.ca.material, extKeyUsage: [asn.id_kp_serverAuth] }),
    reason: 'extended-key-usage',
    opensslCode: 'INVALID_PURPOSE',
  },
  {
    name: 'key usage keyEncipherment only (no digitalSignature)',
    forge: (f) => ({ issuer: f.ca.material, keyUsage: asn.KeyUsageFlags.keyEncipherment }),
    reason: 'key-usage',
    opensslCode: 'INVALID_PURPOSE',
  },
  {
    name: 'key usage keyAgreement only (OpenSSL accepts it, Rampart does not)',
    forge: (f) => ({ issuer: f.ca.material, keyUsage: asn.KeyUsageFlags.keyAgreement }),
    reason: 'key-usage',
  },
  {
    name: 'key usage with keyCertSign',
    forge: (f) => ({ issuer: f.ca.material, keyUsage: asn.KeyUsageFlags.digitalSignature | asn.KeyUsageFlags.keyCertSign }),
    reason: 'key-usage',
  },
  {
    name: 'invalid SPIFFE ID (empty path segment)',
    forge: (f) => ({ issuer: f.ca.material, uris: ['spiffe://cluster.local/ns//sa/x'] }),
    reason: 'invalid-spiffe-id',
  },
  {
    name: 'invalid SPIFFE ID (trailing slash)',
    forge: (f) => ({ issuer: f.ca.material, uris: ['spiffe://cluster.local/ns/default/sa/sleep/'] }),
    reason: 'invalid-spiffe-id',
  },
  {
    // OpenSSL refuses an unknown critical extension itself, with a code (UNSPECIFIED on Node 20) that
    // verifyTlsPeer cannot tell apart from a trust failure: still refused, but under 'untrusted'.
    name: 'an unknown critical extension',
    forge: (f) => ({ issuer: f.ca.material, extraExtensions: [extension('1.3.6.1.4.1.55555.1', true, new asn.BasicConstraints({ cA: false }))] }),
    reason: 'unknown-critical-extension',
    tlsReason: 'untrusted',
  },
];

describe('mTLS between two SVIDs of the CA', () => {
  for (const version of VERSIONS) {
    test(`${version}: both sides verify, each sees the other's SPIFFE ID, the server answers with the client's principal`, TEST_TIMEOUT, async () => {
      const f = await fx();
      await withServer(serverTlsOptions(f.server, f.bundle), f.bundle, async (server) => {
        const client = await dial(server.port, clientTlsOptions(f.client, f.bundle), f.bundle, version);
        assert.equal(outcome(client), `response ${principalOf(f.client)}`, String(client.error));
        assert.equal(client.secureConnected, true);
        assert.equal(client.serverPeerError, undefined);
        assert.equal(client.serverPeer?.spiffeId.uri, 'spiffe://cluster.local/ns/default/sa/httpbin');
        assert.equal(client.serverPeer?.principal, 'cluster.local/ns/default/sa/httpbin');
        const event = await server.next();
        assert.equal(event.kind, 'accepted', JSON.stringify(event));
        if (event.kind !== 'accepted') return;
        assert.equal(event.peer.spiffeId.uri, 'spiffe://cluster.local/ns/default/sa/sleep');
        assert.equal(event.peer.principal, principalOf(f.client));
        assert.deepEqual(server.events.map((e) => e.kind), ['accepted']);
      });
    });
  }

  test('forgeLeaf with default options is an acceptable SVID (so each bad row differs by its one change)', TEST_TIMEOUT, async () => {
    const f = await fx();
    const good = await forgeLeaf({ issuer: f.ca.material });
    assert.ok(good.svid !== undefined, 'svidFromParts accepts the default forged leaf');
    assert.equal(verifySvid(good.chain, f.bundle, { role: 'client' }).principal, 'cluster.local/ns/default/sa/forged');
    assert.equal(verifySvid(good.chain, f.bundle, { role: 'server' }).principal, 'cluster.local/ns/default/sa/forged');
    await withServer(serverTlsOptions(f.server, f.bundle), f.bundle, async (server) => {
      const client = await dial(server.port, clientTlsOptions(good.svid!, f.bundle), f.bundle);
      assert.equal(outcome(client), 'response cluster.local/ns/default/sa/forged');
      assert.equal((await server.next()).kind, 'accepted');
    });
    await withServer(serverTlsOptions(good.svid!, f.bundle), f.bundle, async (server) => {
      const client = await dial(server.port, clientTlsOptions(f.client, f.bundle), f.bundle);
      assert.equal(client.serverPeer?.principal, 'cluster.local/ns/default/sa/forged');
      assert.equal(outcome(client), `response ${principalOf(f.client)}`);
    });
  });

  test('a client without a certificate is rejected as no-certificate', TEST_TIMEOUT, async () => {
    const f = await fx();
    await withServer(serverTlsOptions(f.server, f.bundle), f.bundle, async (server) => {
      const { key: _key, cert: _cert, ...anonymous } = clientTlsOptions(f.client, f.bundle);
      const client = await dial(server.port, anonymous, f.bundle);
      await assertServerRejected(server, client, 'no-certificate');
    });
  });
});

describe('the server rejects client certificates the CA would never issue', () => {
  for (const version of VERSIONS) {
    for (const row of CLIENT_CERT_CASES) {
      const expected = row.tlsReason ?? row.reason;
      test(`${version}: ${row.name} → ${expected}`, TEST_TIMEOUT, async () => {
        const f = await fx();
        const bad = await forgeLeaf(await row.forge(f));
        await withServer(serverTlsOptions(f.server, f.bundle), f.bundle, async (server) => {
          const client = await dial(server.port, presenting(clientTlsOptions(f.client, f.bundle), bad), f.bundle, version);
          const error = await assertServerRejected(server, client, expected);
          if (row.opensslCode !== undefined && row.tlsReason === undefined && ['untrusted', 'expired', 'not-yet-valid'].includes(expected)) {
            assert.match(error.message, new RegExp(row.opensslCode), 'the reason names the OpenSSL verification code');
          }
          // The client finished its side of the handshake but never got an answer.
          if (version === 'TLSv1.3') assert.equal(client.secureConnected, true, 'under TLS 1.3 the client sees secureConnect first, then EOF');
        });
      });
    }
  }
});

// ---- server certificates the client must refuse ----

type ClientRefusal = { readonly svid: SvidRejection } | { readonly tls: string };

interface ServerCertCase {
  readonly name: string;
  readonly forge: (f: Fixtures) => ForgeOptions | Promise<ForgeOptions>;
  readonly refusal: ClientRefusal;
}

const SERVER_CERT_CASES: readonly ServerCertCase[] = [
  { name: 'signed by a foreign CA', forge: (f) => ({ issuer: f.foreign.material }), refusal: { tls: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' } },
  {
    name: 'expired',
    forge: (f) => ({ issuer: f.ca.material, notBefore: new Date(now() - 2 * HOUR), notAfter: new Date(now() - HOUR) }),
    refusal: { tls: 'CERT_HAS_EXPIRED' },
  },
  {
    name: 'another trust domain, signed by our CA',
    forge: (f) => ({ issuer: f.ca.material, uris: [uri('default', 'httpbin', 'example.org')] }),
    refusal: { svid: 'foreign-trust-domain' },
  },
  { name: 'CA=true', forge: (f) => ({ issuer: f.ca.material, isCA: true }), refusal: { svid: 'ca-certificate' } },
  {
    name: 'two URI SANs',
    forge: (f) => ({ issuer: f.ca.material, uris: [uri('default', 'httpbin'), uri('default', 'admin')] }),
    refusal: { svid: 'multiple-uri-sans' },
  },
  { name: 'a non-SPIFFE URI SAN', forge: (f) => ({ issuer: f.ca.material, uris: ['https://httpbin.default'] }), refusal: { svid: 'not-spiffe' } },
  { name: 'no URI SAN', forge: (f) => ({ issuer: f.ca.material, uris: [], dnsNames: ['httpbin.default.svc'] }), refusal: { svid: 'no-uri-san' } },
  {
    name: 'invalid SPIFFE ID',
    forge: (f) => ({ issuer: f.ca.material, uris: ['spiffe://cluster.local/ns//sa/x'] }),
    refusal: { svid: 'invalid-spiffe-id' },
  },
  {
    name: 'key usage with keyCertSign',
    forge: (f) => ({ issuer: f.ca.material, keyUsage: asn.KeyUsageFlags.digitalSignature | asn.KeyUsageFlags.keyCertSign }),
    refusal: { svid: 'key-usage' },
  },
  // OpenSSL's own purpose check (ssl_server) refuses it before checkServerIdentity runs.
  { name: 'EKU clientAuth only (no serverAuth)', forge: (f) => ({ issuer: f.ca.material, extKeyUsage: [asn.id_kp_clientAuth] }), refusal: { tls: 'INVALID_PURPOSE' } },
];

function describeRefusal(r: ClientRefusal): string {
  return 'svid' in r ? `svid ${r.svid}` : `tls ${r.tls}`;
}

/** Dials a server presenting `serverCreds` and returns what the client got. */
async function dialServerPresenting(f: Fixtures, serverCreds: Credentials, expect: IdentityExpectation = {}, version: TlsVersion = 'TLSv1.3'): Promise<ClientResult> {
  return withServer(presenting(serverTlsOptions(f.server, f.bundle), serverCreds), f.bundle, (server) =>
    dial(server.port, clientTlsOptions(f.client, f.bundle, expect), f.bundle, version),
  );
}

function assertClientRefused(client: ClientResult, refusal: ClientRefusal): void {
  assert.equal(outcome(client), describeRefusal(refusal), client.error?.message);
  assert.equal(client.received, '', 'nothing was read from a refused server');
  assert.equal(client.secureConnected, false, "a refused server never gets to 'secureConnect'");
}

describe('the client refuses server certificates the CA would never issue', () => {
  for (const version of VERSIONS) {
    for (const row of SERVER_CERT_CASES) {
      test(`${version}: ${row.name} → ${describeRefusal(row.refusal)}`, TEST_TIMEOUT, async () => {
        const f = await fx();
        const bad = await forgeLeaf(await row.forge(f));
        assertClientRefused(await dialServerPresenting(f, bad, {}, version), row.refusal);
      });
    }
  }
});

describe("the client's expected server identity (secure naming)", () => {
  const httpbin = 'spiffe://cluster.local/ns/default/sa/httpbin';
  const rows: ReadonlyArray<{ readonly name: string; readonly ids: readonly string[]; readonly serviceAccounts?: readonly string[]; readonly ok: boolean }> = [
    { name: 'no expectation', ids: [], ok: true },
    { name: 'the service account', ids: [], serviceAccounts: ['default/httpbin'], ok: true },
    { name: 'an ID that misses, a service account that matches', ids: ['cluster.local/ns/default/sa/reviews'], serviceAccounts: ['default/httpbin'], ok: true },
    { name: 'another service account (namespace/name)', ids: [], serviceAccounts: ['default/reviews', 'prod/httpbin'], ok: false },
    { name: 'a service account without its namespace', ids: [], serviceAccounts: ['httpbin'], ok: false },
    { name: 'the SPIFFE URI', ids: [httpbin], ok: true },
    { name: 'the principal form', ids: ['cluster.local/ns/default/sa/httpbin'], ok: true },
    { name: 'one of several', ids: ['cluster.local/ns/default/sa/reviews', httpbin], ok: true },
    { name: 'another service account', ids: ['spiffe://cluster.local/ns/default/sa/reviews'], ok: false },
    { name: 'another namespace (principal form)', ids: ['cluster.local/ns/prod/sa/httpbin'], ok: false },
    { name: 'the same path in another trust domain', ids: ['spiffe://example.org/ns/default/sa/httpbin'], ok: false },
    { name: 'a prefix of the ID', ids: ['cluster.local/ns/default'], ok: false },
  ];
  for (const row of rows) {
    test(`${row.name} → ${row.ok ? 'connects' : 'unexpected-identity'}`, TEST_TIMEOUT, async () => {
      const f = await fx();
      const client = await dialServerPresenting(f, f.server, { ids: row.ids, ...(row.serviceAccounts === undefined ? {} : { serviceAccounts: row.serviceAccounts }) });
      if (row.ok) {
        assert.equal(outcome(client), `response ${principalOf(f.client)}`, client.error?.message);
        assert.equal(client.serverPeer?.spiffeId.uri, httpbin);
      } else {
        assertClientRefused(client, { svid: 'unexpected-identity' });
        assert.match(client.error!.message, /the peer is spiffe:\/\/cluster\.local\/ns\/default\/sa\/httpbin, expected /);
      }
    });
  }

  test('verifyTlsPeer on the client applies the same expectation', TEST_TIMEOUT, async () => {
    const f = await fx();
    await withServer(serverTlsOptions(f.server, f.bundle), f.bundle, async (server) => {
      /** The principal verifyTlsPeer returns, or the error it throws (an exception must not escape the event handler). */
      const attempt = (socket: TLSSocket, ids: readonly string[]): string | unknown => {
        try {
          return verifyTlsPeer(socket, f.bundle, 'server', { ids }).principal;
        } catch (err) {
          return err;
        }
      };
      const results = await new Promise<{ match: unknown; mismatch: unknown }>((resolve, reject) => {
        const socket = tls.connect({ ...clientTlsOptions(f.client, f.bundle), host: '127.0.0.1', port: server.port });
        const timer = setTimeout(() => socket.destroy(new Error('timed out')), IO_TIMEOUT_MS);
        socket.on('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        socket.on('secureConnect', () => {
          clearTimeout(timer);
          const match = attempt(socket, ['cluster.local/ns/default/sa/httpbin']);
          const mismatch = attempt(socket, ['cluster.local/ns/default/sa/reviews']);
          socket.destroy();
          resolve({ match, mismatch });
        });
      });
      assert.equal(results.match, 'cluster.local/ns/default/sa/httpbin');
      assert.ok(results.mismatch instanceof SvidError, String(results.mismatch));
      assert.equal(results.mismatch.reason, 'unexpected-identity');
    });
  });
});

// ---- trust domain aliases ----

describe('trust domain aliases', () => {
  interface AliasFixtures extends Fixtures {
    readonly aliasCa: CertificateAuthority;
    readonly aliasClient: Svid;
  }
  let aliasFixtures: Promise<AliasFixtures> | undefined;
  const afx = (): Promise<AliasFixtures> => {
    aliasFixtures ??= (async () => {
      const f = await fx();
      const aliasCa = await newCa(ALIAS_TD);
      return { ...f, aliasCa, aliasClient: await issueSvid(aliasCa, 'default', 'sleep') };
    })();
    return aliasFixtures;
  };

  const rows: ReadonlyArray<{
    readonly name: string;
    readonly bundle: (a: AliasFixtures) => TrustBundle;
    readonly reason: SvidRejection | undefined;
  }> = [
    {
      name: 'alias listed and its root trusted',
      bundle: (a) => new TrustBundle(TD, [...a.bundle.roots, ...a.aliasCa.trustBundle.roots], [ALIAS_TD]),
      reason: undefined,
    },
    {
      name: 'root trusted but the alias not listed',
      bundle: (a) => a.bundle.withRoots(...a.aliasCa.trustBundle.roots),
      reason: 'foreign-trust-domain',
    },
    {
      name: 'alias listed but its root not trusted',
      bundle: (a) => a.bundle.withAliases([ALIAS_TD]),
      reason: 'untrusted',
    },
  ];

  for (const row of rows) {
    test(`server with ${row.name}: an ${ALIAS_TD} client SVID → ${row.reason ?? 'accepted'}`, TEST_TIMEOUT, async () => {
      const a = await afx();
      const bundle = row.bundle(a);
      // verifySvid agrees with the handshake.
      if (row.reason === undefined) {
        assert.equal(verifySvid(a.aliasClient.chain, bundle, { role: 'client' }).principal, 'old.example/ns/default/sa/sleep');
      } else {
        await assertSvidRejection(() => verifySvid(a.aliasClient.chain, bundle, { role: 'client' }), row.reason);
      }
      await withServer(serverTlsOptions(a.server, bundle), bundle, async (server) => {
        // The client trusts the server through the local bundle only; the alias is the server's business.
        const client = await dial(server.port, clientTlsOptions(a.aliasClient, a.bundle), a.bundle);
        if (row.reason === undefined) {
          assert.equal(outcome(client), 'response old.example/ns/default/sa/sleep', client.error?.message);
          const event = await server.next();
          assert.equal(event.kind === 'accepted' ? event.peer.spiffeId.trustDomain : event.kind, ALIAS_TD);
        } else {
          await assertServerRejected(server, client, row.reason);
        }
      });
    });
  }

  test('an alias-domain SVID signed by our own CA is accepted once the alias is listed', TEST_TIMEOUT, async () => {
    const f = await fx();
    const leaf = await forgeLeaf({ issuer: f.ca.material, uris: [uri('default', 'sleep', ALIAS_TD)] });
    assert.ok(leaf.svid !== undefined);
    await assertSvidRejection(() => verifySvid(leaf.chain, f.bundle, { role: 'client' }), 'foreign-trust-domain');
    const withAlias = f.bundle.withAliases([ALIAS_TD]);
    assert.equal(verifySvid(leaf.chain, withAlias, { role: 'client' }).spiffeId.trustDomain, ALIAS_TD);
    await withServer(serverTlsOptions(f.server, withAlias), withAlias, async (server) => {
      const client = await dial(server.port, clientTlsOptions(leaf.svid!, f.bundle), f.bundle);
      assert.equal(outcome(client), 'response old.example/ns/default/sa/sleep', client.error?.message);
    });
  });

  test('a client accepts an alias-domain server only with the alias and its root', TEST_TIMEOUT, async () => {
    const a = await afx();
    const aliasServer = await issueSvid(a.aliasCa, 'default', 'httpbin');
    const both = a.bundle.withRoots(...a.aliasCa.trustBundle.roots);
    // The server trusts the client's CA; the client's bundle is what is under test.
    const serverBundle = a.bundle;
    const dialWith = (clientBundle: TrustBundle): Promise<ClientResult> =>
      withServer(serverTlsOptions(aliasServer, serverBundle), serverBundle, (server) => dial(server.port, clientTlsOptions(a.client, clientBundle), clientBundle));
    const ok = await dialWith(both.withAliases([ALIAS_TD]));
    assert.equal(outcome(ok), `response ${principalOf(a.client)}`, ok.error?.message);
    assert.equal(ok.serverPeer?.spiffeId.uri, 'spiffe://old.example/ns/default/sa/httpbin');
    assertClientRefused(await dialWith(both), { svid: 'foreign-trust-domain' });
    assertClientRefused(await dialWith(a.bundle.withAliases([ALIAS_TD])), { tls: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
  });
});

// ---- plug-in CA: an intermediate under a separate root ----

test('plug-in CA: leaf+intermediate presented, bundle holds only the root, the handshake succeeds both ways', TEST_TIMEOUT, async () => {
  const root = await createSelfSignedCa({ trustDomain: TD, organization: 'Example Corp root' });
  const intermediate = await createIntermediateCa(root, { trustDomain: TD, commonName: 'cluster.local plug-in CA' });
  const ca = new CertificateAuthority(intermediate, { trustDomain: TD });
  const bundle = ca.trustBundle;
  assert.deepEqual(bundle.fingerprints(), [root.signingCert.fingerprint256], 'the bundle holds the root only');
  const server = await issueSvid(ca, 'default', 'httpbin');
  const client = await issueSvid(ca, 'default', 'sleep');
  for (const svid of [server, client]) {
    assert.deepEqual(fingerprints(svid.chain.slice(1)), [intermediate.signingCert.fingerprint256], 'the chain is leaf + intermediate');
    assert.equal(svid.chain.length, 2);
    assert.equal(svid.chainPem.match(/BEGIN CERTIFICATE/g)?.length, 2);
  }
  // Another CA's bundle does not vouch for it.
  const unrelated = await fx();
  await assertSvidRejection(() => verifySvid(client.chain, unrelated.bundle, { role: 'client' }), 'untrusted');
  // Without the intermediate, the leaf does not chain to the root.
  await assertSvidRejection(() => verifySvid(client.chain.slice(0, 1), bundle, { role: 'client' }), 'untrusted');
  assert.equal(verifySvid(client.chain, bundle, { role: 'client' }).principal, 'cluster.local/ns/default/sa/sleep');

  await withServer(serverTlsOptions(server, bundle), bundle, async (srv) => {
    const result = await dial(srv.port, clientTlsOptions(client, bundle, { ids: [server.spiffeId.uri] }), bundle);
    assert.equal(outcome(result), 'response cluster.local/ns/default/sa/sleep', result.error?.message);
    assert.equal(result.serverPeer?.principal, 'cluster.local/ns/default/sa/httpbin');
    const event = await srv.next();
    assert.equal(event.kind, 'accepted');
    if (event.kind !== 'accepted') return;
    assert.equal(event.peer.principal, 'cluster.local/ns/default/sa/sleep');
    // peerChain: what the peer presented (leaf + intermediate) first. Node's getPeerCertificate(true) then
    // completes the chain from the local trust store, so the bundle root the peer never sent comes last.
    const seen: ReadonlyArray<readonly [readonly X509Certificate[], Svid, SvidRole]> = [
      [event.chain, client, 'client'],
      [result.serverChain, server, 'server'],
    ];
    for (const [chain, svid, role] of seen) {
      const presented = svid.chain;
      assert.deepEqual(fingerprints(chain.slice(0, 2)), fingerprints(presented), 'peerChain starts with the presented leaf + intermediate');
      assert.equal(chain.filter((c) => !bundle.has(c)).length, 2, 'two certificates of peerChain were presented');
      assert.deepEqual(fingerprints(chain), [...fingerprints(presented), root.signingCert.fingerprint256]);
      // The chain a server recorded is good for renewal authentication (verifySvid walks it itself).
      assert.equal(verifySvid(chain, bundle, { role }).spiffeId.uri, svid.spiffeId.uri);
    }
  });

  // A client that trusts only the old self-signed CA refuses the plug-in server.
  const refused = await withServer(serverTlsOptions(server, bundle), bundle, (srv) =>
    dial(srv.port, clientTlsOptions(unrelated.client, unrelated.bundle), unrelated.bundle),
  );
  assert.match(outcome(refused), /^tls (UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE)$/);
});

// ---- verifySvid without TLS, on the same certificates ----

describe('verifySvid (no TLS) gives the same reasons', () => {
  for (const row of CLIENT_CERT_CASES) {
    test(`client role: ${row.name} → ${row.reason}`, TEST_TIMEOUT, async () => {
      const f = await fx();
      const bad = await forgeLeaf(await row.forge(f));
      await assertSvidRejection(() => verifySvid(bad.chain, f.bundle, { role: 'client' }), row.reason);
    });
  }

  const serverRole: ReadonlyArray<{ readonly name: string; readonly forge: (f: Fixtures) => ForgeOptions; readonly role: SvidRole; readonly reason: SvidRejection | undefined }> = [
    { name: 'EKU clientAuth only, as a server', forge: (f) => ({ issuer: f.ca.material, extKeyUsage: [asn.id_kp_clientAuth] }), role: 'server', reason: 'extended-key-usage' },
    { name: 'EKU clientAuth only, as a client', forge: (f) => ({ issuer: f.ca.material, extKeyUsage: [asn.id_kp_clientAuth] }), role: 'client', reason: undefined },
    { name: 'EKU serverAuth only, as a server', forge: (f) => ({ issuer: f.ca.material, extKeyUsage: [asn.id_kp_serverAuth] }), role: 'server', reason: undefined },
    { name: 'no EKU extension, as a client', forge: (f) => ({ issuer: f.ca.material, extKeyUsage: null }), role: 'client', reason: undefined },
    { name: 'no key usage extension, as a server', forge: (f) => ({ issuer: f.ca.material, keyUsage: null }), role: 'server', reason: undefined },
  ];
  for (const row of serverRole) {
    test(`${row.name} → ${row.reason ?? 'accepted'}`, TEST_TIMEOUT, async () => {
      const f = await fx();
      const leaf = await forgeLeaf(row.forge(f));
      if (row.reason === undefined) assert.equal(verifySvid(leaf.chain, f.bundle, { role: row.role }).principal, 'cluster.local/ns/default/sa/forged');
      else await assertSvidRejection(() => verifySvid(leaf.chain, f.bundle, { role: row.role }), row.reason);
    });
  }

  test('no certificate, and an unexpected identity', TEST_TIMEOUT, async () => {
    const f = await fx();
    await assertSvidRejection(() => verifySvid([], f.bundle, { role: 'client' }), 'no-certificate');
    await assertSvidRejection(() => verifySvid(f.server.chain, f.bundle, { role: 'server', expect: { ids: ['cluster.local/ns/default/sa/reviews'] } }), 'unexpected-identity');
    assert.equal(verifySvid(f.server.chain, f.bundle, { role: 'server', expect: { ids: ['cluster.local/ns/default/sa/httpbin'] } }).principal, 'cluster.local/ns/default/sa/httpbin');
  });

  test("the validity window is checked at options.now, not the wall clock", TEST_TIMEOUT, async () => {
    const f = await fx();
    const at = f.client.notAfter.getTime();
    assert.equal(verifySvid(f.client.chain, f.bundle, { role: 'client', now: at - 1000 }).principal, principalOf(f.client));
    await assertSvidRejection(() => verifySvid(f.client.chain, f.bundle, { role: 'client', now: at + 1000 }), 'expired');
    await assertSvidRejection(() => verifySvid(f.client.chain, f.bundle, { role: 'client', now: f.client.notBefore.getTime() - 1000 }), 'not-yet-valid');
  });
});
