import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The identity commands (`ca init|issue|token|trust|use`, `cert inspect`) run as real child processes on real files
 * in temporary directories; the results are checked with node:crypto and, where available, with openssl.
 */

const BIN = join(import.meta.dirname, '..', 'src', 'cli', 'bin.ts');
const BASE = mkdtempSync(join(tmpdir(), 'rampart-cli-identity-'));
after(() => rmSync(BASE, { recursive: true, force: true }));

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const CA_FILES = ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem'] as const;
const WORKLOAD_FILES = ['cert-chain.pem', 'key.pem', 'root-cert.pem'] as const;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Wall-clock bounds of the run, to check times the command put in certificates. */
  readonly started: number;
  readonly ended: number;
}

function rampart(args: readonly string[], input?: string): Run {
  const started = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', BIN, ...args], { encoding: 'utf8', input: input ?? '', timeout: 60_000 });
  const ended = Date.now();
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, started, ended };
}

/** Runs and asserts exit 0, showing the output when it is not. */
function ok(args: readonly string[], input?: string): Run {
  const r = rampart(args, input);
  assert.equal(r.code, 0, `rampart ${args.join(' ')}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/** A fresh directory under BASE (the path need not exist yet when `create` is false). */
function tmp(name: string, create = true): string {
  const dir = mkdtempSync(join(BASE, `${name}-`));
  if (!create) rmSync(dir, { recursive: true });
  return dir;
}

const read = (...p: string[]): string => readFileSync(join(...p), 'utf8');
const mode = (...p: string[]): number => statSync(join(...p)).mode & 0o777;

/** The certificates of a PEM text, in order. */
function certs(pem: string): X509Certificate[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g)].map((m) => new X509Certificate(m[0]));
}

function onlyCert(pem: string): X509Certificate {
  const all = certs(pem);
  assert.equal(all.length, 1, `expected one certificate, found ${all.length}`);
  return all[0]!;
}

/** Node 20 has no validFromDate/validToDate; its validFrom/validTo strings ("Jan  1 00:00:00 2030 GMT") parse. */
const notBefore = (c: X509Certificate): number => Date.parse(c.validFrom);
const notAfter = (c: X509Certificate): number => Date.parse(c.validTo);

/** `ca init` into a fresh directory; returns the directory. */
function initCa(name: string, ...extra: string[]): string {
  const dir = join(tmp(name), 'ca');
  ok(['ca', 'init', dir, ...extra]);
  return dir;
}

/** `ca issue` into a fresh directory; returns the output directory and the run. */
function issue(caDir: string, ns: string, sa: string, ...extra: string[]): { out: string; run: Run } {
  const out = join(tmp('svid'), 'out');
  const run = ok(['ca', 'issue', '--ca', caDir, '-n', ns, '-s', sa, '--out', out, ...extra]);
  return { out, run };
}

/** The fingerprints listed by `ca trust DIR` (one per trusted root). */
function listedRoots(stdout: string): string[] {
  return [...stdout.matchAll(/^ {2}((?:[0-9A-F]{2}:){31}[0-9A-F]{2})\s/gm)].map((m) => m[1]!);
}

function decodeJwtPart(part: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
}

interface InspectJson {
  file: string;
  roots: string | undefined;
  certificates: Array<{
    role: string;
    spiffeId: string | undefined;
    serial: string;
    fingerprint256: string;
    key: string;
    isCA: boolean;
    sans: string[];
    notBefore: string;
    notAfter: string;
    warnings: string[];
  }>;
  chain: string | undefined;
  chainVerified: boolean | undefined;
  anchor: { subject: string; fingerprint256: string } | undefined;
  warnings: number;
}

// ---- openssl ----

const OPENSSL_VERSION = ((): string | undefined => {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 && /^OpenSSL \d/.test(r.stdout) ? r.stdout.trim() : undefined;
})();

/** False (and the test skipped with the reason) when openssl is not installed. */
function haveOpenssl(t: TestContext): boolean {
  if (OPENSSL_VERSION !== undefined) return true;
  t.skip('openssl is not installed (or "openssl version" failed): these cases build certificates with it');
  return false;
}

function openssl(cwd: string, ...args: string[]): string {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `openssl ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

const ISTIO_ROOT_CONF = `[ req ]
encrypt_key = no
prompt = no
utf8 = yes
default_md = sha256
default_bits = 4096
req_extensions = req_ext
x509_extensions = req_ext
distinguished_name = req_dn
[ req_ext ]
subjectKeyIdentifier = hash
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign
[ req_dn ]
O = Istio
CN = Root CA
`;

const istioIntermediateConf = (cluster: string): string => `[ req ]
encrypt_key = no
prompt = no
utf8 = yes
default_md = sha256
default_bits = 4096
req_extensions = req_ext
x509_extensions = req_ext
distinguished_name = req_dn
[ req_ext ]
subjectKeyIdentifier = hash
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign
subjectAltName=@san
[ san ]
DNS.1 = istiod.istio-system.svc
[ req_dn ]
O = Istio
CN = Intermediate CA
L = ${cluster}
`;

interface PluginCa {
  /** The directory holding root-key.pem and root-cert.pem (the offline root). */
  readonly base: string;
  /** cluster1/: ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem as Istio's plug-in CA docs build it. */
  readonly dir: string;
}

let pluginCache: PluginCa | undefined;

/**
 * A plug-in CA made exactly as Istio's "Plug in CA certificates" task (tools/certs) makes one: an RSA 4096 root
 * (CA:true), an RSA 4096 intermediate signed by it (CA:true, pathlen:0, keyCertSign, a DNS SAN), and cluster1/ with
 * ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem = intermediate + root. Built once, never modified: tests
 * that break it work on a copy.
 */
function istioPluginCa(): PluginCa {
  if (pluginCache !== undefined) return pluginCache;
  const base = tmp('istio-certs');
  writeFileSync(join(base, 'root-ca.conf'), ISTIO_ROOT_CONF);
  openssl(base, 'genrsa', '-out', 'root-key.pem', '4096');
  openssl(base, 'req', '-sha256', '-new', '-key', 'root-key.pem', '-config', 'root-ca.conf', '-out', 'root-cert.csr');
  openssl(base, 'x509', '-req', '-sha256', '-days', '3650', '-signkey', 'root-key.pem', '-extensions', 'req_ext', '-extfile', 'root-ca.conf', '-in', 'root-cert.csr', '-out', 'root-cert.pem');
  mkdirSync(join(base, 'cluster1'));
  openssl(base, 'genrsa', '-out', 'cluster1/ca-key.pem', '4096');
  writeFileSync(join(base, 'cluster1', 'intermediate.conf'), istioIntermediateConf('cluster1'));
  openssl(base, 'req', '-new', '-config', 'cluster1/intermediate.conf', '-key', 'cluster1/ca-key.pem', '-out', 'cluster1/cluster-ca.csr');
  openssl(base, 'x509', '-req', '-sha256', '-days', '3650', '-CA', 'root-cert.pem', '-CAkey', 'root-key.pem', '-CAcreateserial', '-extensions', 'req_ext', '-extfile', 'cluster1/intermediate.conf', '-in', 'cluster1/cluster-ca.csr', '-out', 'cluster1/ca-cert.pem');
  writeFileSync(join(base, 'cluster1', 'cert-chain.pem'), read(base, 'cluster1', 'ca-cert.pem') + read(base, 'root-cert.pem'));
  cpSync(join(base, 'root-cert.pem'), join(base, 'cluster1', 'root-cert.pem'));
  pluginCache = { base, dir: join(base, 'cluster1') };
  return pluginCache;
}

/** An EC P-256 key (PEM file `name` in `dir`). */
function ecKey(dir: string, name: string): void {
  openssl(dir, 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', name);
}

/** Signs a CSR for `key` with `issuer` (cert and key files in `dir`; undefined: self-signed) and extensions `ext`. */
function opensslCert(dir: string, o: { key: string; subj: string; ext: string; out: string; issuer?: { cert: string; key: string }; days?: number }): void {
  const extFile = `${o.out}.ext`;
  writeFileSync(join(dir, extFile), `[ ext ]\n${o.ext}\n`);
  openssl(dir, 'req', '-new', '-key', o.key, '-subj', o.subj, '-out', `${o.out}.csr`);
  const signing = o.issuer === undefined ? ['-signkey', o.key] : ['-CA', o.issuer.cert, '-CAkey', o.issuer.key, '-set_serial', `0x${Date.now().toString(16)}${Math.floor(Math.random() * 1e6).toString(16)}`];
  openssl(dir, 'x509', '-req', '-sha256', '-days', String(o.days ?? 30), ...signing, '-extensions', 'ext', '-extfile', extFile, '-in', `${o.out}.csr`, '-out', o.out);
}

const LEAF_EXT = 'basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth, clientAuth';

// ==== ca init ====

test('ca init: writes the four cacerts files, the key 0600, an ECDSA P-256 root for ~10 years named O=cluster.local', () => {
  const dir = join(tmp('init'), 'ca');
  const r = ok(['ca', 'init', dir]);
  assert.deepEqual(readdirSync(dir).sort(), [...CA_FILES].sort(), 'exactly the four files, no temporary file left behind');
  assert.equal(mode(dir, 'ca-key.pem'), 0o600);
  for (const f of ['ca-cert.pem', 'cert-chain.pem', 'root-cert.pem']) assert.equal(mode(dir, f) & 0o022, 0, `${f} is group/world-writable`);

  const root = onlyCert(read(dir, 'ca-cert.pem'));
  assert.equal(root.ca, true);
  assert.equal(root.subject, 'O=cluster.local');
  assert.equal(root.issuer, root.subject);
  assert.ok(root.verify(root.publicKey), 'self-signed');
  assert.equal(root.publicKey.asymmetricKeyType, 'ec');
  assert.equal(root.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const tenYears = 10 * 365 * DAY;
  assert.ok(Math.abs(notAfter(root) - (r.started + tenYears)) < 2 * MINUTE, `validTo ${root.validTo} is not ~10 years from now`);
  assert.ok(notBefore(root) <= r.started, `validFrom ${root.validFrom} is in the future`);
  assert.ok(root.checkPrivateKey(createPrivateKey(read(dir, 'ca-key.pem'))), 'ca-key.pem belongs to ca-cert.pem');
  // A self-signed CA: the chain and the trust bundle are the root itself.
  assert.equal(onlyCert(read(dir, 'root-cert.pem')).fingerprint256, root.fingerprint256);
  assert.equal(onlyCert(read(dir, 'cert-chain.pem')).fingerprint256, root.fingerprint256);
  assert.match(r.stdout, /created a root CA for trust domain cluster\.local/);
  assert.ok(r.stdout.includes(root.fingerprint256), 'the summary shows the root fingerprint');
});

test('ca init: --trust-domain names the root O=<domain>; an invalid trust domain is refused (exit 2)', () => {
  const dir = initCa('init-td', '--trust-domain', 'example.org');
  assert.equal(onlyCert(read(dir, 'ca-cert.pem')).subject, 'O=example.org');
  const bad = join(tmp('init-bad-td'), 'ca');
  const r = rampart(['ca', 'init', bad, '--trust-domain', 'Example.ORG']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /trust domain/);
  assert.equal(existsSync(join(bad, 'ca-key.pem')), false);
});

test('ca init: --key-type rsa-2048 and rsa-4096 give RSA roots of those sizes', () => {
  for (const bits of [2048, 4096]) {
    const dir = initCa(`init-rsa${bits}`, '--key-type', `rsa-${bits}`);
    const root = onlyCert(read(dir, 'ca-cert.pem'));
    assert.equal(root.publicKey.asymmetricKeyType, 'rsa');
    assert.equal(root.publicKey.asymmetricKeyDetails?.modulusLength, bits);
    assert.equal(root.ca, true);
    assert.ok(root.checkPrivateKey(createPrivateKey(read(dir, 'ca-key.pem'))));
    assert.equal(mode(dir, 'ca-key.pem'), 0o600);
  }
});

test('ca init: an unknown --key-type is refused (exit 2) and nothing is written', () => {
  const dir = join(tmp('init-dsa'), 'ca');
  const r = rampart(['ca', 'init', dir, '--key-type', 'dsa-1024']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /dsa-1024/);
  assert.equal(existsSync(dir), false);
});

test('ca init: a second init refuses (exit 2), names the files and --force, and changes nothing; --force replaces', () => {
  const dir = initCa('init-twice');
  const before = Object.fromEntries(CA_FILES.map((f) => [f, readFileSync(join(dir, f))]));
  const again = rampart(['ca', 'init', dir]);
  assert.equal(again.code, 2);
  for (const f of CA_FILES) assert.ok(again.stderr.includes(join(dir, f)), `the refusal names ${f}: ${again.stderr}`);
  assert.match(again.stderr, /--force/);
  assert.equal(again.stdout, '');
  for (const f of CA_FILES) assert.ok(readFileSync(join(dir, f)).equals(before[f]!), `${f} changed`);
  assert.deepEqual(readdirSync(dir).sort(), [...CA_FILES].sort());

  ok(['ca', 'init', dir, '--force']);
  const replaced = onlyCert(read(dir, 'ca-cert.pem'));
  assert.notEqual(replaced.fingerprint256, onlyCert(before['ca-cert.pem']!.toString('utf8')).fingerprint256, 'a new root');
  assert.notEqual(read(dir, 'ca-key.pem'), before['ca-key.pem']!.toString('utf8'), 'a new key');
  assert.ok(replaced.checkPrivateKey(createPrivateKey(read(dir, 'ca-key.pem'))), 'the new key belongs to the new root');
  assert.equal(onlyCert(read(dir, 'root-cert.pem')).fingerprint256, replaced.fingerprint256);
  assert.equal(mode(dir, 'ca-key.pem'), 0o600);
  assert.deepEqual(readdirSync(dir).sort(), [...CA_FILES].sort(), 'no temporary file left behind');
});

test('ca init: one existing file is enough to refuse, and it is the one named', () => {
  const dir = tmp('init-partial');
  writeFileSync(join(dir, 'root-cert.pem'), 'keep me\n');
  const r = rampart(['ca', 'init', dir]);
  assert.equal(r.code, 2);
  assert.ok(r.stderr.includes(join(dir, 'root-cert.pem')), r.stderr);
  assert.ok(!r.stderr.includes('ca-key.pem'), `files that do not exist are not named: ${r.stderr}`);
  assert.deepEqual(readdirSync(dir), ['root-cert.pem']);
  assert.equal(read(dir, 'root-cert.pem'), 'keep me\n');
});

// ==== ca issue ====

test('ca issue: key.pem 0600, cert-chain.pem and root-cert.pem; the leaf is a 24h SVID backdated 2 minutes', () => {
  const ca = initCa('issue');
  const { out, run } = issue(ca, 'default', 'sleep');
  assert.deepEqual(readdirSync(out).sort(), [...WORKLOAD_FILES].sort());
  assert.equal(mode(out, 'key.pem'), 0o600);
  for (const f of ['cert-chain.pem', 'root-cert.pem']) assert.equal(mode(out, f) & 0o022, 0, `${f} is group/world-writable`);

  const chain = certs(read(out, 'cert-chain.pem'));
  assert.equal(chain.length, 1, 'a self-signed CA adds no intermediate: the chain is the leaf');
  const leaf = chain[0]!;
  assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/default/sa/sleep', 'exactly one URI SAN, nothing else');
  assert.equal(leaf.ca, false);
  assert.equal(leaf.subject ?? '', '', 'empty subject, as istiod issues');
  assert.ok(leaf.checkPrivateKey(createPrivateKey(read(out, 'key.pem'))), 'key.pem belongs to the leaf');
  assert.equal(read(out, 'root-cert.pem'), read(ca, 'root-cert.pem'), "root-cert.pem is the CA's trust bundle");
  const root = onlyCert(read(ca, 'root-cert.pem'));
  assert.ok(leaf.checkIssued(root) && leaf.verify(root.publicKey), 'signed by the root');
  assert.ok(leaf.keyUsage?.includes('1.3.6.1.5.5.7.3.1') && leaf.keyUsage.includes('1.3.6.1.5.5.7.3.2'), `EKU serverAuth+clientAuth: ${String(leaf.keyUsage)}`);

  // X.509 times have whole seconds: notBefore = floor(now - 2 min), notAfter = floor(now + 24 h), now within the run.
  const sec = (ms: number): number => Math.floor(ms / 1000) * 1000;
  assert.ok(notBefore(leaf) >= sec(run.started - 2 * MINUTE) && notBefore(leaf) <= run.ended - 2 * MINUTE + 1000, `notBefore ${leaf.validFrom} is not ~2 minutes before the run`);
  assert.ok(notAfter(leaf) >= sec(run.started + DAY) && notAfter(leaf) <= run.ended + DAY + 1000, `notAfter ${leaf.validTo} is not ~24 h after the run`);
  assert.equal(notAfter(leaf) - notBefore(leaf), DAY + 2 * MINUTE);
  assert.match(run.stdout, /^issued spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep\n/);
  assert.ok(run.stdout.includes(`serial ${leaf.serialNumber.toUpperCase()}`), run.stdout);
});

test('ca issue: --ttl 1h gives a one-hour certificate (plus the 2-minute backdating)', () => {
  const ca = initCa('issue-ttl');
  const { out } = issue(ca, 'default', 'sleep', '--ttl', '1h');
  const leaf = onlyCert(read(out, 'cert-chain.pem'));
  assert.equal(notAfter(leaf) - notBefore(leaf), HOUR + 2 * MINUTE);
});

test('ca issue: --ttl 100d is refused (maximum 90d, exit 2, nothing written) unless --max-ttl 365d', () => {
  const ca = initCa('issue-maxttl');
  const out = join(tmp('issue-maxttl-out'), 'out');
  const r = rampart(['ca', 'issue', '--ca', ca, '-n', 'default', '-s', 'sleep', '--out', out, '--ttl', '100d']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /maximum/);
  assert.ok(r.stderr.includes("(100d) is longer than the maximum (90d)"), `the message states the 90-day maximum: ${r.stderr}`);
  assert.equal(existsSync(join(out, 'key.pem')), false);
  assert.equal(existsSync(join(out, 'cert-chain.pem')), false);

  const { out: out2 } = issue(ca, 'default', 'sleep', '--ttl', '100d', '--max-ttl', '365d');
  const leaf = onlyCert(read(out2, 'cert-chain.pem'));
  assert.equal(notAfter(leaf) - notBefore(leaf), 100 * DAY + 2 * MINUTE);
});

test('ca issue: malformed durations are refused (exit 2) with the flag named', () => {
  const ca = initCa('issue-bad-ttl');
  for (const [flag, value] of [['--ttl', 'soon'], ['--ttl', '0h'], ['--max-ttl', '-5d']] as const) {
    const r = rampart(['ca', 'issue', '--ca', ca, '-n', 'default', '-s', 'sleep', '--out', join(tmp('x'), 'out'), flag, value]);
    assert.equal(r.code, 2, `${flag} ${value}: ${r.stdout}${r.stderr}`);
    assert.ok(r.stderr.includes(flag), `${flag} ${value}: ${r.stderr}`);
  }
});

test('ca issue: --trust-domain example.org changes the SPIFFE ID', () => {
  const ca = initCa('issue-td');
  const { out, run } = issue(ca, 'prod', 'api', '--trust-domain', 'example.org');
  assert.equal(onlyCert(read(out, 'cert-chain.pem')).subjectAltName, 'URI:spiffe://example.org/ns/prod/sa/api');
  assert.match(run.stdout, /^issued spiffe:\/\/example\.org\/ns\/prod\/sa\/api/);
});

test('ca issue: --key-type rsa-2048 gives an RSA workload key (keyEncipherment too)', () => {
  const ca = initCa('issue-rsa');
  const { out } = issue(ca, 'default', 'sleep', '--key-type', 'rsa-2048');
  const leaf = onlyCert(read(out, 'cert-chain.pem'));
  assert.equal(leaf.publicKey.asymmetricKeyType, 'rsa');
  assert.equal(leaf.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
  assert.ok(leaf.checkPrivateKey(createPrivateKey(read(out, 'key.pem'))));
  const text = rampart(['cert', 'inspect', join(out, 'cert-chain.pem')]);
  assert.equal(text.code, 0, text.stdout);
  assert.match(text.stdout, /key usage {5}digitalSignature, keyEncipherment/);
});

test('ca issue: a namespace or service account that is not a path segment is refused with a clear message', () => {
  const ca = initCa('issue-bad-ns');
  for (const [ns, sa, found] of [['A B', 'sleep', 'namespace "A B"'], ['default', 'x:y', 'service account "x:y"'], ['', 'sleep', 'namespace ""'], ['Default', 'sleep', 'namespace "Default"']] as const) {
    const out = join(tmp('issue-bad-ns-out'), 'out');
    const r = rampart(['ca', 'issue', '--ca', ca, '-n', ns, '-s', sa, '--out', out]);
    assert.equal(r.code, 2, `-n ${JSON.stringify(ns)} -s ${JSON.stringify(sa)}: ${r.stdout}`);
    assert.match(r.stderr, /^rampart ca issue: invalid SPIFFE ID .* is not a Kubernetes name/);
    assert.ok(r.stderr.includes(found), r.stderr);
    assert.equal(existsSync(join(out, 'key.pem')), false);
  }
});

test(
  'ca issue: a namespace with a slash ("a/b") is refused rather than minting spiffe://…/ns/a/b/sa/…',
  () => {
    const ca = initCa('issue-slash');
    const out = join(tmp('issue-slash-out'), 'out');
    const r = rampart(['ca', 'issue', '--ca', ca, '-n', 'a/b', '-s', 'sleep', '--out', out]);
    assert.equal(r.code, 2, `issued: ${r.stdout}`);
    assert.match(r.stderr, /namespace|\/ns\/<namespace>\/sa\/<service-account>/);
    assert.equal(existsSync(join(out, 'cert-chain.pem')), false);
  },
);

test('ca issue: refuses to overwrite existing workload files without --force (exit 2, unchanged); --force replaces', () => {
  const ca = initCa('issue-overwrite');
  const { out } = issue(ca, 'default', 'sleep');
  const before = Object.fromEntries(WORKLOAD_FILES.map((f) => [f, read(out, f)]));
  const r = rampart(['ca', 'issue', '--ca', ca, '-n', 'default', '-s', 'other', '--out', out]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /already exist/);
  assert.match(r.stderr, /--force/);
  for (const f of WORKLOAD_FILES) {
    assert.ok(r.stderr.includes(join(out, f)), `names ${f}: ${r.stderr}`);
    assert.equal(read(out, f), before[f], `${f} changed`);
  }
  ok(['ca', 'issue', '--ca', ca, '-n', 'default', '-s', 'other', '--out', out, '--force']);
  const leaf = onlyCert(read(out, 'cert-chain.pem'));
  assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/default/sa/other');
  assert.ok(leaf.checkPrivateKey(createPrivateKey(read(out, 'key.pem'))), 'the new key goes with the new certificate');
  assert.equal(mode(out, 'key.pem'), 0o600);
  assert.deepEqual(readdirSync(out).sort(), [...WORKLOAD_FILES].sort(), 'no temporary file left behind');
});

test('ca issue: a directory that is not a CA is refused (exit 2) and the message says how to make one', () => {
  const notCa = tmp('not-a-ca');
  const r = rampart(['ca', 'issue', '--ca', notCa, '-n', 'default', '-s', 'sleep', '--out', join(tmp('x'), 'out')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /is not a CA directory/);
  assert.match(r.stderr, /rampart ca init/);
});

// ==== plug-in CA (Istio's cacerts, built with openssl) ====

test('plug-in CA built as Istio documents: ca issue signs with the intermediate; chain = leaf + intermediate; openssl verifies', (t) => {
  if (!haveOpenssl(t)) return;
  const plugin = istioPluginCa();
  const intermediate = onlyCert(read(plugin.dir, 'ca-cert.pem'));
  const root = onlyCert(read(plugin.dir, 'root-cert.pem'));
  assert.equal(intermediate.ca, true);
  assert.ok(intermediate.checkIssued(root), 'the fixture: the intermediate is signed by the root');

  const { out, run } = issue(plugin.dir, 'foo', 'httpbin');
  assert.match(run.stdout, /^issued spiffe:\/\/cluster\.local\/ns\/foo\/sa\/httpbin/);
  const chain = certs(read(out, 'cert-chain.pem'));
  assert.equal(chain.length, 2, 'leaf + intermediate, without the root');
  const [leaf, second] = chain as [X509Certificate, X509Certificate];
  assert.equal(second.fingerprint256, intermediate.fingerprint256);
  assert.ok(chain.every((c) => c.fingerprint256 !== root.fingerprint256), 'the root is not in cert-chain.pem');
  assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/foo/sa/httpbin');
  assert.equal(leaf.issuer, intermediate.subject);
  assert.ok(leaf.verify(intermediate.publicKey));
  assert.equal(read(out, 'root-cert.pem'), root.toString(), 'root-cert.pem is the plug-in root');
  assert.ok(notAfter(leaf) <= notAfter(intermediate), 'the leaf does not outlive its issuer');

  writeFileSync(join(out, 'leaf.pem'), leaf.toString());
  writeFileSync(join(out, 'intermediate.pem'), second.toString());
  const verified = openssl(out, 'verify', '-CAfile', 'root-cert.pem', '-untrusted', 'intermediate.pem', 'leaf.pem');
  assert.match(verified, /leaf\.pem: OK/);
  for (const purpose of ['sslserver', 'sslclient']) {
    assert.match(openssl(out, 'verify', '-purpose', purpose, '-CAfile', 'root-cert.pem', '-untrusted', 'intermediate.pem', 'leaf.pem'), /OK/, purpose);
  }
  // And the chain does not verify without the intermediate: openssl is really checking.
  const without = spawnSync('openssl', ['verify', '-CAfile', 'root-cert.pem', 'leaf.pem'], { cwd: out, encoding: 'utf8', timeout: 60_000 });
  assert.notEqual(without.status, 0, 'verify must fail without the intermediate');
});

test('plug-in CA: cert inspect on the issued cert-chain.pem shows leaf <- intermediate <- root and "verified"', (t) => {
  if (!haveOpenssl(t)) return;
  const plugin = istioPluginCa();
  const { out } = issue(plugin.dir, 'foo', 'httpbin');
  const r = rampart(['cert', 'inspect', join(out, 'cert-chain.pem')]);
  assert.equal(r.code, 0, r.stdout);
  assert.match(r.stdout, /certificate 1 of 2: leaf/);
  assert.match(r.stdout, /certificate 2 of 2: intermediate/);
  assert.match(r.stdout, /issuer {8}O=Istio, CN=Intermediate CA, L=cluster1 \(certificate 2\)/);
  assert.match(r.stdout, /issuer {8}O=Istio, CN=Root CA \(a root of the bundle\)/);
  assert.ok(
    r.stdout.includes(`chain: spiffe://cluster.local/ns/foo/sa/httpbin <- O=Istio, CN=Intermediate CA, L=cluster1 <- O=Istio, CN=Root CA (root from ${join(out, 'root-cert.pem')})`),
    r.stdout,
  );
  assert.match(r.stdout, /^verification: verified/m);
  assert.match(r.stdout, /^no warnings$/m);

  const json = JSON.parse(ok(['cert', 'inspect', join(out, 'cert-chain.pem'), '--json']).stdout) as InspectJson;
  assert.deepEqual(json.certificates.map((c) => c.role), ['leaf', 'intermediate']);
  assert.equal(json.chainVerified, true);
  assert.equal(json.anchor?.fingerprint256, onlyCert(read(plugin.dir, 'root-cert.pem')).fingerprint256);
});

test('plug-in CA: ca-key.pem from another key is refused (exit 2) as not belonging to ca-cert.pem', (t) => {
  if (!haveOpenssl(t)) return;
  const dir = join(tmp('plugin-wrong-key'), 'cacerts');
  cpSync(istioPluginCa().dir, dir, { recursive: true });
  openssl(dir, 'genrsa', '-out', 'ca-key.pem', '2048');
  const out = join(tmp('x'), 'out');
  const r = rampart(['ca', 'issue', '--ca', dir, '-n', 'foo', '-s', 'bar', '--out', out]);
  assert.equal(r.code, 2, r.stdout);
  assert.ok(r.stderr.includes(`${dir}: ca-key.pem does not belong to ca-cert.pem`), r.stderr);
  assert.equal(existsSync(out), false);
});

test('plug-in CA: root -> intermediate -> issuing CA works; with the middle link missing from cert-chain.pem it is refused', (t) => {
  if (!haveOpenssl(t)) return;
  const dir = tmp('plugin-3');
  ecKey(dir, 'root-key.pem');
  opensslCert(dir, { key: 'root-key.pem', subj: '/O=Example/CN=Offline Root', out: 'root-cert.pem', days: 3650, ext: 'basicConstraints = critical, CA:true\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash' });
  ecKey(dir, 'mid-key.pem');
  opensslCert(dir, { key: 'mid-key.pem', subj: '/O=Example/CN=Regional CA', out: 'mid-cert.pem', days: 1825, issuer: { cert: 'root-cert.pem', key: 'root-key.pem' }, ext: 'basicConstraints = critical, CA:true, pathlen:1\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid' });
  const ca = join(dir, 'cacerts');
  mkdirSync(ca);
  ecKey(ca, 'ca-key.pem');
  opensslCert(ca, { key: 'ca-key.pem', subj: '/O=Example/CN=Cluster CA', out: 'ca-cert.pem', days: 730, issuer: { cert: '../mid-cert.pem', key: '../mid-key.pem' }, ext: 'basicConstraints = critical, CA:true, pathlen:0\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid' });
  for (const f of ['ca-cert.pem.csr', 'ca-cert.pem.ext']) rmSync(join(ca, f));
  writeFileSync(join(ca, 'root-cert.pem'), read(dir, 'root-cert.pem'));
  writeFileSync(join(ca, 'cert-chain.pem'), read(ca, 'ca-cert.pem') + read(dir, 'mid-cert.pem') + read(dir, 'root-cert.pem'));

  const { out } = issue(ca, 'foo', 'bar');
  const chain = certs(read(out, 'cert-chain.pem'));
  assert.deepEqual(
    chain.map((c) => (c.subject ?? '').replaceAll('\n', ', ')),
    ['', 'O=Example, CN=Cluster CA', 'O=Example, CN=Regional CA'],
    'leaf, issuing CA, intermediate; not the root',
  );
  writeFileSync(join(out, 'untrusted.pem'), chain.slice(1).map((c) => c.toString()).join(''));
  writeFileSync(join(out, 'leaf.pem'), chain[0]!.toString());
  assert.match(openssl(out, 'verify', '-CAfile', 'root-cert.pem', '-untrusted', 'untrusted.pem', 'leaf.pem'), /leaf\.pem: OK/);
  const inspected = JSON.parse(ok(['cert', 'inspect', join(out, 'cert-chain.pem'), '--json']).stdout) as InspectJson;
  assert.deepEqual(inspected.certificates.map((c) => c.role), ['leaf', 'intermediate', 'intermediate']);
  assert.equal(inspected.chainVerified, true);

  // cert-chain.pem without the Regional CA: ca-cert.pem no longer links to root-cert.pem.
  writeFileSync(join(ca, 'cert-chain.pem'), read(ca, 'ca-cert.pem') + read(dir, 'root-cert.pem'));
  const broken = rampart(['ca', 'issue', '--ca', ca, '-n', 'foo', '-s', 'bar', '--out', join(tmp('x'), 'out')]);
  assert.equal(broken.code, 2, broken.stdout);
  assert.ok(broken.stderr.includes(`rampart ca issue: ${ca}: ca-cert.pem (O=Example`), broken.stderr);
  assert.match(broken.stderr, /does not chain to a certificate in root-cert\.pem through cert-chain\.pem/);
});

test('plug-in CA: a root-cert.pem of another root is refused (the chain does not reach it)', (t) => {
  if (!haveOpenssl(t)) return;
  const dir = join(tmp('plugin-other-root'), 'cacerts');
  cpSync(istioPluginCa().dir, dir, { recursive: true });
  const other = initCa('plugin-other-root-ca');
  writeFileSync(join(dir, 'root-cert.pem'), read(other, 'root-cert.pem'));
  const r = rampart(['ca', 'issue', '--ca', dir, '-n', 'foo', '-s', 'bar', '--out', join(tmp('x'), 'out')]);
  assert.equal(r.code, 2, r.stdout);
  assert.match(r.stderr, /does not chain to a certificate in root-cert\.pem/);
});

// ==== ca token ====

test('ca token: one compact JWS whose payload names the SPIFFE ID, audience rampart-csr, 15 minutes by default', () => {
  const ca = initCa('token');
  const r = ok(['ca', 'token', '--ca', ca, '-n', 'default', '-s', 'sleep']);
  const token = r.stdout.trim();
  assert.equal(r.stdout, `${token}\n`, 'one line');
  const parts = token.split('.');
  assert.equal(parts.length, 3);
  for (const p of parts) assert.match(p, /^[A-Za-z0-9_-]+$/, 'base64url without padding');
  const header = decodeJwtPart(parts[0]!);
  assert.equal(header.alg, 'ES256', 'the P-256 CA key signs with ES256');
  const payload = decodeJwtPart(parts[1]!);
  assert.equal(payload.sub, 'spiffe://cluster.local/ns/default/sa/sleep');
  assert.equal(payload.aud, 'rampart-csr');
  assert.equal(payload.iss, 'rampart-ca');
  assert.equal(typeof payload.iat, 'number');
  assert.equal((payload.exp as number) - (payload.iat as number), 900);
  assert.ok((payload.iat as number) * 1000 >= Math.floor(r.started / 1000) * 1000 && (payload.iat as number) * 1000 <= r.ended, 'issued now');
  assert.match(String(payload.jti), /^[0-9a-f]{32}$/);
  // Each token is distinct (single-use tokens need distinct IDs).
  const second = decodeJwtPart(ok(['ca', 'token', '--ca', ca, '-n', 'default', '-s', 'sleep']).stdout.trim().split('.')[1]!);
  assert.notEqual(second.jti, payload.jti);
});

test('ca token: --ttl 1h and --trust-domain are honoured; --ttl 48h is refused (exit 2, nothing on stdout)', () => {
  const ca = initCa('token-ttl', '--key-type', 'rsa-2048');
  const r = ok(['ca', 'token', '--ca', ca, '-n', 'prod', '-s', 'api', '--ttl', '1h', '--trust-domain', 'example.org']);
  const [h, p] = r.stdout.trim().split('.');
  assert.equal(decodeJwtPart(h!).alg, 'RS256', 'an RSA CA signs with RS256');
  const payload = decodeJwtPart(p!);
  assert.equal((payload.exp as number) - (payload.iat as number), 3600);
  assert.equal(payload.sub, 'spiffe://example.org/ns/prod/sa/api');

  const long = rampart(['ca', 'token', '--ca', ca, '-n', 'prod', '-s', 'api', '--ttl', '48h']);
  assert.equal(long.code, 2);
  assert.equal(long.stdout, '');
  assert.match(long.stderr, /^rampart ca token: .*24 h/);
});

test(
  'ca token: a namespace with a slash is refused',
  () => {
    const ca = initCa('token-slash');
    const r = rampart(['ca', 'token', '--ca', ca, '-n', 'a/b', '-s', 'sleep']);
    assert.equal(r.code, 2, `printed: ${r.stdout}`);
    assert.equal(r.stdout, '');
  },
);

// ==== ca trust / ca use: a root rotation ====

test('ca trust: lists the one root of a fresh CA, marked as the signer', () => {
  const ca = initCa('trust-list');
  const r = ok(['ca', 'trust', ca]);
  const root = onlyCert(read(ca, 'root-cert.pem'));
  assert.deepEqual(listedRoots(r.stdout), [root.fingerprint256]);
  assert.match(r.stdout, /^trusted roots in /);
  assert.match(r.stdout, /O=cluster\.local .*\(signer\)$/m);
});

test('root rotation: trust --add, refuse to retire the signing root, use --signer, retire the old root', () => {
  const a = initCa('rotate-a');
  const b = initCa('rotate-b');
  const rootA = onlyCert(read(a, 'root-cert.pem'));
  const rootB = onlyCert(read(b, 'root-cert.pem'));
  const beforeSwitch = issue(a, 'default', 'old').out;

  // Step 1: trust the new root alongside the old one.
  const added = ok(['ca', 'trust', a, '--add', join(b, 'root-cert.pem')]);
  assert.deepEqual(certs(read(a, 'root-cert.pem')).map((c) => c.fingerprint256), [rootA.fingerprint256, rootB.fingerprint256]);
  assert.deepEqual(listedRoots(added.stdout), [rootA.fingerprint256, rootB.fingerprint256]);
  assert.equal(read(a, 'ca-cert.pem'), rootA.toString(), 'adding a root does not change the signer');
  assert.equal(mode(a, 'ca-key.pem'), 0o600, 'the rewrite keeps the key private');
  // Adding it again does not duplicate it.
  ok(['ca', 'trust', a, '--add', join(b, 'root-cert.pem')]);
  assert.equal(certs(read(a, 'root-cert.pem')).length, 2);

  // The signing root cannot be retired.
  const rootsBefore = read(a, 'root-cert.pem');
  const refused = rampart(['ca', 'trust', a, '--remove', rootA.fingerprint256]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /anchors the current signer/);
  assert.match(refused.stderr, /rampart ca use/);
  assert.equal(read(a, 'root-cert.pem'), rootsBefore, 'a refused removal changes nothing');

  // Step 2: B's key signs for A; both roots stay trusted.
  const used = ok(['ca', 'use', a, '--signer', b]);
  assert.match(used.stdout, /trusted roots: 2/);
  assert.equal(read(a, 'ca-cert.pem'), read(b, 'ca-cert.pem'));
  assert.equal(read(a, 'ca-key.pem'), read(b, 'ca-key.pem'));
  assert.equal(mode(a, 'ca-key.pem'), 0o600);
  assert.deepEqual(certs(read(a, 'root-cert.pem')).map((c) => c.fingerprint256).sort(), [rootA.fingerprint256, rootB.fingerprint256].sort());
  const during = issue(a, 'default', 'during').out;
  assert.ok(onlyCert(read(during, 'cert-chain.pem')).verify(rootB.publicKey), 'issued by the new signer');
  assert.equal(certs(read(during, 'root-cert.pem')).length, 2, 'workloads get both roots during the rotation');
  // Both generations verify against the two-root bundle.
  for (const dir of [beforeSwitch, during]) {
    const r = rampart(['cert', 'inspect', join(dir, 'cert-chain.pem'), '--roots', join(a, 'root-cert.pem')]);
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, /^verification: verified/m);
  }

  // Step 4: retire the old root (any fingerprint spelling).
  const retired = ok(['ca', 'trust', a, '--remove', rootA.fingerprint256.replaceAll(':', '').toLowerCase()]);
  assert.deepEqual(listedRoots(retired.stdout), [rootB.fingerprint256]);
  assert.deepEqual(certs(read(a, 'root-cert.pem')).map((c) => c.fingerprint256), [rootB.fingerprint256]);
  assert.deepEqual(readdirSync(a).sort(), [...CA_FILES].sort(), 'no temporary file left behind');

  const after = issue(a, 'default', 'after').out;
  const good = rampart(['cert', 'inspect', join(after, 'cert-chain.pem'), '--roots', join(a, 'root-cert.pem')]);
  assert.equal(good.code, 0, good.stdout);
  assert.match(good.stdout, /^verification: verified/m);
  assert.match(good.stdout, /^no warnings$/m);
  // A certificate of the retired root no longer verifies against the final bundle.
  const old = rampart(['cert', 'inspect', join(beforeSwitch, 'cert-chain.pem'), '--roots', join(a, 'root-cert.pem'), '--json']);
  assert.equal(old.code, 1, old.stdout);
  const oldJson = JSON.parse(old.stdout) as InspectJson;
  assert.equal(oldJson.chainVerified, false);
  assert.match(oldJson.chain ?? '', /^rejected \(untrusted\)/);
});

test('ca trust: unknown or malformed fingerprints are refused (exit 2) and name the problem', () => {
  const ca = initCa('trust-remove-bad');
  const before = read(ca, 'root-cert.pem');
  const unknown = rampart(['ca', 'trust', ca, '--remove', 'AB'.repeat(32)]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /no root with fingerprint AB:AB:/);
  const malformed = rampart(['ca', 'trust', ca, '--remove', 'not-a-fingerprint']);
  assert.equal(malformed.code, 2);
  assert.match(malformed.stderr, /is not a SHA-256 fingerprint/);
  assert.equal(read(ca, 'root-cert.pem'), before);
});

test('ca trust --add: a certificate that is not a CA is refused (exit 2) and the CA keeps working', () => {
  const ca = initCa('trust-add-leaf');
  const { out } = issue(ca, 'default', 'sleep');
  const before = read(ca, 'root-cert.pem');
  const r = rampart(['ca', 'trust', ca, '--add', join(out, 'cert-chain.pem')]);
  assert.equal(r.code, 2, `a workload certificate was accepted as a root:\n${r.stdout}`);
  assert.match(r.stderr, /not a CA/);
  assert.equal(read(ca, 'root-cert.pem'), before, 'root-cert.pem unchanged');
  issue(ca, 'default', 'still-works');
});

// ==== cert inspect ====

test('cert inspect: a fresh SVID has no warnings (exit 0) and is verified against root-cert.pem beside it', () => {
  const ca = initCa('inspect');
  const { out } = issue(ca, 'default', 'sleep');
  const leaf = onlyCert(read(out, 'cert-chain.pem'));
  const r = rampart(['cert', 'inspect', join(out, 'cert-chain.pem')]);
  assert.equal(r.code, 0, r.stdout);
  assert.equal(r.stderr, '');
  assert.match(r.stdout, /^certificate 1 of 1: leaf$/m);
  assert.match(r.stdout, /^ {2}SPIFFE ID {5}spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/m);
  assert.match(r.stdout, /^ {2}key {11}ECDSA P-256$/m);
  assert.match(r.stdout, /^ {2}CA {12}no$/m);
  assert.ok(r.stdout.includes(`SHA-256       ${leaf.fingerprint256}`), r.stdout);
  assert.match(r.stdout, /^ {2}time left {5}23h5\dm of 1d2m$/m);
  assert.match(r.stdout, /^verification: verified/m);
  assert.match(r.stdout, /^no warnings$/m);
  assert.doesNotMatch(r.stdout, /warning:/);
});

test('cert inspect -: reads standard input; without roots it says how to verify', () => {
  const ca = initCa('inspect-stdin');
  const { out } = issue(ca, 'default', 'sleep');
  const r = rampart(['cert', 'inspect', '-'], read(out, 'cert-chain.pem'));
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /SPIFFE ID {5}spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
  assert.match(r.stdout, /^verification: no roots given/m);
  const withRoots = rampart(['cert', 'inspect', '-', '--roots', join(ca, 'root-cert.pem'), '--json'], read(out, 'cert-chain.pem'));
  assert.equal(withRoots.code, 0, withRoots.stdout);
  const json = JSON.parse(withRoots.stdout) as InspectJson;
  assert.equal(json.file, '-');
  assert.equal(json.roots, join(ca, 'root-cert.pem'));
  assert.equal(json.chainVerified, true);
});

test('cert inspect --json: spiffeId, fingerprint256, serial and key of the leaf', () => {
  const ca = initCa('inspect-json');
  const { out } = issue(ca, 'default', 'sleep');
  const leaf = onlyCert(read(out, 'cert-chain.pem'));
  const r = rampart(['cert', 'inspect', join(out, 'cert-chain.pem'), '--json']);
  assert.equal(r.code, 0, r.stdout);
  const json = JSON.parse(r.stdout) as InspectJson;
  assert.equal(json.certificates.length, 1);
  const c = json.certificates[0]!;
  assert.equal(c.role, 'leaf');
  assert.equal(c.spiffeId, 'spiffe://cluster.local/ns/default/sa/sleep');
  assert.equal(c.fingerprint256, leaf.fingerprint256);
  assert.equal(c.serial, leaf.serialNumber.toUpperCase());
  assert.match(c.serial, /^[0-9A-F]{1,34}$/);
  assert.equal(c.key, 'ECDSA P-256');
  assert.equal(c.isCA, false);
  assert.deepEqual(c.sans, ['URI:spiffe://cluster.local/ns/default/sa/sleep']);
  assert.equal(Date.parse(c.notAfter), notAfter(leaf));
  assert.deepEqual(c.warnings, []);
  assert.equal(json.warnings, 0);
  assert.equal(json.chainVerified, true);
  assert.equal(json.roots, join(out, 'root-cert.pem'));
  assert.equal(json.anchor?.fingerprint256, onlyCert(read(ca, 'root-cert.pem')).fingerprint256);
});

test('cert inspect: a self-signed root is shown as a root and not checked as an SVID (exit 0)', () => {
  const ca = initCa('inspect-root');
  const r = rampart(['cert', 'inspect', join(ca, 'ca-cert.pem'), '--json']);
  assert.equal(r.code, 0, r.stdout);
  const json = JSON.parse(r.stdout) as InspectJson;
  assert.equal(json.certificates[0]!.role, 'root');
  assert.equal(json.certificates[0]!.isCA, true);
  assert.equal(json.certificates[0]!.spiffeId, undefined);
  assert.equal(json.chain, undefined);
  const text = rampart(['cert', 'inspect', join(ca, 'ca-cert.pem')]);
  assert.equal(text.code, 0);
  assert.match(text.stdout, /^certificate 1 of 1: root$/m);
  assert.match(text.stdout, /\(self-signed\)/);
  assert.match(text.stdout, /^verification: not an SVID \(the first certificate is a CA\), not checked$/m);
});

test('cert inspect: an intermediate CA certificate given alone is shown as an intermediate, not checked as an SVID', (t) => {
  if (!haveOpenssl(t)) return;
  const dir = tmp('inspect-intermediate');
  cpSync(join(istioPluginCa().dir, 'ca-cert.pem'), join(dir, 'ca-cert.pem'));
  const r = rampart(['cert', 'inspect', join(dir, 'ca-cert.pem'), '--json']);
  assert.equal(r.code, 0, r.stdout);
  const c = (JSON.parse(r.stdout) as InspectJson).certificates[0]!;
  assert.equal(c.role, 'intermediate');
  assert.deepEqual(c.warnings, []);
  const text = rampart(['cert', 'inspect', join(dir, 'ca-cert.pem')]);
  assert.match(text.stdout, /^certificate 1 of 1: intermediate$/m);
  assert.match(text.stdout, /^verification: not an SVID \(the first certificate is a CA\), not checked$/m);
});

test('cert inspect: a leaf with two URI SANs, signed by the CA with openssl, is warned about (exit 1)', (t) => {
  if (!haveOpenssl(t)) return;
  const ca = initCa('inspect-two-uris');
  const dir = tmp('two-uris');
  cpSync(join(ca, 'root-cert.pem'), join(dir, 'root-cert.pem'));
  ecKey(dir, 'key.pem');
  opensslCert(dir, {
    key: 'key.pem',
    subj: '/O=test',
    out: 'cert-chain.pem',
    days: 1,
    issuer: { cert: join(ca, 'ca-cert.pem'), key: join(ca, 'ca-key.pem') },
    ext: `${LEAF_EXT}\nsubjectAltName = URI:spiffe://cluster.local/ns/a/sa/one, URI:spiffe://cluster.local/ns/b/sa/two`,
  });
  const r = rampart(['cert', 'inspect', join(dir, 'cert-chain.pem')]);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /^ {2}warning: 2 URI SANs: an SVID has exactly one$/m);
  assert.match(r.stdout, /^ {2}SPIFFE ID {5}\(none\)$/m);
  assert.match(r.stdout, /^verification: rejected \(multiple-uri-sans\)/m);
  assert.match(r.stdout, /^2 warning\(s\)$/m, 'the warning plus the failed verification');
  const json = JSON.parse(rampart(['cert', 'inspect', join(dir, 'cert-chain.pem'), '--json']).stdout) as InspectJson;
  assert.deepEqual(json.certificates[0]!.warnings, ['2 URI SANs: an SVID has exactly one']);
  assert.equal(json.chainVerified, false);
  assert.equal(json.warnings, 2, 'the warning plus the failed verification');
});

test('cert inspect: a self-signed certificate with only a DNS SAN is warned about (exit 1)', (t) => {
  if (!haveOpenssl(t)) return;
  const dir = tmp('dns-only');
  ecKey(dir, 'key.pem');
  opensslCert(dir, { key: 'key.pem', subj: '/CN=web.example.com', out: 'web.pem', days: 30, ext: `${LEAF_EXT}\nsubjectAltName = DNS:web.example.com` });
  const r = rampart(['cert', 'inspect', join(dir, 'web.pem'), '--json']);
  assert.equal(r.code, 1, r.stdout);
  const json = JSON.parse(r.stdout) as InspectJson;
  const c = json.certificates[0]!;
  assert.equal(c.role, 'leaf');
  assert.equal(c.spiffeId, undefined);
  assert.deepEqual(c.sans, ['DNS:web.example.com']);
  assert.deepEqual(c.warnings, ['no URI SAN: an SVID carries its SPIFFE ID as exactly one URI SAN']);
  assert.equal(json.chain, undefined, 'no root-cert.pem beside it: not verified');
  const text = rampart(['cert', 'inspect', join(dir, 'web.pem')]);
  assert.equal(text.code, 1);
  assert.match(text.stdout, /^ {2}warning: no URI SAN/m);
});

test('cert inspect: an expired SVID (made with "openssl ca -startdate/-enddate") is warned about (exit 1)', (t) => {
  if (!haveOpenssl(t)) return;
  const ca = initCa('inspect-expired');
  const dir = tmp('expired');
  cpSync(join(ca, 'root-cert.pem'), join(dir, 'root-cert.pem'));
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '1000\n');
  writeFileSync(
    join(dir, 'ca.conf'),
    [
      '[ ca ]', 'default_ca = CA_default',
      '[ CA_default ]', `database = ${join(dir, 'index.txt')}`, `new_certs_dir = ${dir}`, `serial = ${join(dir, 'serial')}`,
      'default_md = sha256', 'policy = policy_any', 'unique_subject = no', 'email_in_dn = no',
      '[ policy_any ]', 'organizationName = optional', 'commonName = optional',
      '[ leaf ]', LEAF_EXT, 'subjectAltName = URI:spiffe://cluster.local/ns/default/sa/expired',
    ].join('\n') + '\n',
  );
  ecKey(dir, 'key.pem');
  openssl(dir, 'req', '-new', '-key', 'key.pem', '-subj', '/O=test', '-out', 'leaf.csr');
  openssl(dir, 'ca', '-batch', '-notext', '-config', 'ca.conf', '-cert', join(ca, 'ca-cert.pem'), '-keyfile', join(ca, 'ca-key.pem'),
    '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-extensions', 'leaf', '-in', 'leaf.csr', '-out', 'cert-chain.pem');
  assert.equal(onlyCert(read(dir, 'cert-chain.pem')).validTo, 'Jan  2 00:00:00 2020 GMT', 'the fixture is expired');

  const r = rampart(['cert', 'inspect', join(dir, 'cert-chain.pem')]);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stdout, /^ {2}warning: expired at 2020-01-02T00:00:00\.000Z$/m);
  // Two units, whichever are not zero: at midnight the second one is seconds ("2521d7s").
  assert.match(r.stdout, /^ {2}time left {5}expired \d+d(\d+[hms])? ago$/m);
  assert.match(r.stdout, /^verification: rejected \(expired\)/m);
});

test('cert inspect: unreadable input exits 2 with a message (garbage, bad base64, missing file, stdin)', () => {
  const dir = tmp('garbage');
  writeFileSync(join(dir, 'garbage.pem'), 'this is not a certificate\n');
  writeFileSync(join(dir, 'bad64.pem'), '-----BEGIN CERTIFICATE-----\n@@@not base64@@@\n-----END CERTIFICATE-----\n');
  writeFileSync(join(dir, 'junk-der.pem'), `-----BEGIN CERTIFICATE-----\n${Buffer.from('definitely not DER').toString('base64')}\n-----END CERTIFICATE-----\n`);
  const cases: Array<[string[], string | undefined, RegExp]> = [
    [[join(dir, 'garbage.pem')], undefined, /holds no PEM certificate/],
    [[join(dir, 'bad64.pem')], undefined, /not valid base64/],
    [[join(dir, 'junk-der.pem')], undefined, /certificate #1 cannot be parsed/],
    [[join(dir, 'missing.pem')], undefined, /ENOENT|no such file/],
    [['-'], 'garbage on stdin', /standard input holds no PEM certificate/],
  ];
  for (const [args, input, message] of cases) {
    const r = rampart(['cert', 'inspect', ...args], input);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^rampart cert inspect: /);
    assert.match(r.stderr, message);
  }
});
