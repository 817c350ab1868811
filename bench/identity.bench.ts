/**
 * Workload identity: how fast the CA issues X.509-SVIDs, how fast mTLS handshakes with SVIDs complete, and what the
 * SPIFFE checks add to a handshake. Every line runs next to a baseline from the same run:
 *
 * - issuance: `CertificateAuthority.issue({csr}, identity)` (CSR parse and verify, sign, encode) next to the bare
 *   ECDSA P-256 signature on the same TBS bytes (the limit) and a naive issuer that rebuilds the per-signer state
 *   (CA certificate parsed again, signer, every extension, root PEM) for every certificate. A breakdown measures the
 *   parts of issue() in the same group as issue(); prototypes (here only, src/ unchanged) measure the
 *   TBSCertificate encoded once, signing and CSR verification on libuv's threadpool with 8 issues in flight, and
 *   issue() in one worker thread per core, with two of its parts (an OpenSSL decode, JavaScript encoding) likewise;
 * - handshakes on 127.0.0.1, client and server in this process (one JavaScript thread, so each handshake costs both
 *   ends' CPU): plain TLS (server certificate only), mTLS without the SPIFFE checks and mTLS with them
 *   (serverTlsOptions + verifyTlsPeer, clientTlsOptions), fresh and resumed, TLS 1.3 and 1.2, one at a time and 8 in
 *   flight, measured round-robin so that neighbouring cases see the same machine. Clients build their SecureContext
 *   once, as a long-lived client does; one case leaves that to tls.connect (a new context per connection). A second
 *   server identical to the unchecked one is the noise floor of the check-cost ratio, and the checks are also timed
 *   inside the handshakes, per connection;
 * - the checks alone: verifyTlsPeer on a connected socket, its leaf checks with the fingerprint cache warm and cold,
 *   and the client's checkServerIdentity.
 *
 * When this module is loaded by a worker thread started from it, it runs the issuing worker instead (end of file).
 */
