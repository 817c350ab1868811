/**
 * The data path: requests per second and latency through two sidecars, against the same load sent straight to the
 * app and through an nginx pair doing the same two hops (mTLS origination and termination), all in one run with the
 * same load generator (wrk, 16 connections, POST with a 1 KB body, the app answering 1 KB).
 *
 * - direct: wrk → app;
 * - rampart: wrk → client sidecar (an --upstream port) → mTLS → server sidecar → app, with a JWT (the same token,
 *   so the verified-token cache answers) and ten AuthorizationPolicies applying to the server workload, STRICT mTLS;
 * - nginx: wrk → nginx (proxy_pass https with a client certificate) → nginx (ssl_verify_client on) → app. nginx checks
 *   the chain of the client certificate but, unlike the sidecars, no SPIFFE ID (stock nginx cannot match a URI SAN),
 *   and it runs no authorization: it is the throughput peer a user would otherwise pick, not an equivalent.
 *
 * - https: wrk → front app → HTTPS (server certificate checked, no client certificate, no policy) → back app: two
 *   Node apps talking plain HTTPS (bench/pair-app.ts);
 * - in-process: the same two apps with rampart/node in both: mTLS with their SVIDs and secure naming, and the back
 *   app deciding the JWT and the same ten policies in its own process, access log on, no sidecar.
 *
 * - captured (as root): wrk in a network namespace of its own, as an unchanged app, naming httpbin.default:8000 →
 *   rampart capture → client sidecar (--capture) → mTLS across a veth pair and a bridge → capture → server sidecar →
 *   the app in its namespace on its own port; explicit-netns: the same namespaces' layout without capture (wrk →
 *   the client sidecar's --upstream port → server sidecar on its address → app), so that the two differ only by
 *   capture (the rules, SO_ORIGINAL_DST, the lookup by address); explicit-conntrack: the explicit layout again in
 *   namespaces whose nat table holds rules that redirect nothing, so that the kernel tracks every connection as it
 *   must for any REDIRECT capture (the floor: what netfilter costs whoever captures).
 *
 * Each path is measured at full speed and at about 1,000 requests/s (wrk's Lua delay() spaces each connection's
 * requests 16 ms apart), in alternating rounds. Each proxy process's CPU seconds (from /proc) are taken around every
 * round, and its peak RSS (VmHWM) at the end. Every proxy runs as one process; the load generator, the app and the
 * proxies share the machine's cores. RAMPART_SIDECAR_NODE_FLAGS adds node flags to both sidecars, for experiments
 * (e.g. "--max-semi-space-size=2"); RAMPART_SIDECAR_WORKERS runs them with --workers N; RAMPART_SIDECAR_ARGS adds
 * proxy arguments (e.g. "--access-log off");
 * RAMPART_BENCH_ROUNDS sets the rounds per load and RAMPART_BENCH_PATHS the paths measured; RAMPART_BENCH_HOLD=1 keeps
 * the warmed-up processes running after the warm-up (their addresses and pids are logged) until SIGINT, to profile by hand.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, type JWK } from 'jose';
import { CertificateAuthority, createSelfSignedCa } from '../src/identity/ca.ts';
import { istioSpiffeId } from '../src/identity/spiffe-id.ts';
import { createCsr, generateKeyPair, privateKeyPem } from '../src/identity/x509.ts';
import { writeCaDir } from '../src/io/ca-dir.ts';
import { applyCapture } from '../src/capture/apply.ts';
import { DEFAULT_CAPTURE } from '../src/capture/rules.ts';
import { MeshHosts, meshHostsUnavailable } from '../src/mesh/mesh-hosts.ts';
import { parseMeshFile } from '../src/resources/mesh-file.ts';
import { median } from './timing.ts';

export const TARGET_ADDED_P90_MS = 1;
export const TARGET_CPU_S_PER_1000 = 0.15;
export const TARGET_RSS_MB = 60;
export const TARGET_PEAK_VS_NGINX = 0.5;
export const TARGET_P99_VS_NGINX = 2;
const CONNECTIONS = 16;
const BODY_BYTES = 1024;
const RATE_DELAY_MS = 16;
const SIDECAR_NODE_FLAGS = (process.env['RAMPART_SIDECAR_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== '');
/** Node flags for the app-to-app paths' apps (RAMPART_PAIR_NODE_FLAGS, e.g. "--cpu-prof"), for experiments. */
const PAIR_NODE_FLAGS = (process.env['RAMPART_PAIR_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== '');
/** `--workers` of both sidecars (RAMPART_SIDECAR_WORKERS; 1 by default). */
const SIDECAR_WORKERS = process.env['RAMPART_SIDECAR_WORKERS'] ?? '1';
/** Extra `rampart proxy` arguments for both sidecars (RAMPART_SIDECAR_ARGS, e.g. "--access-log off"), for experiments. */
const SIDECAR_ARGS = (process.env['RAMPART_SIDECAR_ARGS'] ?? '').split(' ').filter((a) => a !== '');

export interface ProxyBenchOptions {
  readonly quick: boolean;
  readonly log: (line: string) => void;
  /** The package root (the compiled CLI is under .bench-out/). */
  readonly root: string;
}

export interface WrkResult {
  readonly requests: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly non2xx: number;
}

export interface ProcessUse {
  readonly name: string;
  readonly cpuSeconds: number;
  readonly cpuSecondsPer1000: number;
}

export interface PathRound {
  readonly path: 'direct' | 'rampart' | 'nginx' | 'https' | 'in-process' | 'captured' | 'explicit-netns' | 'explicit-conntrack';
  readonly load: 'peak' | 'rate';
  readonly round: number;
  readonly wrk: WrkResult;
  readonly processes: readonly ProcessUse[];
}

export interface ProxyResults {
  readonly skipped?: string;
  readonly durationSeconds: number;
  readonly rounds: readonly PathRound[];
  readonly peakRssMB: Readonly<Record<string, number>>;
  /**
   * Largest private (anonymous) resident memory seen after any round: RSS also counts the executable's file-backed
   * pages (about 40 MB for node), which every node process on the host shares; this is what one more sidecar costs.
   */
  readonly peakPrivateMB: Readonly<Record<string, number>>;
  readonly targets: ReadonlyArray<{ readonly target: string; readonly measured: string; readonly met: boolean }>;
  readonly nginx: boolean;
}

function which(cmd: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':').concat(['/usr/sbin', '/usr/bin'])) {
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const TICKS = 100;
/** The process and its descendants (a sidecar with --workers is a primary and its workers). */
function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const tid of readdirSync(`/proc/${out[i]}/task`)) {
        const kids = readFileSync(`/proc/${out[i]}/task/${tid}/children`, 'utf8').trim();
        if (kids !== '') out.push(...kids.split(' ').map(Number));
      }
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}
function cpuSeconds(pid: number): number {
  let sum = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      sum += (Number(fields[11]) + Number(fields[12])) / TICKS;
    } catch {
      // Gone meanwhile.
    }
  }
  return sum;
}
/** Private (anonymous) resident memory now, summed over the process tree. */
function privateMB(pid: number): number {
  let sum = 0;
  for (const p of processTree(pid)) {
    try {
      const m = /RssAnon:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m !== null) sum += Number(m[1]) / 1024;
    } catch {
      // Gone meanwhile.
    }
  }
  return sum;
}

