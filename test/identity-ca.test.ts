import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import {
  CaError,
  caMaterialFromPem,
  caMaterialToPem,
  CertificateAuthority,
  CLOCK_SKEW_GRACE_MS,
  createIntermediateCa,
  createSelfSignedCa,
  type CaMaterial,
} from '../src/identity/ca.ts';
import { certificateFacts, EKU_CLIENT_AUTH, EKU_SERVER_AUTH } from '../src/identity/certificate.ts';
import { istioSpiffeId, parseSpiffeId } from '../src/identity/spiffe-id.ts';
import { verifySvid } from '../src/identity/svid-verify.ts';
import { certificatesFromPem, createCsr, generateKeyPair, parseCsr, type KeyPair } from '../src/identity/x509.ts';
import { RampartError } from '../src/errors.ts';

const TD = 'cluster.local';
const SLEEP = istioSpiffeId(TD, 'default', 'sleep');
const HOUR = 3_600_000;

let rootCache: CaMaterial | undefined;
async function root(): Promise<CaMaterial> {
  rootCache ??= await createSelfSignedCa({ trustDomain: TD });
  return rootCache;
}
let keysCache: KeyPair | undefined;
async function keys(): Promise<KeyPair> {
  keysCache ??= await generateKeyPair();
  return keysCache;
}

async function caError(p: Promise<unknown> | (() => unknown), code: string, message?: RegExp): Promise<void> {
  await assert.rejects(
    async () => (typeof p === 'function' ? p() : p),
    (err: unknown) => {
      assert.ok(err instanceof RampartError, `expected a RampartError, got ${String(err)}`);
      assert.equal(err.code, code, err.message);
      if (message !== undefined) assert.match(err.message, message);
      return true;
    },
  );
}

test('the self-signed root: ECDSA P-256, CA, keyCertSign, 10 years, O=<trust domain>', async () => {
  const m = await root();
  const f = certificateFacts(m.signingCert);
  assert.equal(f.keyDescription, 'ECDSA P-256');
  assert.equal(f.isCA, true);
  assert.ok(f.keyUsage?.includes('keyCertSign'));
  assert.equal(f.subject, 'O=cluster.local');
  assert.equal(f.selfIssued, true);
  const years = (f.notAfter.getTime() - f.notBefore.getTime()) / (365 * 24 * HOUR);
  assert.ok(years > 9.99 && years < 10.01, String(years));
  assert.ok(f.subjectKeyId !== undefined);
});

test('RSA roots of 2048 and 4096 bits sign RSA and ECDSA workload certificates', async () => {
  for (const keyType of ['rsa-2048', 'rsa-4096'] as const) {
    const m = await createSelfSignedCa({ trustDomain: TD, keyType });
    assert.equal(certificateFacts(m.signingCert).keyDescription, `RSA ${keyType.slice(4)}`);
    const ca = new CertificateAuthority(m, { trustDomain: TD });
    const issued = ca.issue({ csr: createCsr(await keys(), SLEEP.uri) }, SLEEP);
    assert.ok(issued.certificate.verify(m.signingCert.publicKey));
    assert.equal(verifySvid([issued.certificate], ca.trustBundle, { role: 'client' }).spiffeId.uri, SLEEP.uri);
  }
});

test('an issued SVID has the fields Istio gives it', async () => {
  const now = Math.floor(Date.now() / 1000) * 1000 + 3_600_000;
  const ca = new CertificateAuthority(await root(), { trustDomain: TD, now: () => now });
  const issued = ca.issue({ csr: createCsr(await keys(), SLEEP.uri) }, SLEEP);
  const f = certificateFacts(issued.certificate);
  assert.deepEqual(f.uris, [SLEEP.uri], 'exactly one URI SAN, the authenticated identity');
  assert.equal(f.sanCritical, true, 'empty subject, so the SAN is critical');
  assert.equal(f.subject, '');
  assert.equal(f.isCA, false);
  assert.deepEqual(f.keyUsage, ['digitalSignature']);
  assert.deepEqual(f.extKeyUsage, [EKU_SERVER_AUTH, EKU_CLIENT_AUTH]);
  assert.equal(f.notBefore.getTime(), now - CLOCK_SKEW_GRACE_MS, 'backdated for clock skew');
  assert.equal(f.notAfter.getTime(), now + 24 * HOUR, 'TTL 24 h by default');
  assert.equal(f.authorityKeyId, certificateFacts((await root()).signingCert).subjectKeyId);
  assert.equal(f.keyDescription, 'ECDSA P-256');
  assert.equal(issued.serial, f.serial);
  assert.equal(issued.chainPem, issued.certificate.toString(), 'a root signer adds nothing to the chain');
  assert.equal(issued.rootsPem, (await root()).signingCert.toString());
});