import { createHash, createPublicKey, randomBytes, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import os from 'node:os';
import tls, { type ConnectionOptions, type PeerCertificate, type TLSSocket, type TlsOptions } from 'node:tls';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { CertificationRequest } from '@peculiar/asn1-csr';
import { AsnConvert } from '@peculiar/asn1-schema';
import * as asn from '@peculiar/asn1-x509';
import {
  caMaterialFromPem,
  caMaterialToPem,
  CertificateAuthority,
  CLOCK_SKEW_GRACE_MS,
  createSelfSignedCa,
  DEFAULT_WORKLOAD_TTL_MS,
  type CaMaterial,
  type CaMaterialPem,
} from '../src/identity/ca.ts';
import { certificateFacts, issuedBy } from '../src/identity/certificate.ts';
import { istioSpiffeId, parseSpiffeId, type SpiffeId } from '../src/identity/spiffe-id.ts';
import { svidFromParts, type Svid } from '../src/identity/svid.ts';
import { clientTlsOptions, serverTlsOptions, verifyTlsPeer } from '../src/identity/tls.ts';
import { TrustBundle } from '../src/identity/trust-bundle.ts';
import {
  checkWorkloadKey,
  createCsr,
  extension,
  fromPem,
  generateKeyPair,
  keyIdentifier,
  parseCsr,
  randomSerial,
  signCertificate,
  signerFor,
  spkiOf,
  toPem,
  type Signer,
  type TbsInput,
} from '../src/identity/x509.ts';
import { measureGroup, measureRounds, median, type Measurement, type RoundCase, type TimedCase, type TimingOptions } from './timing.ts';

const TRUST_DOMAIN = 'cluster.local';
export const TARGET_SVIDS_PER_SEC = 500;
/** The SPIFFE checks may add at most this fraction to a fresh mTLS handshake. */
export const TARGET_CHECK_OVERHEAD = 0.05;
const IN_FLIGHT = 8;
const WORKER_ROLE = 'rampart-bench-issuer';

export interface IdentityBenchOptions {
  readonly quick: boolean;
  /** Progress lines (stderr in run.ts). */
  readonly log: (line: string) => void;
}

export interface IdentityTimings {
  /** Issuance group and concurrent issuance (calibrated batches, round-robin). */
  readonly issuance: TimingOptions;
  /** Breakdown of issue() and the micro-measurements of the checks. */
  readonly micro: TimingOptions;
  /** Handshake groups: each round runs one case for roundMs with its connections in flight. */
  readonly handshakes: TimingOptions;
}

export interface RateLine extends Measurement {
  readonly label: string;
  /** Operations in flight at once (1: one after the other). */
  readonly inFlight: number;
}

/**
 * tls: server certificate only; mtls-bare: mTLS without the SPIFFE checks; mtls: with them; mtls-bare-copy: a second,
 * identical mtls-bare server (the noise floor of the check-cost ratio); mtls-context-per-connection: mtls with the
 * client options passed to tls.connect as they are, so that Node builds a new SecureContext for every connection.
 */
export type HandshakeVariant = 'tls' | 'mtls-bare' | 'mtls' | 'mtls-bare-copy' | 'mtls-context-per-connection';

export interface HandshakeLine extends RateLine {
  readonly variant: HandshakeVariant;
  readonly tlsVersion: 'TLSv1.3' | 'TLSv1.2';
  readonly session: 'fresh' | 'resumed';
  /** Median per connection of the server's verifyTlsPeer, timed inside the handshakes (variants with the checks). */
  readonly serverCheckNs: number | undefined;
  /** Same for the client's checkServerIdentity; Node does not call it on resumed sessions. */
  readonly clientCheckNs: number | undefined;
  /** Connections made (warm-up included) and how many of them ran each check. */
  readonly checkCalls: { readonly connections: number; readonly server: number; readonly client: number };
  /** What the last connection negotiated: protocol, cipher, key exchange (none when resumed without (EC)DHE). */
  readonly negotiated: string;
}

export interface IdentityRatio {
  readonly name: string;
  readonly measured: number;
  readonly text: string;
  readonly note: string;
}

export interface IdentityTarget {
  readonly target: string;
  readonly measured: string;
  readonly met: boolean;
}

export interface IdentityResults {
  readonly timing: IdentityTimings;
  readonly setup: {
    readonly caKey: string;
    readonly workloadKey: string;
    readonly certificateBytes: number;
    readonly tbsBytes: number;
    readonly heapUsedMBAtStart: number;
    readonly workers: number;
  };
  readonly issuance: readonly RateLine[];
  readonly breakdown: readonly RateLine[];
  readonly concurrentIssuance: readonly RateLine[];
  readonly handshakes: readonly HandshakeLine[];
  readonly checks: readonly RateLine[];
  readonly ratios: readonly IdentityRatio[];
  readonly targets: readonly IdentityTarget[];
  readonly elapsedSeconds: number;
}

export function identityTimings(quick: boolean): IdentityTimings {
  return quick
    ? { issuance: { warmupMs: 100, roundMs: 60, rounds: 3 }, micro: { warmupMs: 50, roundMs: 30, rounds: 3 }, handshakes: { warmupMs: 100, roundMs: 100, rounds: 3 } }
    : { issuance: { warmupMs: 300, roundMs: 200, rounds: 6 }, micro: { warmupMs: 200, roundMs: 100, rounds: 5 }, handshakes: { warmupMs: 250, roundMs: 200, rounds: 8 } };
}

// ---------------------------------------------------------------- async rounds

/** A case that runs operations for about `ms` (with its own number in flight) and resolves with how many completed. */
interface AsyncCase extends RoundCase {
  readonly run: (ms: number) => Promise<number>;
}


const deadlineIn = (ms: number): bigint => process.hrtime.bigint() + BigInt(Math.round(ms * 1e6));

// ---------------------------------------------------------------- fixtures

interface Workload {
  readonly id: SpiffeId;
  readonly svid: Svid;
}

async function workload(ca: CertificateAuthority, serviceAccount: string): Promise<Workload> {
  const keys = await generateKeyPair('ec-p256');
  const id = istioSpiffeId(TRUST_DOMAIN, 'default', serviceAccount);
  const issued = ca.issue({ csr: createCsr(keys, id.uri) }, id);
  return { id, svid: svidFromParts(keys.privateKey, [issued.certificate]) };
}

// ---------------------------------------------------------------- issuers other than issue()

interface LiteSvid {
  readonly certificate: X509Certificate;
  readonly chainPem: string;
  readonly rootsPem: string;
  readonly serial: string;
}

const kuExtension = (flags: number): asn.Extension => extension(asn.id_ce_keyUsage, true, new asn.KeyUsage(flags));
const bcExtension = (): asn.Extension => extension(asn.id_ce_basicConstraints, true, new asn.BasicConstraints({ cA: false }));
const ekuExtension = (): asn.Extension => extension(asn.id_ce_extKeyUsage, false, new asn.ExtendedKeyUsage([asn.id_kp_serverAuth, asn.id_kp_clientAuth]));
const sanExtension = (uri: string): asn.Extension =>
  extension(asn.id_ce_subjectAltName, true, new asn.SubjectAlternativeName([new asn.GeneralName({ uniformResourceIdentifier: uri })]));

function akiExtension(signingCert: X509Certificate): asn.Extension {
  const facts = certificateFacts(signingCert);
  const id = facts.subjectKeyId !== undefined ? Buffer.from(facts.subjectKeyId, 'hex') : keyIdentifier(spkiOf(signingCert.publicKey));
  return extension(asn.id_ce_authorityKeyIdentifier, false, new asn.AuthorityKeyIdentifier({ keyIdentifier: new asn.KeyIdentifier(id) }));
}

/**
 * The naive baseline: what issue() does, plus everything the CA's SigningState computes once per signer, done again
 * for every certificate: the CA certificate parsed from DER (new X509Certificate, so certificateFacts' cache misses,
 * and asn1-x509), the root found by signature, the signer derived from the key, every extension built and encoded,
 * and the trust bundle with its PEM. A self-signed CA, as `rampart ca init` makes it.
 */
function naiveIssue(material: CaMaterial, csrPem: string, identity: SpiffeId): LiteSvid {
  const csr = parseCsr(csrPem);
  checkWorkloadKey(csr.publicKey);
  for (const uri of csr.requestedUris) if (uri !== identity.uri) throw new Error(`the CSR asks for ${uri}`);
  const signingCert = new X509Certificate(material.signingCert.raw);
  const caAsn = AsnConvert.parse(signingCert.raw, asn.Certificate);
  const roots = material.roots.map((r) => new X509Certificate(r.raw));
  const anchor = roots.filter((r) => issuedBy(signingCert, r)).slice(0, 1);
  const facts = [signingCert, ...anchor].map((c) => certificateFacts(c));
  const signer = signerFor(material.signingKey);
  const bundle = new TrustBundle(TRUST_DOMAIN, roots);
  const now = Date.now();
  const notBefore = Math.max(now - CLOCK_SKEW_GRACE_MS, ...facts.map((f) => f.notBefore.getTime()));
  const notAfter = Math.min(now + DEFAULT_WORKLOAD_TTL_MS, ...facts.map((f) => f.notAfter.getTime()));
  const der = signCertificate(
    {
      serial: randomSerial(randomBytes),
      issuer: caAsn.tbsCertificate.subject,
      subject: new asn.Name(),
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
      spki: csr.spki,
      extensions: [kuExtension(asn.KeyUsageFlags.digitalSignature), bcExtension(), ekuExtension(), akiExtension(signingCert), sanExtension(identity.uri)],
    },
    signer,
  );
  const certificate = new X509Certificate(der);
  return { certificate, chainPem: toPem('CERTIFICATE', der), rootsPem: bundle.pem, serial: certificate.serialNumber.toUpperCase() };
}

/** Per-signer state of the prototypes, as the CA's SigningState holds it (self-signed CA: empty chain tail). */
interface ProtoState {
  readonly signer: Signer;
  readonly algorithmDer: Buffer;
  readonly issuerName: asn.Name;
  readonly extensions: readonly asn.Extension[];
  readonly rootsPem: string;
  readonly notBeforeFloor: number;
  readonly notAfterCeiling: number;
}

function protoState(material: CaMaterial): ProtoState {
  const facts = certificateFacts(material.signingCert);
  const signer = signerFor(material.signingKey);
  return {
    signer,
    algorithmDer: Buffer.from(AsnConvert.serialize(signer.algorithm)),
    issuerName: AsnConvert.parse(material.signingCert.raw, asn.Certificate).tbsCertificate.subject,
    extensions: [kuExtension(asn.KeyUsageFlags.digitalSignature), bcExtension(), ekuExtension(), akiExtension(material.signingCert)],
    rootsPem: material.roots.map((r) => r.toString()).join(''),
    notBeforeFloor: facts.notBefore.getTime(),
    notAfterCeiling: facts.notAfter.getTime(),
  };
}

interface ProtoCsr {
  readonly publicKey: KeyObject;
  readonly spki: asn.SubjectPublicKeyInfo;
  readonly signed: Uint8Array;
  readonly signature: Uint8Array;
  readonly uris: readonly string[];
}

const OID_ECDSA_SHA256 = '1.2.840.10045.4.3.2';
const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';

/** parseCsr without the signature check, so that a prototype can verify on the threadpool (P-256 CSRs only). */
function protoParseCsr(pem: string): ProtoCsr {
  const block = fromPem(pem).find((b) => b.label === 'CERTIFICATE REQUEST');
  if (block === undefined) throw new Error('no CSR');
  const req = AsnConvert.parse(block.der, CertificationRequest);
  const publicKey = createPublicKey({ key: Buffer.from(AsnConvert.serialize(req.certificationRequestInfo.subjectPKInfo)), format: 'der', type: 'spki' });
  if (req.signatureAlgorithm.algorithm !== OID_ECDSA_SHA256 || publicKey.asymmetricKeyType !== 'ec') throw new Error('prototype: ECDSA P-256 CSRs only');
  const raw = req.certificationRequestInfoRaw;
  if (raw === undefined) throw new Error('CSR without its raw info');
  const uris: string[] = [];
  for (const attr of req.certificationRequestInfo.attributes ?? []) {
    if (attr.type !== OID_EXTENSION_REQUEST) continue;
    for (const value of attr.values) {
      for (const ext of AsnConvert.parse(value, asn.Extensions)) {
        if (ext.extnID !== asn.id_ce_subjectAltName) continue;
        for (const name of AsnConvert.parse(ext.extnValue, asn.SubjectAlternativeName)) {
          if (name.uniformResourceIdentifier !== undefined) uris.push(name.uniformResourceIdentifier);
        }
      }
    }
  }
  return { publicKey, spki: req.certificationRequestInfo.subjectPKInfo, signed: new Uint8Array(raw), signature: new Uint8Array(req.signature), uris };
}

function protoTbs(st: ProtoState, csr: ProtoCsr, identity: SpiffeId): asn.TBSCertificate {
  checkWorkloadKey(csr.publicKey);
  for (const uri of csr.uris) if (uri !== identity.uri) throw new Error(`the CSR asks for ${uri}`);
  const now = Date.now();
  return new asn.TBSCertificate({
    version: asn.Version.v3,
    serialNumber: randomSerial(randomBytes),
    signature: st.signer.algorithm,
    issuer: st.issuerName,
    validity: new asn.Validity({
      notBefore: new Date(Math.max(now - CLOCK_SKEW_GRACE_MS, st.notBeforeFloor)),
      notAfter: new Date(Math.min(now + DEFAULT_WORKLOAD_TTL_MS, st.notAfterCeiling)),
    }),
    subject: new asn.Name(),
    subjectPublicKeyInfo: csr.spki,
    extensions: new asn.Extensions([...st.extensions, sanExtension(identity.uri)]),
  });
}

function derHeader(tag: number, length: number): Buffer {
  if (length < 0x80) return Buffer.from([tag, length]);
  const bytes: number[] = [];
  for (let l = length; l > 0; l >>= 8) bytes.unshift(l & 0xff);
  return Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING } around an encoded TBS. */
function certificateDer(tbsDer: Buffer, algorithmDer: Buffer, signature: Buffer): Buffer {
  const body = Buffer.concat([tbsDer, algorithmDer, derHeader(0x03, signature.length + 1), Buffer.from([0]), signature]);
  return Buffer.concat([derHeader(0x30, body.length), body]);
}

function toArrayBuffer(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

function protoFinish(st: ProtoState, tbs: asn.TBSCertificate, tbsDer: Buffer, signature: Buffer, encodeTbsOnce: boolean): LiteSvid {
  const der = encodeTbsOnce
    ? certificateDer(tbsDer, st.algorithmDer, signature)
    : Buffer.from(AsnConvert.serialize(new asn.Certificate({ tbsCertificate: tbs, signatureAlgorithm: st.signer.algorithm, signatureValue: toArrayBuffer(signature) })));
  const certificate = new X509Certificate(der);
  return { certificate, chainPem: toPem('CERTIFICATE', der), rootsPem: st.rootsPem, serial: certificate.serialNumber.toUpperCase() };
}

/** issue() rebuilt from its parts; `encodeTbsOnce` wraps the signed TBS bytes instead of encoding the TBS a second time. */
function protoIssue(st: ProtoState, csrPem: string, identity: SpiffeId, encodeTbsOnce: boolean): LiteSvid {
  const csr = protoParseCsr(csrPem);
  if (!verify('sha256', csr.signed, csr.publicKey, csr.signature)) throw new Error("the CSR's signature does not verify");
  const tbs = protoTbs(st, csr, identity);
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
  return protoFinish(st, tbs, tbsDer, sign('sha256', tbsDer, st.signer.key), encodeTbsOnce);
}

function verifyAsync(data: Uint8Array, key: KeyObject, signature: Uint8Array): Promise<boolean> {
  return new Promise((resolve, reject) => verify('sha256', data, key, signature, (err, ok) => (err === null ? resolve(ok) : reject(err))));
}
function signAsync(data: Buffer, key: KeyObject): Promise<Buffer> {
  return new Promise((resolve, reject) => sign('sha256', data, key, (err, sig) => (err === null ? resolve(sig) : reject(err))));
}

/** protoIssue with the CSR verification and the signature on libuv's threadpool (crypto's callback forms). */
async function protoIssueAsync(st: ProtoState, csrPem: string, identity: SpiffeId): Promise<LiteSvid> {
  const csr = protoParseCsr(csrPem);
  if (!(await verifyAsync(csr.signed, csr.publicKey, csr.signature))) throw new Error("the CSR's signature does not verify");
  const tbs = protoTbs(st, csr, identity);
  const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
  return protoFinish(st, tbs, tbsDer, await signAsync(tbsDer, st.signer.key), false);
}

// ---------------------------------------------------------------- issuing workers

/**
 * What a worker (or the main thread, for comparison) repeats: issue() itself, and two of its parts that show how
 * each kind of work scales over threads: an OpenSSL DER decode, and asn1-schema encoding (JavaScript only).
 */
type WorkerOp = 'issue' | 'x509-parse' | 'tbs-encode';

interface IssueWorkerData {
  readonly role: typeof WORKER_ROLE;
  readonly material: Required<CaMaterialPem>;
  readonly csrs: readonly string[];
  readonly identity: string;
  readonly warmupMs: number;
}

/** The operations of WorkerOp over one CA (each thread builds its own from the same material). */
function workerOps(data: IssueWorkerData): Record<WorkerOp, (i: number) => boolean> {
  const ca = new CertificateAuthority(caMaterialFromPem(data.material), { trustDomain: TRUST_DOMAIN });
  const identity = parseSpiffeId(data.identity);
  const der = ca.issue({ csr: data.csrs[0]! }, identity).certificate.raw;
  const tbs = AsnConvert.parse(der, asn.Certificate).tbsCertificate;
  return {
    issue: (i) => ca.issue({ csr: data.csrs[i & 3]! }, identity).spiffeId.uri === identity.uri,
    'x509-parse': () => new X509Certificate(der).serialNumber !== '',
    'tbs-encode': () => AsnConvert.serialize(tbs).byteLength > 0,
  };
}

function repeatFor(op: (i: number) => boolean, ms: number): number {
  const end = deadlineIn(ms);
  let n = 0;
  while (process.hrtime.bigint() < end) {
    if (!op(n)) throw new Error('unexpected result');
    n++;
  }
  return n;
}

/** Runs in a worker: each message {op, ms} repeats that operation for that long and replies the count. */
function issueWorker(data: IssueWorkerData): void {
  const ops = workerOps(data);
  const port = parentPort!;
  for (const op of Object.values(ops)) repeatFor(op, data.warmupMs);
  port.on('message', (m: { op: WorkerOp; ms: number }) => port.postMessage(repeatFor(ops[m.op], m.ms)));
  port.postMessage('ready');
}

async function startIssueWorkers(count: number, data: IssueWorkerData): Promise<Worker[]> {
  return Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Worker>((resolve, reject) => {
          const w = new Worker(new URL(import.meta.url), { workerData: data });
          w.once('error', reject);
          w.once('message', (m) => (m === 'ready' ? resolve(w) : reject(new Error(`worker said ${String(m)}`))));
        }),
    ),
  );
}