/** Peak RSS, summed over the process tree. */
function peakRssMB(pid: number): number {
  let sum = 0;
  for (const p of processTree(pid)) {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
    if (m !== null) sum += Number(m[1]) / 1024;
  }
  return sum;
}

async function waitForFile(file: string, pattern: RegExp, timeoutMs: number): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    if (pattern.test(text)) return text;
    if (Date.now() > end) throw new Error(`timed out waiting for ${pattern} in ${file}:\n${text.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitForPort(host: string, port: number, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect({ host, port }, () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on ${host}:${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function parseWrk(out: string): WrkResult {
  const num = (re: RegExp): number => {
    const m = re.exec(out);
    return m === null ? NaN : Number(m[1]);
  };
  const latency = (pct: string): number => {
    const m = new RegExp(`^\\s+${pct}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(out);
    if (m === null) return NaN;
    const v = Number(m[1]);
    return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
  };
  const requests = num(/(\d+) requests in/);
  const seconds = (() => {
    const m = /requests in ([\d.]+)(ms|s|m)/.exec(out);
    if (m === null) return NaN;
    return m[2] === 'ms' ? Number(m[1]) / 1000 : m[2] === 'm' ? Number(m[1]) * 60 : Number(m[1]);
  })();
  const err = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    requests, seconds, perSecond: num(/Requests\/sec:\s+([\d.]+)/),
    p50Ms: latency('50'), p90Ms: latency('90'), p99Ms: latency('99'),
    errors: err === null ? 0 : err.slice(1).reduce((a, b) => a + Number(b), 0),
    non2xx: Number.isNaN(num(/Non-2xx or 3xx responses: (\d+)/)) ? 0 : num(/Non-2xx or 3xx responses: (\d+)/),
  };
}

const APP = `
const http = require('node:http');
const body = Buffer.alloc(${BODY_BYTES}, 'b');
const s = http.createServer((req, res) => { req.resume(); req.on('end', () => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body)); });
s.keepAliveTimeout = 120000;
s.listen(Number(process.argv[1]), '127.0.0.1');
`;