test('an RSA workload key also gets keyEncipherment', async () => {
  const ca = new CertificateAuthority(await root(), { trustDomain: TD });
  const rsa = await generateKeyPair('rsa-2048');
  const f = certificateFacts(ca.issue({ csr: createCsr(rsa, SLEEP.uri) }, SLEEP).certificate);
  assert.deepEqual(f.keyUsage, ['digitalSignature', 'keyEncipherment']);
  assert.equal(f.keyDescription, 'RSA 2048');
});

test('serials are 128 random bits: positive, distinct, at most 17 DER bytes', async () => {
  const ca = new CertificateAuthority(await root(), { trustDomain: TD });
  const csr = createCsr(await keys(), SLEEP.uri);
  const serials = new Set<string>();
  for (let i = 0; i < 500; i++) {
    const issued = ca.issue({ csr }, SLEEP);
    const s = issued.serial;
    assert.equal(s, issued.certificate.serialNumber.toUpperCase(), 'the serial reported is the one in the certificate');
    assert.ok(s.length <= 34, s);
    assert.ok(/^[0-9A-F]+$/.test(s));
    serials.add(s);
  }
  assert.equal(serials.size, 500);
});

test('TTL: requested, capped by the maximum (an error, as istiod), clipped to the signing certificate', async () => {
  const now = Date.now();
  const ca = new CertificateAuthority(await root(), { trustDomain: TD, maxTtlMs: 48 * HOUR, now: () => now });
  const csr = createCsr(await keys(), SLEEP.uri);
  assert.equal(ca.issue({ csr, ttlMs: HOUR }, SLEEP).notAfter.getTime(), Math.floor((now + HOUR) / 1000) * 1000);
  await caError(async () => ca.issue({ csr, ttlMs: 49 * HOUR }, SLEEP), 'ERR_CSR_TTL', /longer than the maximum/);
  const shortRoot = await createSelfSignedCa({ trustDomain: TD, ttlMs: 2 * HOUR, now });
  const clipped = new CertificateAuthority(shortRoot, { trustDomain: TD, now: () => now }).issue({ csr }, SLEEP);
  assert.equal(clipped.notAfter.getTime(), certificateFacts(shortRoot.signingCert).notAfter.getTime());
});

test('the identity comes from authentication: a CSR asking for another identity is refused', async () => {
  const ca = new CertificateAuthority(await root(), { trustDomain: TD });
  const other = istioSpiffeId(TD, 'prod', 'payments');
  await caError(async () => ca.issue({ csr: createCsr(await keys(), other.uri) }, SLEEP), 'ERR_CSR_IDENTITY', /asks for spiffe:\/\/cluster.local\/ns\/prod\/sa\/payments/);
  const elsewhere = istioSpiffeId('other.domain', 'default', 'sleep');
  await caError(async () => ca.issue({ csr: createCsr(await keys(), elsewhere.uri) }, elsewhere), 'ERR_CSR_IDENTITY', /not in this CA's trust domain/);
});

test('CSRs: a tampered signature, weak keys and garbage are refused', async () => {
  const ca = new CertificateAuthority(await root(), { trustDomain: TD });
  const good = createCsr(await keys(), SLEEP.uri);
  assert.deepEqual(parseCsr(good).requestedUris, [SLEEP.uri]);
  const der = Buffer.from(good.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
  der[der.length - 5] = der[der.length - 5]! ^ 0x01; // inside the signature
  await caError(async () => ca.issue({ csr: der }, SLEEP), 'ERR_CSR_SIGNATURE');
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
  await caError(async () => ca.issue({ csr: createCsr(weak, SLEEP.uri) }, SLEEP), 'ERR_CSR_KEY_WEAK');
  await caError(async () => ca.issue({ csr: 'not a csr' }, SLEEP), 'ERR_CSR_INVALID');
  await caError(async () => ca.issue({ csr: new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00]) }, SLEEP), 'ERR_CSR_INVALID');
});