function workersCase(id: string, workers: readonly Worker[], op: WorkerOp): AsyncCase {
  return {
    id,
    run: async (ms) => {
      const counts = await Promise.all(
        workers.map(
          (w) =>
            new Promise<number>((resolve) => {
              w.once('message', (n: number) => resolve(n));
              w.postMessage({ op, ms });
            }),
        ),
      );
      return counts.reduce((a, b) => a + b, 0);
    },
  };
}

// ---------------------------------------------------------------- handshakes

interface BenchServer {
  readonly server: tls.Server;
  readonly port: number;
  /** When set, the duration of each connection's check (ns) is added to it. */
  checkNs: number[] | undefined;
  /** Calls `done` once the server has handled the connection from `clientPort` (its check included). */
  readonly awaitServer: (clientPort: number, done: (err: Error | undefined) => void) => void;
}

async function startServer(options: TlsOptions, check: ((s: TLSSocket) => void) | undefined): Promise<BenchServer> {
  const finished = new Map<number, Error | undefined>();
  const waiting = new Map<number, (err: Error | undefined) => void>();
  const deliver = (port: number, err: Error | undefined): void => {
    const w = waiting.get(port);
    if (w === undefined) finished.set(port, err);
    else {
      waiting.delete(port);
      w(err);
    }
  };
  const server = tls.createServer(options, (socket) => {
    socket.on('error', () => {});
    let err: Error | undefined;
    if (check !== undefined) {
      const t0 = process.hrtime.bigint();
      try {
        check(socket);
      } catch (e) {
        err = e instanceof Error ? e : new Error(String(e));
      }
      bench.checkNs?.push(Number(process.hrtime.bigint() - t0));
    }
    deliver(socket.remotePort!, err);
  });
  server.on('tlsClientError', () => {}); // the client reports the failure
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const bench: BenchServer = {
    server,
    port,
    checkNs: undefined,
    awaitServer: (clientPort, done) => {
      if (finished.has(clientPort)) {
        const err = finished.get(clientPort);
        finished.delete(clientPort);
        done(err);
      } else waiting.set(clientPort, done);
    },
  };
  return bench;
}

