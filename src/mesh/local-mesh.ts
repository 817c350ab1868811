import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK } from 'jose';
import { RampartError } from '../errors.ts';
import { readLines } from '../control/protocol.ts';
import { hostnameOf, isLoopbackHost } from '../control/admin.ts';
import { ControlPlane } from '../control/server.ts';
import { buildMeshState } from '../control/snapshot.ts';
import { DEMO_FILE_NAME, DirectorySource, MESH_FILE_NAME } from '../control/source.ts';
import { CertificateAuthority, createSelfSignedCa } from '../identity/ca.ts';
import { writeCaDir } from '../io/ca-dir.ts';
import { listenExplained, type ListenPurpose } from '../io/listen.ts';
import { persistentLedger } from '../io/token-ledger.ts';
import type { AccessEntry } from '../proxy/inbound.ts';
import { findWorkload, type MeshFile, type MeshWorkload } from '../resources/mesh-file.ts';
import type { EventLog } from '../telemetry/jwks.ts';
import { EMPTY_DEMO, parseDemoConfig, type DemoConfig } from './demo-config.ts';
import { MeshHosts, type MeshHost } from './mesh-hosts.ts';
import { PlacedSource } from './placed-source.ts';
import { echoApp } from './echo-app.ts';
import { applyCapture } from '../capture/apply.ts';
import { DEFAULT_CAPTURE } from '../capture/rules.ts';
import { execFile } from 'node:child_process';

/**
 * `rampart up`: a whole mesh on one machine. The control plane runs in this process with a fresh CA; every workload
 * of the mesh file gets a `rampart proxy` child process that takes its SVID and configuration from it (a bootstrap
 * token each); demo.yaml adds echo apps, client HTTP proxy ports and a local JWT issuer. Inbound access entries of
 * all sidecars come back as events, for the live lines and the walk-through.
 */

/** Claims the demo issuer sets itself. */
const REGISTERED_CLAIMS: readonly string[] = ['iss', 'aud', 'exp', 'iat', 'nbf', 'jti'];

export class LocalMeshError extends RampartError {}

/** One inbound access entry of a sidecar as its log line carries it (the time as text), and whose sidecar it is. */
export type MeshAccess = Omit<AccessEntry, 'start'> & { readonly workload: string; readonly time: string };

export interface LocalMeshOptions {
  readonly dir: string;
  readonly controlPlanePort: number;
  readonly adminPort: number;
  /** How to run `rampart proxy` (the running CLI by default). */
  readonly proxyCommand?: { readonly command: string; readonly args: readonly string[] };
  /** Human-readable lines: what starts, control plane changes, sidecar errors. */
  readonly say: (line: string) => void;
  readonly svidTtlMs?: number;
  /**
   * Where the workloads run: `netns`, each in a network namespace of its own with its traffic captured (Linux, as
   * root: see mesh-hosts.ts); `loopback` (the default), on loopback addresses of this machine, the apps pointed at
   * their sidecars by an HTTP proxy port.
   */
  readonly hosts?: 'netns' | 'loopback';
  /** Prefix of the namespaces' names (none by default: `ip netns exec sleep`). */
  readonly netnsPrefix?: string;
}

/** The sidecar's group under capture: its own connections are not captured (Istio's proxy gid). */
const SIDECAR_GID = DEFAULT_CAPTURE.proxyGid;

interface SidecarProcess {
  readonly workload: MeshWorkload;
  readonly child: ChildProcess;
  ready: boolean;
  stderr: string;
}

export class LocalMesh {
  readonly #o: LocalMeshOptions;
  #state: string | undefined;
  #cp: ControlPlane | undefined;
  #sidecars: SidecarProcess[] = [];
  #servers: http.Server[] = [];
  #issuerKey: KeyObject | undefined;
  #demo: DemoConfig = EMPTY_DEMO;
  #mesh: MeshFile | undefined;
  #hosts: MeshHosts | undefined;
  readonly #children: ChildProcess[] = [];
  readonly #accessListeners = new Set<(a: MeshAccess) => void>();
  #stopping = false;

  constructor(options: LocalMeshOptions) {
    this.#o = options;
  }

  get demo(): DemoConfig {
    return this.#demo;
  }