test('renewal: a valid SVID authenticates a CSR for the same identity; others do not', async () => {
  const ca = new CertificateAuthority(await root(), { trustDomain: TD });
  const first = ca.issue({ csr: createCsr(await keys(), SLEEP.uri) }, SLEEP);
  const renewed = await ca.signCsr({ csr: createCsr(await generateKeyPair(), SLEEP.uri) }, { kind: 'svid', chain: [first.certificate] });
  assert.equal(renewed.spiffeId.uri, SLEEP.uri);
  assert.notEqual(renewed.serial, first.serial);
  // The SVID proves sleep's identity; it cannot get a certificate for payments.
  await caError(
    ca.signCsr({ csr: createCsr(await keys(), istioSpiffeId(TD, 'prod', 'payments').uri) }, { kind: 'svid', chain: [first.certificate] }),
    'ERR_CSR_IDENTITY',
  );
  // An SVID from another CA, or an expired one, authenticates nothing.
  const foreign = new CertificateAuthority(await createSelfSignedCa({ trustDomain: TD }), { trustDomain: TD });
  const foreignSvid = foreign.issue({ csr: createCsr(await keys(), SLEEP.uri) }, SLEEP);
  await caError(ca.signCsr({ csr: createCsr(await keys(), SLEEP.uri) }, { kind: 'svid', chain: [foreignSvid.certificate] }), 'ERR_CSR_UNAUTHENTICATED', /does not chain/);
  const later = new CertificateAuthority(await root(), { trustDomain: TD, now: () => Date.now() + 25 * HOUR });
  await caError(later.signCsr({ csr: createCsr(await keys(), SLEEP.uri) }, { kind: 'svid', chain: [first.certificate] }), 'ERR_CSR_UNAUTHENTICATED', /expired/);
  await caError(ca.signCsr({ csr: createCsr(await keys(), SLEEP.uri) }, { kind: 'svid', chain: [] }), 'ERR_CSR_UNAUTHENTICATED');
});

test('bootstrap tokens: one namespace/service account, single use, short-lived, from this CA only', async () => {
  let now = Date.now();
  const ca = new CertificateAuthority(await root(), { trustDomain: TD, now: () => now });
  const token = await ca.bootstrapToken('default', 'sleep');
  const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
  assert.equal(payload['sub'], SLEEP.uri);
  assert.equal(Number(payload['exp']) - Number(payload['iat']), 900, '15 minutes by default');
  // It proves sleep, not payments.
  await caError(ca.signCsr({ csr: createCsr(await keys(), istioSpiffeId(TD, 'prod', 'payments').uri) }, { kind: 'bootstrap-token', token }), 'ERR_CSR_IDENTITY');
  // That failed attempt used the token: a token authenticates once.
  await caError(ca.signCsr({ csr: createCsr(await keys(), SLEEP.uri) }, { kind: 'bootstrap-token', token }), 'ERR_CSR_UNAUTHENTICATED', /already used/);
  const fresh = await ca.bootstrapToken('default', 'sleep');
  assert.equal((await ca.signCsr({ csr: createCsr(await keys(), SLEEP.uri) }, { kind: 'bootstrap-token', token: fresh })).spiffeId.uri, SLEEP.uri);
  // Expired.
  const old = await ca.bootstrapToken('default', 'sleep', 60_000);
  now += 120_000;
  await caError(ca.signCsr({ csr: createCsr(await keys(), SLEEP.uri) }, { kind: 'bootstrap-token', token: old }), 'ERR_BOOTSTRAP_TOKEN_INVALID', /expired/);
  // Signed by another CA's key.
  const other = new CertificateAuthority(await createSelfSignedCa({ trustDomain: TD }), { trustDomain: TD });
  const foreign = await other.bootstrapToken('default', 'sleep');
  await caError(ca.signCsr({ csr: createCsr(await keys(), SLEEP.uri) }, { kind: 'bootstrap-token', token: foreign }), 'ERR_BOOTSTRAP_TOKEN_INVALID', /not signed by this CA/);
  // Tampered payload.
  const [h, , s] = fresh.split('.');
  const forged = `${h}.${Buffer.from(JSON.stringify({ ...payload, sub: istioSpiffeId(TD, 'kube-system', 'admin').uri })).toString('base64url')}.${s}`;
  await caError(ca.signCsr({ csr: createCsr(await keys(), SLEEP.uri) }, { kind: 'bootstrap-token', token: forged }), 'ERR_BOOTSTRAP_TOKEN_INVALID');
  await caError(ca.signCsr({ csr: createCsr(await keys(), SLEEP.uri) }, { kind: 'bootstrap-token', token: 'garbage' }), 'ERR_BOOTSTRAP_TOKEN_INVALID');
  await caError(ca.bootstrapToken('default', 'sleep', 48 * HOUR), 'ERR_BOOTSTRAP_TOKEN_INVALID');
});

test('a token signed before the signer changed is still honoured after it', async () => {
  const ca = new CertificateAuthority(await root(), { trustDomain: TD });
  const token = await ca.bootstrapToken('default', 'sleep');
  const next = await createSelfSignedCa({ trustDomain: TD });
  ca.setMaterial({ ...next, roots: [...(await root()).roots, ...next.roots] });
  const issued = await ca.signCsr({ csr: createCsr(await keys(), SLEEP.uri) }, { kind: 'bootstrap-token', token });
  assert.ok(issued.certificate.verify(next.signingCert.publicKey), 'issued by the new signer');
  assert.equal(certificatesFromPem(issued.rootsPem, 'roots').length, 2, 'both roots handed out');
});