interface Lane {
  session: Buffer | undefined;
  /** Protocol, cipher and key exchange of the lane's first connection in the state it measures (fresh or resumed). */
  negotiated: string;
}

/**
 * One connection: done when the client has its secure connection, the server has handled it (verifyTlsPeer
 * included), and, for a resumed lane that has no session yet, the session has arrived. The client then ends it.
 */
function handshake(server: BenchServer, client: ConnectionOptions, lane: Lane, resume: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const offered = resume ? lane.session : undefined;
    const socket = tls.connect({ ...client, host: '127.0.0.1', port: server.port, ...(offered === undefined ? {} : { session: offered }) });
    let secure = false;
    let serverDone = false;
    let needSession = resume && offered === undefined;
    let settled = false;
    const timer = setTimeout(() => fail(new Error('handshake timed out')), 10_000);
    function fail(err: Error): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    }
    function finish(): void {
      if (settled || !secure || !serverDone || needSession) return;
      settled = true;
      clearTimeout(timer);
      socket.end();
      resolve();
    }
    socket.once('secureConnect', () => {
      if (!socket.authorized) return fail(new Error(`client: server not authorized (${String(socket.authorizationError)})`));
      if (socket.isSessionReused() !== (offered !== undefined)) return fail(new Error(`session reused: ${socket.isSessionReused()}, offered: ${offered !== undefined}`));
      if (lane.negotiated === '' && (offered !== undefined) === resume) {
        const kx = socket.getEphemeralKeyInfo();
        lane.negotiated = `${socket.getProtocol() ?? '?'} ${socket.getCipher().name}${kx !== null && 'name' in kx && kx.name !== undefined ? ` ${kx.name}` : ''}`;
      }
      secure = true;
      server.awaitServer(socket.localPort!, (err) => {
        if (err !== undefined) return fail(err);
        serverDone = true;
        finish();
      });
    });
    socket.on('session', (s: Buffer) => {
      if (resume) lane.session = s;
      needSession = false;
      finish();
    });
    socket.on('error', (err) => fail(err));
  });
}

interface HandshakeCase extends AsyncCase {
  readonly lanes: readonly Lane[];
  /** Per connection, ns: the server's verifyTlsPeer and the client's checkServerIdentity (when the variant has them). */
  readonly serverCheckNs: number[];
  readonly clientCheckNs: number[];
  /** Handshakes completed, warm-up included (the check arrays cover the same connections). */
  readonly completed: () => number;
}

function handshakeCase(id: string, server: BenchServer, options: ConnectionOptions, resume: boolean, inFlight: number): HandshakeCase {
  const lanes: Lane[] = Array.from({ length: inFlight }, () => ({ session: undefined, negotiated: '' }));
  const serverCheckNs: number[] = [];
  const clientCheckNs: number[] = [];
  let completed = 0;
  const check = options.checkServerIdentity;
  const client: ConnectionOptions =
    check === undefined
      ? options
      : {
          ...options,
          checkServerIdentity: (host, cert) => {
            const t0 = process.hrtime.bigint();
            const result = check(host, cert);
            clientCheckNs.push(Number(process.hrtime.bigint() - t0));
            return result;
          },
        };
  return {
    id,
    lanes,
    serverCheckNs,
    clientCheckNs,
    completed: () => completed,
    run: async (ms) => {
      server.checkNs = serverCheckNs;
      const end = deadlineIn(ms);
      const counts = await Promise.all(
        lanes.map(async (lane) => {
          let n = 0;
          while (process.hrtime.bigint() < end) {
            await handshake(server, client, lane, resume);
            n++;
            completed++;
          }
          return n;
        }),
      );
      return counts.reduce((a, b) => a + b, 0);
    },
  };
}

// ---------------------------------------------------------------- the run