function policies(jwks: string): string {
  const docs: string[] = [`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}`, `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: https://issuer.bench.example
    audiences: [httpbin]
    jwks: '${jwks}'`];
  for (let i = 0; i < 8; i++) {
    docs.push(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-team-${i}, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/team-${i}/sa/*"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/team-${i}/*"]}}]`);
  }
  docs.push(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin", "/admin/*"]}}]`);
  docs.push(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-sleep-with-jwt, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"], requestPrincipals: ["https://issuer.bench.example/*"]}}]
    to: [{operation: {methods: ["POST"], paths: ["/echo"]}}]`);
  return `${docs.join('\n---\n')}\n`;
}

export async function benchProxy(opts: ProxyBenchOptions): Promise<ProxyResults> {
  const { log, quick } = opts;
  const wrk = which('wrk');
  const nginx = which('nginx');
  const durationSeconds = quick ? 3 : 8;
  if (wrk === undefined) {
    log('proxy: wrk is not installed (Debian package "wrk"): the data-path benchmark is skipped');
    return { skipped: 'wrk is not installed (apt-get install wrk nginx-light)', durationSeconds, rounds: [], peakRssMB: {}, peakPrivateMB: {}, targets: [], nginx: false };
  }
  const cli = join(opts.root, '.bench-out', 'src', 'cli', 'bin.js');
  const dir = mkdtempSync(join(tmpdir(), 'rampart-bench-proxy-'));
  const children: ChildProcess[] = [];
  let hosts: MeshHosts | undefined;
  const spawnLogged = (name: string, cmd: string, args: readonly string[]): ChildProcess => {
    const out = openSync(join(dir, `${name}.log`), 'w');
    const c = spawn(cmd, args, { stdio: ['ignore', out, out] });
    children.push(c);
    return c;
  };
  try {
    // CA, SVIDs for nginx, a JWT.
    const material = await createSelfSignedCa({ trustDomain: 'cluster.local' });
    const ca = new CertificateAuthority(material, { trustDomain: 'cluster.local' });
    await writeCaDir(join(dir, 'ca'), material, false);
    const svidFiles = async (name: string, sa: string): Promise<{ key: string; cert: string }> => {
      const keys = await generateKeyPair('ec-p256');
      const id = istioSpiffeId('cluster.local', 'default', sa);
      const issued = ca.issue({ csr: createCsr(keys, id.uri) }, id);
      writeFileSync(join(dir, `${name}-key.pem`), privateKeyPem(keys.privateKey), { mode: 0o600 });
      writeFileSync(join(dir, `${name}-cert.pem`), issued.chainPem);
      return { key: join(dir, `${name}-key.pem`), cert: join(dir, `${name}-cert.pem`) };
    };
    writeFileSync(join(dir, 'root.pem'), ca.trustBundle.pem);
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = { ...(pair.publicKey.export({ format: 'jwk' }) as JWK), kid: 'k1', alg: 'ES256' };
    const token = await new SignJWT({ iss: 'https://issuer.bench.example', sub: 'bench', aud: 'httpbin', exp: Math.floor(Date.now() / 1000) + 86_400 })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(pair.privateKey);

    const appPort = await freePort();
    const app = spawnLogged('app', process.execPath, ['-e', APP, String(appPort)]);
    await waitForPort('127.0.0.1', appPort, 10_000);

    // Two sidecars.
    const serverHost = '127.0.77.2';
    const upPort = await freePort();
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'p.yaml'), policies(JSON.stringify({ keys: [jwk] })));
    writeFileSync(join(dir, 'mesh.yaml'), `workloads:
- {name: httpbin, serviceAccount: httpbin, labels: {app: httpbin}, address: ${serverHost}, ports: [{name: http, port: 8000, targetPort: ${appPort}}]}
- {name: sleep, serviceAccount: sleep, labels: {app: sleep}, address: 127.0.77.3}
services:
- {name: httpbin, selector: {app: httpbin}, ports: [{name: http, port: 8000}]}
`);
    const common = ['--mesh', join(dir, 'mesh.yaml'), '--config', join(dir, 'policies'), '--ca', join(dir, 'ca'), '--workers', SIDECAR_WORKERS, ...SIDECAR_ARGS];
    const server = spawnLogged('server-sidecar', process.execPath, [...SIDECAR_NODE_FLAGS, cli, 'proxy', ...common, '--workload', 'default/httpbin']);
    const client = spawnLogged('client-sidecar', process.execPath, [...SIDECAR_NODE_FLAGS, cli, 'proxy', ...common, '--workload', 'default/sleep', '--upstream', `${upPort}=httpbin.default:8000`]);
    await waitForFile(join(dir, 'server-sidecar.log'), /"event":"ready"/, 30_000);
    await waitForFile(join(dir, 'client-sidecar.log'), /"event":"ready"/, 30_000);

    // Two nginx processes, when nginx is there.
    let nginxPids: { client: number; server: number } | undefined;
    const nginxPort = await freePort();
    if (nginx !== undefined) {
      const serverCert = await svidFiles('nginx-server', 'httpbin');
      const clientCert = await svidFiles('nginx-client', 'sleep');
      const nginxServerPort = 8443;
      const conf = (name: string, body: string): string => {
        const d = join(dir, name);
        mkdirSync(d, { recursive: true });
        writeFileSync(join(d, 'nginx.conf'), `daemon off;
master_process off;
worker_processes 1;
error_log ${d}/error.log warn;
pid ${d}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log ${d}/access.log;
  client_body_temp_path ${d}/body;
  proxy_temp_path ${d}/proxy;
  fastcgi_temp_path ${d}/fastcgi;
  uwsgi_temp_path ${d}/uwsgi;
  scgi_temp_path ${d}/scgi;
  keepalive_requests 1000000;
  ${body}
}
`);
        return d;
      };
      const serverDir = conf('nginx-server', `upstream app { server 127.0.0.1:${appPort}; keepalive 64; }
  server {
    listen ${serverHost.replace(/\.2$/, '.4')}:${nginxServerPort} ssl;
    ssl_certificate ${serverCert.cert};
    ssl_certificate_key ${serverCert.key};
    ssl_client_certificate ${join(dir, 'root.pem')};
    ssl_verify_client on;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }`);
      const clientDir = conf('nginx-client', `upstream mesh { server ${serverHost.replace(/\.2$/, '.4')}:${nginxServerPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${nginxPort};
    location / {
      proxy_pass https://mesh;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_certificate ${clientCert.cert};
      proxy_ssl_certificate_key ${clientCert.key};
      proxy_ssl_trusted_certificate ${join(dir, 'root.pem')};
      proxy_ssl_session_reuse on;
    }
  }`);
      const ns = spawnLogged('nginx-server', nginx, ['-p', serverDir, '-c', join(serverDir, 'nginx.conf')]);
      const nc = spawnLogged('nginx-client', nginx, ['-p', clientDir, '-c', join(clientDir, 'nginx.conf')]);
      await waitForPort(serverHost.replace(/\.2$/, '.4'), nginxServerPort, 10_000);
      await waitForPort('127.0.0.1', nginxPort, 10_000);
      nginxPids = { server: ns.pid!, client: nc.pid! };
    } else {
      log('proxy: nginx is not installed (Debian package "nginx-light"): the nginx lines are left out');
    }

    // App to app: plain HTTPS, and rampart/node in both apps (mTLS, JWT and the same ten policies in-process).
    const pairApp = join(opts.root, '.bench-out', 'bench', 'pair-app.js');
    const inProcessHost = '127.0.77.5';
    writeFileSync(join(dir, 'mesh-in-process.yaml'), `workloads:
- {name: httpbin, serviceAccount: httpbin, labels: {app: httpbin}, address: ${inProcessHost}, ports: [{name: http, port: 8000}]}
- {name: sleep, serviceAccount: sleep, labels: {app: sleep}, address: 127.0.77.6}
services:
- {name: httpbin, selector: {app: httpbin}, ports: [{name: http, port: 8000}]}
`);
    const httpsCert = await svidFiles('https-back', 'httpbin');
    const [httpsBackPort, httpsFrontPort, inProcessFrontPort] = [await freePort(), await freePort(), await freePort()];
    const inProcessFiles = { mesh: join(dir, 'mesh-in-process.yaml'), config: [join(dir, 'policies')], ca: join(dir, 'ca') };
    const pairSpawn = (name: string, role: string, mode: string, cfg: Record<string, unknown>): ChildProcess =>
      spawnLogged(name, process.execPath, [...PAIR_NODE_FLAGS, pairApp, role, mode, JSON.stringify({ bodyBytes: BODY_BYTES, ...cfg })]);
    const httpsBack = pairSpawn('https-back', 'back', 'https', { listenHost: '127.0.0.1', listenPort: httpsBackPort, keyFile: httpsCert.key, certFile: httpsCert.cert });
    const httpsFront = pairSpawn('https-front', 'front', 'https', { listenHost: '127.0.0.1', listenPort: httpsFrontPort, backUrl: `https://127.0.0.1:${httpsBackPort}/echo`, rootFile: join(dir, 'root.pem') });
    const inProcessBack = pairSpawn('in-process-back', 'back', 'in-process', { listenHost: inProcessHost, listenPort: 8000, workload: 'default/httpbin', ...inProcessFiles });
    const inProcessFront = pairSpawn('in-process-front', 'front', 'in-process', { listenHost: '127.0.0.1', listenPort: inProcessFrontPort, backUrl: 'http://httpbin.default:8000/echo', workload: 'default/sleep', ...inProcessFiles });
    for (const name of ['https-back', 'https-front', 'in-process-back', 'in-process-front']) await waitForFile(join(dir, `${name}.log`), /"event":"listening"/, 30_000);

    // Captured and explicit pairs in network namespaces (root only).
    const netnsTargets: Partial<Record<PathRound['path'], { url: string; pids: Array<[string, number]>; netns: string }>> = {};
    const netnsWhy = await meshHostsUnavailable();
    if (netnsWhy !== undefined) log(`proxy: no network namespaces (${netnsWhy}): the captured pair is left out`);
    else {
      const meshText = (a: Record<string, string>): string => `workloads:
- {name: httpbin, serviceAccount: httpbin, labels: {app: httpbin, variant: cap}, address: ${a['httpbin'] ?? '10.0.0.1'}, ports: [{name: http, port: 8000, targetPort: 8000}]}
- {name: sleep, serviceAccount: sleep, labels: {app: sleep, variant: cap}, address: ${a['sleep'] ?? '10.0.0.2'}}
- {name: httpbinx, serviceAccount: httpbin, labels: {app: httpbin, variant: exp}, address: ${a['httpbinx'] ?? '10.0.0.3'}, ports: [{name: http, port: 8000, targetPort: 18000}]}
- {name: sleepx, serviceAccount: sleep, labels: {app: sleep, variant: exp}, address: ${a['sleepx'] ?? '10.0.0.4'}}
- {name: httpbint, serviceAccount: httpbin, labels: {app: httpbin, variant: ct}, address: ${a['httpbint'] ?? '10.0.0.5'}, ports: [{name: http, port: 8000, targetPort: 18000}]}
- {name: sleept, serviceAccount: sleep, labels: {app: sleep, variant: ct}, address: ${a['sleept'] ?? '10.0.0.6'}}
services:
- {name: httpbin, selector: {app: httpbin, variant: cap}, ports: [{name: http, port: 8000}]}
- {name: httpbinx, selector: {app: httpbin, variant: exp}, ports: [{name: http, port: 8000}]}
- {name: httpbint, selector: {app: httpbin, variant: ct}, ports: [{name: http, port: 8000}]}
`;
      hosts = await MeshHosts.create(parseMeshFile(meshText({}), 'mesh.yaml').mesh.workloads, 'rb-');
      const at = Object.fromEntries(hosts.hosts.map((h) => [h.workload.name, h]));
      writeFileSync(join(dir, 'mesh-netns.yaml'), meshText(Object.fromEntries(hosts.hosts.map((h) => [h.workload.name, h.address]))));
      const netnsCommon = ['--mesh', join(dir, 'mesh-netns.yaml'), '--config', join(dir, 'policies'), '--ca', join(dir, 'ca'), ...SIDECAR_ARGS];
      const inNetns = (name: string, netns: string, args: readonly string[], gid?: number): ChildProcess => {
        const out = openSync(join(dir, `${name}.log`), 'w');
        const c = spawn('ip', ['netns', 'exec', netns, ...args], { stdio: ['ignore', out, out], ...(gid === undefined ? {} : { gid }) });
        children.push(c);
        return c;
      };
      inNetns('cap-app', at['httpbin']!.netns, [process.execPath, '-e', APP, '8000']);
      inNetns('exp-app', at['httpbinx']!.netns, [process.execPath, '-e', APP, '18000']);
      inNetns('ct-app', at['httpbint']!.netns, [process.execPath, '-e', APP, '18000']);
      for (const w of ['httpbin', 'sleep']) await applyCapture(DEFAULT_CAPTURE, { netns: at[w]!.netns });
      // Rules that redirect nothing: conntrack on, no capture.
      for (const w of ['httpbint', 'sleept']) await applyCapture({ ...DEFAULT_CAPTURE, includeInboundPorts: [], includeOutboundCidrs: [] }, { netns: at[w]!.netns });
      const gid = DEFAULT_CAPTURE.proxyGid;
      const capServer = inNetns('cap-server-sidecar', at['httpbin']!.netns, [process.execPath, ...SIDECAR_NODE_FLAGS, cli, 'proxy', ...netnsCommon, '--workload', 'default/httpbin', '--capture', '--hosts-file', at['httpbin']!.hostsFile], gid);
      const capClient = inNetns('cap-client-sidecar', at['sleep']!.netns, [process.execPath, ...SIDECAR_NODE_FLAGS, cli, 'proxy', ...netnsCommon, '--workload', 'default/sleep', '--capture', '--hosts-file', at['sleep']!.hostsFile], gid);
      const expUp = await freePort();
      const expServer = inNetns('exp-server-sidecar', at['httpbinx']!.netns, [process.execPath, ...SIDECAR_NODE_FLAGS, cli, 'proxy', ...netnsCommon, '--workload', 'default/httpbinx']);
      const expClient = inNetns('exp-client-sidecar', at['sleepx']!.netns, [process.execPath, ...SIDECAR_NODE_FLAGS, cli, 'proxy', ...netnsCommon, '--workload', 'default/sleepx', '--upstream', `${expUp}=httpbinx.default:8000`]);
      const ctUp = await freePort();
      const ctServer = inNetns('ct-server-sidecar', at['httpbint']!.netns, [process.execPath, ...SIDECAR_NODE_FLAGS, cli, 'proxy', ...netnsCommon, '--workload', 'default/httpbint']);
      const ctClient = inNetns('ct-client-sidecar', at['sleept']!.netns, [process.execPath, ...SIDECAR_NODE_FLAGS, cli, 'proxy', ...netnsCommon, '--workload', 'default/sleept', '--upstream', `${ctUp}=httpbint.default:8000`]);
      for (const name of ['cap-server-sidecar', 'cap-client-sidecar', 'exp-server-sidecar', 'exp-client-sidecar', 'ct-server-sidecar', 'ct-client-sidecar']) await waitForFile(join(dir, `${name}.log`), /"event":"ready"/, 30_000);
      netnsTargets.captured = { url: 'http://httpbin.default:8000/echo', netns: at['sleep']!.netns, pids: [['captured client sidecar', capClient.pid!], ['captured server sidecar', capServer.pid!]] };
      netnsTargets['explicit-netns'] = { url: `http://127.0.0.1:${expUp}/echo`, netns: at['sleepx']!.netns, pids: [['explicit-netns client sidecar', expClient.pid!], ['explicit-netns server sidecar', expServer.pid!]] };
      netnsTargets['explicit-conntrack'] = { url: `http://127.0.0.1:${ctUp}/echo`, netns: at['sleept']!.netns, pids: [['explicit-conntrack client sidecar', ctClient.pid!], ['explicit-conntrack server sidecar', ctServer.pid!]] };
    }

    const script = (rate: boolean): string => {
      const f = join(dir, `wrk-${rate ? 'rate' : 'peak'}.lua`);
      writeFileSync(f, `wrk.method = "POST"
wrk.body = string.rep("a", ${BODY_BYTES})
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Host"] = "httpbin.default:8000"
wrk.headers["Authorization"] = "Bearer ${token}"
${rate ? `function delay() return ${RATE_DELAY_MS} end` : ''}
`);
      return f;
    };
    const targets = {
      direct: { url: `http://127.0.0.1:${appPort}/echo`, pids: [] as Array<[string, number]> },
      rampart: { url: `http://127.0.0.1:${upPort}/echo`, pids: [['client sidecar', client.pid!], ['server sidecar', server.pid!]] as Array<[string, number]> },
      https: { url: `http://127.0.0.1:${httpsFrontPort}/echo`, pids: [['https front app', httpsFront.pid!], ['https back app', httpsBack.pid!]] as Array<[string, number]> },
      'in-process': { url: `http://127.0.0.1:${inProcessFrontPort}/echo`, pids: [['in-process front app', inProcessFront.pid!], ['in-process back app', inProcessBack.pid!]] as Array<[string, number]> },
      ...(nginxPids === undefined ? {} : { nginx: { url: `http://127.0.0.1:${nginxPort}/echo`, pids: [['nginx client', nginxPids.client], ['nginx server', nginxPids.server]] as Array<[string, number]> } }),
      ...netnsTargets,
    } as Record<PathRound['path'], { url: string; pids: Array<[string, number]>; netns?: string }>;

    // wrk runs where the path's client app would: in its namespace for the namespace paths.
    const runWrk = (url: string, rate: boolean, seconds: number, netns?: string): WrkResult => {
      const args = ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', '-s', script(rate), url];
      return parseWrk(netns === undefined ? execFileSync(wrk, args, { encoding: 'utf8' }) : execFileSync('ip', ['netns', 'exec', netns, wrk, ...args], { encoding: 'utf8' }));
    };

    // Warm-up: JIT, pools, the JWT cache, TLS sessions.
    for (const [name, t] of Object.entries(targets)) {
      const w = runWrk(t.url, false, quick ? 1 : 2, t.netns);
      if (w.non2xx > 0 || w.errors > 0 || !(w.requests > 0)) throw new Error(`proxy bench: ${name} warm-up failed: ${JSON.stringify(w)} (logs in ${dir})`);
    }
    if (process.env['RAMPART_BENCH_HOLD'] === '1') {
      // For profiling by hand: the processes stay up, warmed, until SIGINT.
      log(`holding: ${JSON.stringify({ targets, script: script(false), rateScript: script(true), dir })}`);
      await new Promise((r) => process.once('SIGINT', r));
    }
    const rounds: PathRound[] = [];
    const privatePeak: Record<string, number> = {};
    const samplePrivate = (): void => {
      for (const t of Object.values(targets)) for (const [name, pid] of t.pids) privatePeak[name] = Math.max(privatePeak[name] ?? 0, privateMB(pid));
    };
    // RAMPART_BENCH_ROUNDS and RAMPART_BENCH_PATHS (comma-separated) narrow a run to more rounds of fewer paths.
    const roundsPerLoad = Number(process.env['RAMPART_BENCH_ROUNDS'] ?? (quick ? 1 : 2));
    const only = process.env['RAMPART_BENCH_PATHS']?.split(',');
    for (const load of ['peak', 'rate'] as const) {
      for (let round = 0; round < roundsPerLoad; round++) {
        for (const [path, t] of Object.entries(targets) as Array<[PathRound['path'], { url: string; pids: Array<[string, number]>; netns?: string }]>) {
          if (only !== undefined && !only.includes(path)) continue;
          const before = t.pids.map(([, pid]) => cpuSeconds(pid));
          const w = runWrk(t.url, load === 'rate', durationSeconds, t.netns);
          const processes = t.pids.map(([name, pid], i) => {
            const used = cpuSeconds(pid) - before[i]!;
            return { name, cpuSeconds: used, cpuSecondsPer1000: (used / w.requests) * 1000 };
          });
          rounds.push({ path, load, round, wrk: w, processes });
          samplePrivate();
          log(`  ${load} ${path} round ${round + 1}: ${Math.round(w.perSecond)}/s, p90 ${w.p90Ms} ms, p99 ${w.p99Ms} ms${w.non2xx + w.errors > 0 ? `, ${w.non2xx} non-2xx, ${w.errors} errors` : ''}`);
          if (w.non2xx > 0 || w.errors > 0) throw new Error(`proxy bench: ${path} had failures: ${JSON.stringify(w)} (logs in ${dir})`);
        }
      }
    }
    const peak: Record<string, number> = {
      app: peakRssMB(app.pid!), 'client sidecar': peakRssMB(client.pid!), 'server sidecar': peakRssMB(server.pid!),
      'https front app': peakRssMB(httpsFront.pid!), 'https back app': peakRssMB(httpsBack.pid!),
      'in-process front app': peakRssMB(inProcessFront.pid!), 'in-process back app': peakRssMB(inProcessBack.pid!),
    };
    if (nginxPids !== undefined) Object.assign(peak, { 'nginx client': peakRssMB(nginxPids.client), 'nginx server': peakRssMB(nginxPids.server) });
    for (const t of Object.values(netnsTargets)) for (const [name, pid] of t.pids) peak[name] = peakRssMB(pid);
    return { durationSeconds, rounds, peakRssMB: peak, peakPrivateMB: privatePeak, targets: [...proxyTargets(rounds, peak), ...inProcessTargets(rounds, privatePeak), ...captureTargets(rounds)], nginx: nginxPids !== undefined };
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    await hosts?.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}


function summary(rounds: readonly PathRound[], path: PathRound['path'], load: PathRound['load']): { perSecond: number; p50: number; p90: number; p99: number; cpu: Record<string, number> } | undefined {
  const rs = rounds.filter((r) => r.path === path && r.load === load);
  if (rs.length === 0) return undefined;
  const cpu: Record<string, number> = {};
  for (const name of new Set(rs.flatMap((r) => r.processes.map((p) => p.name)))) cpu[name] = median(rs.map((r) => r.processes.find((p) => p.name === name)!.cpuSecondsPer1000));
  return { perSecond: median(rs.map((r) => r.wrk.perSecond)), p50: median(rs.map((r) => r.wrk.p50Ms)), p90: median(rs.map((r) => r.wrk.p90Ms)), p99: median(rs.map((r) => r.wrk.p99Ms)), cpu };
}

function proxyTargets(rounds: readonly PathRound[], peak: Readonly<Record<string, number>>): Array<{ target: string; measured: string; met: boolean }> {
  const out: Array<{ target: string; measured: string; met: boolean }> = [];
  const dr = summary(rounds, 'direct', 'rate');
  const rr = summary(rounds, 'rampart', 'rate');
  const rp = summary(rounds, 'rampart', 'peak');
  const np = summary(rounds, 'nginx', 'peak');
  if (dr !== undefined && rr !== undefined) {
    const added = rr.p90 - dr.p90;
    out.push({ target: `full path at ~1,000 req/s: added p90 over direct < ${TARGET_ADDED_P90_MS} ms`, measured: `+${added.toFixed(2)} ms (${rr.p90.toFixed(2)} vs ${dr.p90.toFixed(2)} ms, at ${Math.round(rr.perSecond)} req/s)`, met: added < TARGET_ADDED_P90_MS });
    for (const [name, v] of Object.entries(rr.cpu)) {
      out.push({ target: `${name}: CPU-seconds per 1,000 requests < ${TARGET_CPU_S_PER_1000}`, measured: v.toFixed(3), met: v < TARGET_CPU_S_PER_1000 });
    }
  }
  for (const name of ['client sidecar', 'server sidecar']) {
    const mb = peak[name];
    if (mb !== undefined) out.push({ target: `${name}: peak RSS < ${TARGET_RSS_MB} MB`, measured: `${mb.toFixed(1)} MB`, met: mb < TARGET_RSS_MB });
  }
  if (rp !== undefined && np !== undefined) {
    const q = rp.perSecond / np.perSecond;
    out.push({ target: `peak throughput ≥ ${TARGET_PEAK_VS_NGINX}× the nginx pair's`, measured: `${q.toFixed(2)}× (${Math.round(rp.perSecond)} vs ${Math.round(np.perSecond)} req/s)`, met: q >= TARGET_PEAK_VS_NGINX });
    const p = rp.p99 / np.p99;
    out.push({ target: `p99 at peak ≤ ${TARGET_P99_VS_NGINX}× the nginx pair's`, measured: `${p.toFixed(2)}× (${rp.p99.toFixed(2)} vs ${np.p99.toFixed(2)} ms)`, met: p <= TARGET_P99_VS_NGINX });
  }
  return out;
}

export const TARGET_IN_PROCESS_ADDED_P90_MS = 0.3;
export const TARGET_IN_PROCESS_CPU_VS_SIDECARS = 1 / 3;
export const TARGET_IN_PROCESS_EXTRA_MB = 15;

/**
 * rampart/node against plain HTTPS app to app, in the same run: the added p90 at ~1,000 req/s; the CPU the two apps
 * spend on top of plain HTTPS against what the two sidecars spend; the back app's private memory over the plain
 * HTTPS back app's.
 */
/** Capture must add under 5 % CPU per request over the explicit pair (both sidecars, the same namespaces' layout). */
export const TARGET_CAPTURE_CPU_OVER_EXPLICIT = 0.05;

function captureTargets(rounds: readonly PathRound[]): Array<{ target: string; measured: string; met: boolean }> {
  const out: Array<{ target: string; measured: string; met: boolean }> = [];
  for (const load of ['rate', 'peak'] as const) {
    const c = summary(rounds, 'captured', load);
    const e = summary(rounds, 'explicit-netns', load);
    const l = summary(rounds, 'rampart', load);
    const t = summary(rounds, 'explicit-conntrack', load);
    if (c === undefined || e === undefined) continue;
    const both = (x: { cpu: Record<string, number> }): number => Object.values(x.cpu).reduce((a, b) => a + b, 0);
    const pct = (x: number): string => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)} %`;
    const over = both(c) / both(e) - 1;
    out.push({
      target: `captured pair ${load === 'rate' ? 'at ~1,000 req/s' : 'at peak'}: sidecar CPU per request < ${(TARGET_CAPTURE_CPU_OVER_EXPLICIT * 100).toFixed(0)} % over the explicit pair`,
      measured: `${pct(over)} (${both(c).toFixed(3)} vs ${both(e).toFixed(3)} CPU-s per 1,000 requests, both sidecars; floor, the explicit pair with conntrack on: ${t === undefined ? '-' : `${both(t).toFixed(3)}, ${pct(both(t) / both(e) - 1)}`}; loopback explicit pair ${l === undefined ? '-' : both(l).toFixed(3)}; p90 ${c.p90.toFixed(2)} vs ${e.p90.toFixed(2)} ms, ${Math.round(c.perSecond)} vs ${Math.round(e.perSecond)} req/s)`,
      met: over < TARGET_CAPTURE_CPU_OVER_EXPLICIT,
    });
  }
  return out;
}

function inProcessTargets(rounds: readonly PathRound[], privatePeak: Readonly<Record<string, number>>): Array<{ target: string; measured: string; met: boolean }> {
  const out: Array<{ target: string; measured: string; met: boolean }> = [];
  const hr = summary(rounds, 'https', 'rate');
  const ir = summary(rounds, 'in-process', 'rate');
  const rr = summary(rounds, 'rampart', 'rate');
  if (hr === undefined || ir === undefined) return out;
  const added = ir.p90 - hr.p90;
  out.push({ target: `in-process at ~1,000 req/s: added p90 over plain HTTPS app to app < ${TARGET_IN_PROCESS_ADDED_P90_MS} ms`, measured: `+${added.toFixed(2)} ms (${ir.p90.toFixed(2)} vs ${hr.p90.toFixed(2)} ms)`, met: added < TARGET_IN_PROCESS_ADDED_P90_MS });
  const sum = (c: Record<string, number>): number => Object.values(c).reduce((a, b) => a + b, 0);
  const extraCpu = sum(ir.cpu) - sum(hr.cpu);
  if (rr !== undefined) {
    const sidecars = sum(rr.cpu);
    out.push({
      target: `in-process CPU per request over plain HTTPS < ${TARGET_IN_PROCESS_CPU_VS_SIDECARS.toFixed(2)}× the sidecar pair's`,
      measured: `${(extraCpu / sidecars).toFixed(2)}× (${extraCpu.toFixed(3)} vs ${sidecars.toFixed(3)} CPU-s per 1,000)`, met: extraCpu < sidecars * TARGET_IN_PROCESS_CPU_VS_SIDECARS,
    });
  }
  for (const side of ['front', 'back']) {
    const a = privatePeak[`in-process ${side} app`];
    const b = privatePeak[`https ${side} app`];
    if (a === undefined || b === undefined) continue;
    out.push({ target: `in-process ${side} app: private memory over the plain HTTPS app's < ${TARGET_IN_PROCESS_EXTRA_MB} MB`, measured: `+${(a - b).toFixed(1)} MB (${a.toFixed(1)} vs ${b.toFixed(1)} MB)`, met: a - b < TARGET_IN_PROCESS_EXTRA_MB });
  }
  return out;
}