test("plug-in CA: an intermediate under the user's root; the chain is complete and verifies", async () => {
  const userRoot = await createSelfSignedCa({ trustDomain: TD, organization: 'Example Corp' });
  const intermediate = await createIntermediateCa(userRoot, { trustDomain: TD, commonName: 'Rampart CA' });
  const pem = caMaterialToPem(intermediate);
  assert.equal(certificatesFromPem(pem.certChainPem, 'chain').length, 2, 'cert-chain.pem = ca-cert + root, as Istio lays it out');
  const loaded = caMaterialFromPem(pem);
  const ca = new CertificateAuthority(loaded, { trustDomain: TD });
  const issued = ca.issue({ csr: createCsr(await keys(), SLEEP.uri) }, SLEEP);
  const chain = certificatesFromPem(issued.chainPem, 'chain');
  assert.equal(chain.length, 2, 'leaf + intermediate, no root');
  assert.equal(chain[1]!.fingerprint256, intermediate.signingCert.fingerprint256);
  assert.equal(issued.rootsPem, userRoot.signingCert.toString());
  assert.equal(verifySvid(chain, ca.trustBundle, { role: 'server' }).principal, 'cluster.local/ns/default/sa/sleep');
  assert.throws(() => verifySvid([chain[0]!], ca.trustBundle, { role: 'server' }), /does not chain/, 'the intermediate is needed');
  // Validity is clipped to the intermediate's.
  const shortInt = await createIntermediateCa(userRoot, { trustDomain: TD, ttlMs: HOUR });
  const clipped = new CertificateAuthority(shortInt, { trustDomain: TD }).issue({ csr: createCsr(await keys(), SLEEP.uri) }, SLEEP);
  assert.ok(clipped.notAfter.getTime() <= certificateFacts(shortInt.signingCert).notAfter.getTime());
});

test('CA material that does not fit together is refused with the reason', async () => {
  const a = await createSelfSignedCa({ trustDomain: TD });
  const b = await createSelfSignedCa({ trustDomain: TD });
  const pa = caMaterialToPem(a);
  const pb = caMaterialToPem(b);
  const cases: Array<[string, Parameters<typeof caMaterialFromPem>[0], string]> = [
    ['key of another CA', { ...pa, caKeyPem: pb.caKeyPem }, 'ERR_CA_KEY_MISMATCH'],
    ['signer not under root-cert.pem', { ...pa, rootCertPem: pb.rootCertPem }, 'ERR_CA_CHAIN'],
    ['garbage key', { ...pa, caKeyPem: 'nope' }, 'ERR_CA_KEY_INVALID'],
    ['no certificate', { ...pa, caCertPem: '' }, 'ERR_PEM_NO_CERTIFICATE'],
  ];
  const intermediate = await createIntermediateCa(a, { trustDomain: TD });
  const pi = caMaterialToPem(intermediate);
  cases.push(['intermediate without its root', { ...pi, certChainPem: pi.caCertPem, rootCertPem: '' }, 'ERR_CA_CHAIN']);
  const leafCa = new CertificateAuthority(a, { trustDomain: TD });
  const leafKeys = await generateKeyPair();
  const leaf = leafCa.issue({ csr: createCsr(leafKeys, SLEEP.uri) }, SLEEP);
  cases.push(['a leaf as signer', { caCertPem: leaf.certificate.toString(), caKeyPem: leafKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), rootCertPem: pa.rootCertPem }, 'ERR_CA_NOT_CA']);
  for (const [name, input, code] of cases) {
    assert.throws(() => caMaterialFromPem(input), (err: unknown) => err instanceof RampartError && err.code === code, name);
  }
  assert.ok(new CaError('X', 'y') instanceof RampartError);
});

test('the SPIFFE ID in an issued certificate parses back to the identity', async () => {
  const ca = new CertificateAuthority(await root(), { trustDomain: TD });
  const id = istioSpiffeId(TD, 'ns-1', 'sa.with.dots');
  const cert = new X509Certificate(ca.issue({ csr: createCsr(await keys(), id.uri) }, id).certificate.raw);
  assert.equal(cert.subjectAltName, `URI:${id.uri}`);
  assert.deepEqual(parseSpiffeId(id.uri), { trustDomain: TD, path: '/ns/ns-1/sa/sa.with.dots', uri: id.uri });
});