export async function benchIdentity(opts: IdentityBenchOptions): Promise<IdentityResults> {
  const started = process.hrtime.bigint();
  const timing = identityTimings(opts.quick);
  const { log } = opts;
  const heapUsedMBAtStart = process.memoryUsage().heapUsed / 2 ** 20;

  log('identity: creating a CA, workloads and CSRs…');
  const material = await createSelfSignedCa({ trustDomain: TRUST_DOMAIN });
  const ca = new CertificateAuthority(material, { trustDomain: TRUST_DOMAIN });
  const bundle = ca.trustBundle;
  const sleep = istioSpiffeId(TRUST_DOMAIN, 'default', 'sleep');
  // Four CSRs of four keys, used in turn: issue() caches nothing per CSR, but a loop should not see one object only.
  const csrs = await Promise.all([0, 1, 2, 3].map(async () => createCsr(await generateKeyPair('ec-p256'), sleep.uri)));
  const sample = ca.issue({ csr: csrs[0]! }, sleep);
  const sampleAsn = AsnConvert.parse(sample.certificate.raw, asn.Certificate);
  const tbsRaw = sampleAsn.tbsCertificateRaw;
  if (tbsRaw === undefined) throw new Error('asn1-x509 did not keep the raw TBSCertificate');
  const tbsDer = Buffer.from(tbsRaw);
  const st = protoState(material);
  // The hand-wrapped Certificate must be byte for byte what asn1-x509 encodes.
  const sampleSig = Buffer.from(sampleAsn.signatureValue);
  if (!certificateDer(tbsDer, st.algorithmDer, sampleSig).equals(Buffer.from(AsnConvert.serialize(sampleAsn)))) {
    throw new Error('certificateDer differs from the asn1-x509 encoding');
  }
  const caKey = material.signingKey;
  const csrDer = fromPem(csrs[0]!)[0]!.der;
  const parsedCsr = protoParseCsr(csrs[0]!);
  const spkiDer = Buffer.from(AsnConvert.serialize(parsedCsr.spki));
  const sampleInput: TbsInput = {
    serial: randomSerial(randomBytes),
    issuer: st.issuerName,
    subject: new asn.Name(),
    notBefore: new Date(),
    notAfter: new Date(Date.now() + DEFAULT_WORKLOAD_TTL_MS),
    spki: parsedCsr.spki,
    extensions: [...st.extensions, sanExtension(sleep.uri)],
  };
  const sampleTbs = protoTbs(st, parsedCsr, sleep);
  const staticExtensions = new asn.Extensions([...st.extensions]);

  const loop = (f: (i: number) => boolean) => (n: number): number => {
    let ok = 0;
    for (let i = 0; i < n; i++) if (f(i)) ok++;
    return ok;
  };

  // ---- (a) issuance, one thread
  log('identity: issuance (issue(), naive issuer, prototypes, bare signature), round-robin:');
  const issuanceCases: (TimedCase & { label: string })[] = [
    { id: 'issue', label: 'CertificateAuthority.issue({csr}, identity)', loop: loop((i) => ca.issue({ csr: csrs[i & 3]! }, sleep).spiffeId === sleep) },
    { id: 'naive', label: 'baseline: naive issuer (per-signer state rebuilt per certificate)', loop: loop((i) => naiveIssue(material, csrs[i & 3]!, sleep).serial !== '') },
    { id: 'proto', label: 'prototype: issue() rebuilt from its parts (control)', loop: loop((i) => protoIssue(st, csrs[i & 3]!, sleep, false).serial !== '') },
    { id: 'proto-tbs-once', label: 'prototype: … TBSCertificate encoded once', loop: loop((i) => protoIssue(st, csrs[i & 3]!, sleep, true).serial !== '') },
    { id: 'sign', label: 'limit: crypto.sign(sha256, TBS bytes, CA key), ECDSA P-256', loop: loop(() => sign('sha256', tbsDer, caKey).length > 0) },
    { id: 'verify', label: 'limit: crypto.verify of the CSR signature, ECDSA P-256', loop: loop(() => verify('sha256', parsedCsr.signed, parsedCsr.publicKey, parsedCsr.signature)) },
  ];
  const issuance = measureGroup(issuanceCases, timing.issuance).map((m, i): RateLine => ({ ...m, label: issuanceCases[i]!.label, inFlight: 1 }));
  for (const m of issuance) log(`  ${m.id}: ${Math.round(m.opsPerSec)}/s`);

  log('identity: breakdown of issue():');
  const breakdownCases: (TimedCase & { label: string })[] = [
    { id: 'issue', label: 'issue() (measured again in this group)', loop: loop((i) => ca.issue({ csr: csrs[i & 3]! }, sleep).spiffeId === sleep) },
    { id: 'parseCsr', label: 'parseCsr (PEM, ASN.1 parse, key import, verify, SAN)', loop: loop((i) => parseCsr(csrs[i & 3]!).requestedUris.length === 1) },
    { id: 'csr-asn-parse', label: '  AsnConvert.parse(CSR DER)', loop: loop(() => AsnConvert.parse(csrDer, CertificationRequest).signature.byteLength > 0) },
    { id: 'create-public-key', label: '  createPublicKey(SPKI DER)', loop: loop(() => createPublicKey({ key: spkiDer, format: 'der', type: 'spki' }).type === 'public') },
    { id: 'signCertificate', label: 'signCertificate (TBS encode, sign, Certificate encode)', loop: loop(() => signCertificate(sampleInput, st.signer).length > 0) },
    { id: 'tbs-encode', label: '  AsnConvert.serialize(TBSCertificate)', loop: loop(() => AsnConvert.serialize(sampleTbs).byteLength > 0) },
    { id: 'static-extensions-encode', label: '    of which the 4 constant extensions', loop: loop(() => AsnConvert.serialize(staticExtensions).byteLength > 0) },
    { id: 'x509-parse', label: 'new X509Certificate(der) (the returned certificate)', loop: loop(() => new X509Certificate(sample.certificate.raw).serialNumber !== '') },
    { id: 'to-pem', label: "toPem('CERTIFICATE', der)", loop: loop(() => toPem('CERTIFICATE', sample.certificate.raw).length > 0) },
  ];
  const breakdown = measureGroup(breakdownCases, timing.micro).map((m, i): RateLine => ({ ...m, label: breakdownCases[i]!.label, inFlight: 1 }));

  // ---- (a) issuing concurrently
  const workerCount = os.availableParallelism();
  log(`identity: issuing concurrently (threadpool signing, ${IN_FLIGHT} in flight; ${workerCount} worker threads):`);
  const workerData: IssueWorkerData = {
    role: WORKER_ROLE,
    material: caMaterialToPem(material),
    csrs,
    identity: sleep.uri,
    warmupMs: timing.issuance.warmupMs,
  };
  const workers = await startIssueWorkers(workerCount, workerData);
  const mainOps = workerOps(workerData);
  const mainThreadCase = (op: WorkerOp): AsyncCase => ({ id: `${op}-main`, run: async (ms) => repeatFor(mainOps[op], ms) });
  const inFlightCase = (id: string, inFlight: number): AsyncCase => ({
    id,
    run: async (ms) => {
      const end = deadlineIn(ms);
      const counts = await Promise.all(
        Array.from({ length: inFlight }, async (_, lane) => {
          let n = 0;
          while (process.hrtime.bigint() < end) {
            if ((await protoIssueAsync(st, csrs[(lane + n) & 3]!, sleep)).serial === '') throw new Error('no serial');
            n++;
          }
          return n;
        }),
      );
      return counts.reduce((a, b) => a + b, 0);
    },
  });
  const concurrentCases: (AsyncCase & { label: string; inFlight: number })[] = [
    { ...mainThreadCase('issue'), id: 'issue-sequential', label: 'issue(), one after the other, main thread', inFlight: 1 },
    { ...inFlightCase('proto-async-1', 1), label: 'prototype: verify + sign on the threadpool, 1 in flight', inFlight: 1 },
    { ...inFlightCase(`proto-async-${IN_FLIGHT}`, IN_FLIGHT), label: `prototype: verify + sign on the threadpool, ${IN_FLIGHT} in flight`, inFlight: IN_FLIGHT },
    { ...workersCase('workers', workers, 'issue'), label: `prototype: issue() in ${workerCount} worker threads (one CA each)`, inFlight: workerCount },
    { ...mainThreadCase('x509-parse'), label: 'part: new X509Certificate(der) (OpenSSL decode), main thread', inFlight: 1 },
    { ...workersCase('x509-parse-workers', workers, 'x509-parse'), label: `part: new X509Certificate(der), ${workerCount} worker threads`, inFlight: workerCount },
    { ...mainThreadCase('tbs-encode'), label: 'part: AsnConvert.serialize(TBSCertificate) (JavaScript), main thread', inFlight: 1 },
    { ...workersCase('tbs-encode-workers', workers, 'tbs-encode'), label: `part: AsnConvert.serialize(TBSCertificate), ${workerCount} worker threads`, inFlight: workerCount },
  ];
  let concurrentIssuance: RateLine[];
  try {
    concurrentIssuance = (await measureRounds(concurrentCases, timing.issuance)).map((m, i) => ({ ...m, label: concurrentCases[i]!.label, inFlight: concurrentCases[i]!.inFlight }));
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  for (const m of concurrentIssuance) log(`  ${m.id}: ${Math.round(m.opsPerSec)}/s`);

  // ---- (b, c) handshakes
  log('identity: TLS handshakes on 127.0.0.1…');
  const server = await workload(ca, 'server');
  const client = await workload(ca, 'client');
  const mtlsServerOptions = serverTlsOptions(server.svid, bundle);
  const checkedClient = clientTlsOptions(client.svid, bundle, { ids: [server.id.uri] });
  const bareClient: ConnectionOptions = { ...checkedClient, checkServerIdentity: () => undefined };
  const plainClient: ConnectionOptions = { ca: bundle.pem, rejectUnauthorized: true, minVersion: 'TLSv1.2', checkServerIdentity: () => undefined };
  const clientPrincipal = `${TRUST_DOMAIN}/ns/default/sa/client`;
  const checkClient = (s: TLSSocket): void => {
    const v = verifyTlsPeer(s, bundle, 'client');
    if (v.principal !== clientPrincipal) throw new Error(`server: peer is ${v.principal}`);
  };
  const servers: Record<HandshakeVariant, BenchServer> = {
    tls: await startServer({ ...mtlsServerOptions, requestCert: false }, undefined),
    'mtls-bare': await startServer(mtlsServerOptions, undefined),
    mtls: await startServer(mtlsServerOptions, checkClient),
    'mtls-bare-copy': await startServer(mtlsServerOptions, undefined),
    'mtls-context-per-connection': await startServer(mtlsServerOptions, checkClient),
  };
  /**
   * Client options per variant and version. A long-lived client builds its SecureContext once (key, certificate
   * and CA parsed, SSL_CTX made) and passes it to every tls.connect; the last variant leaves that to Node, which
   * then builds one per connection.
   */
  const clientFor = (variant: HandshakeVariant, maxVersion: 'TLSv1.3' | 'TLSv1.2'): ConnectionOptions => {
    const base = variant === 'tls' ? plainClient : variant === 'mtls' || variant === 'mtls-context-per-connection' ? checkedClient : bareClient;
    const options = { ...base, maxVersion };
    return variant === 'mtls-context-per-connection' ? options : { ...options, secureContext: tls.createSecureContext(options) };
  };
  const VARIANT_LABELS: Record<HandshakeVariant, string> = {
    tls: 'TLS, server certificate only',
    'mtls-bare': 'mTLS without SPIFFE checks',
    mtls: 'mTLS with SPIFFE checks',
    'mtls-bare-copy': 'control: mTLS without checks, 2nd server',
    'mtls-context-per-connection': 'mTLS with checks, new SecureContext per connection',
  };
  const handshakes: HandshakeLine[] = [];
  type Session = 'fresh' | 'resumed';
  const all = (variants: readonly HandshakeVariant[], session: Session): { variant: HandshakeVariant; session: Session }[] => variants.map((variant) => ({ variant, session }));
  const groups: { version: 'TLSv1.3' | 'TLSv1.2'; inFlight: number; cases: { variant: HandshakeVariant; session: Session }[] }[] = [
    {
      version: 'TLSv1.3',
      inFlight: 1,
      // The compared cases sit next to each other in every round: mtls-bare between mtls and its copy.
      cases: [
        ...all(['tls', 'mtls', 'mtls-bare', 'mtls-bare-copy', 'mtls-context-per-connection'], 'fresh'),
        ...all(['tls', 'mtls', 'mtls-bare'], 'resumed'),
      ],
    },
    { version: 'TLSv1.3', inFlight: IN_FLIGHT, cases: [...all(['tls', 'mtls', 'mtls-bare'], 'fresh'), ...all(['tls', 'mtls', 'mtls-bare'], 'resumed')] },
    { version: 'TLSv1.2', inFlight: 1, cases: [...all(['tls', 'mtls', 'mtls-bare'], 'fresh'), ...all(['tls', 'mtls', 'mtls-bare'], 'resumed')] },
  ];
  try {
    for (const g of groups) {
      log(`  ${g.version}, ${g.inFlight} in flight: ${g.cases.map((c) => `${c.variant} ${c.session}`).join(', ')}; round-robin`);
      const cases = g.cases.map(({ variant, session }) => ({
        variant,
        session,
        c: handshakeCase(`${variant}-${session}-${g.version}-${g.inFlight}`, servers[variant], clientFor(variant, g.version), session === 'resumed', g.inFlight),
      }));
      const measured = await measureRounds(cases.map((x) => x.c), timing.handshakes);
      measured.forEach((m, i) => {
        const { variant, session, c } = cases[i]!;
        const checked = variant === 'mtls' || variant === 'mtls-context-per-connection';
        handshakes.push({
          ...m,
          label: VARIANT_LABELS[variant],
          inFlight: g.inFlight,
          variant,
          tlsVersion: g.version,
          session,
          negotiated: c.lanes[0]!.negotiated,
          serverCheckNs: checked && c.serverCheckNs.length > 0 ? median(c.serverCheckNs) : undefined,
          // Resumed lanes call it on their first, fresh connection only.
          clientCheckNs: checked && c.clientCheckNs.length > c.completed() / 2 ? median(c.clientCheckNs) : undefined,
          checkCalls: { connections: c.completed(), server: c.serverCheckNs.length, client: c.clientCheckNs.length },
        });
        log(`    ${m.id}: ${Math.round(m.opsPerSec)}/s`);
      });
    }
  } finally {
    for (const s of Object.values(servers)) s.server.close();
  }

  // ---- (c) the checks alone
  log('identity: the SPIFFE checks alone…');
  const held = await holdConnection(mtlsServerOptions, checkedClient);
  const peer = held.server.getPeerCertificate(false);
  const serverPeer = held.client.getPeerCertificate(true);
  const stub = (cert: Pick<PeerCertificate, 'raw' | 'fingerprint256'>): TLSSocket =>
    ({ authorized: true, getPeerCertificate: () => cert }) as unknown as TLSSocket;
  const warmStub = stub(peer);
  // Distinct fingerprints, twice the cache's 4,096 entries, used in turn: every lookup misses and evicts.
  // The counter runs across batches: a batch restarting at 0 would find its first 4,096 fingerprints still cached.
  const coldStubs = Array.from({ length: 8192 }, (_, i) => stub({ raw: peer.raw, fingerprint256: fakeFingerprint(i) }));
  let coldNext = 0;
  const checkServerIdentity = checkedClient.checkServerIdentity!;
  const checkCases: (TimedCase & { label: string })[] = [
    { id: 'verifyTlsPeer-socket', label: 'verifyTlsPeer(socket) on a connected server socket, cache warm', loop: loop(() => verifyTlsPeer(held.server, bundle, 'client').principal === clientPrincipal) },
    { id: 'getPeerCertificate', label: '  socket.getPeerCertificate(false) alone', loop: loop(() => held.server.getPeerCertificate(false).raw.length > 0) },
    { id: 'leaf-warm', label: 'verifyTlsPeer leaf checks (certificate given), cache warm', loop: loop(() => verifyTlsPeer(warmStub, bundle, 'client').principal === clientPrincipal) },
    { id: 'checkServerIdentity', label: "client's checkServerIdentity (SPIFFE + expected ID), cache warm", loop: loop(() => checkServerIdentity('127.0.0.1', serverPeer) === undefined) },
    { id: 'leaf-cold', label: 'verifyTlsPeer leaf checks (certificate given), cache cold', loop: loop(() => verifyTlsPeer(coldStubs[coldNext++ & 8191]!, bundle, 'client').principal === clientPrincipal) },
    { id: 'client-context', label: 'reference: tls.createSecureContext(clientTlsOptions(…))', loop: loop(() => tls.createSecureContext(checkedClient).context !== undefined) },
  ];
  let checks: RateLine[];
  try {
    checks = measureGroup(checkCases, timing.micro).map((m, i) => ({ ...m, label: checkCases[i]!.label, inFlight: 1 }));
  } finally {
    held.close();
  }

  // ---- ratios and targets
  const byId = (lines: readonly RateLine[], id: string): RateLine => {
    const m = lines.find((l) => l.id === id);
    if (m === undefined) throw new Error(`missing measurement ${id}`);
    return m;
  };
  const hs = (variant: HandshakeVariant, session: 'fresh' | 'resumed', version: 'TLSv1.3' | 'TLSv1.2', inFlight: number): HandshakeLine => {
    const m = handshakes.find((h) => h.variant === variant && h.session === session && h.tlsVersion === version && h.inFlight === inFlight);
    if (m === undefined) throw new Error(`missing handshake ${variant}/${session}/${version}/${inFlight}`);
    return m;
  };
  /** Median over rounds of a's ns/op over b's in the same round (the cases ran next to each other). */
  const paired = (a: Measurement, b: Measurement): number => median(a.roundsNsPerOp.map((ns, r) => ns / b.roundsNsPerOp[r]!));
  const x = (n: number): string => `${fixed(n, n < 10 ? 2 : 1)}×`;
  const pct = (n: number): string => `${n >= 0 ? '+' : ''}${fixed(100 * n, 1)} %`;
  const ratios: IdentityRatio[] = [];
  const ratio = (name: string, measured: number, text: string, note: string): void => void ratios.push({ name, measured, text, note });

  const issue = byId(issuance, 'issue');
  const signM = byId(issuance, 'sign');
  const verifyM = byId(issuance, 'verify');
  ratio('issue() time / one ECDSA P-256 signature', issue.nsPerOp / signM.nsPerOp, x(issue.nsPerOp / signM.nsPerOp), 'signatures per SVID');
  ratio(
    'issue() time / (sign + verify), the crypto it cannot avoid',
    issue.nsPerOp / (signM.nsPerOp + verifyM.nsPerOp),
    x(issue.nsPerOp / (signM.nsPerOp + verifyM.nsPerOp)),
    `crypto is ${fixed((100 * (signM.nsPerOp + verifyM.nsPerOp)) / issue.nsPerOp, 0)} % of issue()`,
  );
  const naive = byId(issuance, 'naive');
  ratio('naive issuer / issue()', naive.nsPerOp / issue.nsPerOp, x(naive.nsPerOp / issue.nsPerOp), 'what the per-signer caching saves');
  const proto = byId(issuance, 'proto');
  ratio('prototype rebuilt from parts / issue() (control)', proto.nsPerOp / issue.nsPerOp, x(proto.nsPerOp / issue.nsPerOp), 'should be ~1×');
  const once = byId(issuance, 'proto-tbs-once');
  ratio('TBS encoded once / prototype (control)', once.nsPerOp / proto.nsPerOp, x(once.nsPerOp / proto.nsPerOp), `${pct(once.nsPerOp / proto.nsPerOp - 1)} time per SVID`);
  const parts = ['parseCsr', 'signCertificate', 'x509-parse', 'to-pem'].reduce((sum, id) => sum + byId(breakdown, id).nsPerOp, 0);
  const issueAgain = byId(breakdown, 'issue');
  ratio(
    'sum of the parts (parseCsr + signCertificate + X509Certificate + toPem) / issue(), same group',
    parts / issueAgain.nsPerOp,
    x(parts / issueAgain.nsPerOp),
    'the rest: checkWorkloadKey, serial, SAN, GC',
  );
  const seqIssue = byId(concurrentIssuance, 'issue-sequential');
  const async8 = byId(concurrentIssuance, `proto-async-${IN_FLIGHT}`);
  const async1 = byId(concurrentIssuance, 'proto-async-1');
  const workersM = byId(concurrentIssuance, 'workers');
  ratio(`threadpool prototype, ${IN_FLIGHT} in flight / issue() one at a time (SVIDs/s)`, async8.opsPerSec / seqIssue.opsPerSec, x(async8.opsPerSec / seqIssue.opsPerSec), `1 in flight: ${x(async1.opsPerSec / seqIssue.opsPerSec)}`);
  ratio(`${workerCount} worker threads / issue() one at a time (SVIDs/s)`, workersM.opsPerSec / seqIssue.opsPerSec, x(workersM.opsPerSec / seqIssue.opsPerSec), `${workerCount} cores`);
  for (const [op, what] of [['x509-parse', 'new X509Certificate(der)'], ['tbs-encode', 'AsnConvert.serialize(TBSCertificate)']] as const) {
    const scaling = byId(concurrentIssuance, `${op}-workers`).opsPerSec / byId(concurrentIssuance, `${op}-main`).opsPerSec;
    ratio(`${what}: ${workerCount} worker threads / main thread (ops/s)`, scaling, x(scaling), op === 'x509-parse' ? 'OpenSSL 3.0 decoder' : 'JavaScript only');
  }

  for (const inFlight of [1, IN_FLIGHT]) {
    const mtls = hs('mtls', 'fresh', 'TLSv1.3', inFlight);
    const plain = hs('tls', 'fresh', 'TLSv1.3', inFlight);
    ratio(`mTLS (checked) / plain TLS, fresh, TLS 1.3, ${inFlight} in flight (time per handshake)`, mtls.nsPerOp / plain.nsPerOp, x(mtls.nsPerOp / plain.nsPerOp), '');
  }
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    const fresh = hs('mtls', 'fresh', version, 1);
    const resumed = hs('mtls', 'resumed', version, 1);
    ratio(`mTLS resumed / fresh, ${version}, 1 in flight (time per handshake)`, resumed.nsPerOp / fresh.nsPerOp, x(resumed.nsPerOp / fresh.nsPerOp), '');
  }
  const connectWithOptions = paired(hs('mtls-context-per-connection', 'fresh', 'TLSv1.3', 1), hs('mtls', 'fresh', 'TLSv1.3', 1));
  ratio('mTLS, new SecureContext per connection / context built once, fresh, TLS 1.3', connectWithOptions, x(connectWithOptions), 'tls.connect(clientTlsOptions(…)) as is');
  const control = paired(hs('mtls-bare-copy', 'fresh', 'TLSv1.3', 1), hs('mtls-bare', 'fresh', 'TLSv1.3', 1)) - 1;
  ratio('control: 2nd identical mTLS server without checks / first, fresh, TLS 1.3, 1 in flight', control, pct(control), 'noise floor of the lines below');
  const overhead: { where: string; value: number }[] = [];
  for (const [version, inFlight, session] of [
    ['TLSv1.3', 1, 'fresh'],
    ['TLSv1.3', IN_FLIGHT, 'fresh'],
    ['TLSv1.2', 1, 'fresh'],
    ['TLSv1.3', 1, 'resumed'],
    ['TLSv1.3', IN_FLIGHT, 'resumed'],
    ['TLSv1.2', 1, 'resumed'],
  ] as const) {
    const value = paired(hs('mtls', session, version, inFlight), hs('mtls-bare', session, version, inFlight)) - 1;
    if (session === 'fresh') overhead.push({ where: `${version}, ${inFlight} in flight`, value });
    ratio(`SPIFFE checks added to an mTLS handshake, ${session}, ${version}, ${inFlight} in flight`, value, pct(value), 'median of per-round ratios');
  }
  for (const [session, version, inFlight] of [['fresh', 'TLSv1.3', 1], ['resumed', 'TLSv1.3', 1], ['fresh', 'TLSv1.2', 1]] as const) {
    const h = hs('mtls', session, version, inFlight);
    const ns = (h.serverCheckNs ?? 0) + (h.clientCheckNs ?? 0);
    ratio(
      `checks timed inside the handshakes / handshake time, ${session}, ${version}, ${inFlight} in flight`,
      ns / h.nsPerOp,
      `${fixed((100 * ns) / h.nsPerOp, 1)} %`,
      `verifyTlsPeer ${fixed((h.serverCheckNs ?? 0) / 1000, 1)} µs + checkServerIdentity ${h.clientCheckNs === undefined ? 'not called' : `${fixed(h.clientCheckNs / 1000, 1)} µs`}`,
    );
  }
  const leafWarm = byId(checks, 'leaf-warm');
  const socketWarm = byId(checks, 'verifyTlsPeer-socket');
  const csi = byId(checks, 'checkServerIdentity');
  const fresh13 = hs('mtls', 'fresh', 'TLSv1.3', 1);
  const checkNs = socketWarm.nsPerOp + csi.nsPerOp;
  ratio(
    'repeated calls (verifyTlsPeer on a held socket + checkServerIdentity) / fresh mTLS handshake, TLS 1.3',
    checkNs / fresh13.nsPerOp,
    `${fixed((100 * checkNs) / fresh13.nsPerOp, 2)} %`,
    `${fixed(checkNs / 1000, 1)} µs of ${fixed(fresh13.nsPerOp / 1000, 0)} µs, from the micro-measurements`,
  );
  const leafCold = byId(checks, 'leaf-cold');
  ratio('leaf checks, cache cold / warm', leafCold.nsPerOp / leafWarm.nsPerOp, x(leafCold.nsPerOp / leafWarm.nsPerOp), 'a peer seen for the first time');

  const targets: IdentityTarget[] = [
    {
      target: `≥ ${TARGET_SVIDS_PER_SEC} SVIDs/s on one core, issue() with a pre-made P-256 CSR`,
      measured: `${int(issue.opsPerSec)}/s, ${fixed(issue.nsPerOp / 1000, 0)} µs (best round ${int(1e9 / issue.bestNsPerOp)}/s)`,
      met: issue.opsPerSec >= TARGET_SVIDS_PER_SEC,
    },
  ];
  for (const o of overhead) {
    targets.push({
      target: `SPIFFE checks add < ${fixed(100 * TARGET_CHECK_OVERHEAD, 0)} % to a fresh mTLS handshake, ${o.where}`,
      measured: pct(o.value),
      met: o.value < TARGET_CHECK_OVERHEAD,
    });
  }
  const inside = (fresh13.serverCheckNs ?? 0) + (fresh13.clientCheckNs ?? 0);
  targets.push({
    target: `… the checks timed inside those handshakes (TLS 1.3, 1 in flight) < ${fixed(100 * TARGET_CHECK_OVERHEAD, 0)} % of a handshake`,
    measured: `${fixed((100 * inside) / fresh13.nsPerOp, 1)} % (${fixed(inside / 1000, 1)} µs of ${fixed(fresh13.nsPerOp / 1000, 0)} µs)`,
    met: inside / fresh13.nsPerOp < TARGET_CHECK_OVERHEAD,
  });

  return {
    timing,
    setup: {
      caKey: 'ECDSA P-256 (self-signed root signs the workloads)',
      workloadKey: 'ECDSA P-256',
      certificateBytes: sample.certificate.raw.length,
      tbsBytes: tbsDer.length,
      heapUsedMBAtStart,
      workers: workerCount,
    },
    issuance,
    breakdown,
    concurrentIssuance,
    handshakes,
    checks,
    ratios,
    targets,
    elapsedSeconds: Number(process.hrtime.bigint() - started) / 1e9,
  };
}