export function proxyReport(r: ProxyResults, quick: boolean): string {
  if (r.skipped !== undefined) return `\nData path (proxy): skipped — ${r.skipped}\n`;
  const rows: string[][] = [];
  for (const load of ['peak', 'rate'] as const) {
    const direct = summary(r.rounds, 'direct', load);
    const nginx = summary(r.rounds, 'nginx', load);
    for (const path of ['direct', 'rampart', 'nginx', 'https', 'in-process'] as const) {
      const s = summary(r.rounds, path, load);
      if (s === undefined) continue;
      rows.push([
        load === 'peak' ? 'full speed' : '~1,000 req/s', path, Math.round(s.perSecond).toLocaleString('en-US'), s.p50.toFixed(2), s.p90.toFixed(2), s.p99.toFixed(2),
        direct === undefined ? '' : `${(s.perSecond / direct.perSecond).toFixed(2)}×`, nginx === undefined ? '' : `${(s.perSecond / nginx.perSecond).toFixed(2)}×`,
        Object.entries(s.cpu).map(([n, v]) => `${n} ${v.toFixed(3)}`).join(', '),
      ]);
    }
  }
  const head = ['load', 'path', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', '× direct', '× nginx', 'CPU s per 1,000 requests'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i >= 2 && i <= 7 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const table = [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
  const rss = Object.entries(r.peakRssMB).map(([n, v]) => `${n} ${v.toFixed(1)} MB`).join(', ');
  const priv = Object.entries(r.peakPrivateMB).map(([n, v]) => `${n} ${v.toFixed(1)} MB`).join(', ');
  const targets = r.targets.map((t) => `${t.met ? 'met    ' : 'MISSED '} ${t.target}: ${t.measured}`).join('\n');
  return `\nData path${quick ? ' (--quick: short runs)' : ''}: wrk -t1 -c${CONNECTIONS}, POST ${BODY_BYTES} B, app answers ${BODY_BYTES} B; ` +
    `${r.durationSeconds} s per run, medians of the rounds${r.nginx ? '' : '; nginx not installed, its lines left out'}\n${table}\npeak RSS: ${rss}\nprivate memory (anonymous pages, largest after a round; RSS less the shared executable): ${priv}\n\nData-path targets\n${targets}\n`;
}