  get mesh(): MeshFile {
    if (this.#mesh === undefined) throw new LocalMeshError('ERR_MESH_NOT_STARTED', 'the mesh is not started');
    return this.#mesh;
  }

  /** The workloads' network namespaces (netns hosts), after start. */
  get hosts(): MeshHosts | undefined {
    return this.#hosts;
  }

  get controlPlane(): ControlPlane | undefined {
    return this.#cp;
  }

  onAccess(listener: (a: MeshAccess) => void): () => void {
    this.#accessListeners.add(listener);
    return () => this.#accessListeners.delete(listener);
  }

  workload(ref: string): MeshWorkload {
    const w = findWorkload(this.mesh, ref);
    if (w === undefined) throw new LocalMeshError('ERR_DEMO_WORKLOAD', `workload ${ref} (demo.yaml) is not in the mesh file`);
    return w;
  }

  /** The outbound (HTTP proxy) port of a client workload's sidecar. */
  outboundPort(ref: string): number {
    const c = this.#demo.clients.find((x) => x.workload === ref);
    if (c === undefined) throw new LocalMeshError('ERR_DEMO_WORKLOAD', `workload ${ref} has no outboundPort in demo.yaml`);
    return c.outboundPort;
  }

  /**
   * A token from the demo issuer: valid for `ttlSeconds` (an hour by default), or expired ten minutes ago; `claims`
   * are added beside the registered ones, which they cannot replace.
   */
  async token(kind: 'valid' | 'expired', subject = 'demo-user', claims: Readonly<Record<string, string | string[]>> = {}, ttlSeconds = 3_600): Promise<string> {
    const issuer = this.#demo.issuer;
    if (issuer === undefined || this.#issuerKey === undefined) throw new LocalMeshError('ERR_DEMO_ISSUER', 'demo.yaml declares no issuer');
    const now = Math.floor(Date.now() / 1000);
    // Expired by more than the 60 s of clock skew that Envoy's JWT filter (and Rampart) tolerate.
    const [iat, exp] = kind === 'valid' ? [now, now + ttlSeconds] : [now - 3_600, now - 600];
    return new SignJWT({ ...claims }).setProtectedHeader({ alg: 'ES256', kid: 'demo' }).setIssuer(issuer.iss).setSubject(subject).setAudience(issuer.audience)
      .setIssuedAt(iat).setExpirationTime(exp).sign(this.#issuerKey);
  }

  async start(): Promise<void> {
    const o = this.#o;
    let source: DirectorySource | PlacedSource = new DirectorySource(o.dir);
    // The control plane reads the same directory again when it starts; this read names the workloads to run.
    this.#mesh = buildMeshState(await source.read(), undefined).mesh;
    if (o.hosts === 'netns') {
      this.#hosts = await MeshHosts.create(this.#mesh.workloads, o.netnsPrefix ?? '');
      source = new PlacedSource(source, new Map(this.#hosts.hosts.map((h) => [`${h.workload.namespace}/${h.workload.name}`, h.address])));
      this.#mesh = buildMeshState(await source.read(), undefined).mesh;
      o.say(`network namespaces: ${this.#hosts.hosts.map((h) => `${h.netns} ${h.address}`).join(', ')} on bridge ${this.#hosts.bridge} (${this.#hosts.gateway})`);
    }
    const hosts = this.#hosts;
    const demoFile = join(o.dir, DEMO_FILE_NAME);
    if (existsSync(demoFile)) this.#demo = parseDemoConfig(await readFile(demoFile, 'utf8'), demoFile);
    for (const ref of [...this.#demo.apps, ...this.#demo.clients.map((c) => c.workload)]) this.workload(ref);

    // A fresh CA for this run, kept in a temporary directory with the tokens and removed at the end.
    this.#state = await mkdtemp(join(tmpdir(), 'rampart-up-'));
    const trustDomain = this.#mesh.mesh.trustDomain;
    const material = await createSelfSignedCa({ trustDomain });
    await writeCaDir(join(this.#state, 'ca'), material, false);
    const ca = new CertificateAuthority(material, { trustDomain, trustDomainAliases: this.#mesh.mesh.trustDomainAliases, usedTokens: persistentLedger(join(this.#state, 'ca')) });

    if (this.#demo.issuer !== undefined) await this.#startIssuer(this.#demo.issuer);
    const cmd = o.proxyCommand ?? { command: process.execPath, args: [...process.execArgv, process.argv[1]!] };
    for (const ref of this.#demo.apps) {
      for (const p of this.workload(ref).ports) {
        if (hosts === undefined) await this.#startEchoApp(ref, p.targetPort);
        else await this.#startEchoChild(hosts, hosts.host(this.workload(ref)), cmd, ref, p.targetPort);
      }
    }

    const cpLog: EventLog = {
      info: (f, m) => {
        const e = (f as { event?: string }).event;
        if (e === 'config-version') o.say(`control plane: ${m}`);
      },
      warn: (f, m) => {
        const e = (f as { event?: string }).event;
        if (e === 'proxy-nack' || e === 'subscribe-refused' || e === 'csr-refused') o.say(`control plane: ${m}`);
      },
      error: (f, m) => {
        o.say(`control plane: ${m}`);
        // A rejected change: each error with its file, line and field path.
        const errors = (f as { errors?: unknown }).errors;
        if (Array.isArray(errors)) for (const e of errors) o.say(`  ${String(e)}`);
      },
    };
    // In namespaces, the sidecars reach the control plane at the bridge's address (their 127.0.0.1 is their own).
    const cpHost = hosts?.gateway ?? '127.0.0.1';
    this.#cp = new ControlPlane({ source, ca, log: cpLog, port: o.controlPlanePort, host: cpHost, adminPort: o.adminPort, ...(o.svidTtlMs === undefined ? {} : { svidTtlMs: o.svidTtlMs }) });
    await this.#cp.start();
    o.say(`control plane on ${cpHost}:${this.#cp.port} (status: rampart status --admin http://127.0.0.1:${this.#cp.adminPort})`);
    o.say(`console: http://127.0.0.1:${this.#cp.adminPort}/console/`);

    await mkdir(join(this.#state, 'tokens'));
    for (const w of this.#mesh.workloads) {
      const ref = `${w.namespace}/${w.name}`;
      const tokenFile = join(this.#state, 'tokens', `${w.namespace}.${w.name}`);
      await writeFile(tokenFile, await ca.bootstrapToken(w.namespace, w.serviceAccount), { mode: 0o600 });
      const client = this.#demo.clients.find((c) => c.workload === ref);
      const host = hosts?.host(w);
      // Captured, the app's traffic reaches the sidecar by itself: no HTTP proxy port.
      const mode = host === undefined ? (client === undefined ? [] : ['--outbound-port', String(client.outboundPort)]) : ['--capture', '--hosts-file', host.hostsFile];
      const args = [...cmd.args, 'proxy', '--workload', ref, '--control-plane', `https://${cpHost}:${this.#cp.port}`, '--token', tokenFile,
        '--root-cert', join(this.#state, 'ca', 'root-cert.pem'), '--exit-with-parent', ...mode];
      if (host !== undefined) await applyCapture(DEFAULT_CAPTURE, { netns: host.netns });
      const run = host === undefined ? { command: cmd.command, args } : hosts!.exec(host, cmd.command, args);
      const child = spawn(run.command, run.args, { stdio: ['ignore', 'pipe', 'pipe'], ...(host === undefined ? {} : { gid: SIDECAR_GID }) });
      const sc: SidecarProcess = { workload: w, child, ready: false, stderr: '' };
      this.#sidecars.push(sc);
      this.#follow(sc);
    }
    await this.#allReady(60_000);
    // In the mesh file's order, whichever came up first.
    for (const sc of this.#sidecars) {
      const w = sc.workload;
      o.say(`sidecar ${w.namespace}/${w.name} ready (${w.address}${w.ports.length === 0 ? '' : `, ports ${w.ports.map((p) => p.port).join(', ')}`})`);
    }
  }

  async #allReady(timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const failed = this.#sidecars.find((s) => s.child.exitCode !== null);
      if (failed !== undefined) {
        const ref = `${failed.workload.namespace}/${failed.workload.name}`;
        // The sidecar names its flags; here they come from the mesh directory's files.
        const where = failed.stderr.includes('--outbound-port') ? ` (rampart up sets it from the outboundPort of ${ref} in ${join(this.#o.dir, DEMO_FILE_NAME)})`
          : failed.stderr.includes('in the mesh file') ? ` (rampart up reads ${join(this.#o.dir, MESH_FILE_NAME)})` : '';
        throw new LocalMeshError('ERR_SIDECAR_FAILED', `the sidecar of ${ref} exited (${failed.child.exitCode}): ${failed.stderr.trim().replace(/^rampart proxy: /, '')}${where}`);
      }
      if (this.#sidecars.every((s) => s.ready)) return;
      if (Date.now() > end) throw new LocalMeshError('ERR_SIDECAR_TIMEOUT', `sidecars not ready after ${timeoutMs / 1000} s: ${this.#sidecars.filter((s) => !s.ready).map((s) => s.workload.name).join(', ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  #follow(sc: SidecarProcess): void {
    const name = `${sc.workload.namespace}/${sc.workload.name}`;
    // Log lines are JSON; an access entry is a few hundred characters.
    readLines(sc.child.stdout!, 1 << 20, (line) => {
      let e: Record<string, unknown>;
      try {
        e = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (e['event'] === 'ready') {
        sc.ready = true;
      } else if (e['log'] === 'access' && e['kind'] !== 'outbound') {
        const a = e as unknown as MeshAccess;
        for (const l of this.#accessListeners) l({ ...a, workload: name });
      } else if (typeof e['level'] === 'number' && e['level'] >= 50 && !this.#stopping) {
        this.#o.say(`sidecar ${name}: ${String(e['msg'] ?? line)}`);
      }
    }, () => undefined);
    sc.child.stderr!.on('data', (c: Buffer) => (sc.stderr += c.toString('utf8')));
    sc.child.once('exit', (code) => {
      if (!this.#stopping && sc.ready) this.#o.say(`sidecar ${name} exited (${code}): ${sc.stderr.trim()}`);
    });
  }

  /**
   * A request as a client workload's app makes it, to `http://<service host><path>`: through its sidecar's HTTP
   * proxy port on loopback hosts; from inside its namespace with curl, captured, on netns hosts.
   */
  async request(from: string, serviceHost: string, path: string, headers: Readonly<Record<string, string>>): Promise<number | 'reset' | 'error'> {
    const hosts = this.#hosts;
    if (hosts === undefined) return httpStatus({ host: '127.0.0.1', port: this.outboundPort(from), path: `http://${serviceHost}${path}`, headers });
    const h = hosts.host(this.workload(from));
    // The same request from inside the namespace, by a node of its own (what an unchanged app there does).
    const script = `const http = require('node:http'); const [url, headers] = JSON.parse(process.argv[1]);
const req = http.request(url, { headers, agent: false }, (res) => { res.resume(); res.on('end', () => console.log(res.statusCode)); });
req.on('error', (err) => console.log(err.code === 'ECONNRESET' || err.message === 'socket hang up' ? 'reset' : 'error'));
req.setTimeout(5000, () => req.destroy(new Error('timeout'))); req.end();`;
    const run = hosts.exec(h, process.execPath, ['-e', script, JSON.stringify([`http://${serviceHost}${path}`, headers])]);
    return new Promise((resolve) => {
      execFile(run.command, run.args, (err, stdout) => {
        const out = stdout.trim();
        resolve(err !== null ? 'error' : out === 'reset' ? 'reset' : /^\d+$/.test(out) ? Number(out) : 'error');
      });
    });
  }

  async #startIssuer(issuer: NonNullable<DemoConfig['issuer']>): Promise<void> {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.#issuerKey = privateKey;
    const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'demo', alg: 'ES256', use: 'sig' }] });
    const server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://issuer');
      if (url.pathname === '/.well-known/jwks.json') res.writeHead(200, { 'content-type': 'application/json' }).end(jwks);
      else if (url.pathname === '/token') void this.#mint(req, url).then(
        (t) => res.writeHead(200, { 'content-type': 'application/jwt', 'cache-control': 'no-store' }).end(`${t}\n`),
        (err: Error) => res.writeHead(400, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
      else res.writeHead(404, { 'content-type': 'text/plain' }).end('the demo issuer serves /.well-known/jwks.json and /token\n');
    });
    await this.#listen(server, issuer.port, issuer.host, { what: "the demo JWT issuer's port", movedBy: `issuer.listen in ${join(this.#o.dir, DEMO_FILE_NAME)}` });
    const hosts = this.#hosts;
    if (hosts !== undefined && isLoopbackHost(issuer.host)) {
      // The sidecars in their namespaces fetch the keys from the address the policies name (127.0.0.1 here): the
      // same server on the bridge's address, and each namespace's 127.0.0.1:port forwarded to it.
      const bridged = http.createServer((req, res) => server.emit('request', req, res));
      await this.#listen(bridged, issuer.port, hosts.gateway, { what: "the demo JWT issuer's port on the namespaces' bridge", movedBy: `issuer.listen in ${join(this.#o.dir, DEMO_FILE_NAME)}` });
      await hosts.forwardLoopback([issuer.port]);
    }
    this.#o.say(`JWT issuer ${issuer.iss}: JWKS on http://${issuer.host}:${issuer.port}/.well-known/jwks.json`);
  }

  /**
   * `GET /token?sub=NAME&ttl=SECONDS&expired=1&CLAIM=VALUE…`: a token to try the JWT path with. A demo issuer's
   * convenience, so it answers only requests naming a loopback host (a web page cannot mint through DNS rebinding).
   */
  async #mint(req: http.IncomingMessage, url: URL): Promise<string> {
    const host = hostnameOf(req.headers.host);
    if (host === undefined || !isLoopbackHost(host)) throw new LocalMeshError('ERR_DEMO_TOKEN', `tokens are minted only for requests to 127.0.0.1 or localhost, not ${req.headers.host ?? '(no host)'}`);
    const claims: Record<string, string | string[]> = {};
    let sub = 'demo-user';
    let ttl = 3_600;
    for (const key of new Set(url.searchParams.keys())) {
      const values = url.searchParams.getAll(key);
      if (key === 'sub') sub = values[0] ?? sub;
      else if (key === 'ttl') {
        ttl = Number(values[0]);
        if (!Number.isInteger(ttl) || ttl < 1 || ttl > 86_400) throw new LocalMeshError('ERR_DEMO_TOKEN', `ttl: whole seconds from 1 to 86400, got ${values[0] ?? ''}`);
      } else if (key === 'expired') continue;
      else if (REGISTERED_CLAIMS.includes(key)) throw new LocalMeshError('ERR_DEMO_TOKEN', `${key} is set by the issuer; use sub, ttl, expired or claims of your own`);
      else claims[key] = values.length === 1 ? values[0]! : values;
    }
    return this.token(url.searchParams.has('expired') ? 'expired' : 'valid', sub, claims, ttl);
  }

  async #startEchoApp(ref: string, port: number): Promise<void> {
    const server = echoApp(ref);
    await this.#listen(server, port, '127.0.0.1', { what: `the demo app of ${ref}`, movedBy: `the targetPort of ${ref}'s port in ${join(this.#o.dir, MESH_FILE_NAME)}` });
  }

  /** The echo app of a workload in its namespace: a child process of this CLI (`rampart demo-app`). */
  async #startEchoChild(hosts: MeshHosts, host: MeshHost, cmd: { readonly command: string; readonly args: readonly string[] }, ref: string, port: number): Promise<void> {
    const run = hosts.exec(host, cmd.command, [...cmd.args, 'demo-app', '--workload', ref, '--port', String(port), '--exit-with-parent']);
    const child = spawn(run.command, run.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#children.push(child);
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
    const [ok] = await Promise.race([once(child.stdout!, 'data').then(() => [true]), once(child, 'exit').then(() => [false])]);
    if (ok !== true) throw new LocalMeshError('ERR_DEMO_APP', `the demo app of ${ref} in ${host.netns} exited: ${out.trim()}`);
  }

  async #listen(server: http.Server, port: number, host: string, purpose: ListenPurpose): Promise<void> {
    await listenExplained(server, port, host, purpose);
    this.#servers.push(server);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#sidecars.map(async (s) => {
      if (s.child.exitCode !== null || s.child.signalCode !== null) return;
      const exited = once(s.child, 'exit');
      s.child.kill('SIGTERM');
      const timer = setTimeout(() => s.child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }));
    for (const c of this.#children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await this.#cp?.stop();
    for (const s of this.#servers) {
      s.closeAllConnections();
      s.close();
    }
    // The namespaces go with their rules, their processes having stopped above.
    await this.#hosts?.remove();
    if (this.#state !== undefined) await rm(this.#state, { recursive: true, force: true });
  }
}

/** One request with no pool; its status, or how it failed (a reset is what a refused connection looks like). */
export function httpStatus(o: { host: string; port: number; path: string; headers: Readonly<Record<string, string>> }): Promise<number | 'reset' | 'error'> {
  return new Promise((resolve) => {
    const req = http.request({ ...o, headers: { ...o.headers }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNRESET' || err.message === 'socket hang up' ? 'reset' : 'error'));
    req.setTimeout(5_000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}