function fakeFingerprint(i: number): string {
  return createHash('sha256').update(`fake ${i}`).digest('hex').toUpperCase().match(/../g)!.join(':');
}

/** One mTLS connection kept open: the server's and the client's socket. */
async function holdConnection(serverOptions: TlsOptions, clientOptions: ConnectionOptions): Promise<{ server: TLSSocket; client: TLSSocket; close: () => void }> {
  let gotServer!: (s: TLSSocket) => void;
  const serverSocket = new Promise<TLSSocket>((resolve) => (gotServer = resolve));
  const srv = tls.createServer(serverOptions, (s) => {
    s.on('error', () => {});
    gotServer(s);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const client = tls.connect({ ...clientOptions, host: '127.0.0.1', port: (srv.address() as { port: number }).port });
  await new Promise<void>((resolve, reject) => {
    client.once('secureConnect', resolve);
    client.once('error', reject);
  });
  client.on('error', () => {});
  const server = await serverSocket;
  return {
    server,
    client,
    close: () => {
      client.destroy();
      server.destroy();
      srv.close();
    },
  };
}

// ---------------------------------------------------------------- report

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const fixed = (n: number, digits: number): string => n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const us = (ns: number): string => fixed(ns / 1000, ns < 10_000 ? 2 : ns < 100_000 ? 1 : 0);
const spreadText = (m: Measurement): string => `${fixed(100 * m.spread, 0)}%`;

function table(head: readonly string[], rows: readonly (readonly string[])[], rightFrom = 1): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i >= rightFrom ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** The identity tables, ratios and targets as text (run.ts prints it). */
export function identityReport(r: IdentityResults, quick: boolean): string {
  const t = r.timing;
  const rounds = (o: TimingOptions): string => `median of ${o.rounds} rounds of ${o.roundMs} ms after ${o.warmupMs} ms warm-up`;
  const sign = r.issuance.find((m) => m.id === 'sign')!;
  const issueAgain = r.breakdown.find((m) => m.id === 'issue')!;
  const out: string[] = [];
  const section = (title: string, body: string): void => void out.push(`\n${title}\n${body}\n`);
  section(
    `SVID issuance, one thread (${rounds(t.issuance)}); CA and workload keys ECDSA P-256, certificate ${r.setup.certificateBytes} bytes (TBS ${r.setup.tbsBytes})`,
    table(
      ['case', 'per second', 'µs', '× signature', 'best round', 'spread'],
      r.issuance.map((m) => [m.label, int(m.opsPerSec), us(m.nsPerOp), `${fixed(m.nsPerOp / sign.nsPerOp, 1)}×`, int(1e9 / m.bestNsPerOp), spreadText(m)]),
    ) + `\nheap used when the identity benchmarks started: ${int(r.setup.heapUsedMBAtStart)} MB`,
  );
  section(
    `Where issue() spends its time (parts measured alone, ${rounds(t.micro)})`,
    table(
      ['part', 'µs', 'share of issue()'],
      r.breakdown.map((m) => [m.label, us(m.nsPerOp), `${fixed((100 * m.nsPerOp) / issueAgain.nsPerOp, 0)} %`]),
    ),
  );
  section(
    `Issuing concurrently (prototypes in bench/identity.bench.ts; src/ unchanged; ${rounds(t.issuance)})`,
    table(
      ['case', 'in flight', 'SVIDs/s', 'µs per SVID (wall)', 'spread'],
      r.concurrentIssuance.map((m) => [m.label, String(m.inFlight), int(m.opsPerSec), us(m.nsPerOp), spreadText(m)]),
    ),
  );
  const plain = (h: HandshakeLine): HandshakeLine | undefined =>
    r.handshakes.find((p) => p.variant === 'tls' && p.session === h.session && p.tlsVersion === h.tlsVersion && p.inFlight === h.inFlight);
  section(
    `TLS handshakes on 127.0.0.1, client and server in this process (${rounds(t.handshakes)}; per-second = completed handshakes / wall time)`,
    table(
      ['case', 'TLS', 'session', 'in flight', 'handshakes/s', 'µs each', '× plain TLS', 'spread', 'checks µs (server + client)', 'negotiated'],
      r.handshakes.map((h) => [
        h.label, h.tlsVersion, h.session, String(h.inFlight), int(h.opsPerSec), us(h.nsPerOp), `${fixed(h.nsPerOp / plain(h)!.nsPerOp, 2)}×`, spreadText(h),
        h.serverCheckNs === undefined ? '' : `${us(h.serverCheckNs)} + ${h.clientCheckNs === undefined ? '-' : us(h.clientCheckNs)}`, h.negotiated,
      ]),
      1,
    ) +
      '\nµs each: wall time per completed handshake; with 8 in flight, the inverse of the throughput.' +
      "\nchecks µs: medians per connection of the server's verifyTlsPeer and the client's checkServerIdentity, timed inside these handshakes." +
      "\nresumed: each connection offers the session of its lane's previous one (TLS 1.3: PSK with X25519, no new ticket on" +
      "\nresumption; TLS 1.2: ticket, abbreviated handshake). Node does not call checkServerIdentity on a resumed session.",
  );
  section(
    `The SPIFFE checks alone (${rounds(t.micro)})`,
    table(['call', 'µs', 'per second', 'spread'], r.checks.map((m) => [m.label, us(m.nsPerOp), int(m.opsPerSec), spreadText(m)])),
  );
  section('Identity ratios', table(['ratio', 'measured', 'note'], r.ratios.map((q) => [q.name, q.text, q.note]), 1));
  section(
    quick ? 'Identity targets (--quick: short rounds, not comparable)' : 'Identity targets',
    table(['target', 'measured', ''], r.targets.map((q) => [q.target, q.measured, q.met ? 'met' : 'MISSED']), 1),
  );
  return out.join('');
}

// ---------------------------------------------------------------- worker entry

if (!isMainThread && (workerData as Partial<IssueWorkerData> | null)?.role === WORKER_ROLE) issueWorker(workerData as IssueWorkerData);
