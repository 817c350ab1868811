import { readFile } from 'node:fs/promises';
import { pino } from 'pino';
import { CertificateAuthority } from '../identity/ca.ts';
import { readCaDir } from '../io/ca-dir.ts';
import { persistentLedger } from '../io/token-ledger.ts';
import { ControlPlane } from '../control/server.ts';
import { buildMeshState } from '../control/snapshot.ts';
import { DirectorySource, type ConfigSource } from '../control/source.ts';
import { lifetime } from './lifetime.ts';
import { parseTtl } from './duration.ts';
import type { CommandOutput } from './check.ts';

export interface ControlPlaneCliOptions {
  /** The configuration directory; absent with `kubernetes`. */
  readonly dir?: string;
  /** Configuration from a Kubernetes cluster instead of a directory. */
  readonly kubernetes?: boolean;
  readonly kubeconfig?: string;
  readonly rootNamespace?: string;
  readonly ca: string;
  readonly host: string;
  readonly port: string;
  readonly adminPort: string;
  readonly adminHost?: string;
  readonly adminTokenFile?: string;
  readonly debounce: string;
  readonly svidTtl?: string;
}

function port(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${flag}: not a port: ${value}`);
  return n;
}

/** `rampart control-plane DIR --ca CADIR` (or `--kubernetes [--kubeconfig FILE]` instead of DIR): runs until SIGINT/SIGTERM; JSON log lines on standard output. */
export async function runControlPlane(o: ControlPlaneCliOptions): Promise<number> {
  const log = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime });
  let cp: ControlPlane;
  let kube: { stop(): void; reviewToken(token: string): Promise<{ namespace: string; serviceAccount: string } | undefined> } | undefined;
  try {
    if ((o.kubernetes === true) === (o.dir !== undefined)) throw new Error('give either a configuration directory or --kubernetes');
    if (o.kubeconfig !== undefined && o.kubernetes !== true) throw new Error('--kubeconfig goes with --kubernetes');
    const material = await readCaDir(o.ca);
    let source: ConfigSource;
    if (o.kubernetes === true) {
      // Loaded only here: the Kubernetes client is large, and nothing else needs it.
      const { KubernetesSource } = await import('../control/kubernetes-source.ts');
      const k = new KubernetesSource({
        ...(o.kubeconfig === undefined ? {} : { kubeconfig: o.kubeconfig }), ...(o.rootNamespace === undefined ? {} : { rootNamespace: o.rootNamespace }),
        onError: (kind, message) => log.warn({ event: 'kubernetes-unreachable', kind, error: message }, `Kubernetes: ${message} (retrying)`),
      });
      kube = k;
      await k.start();
      source = k;
    } else source = new DirectorySource(o.dir!);
    // The trust domain names the CA's identities; a mesh file with errors stops here with every diagnostic.
    const mesh = buildMeshState(await source.read(), undefined).mesh.mesh;
    const ca = new CertificateAuthority(material, { trustDomain: mesh.trustDomain, trustDomainAliases: mesh.trustDomainAliases, usedTokens: persistentLedger(o.ca) });
    const svidTtlMs = o.svidTtl === undefined ? undefined : parseTtl(o.svidTtl, '--svid-ttl');
    const adminToken = o.adminTokenFile === undefined ? undefined : await readToken(o.adminTokenFile, '--admin-token-file');
    cp = new ControlPlane({
      source, ca, log, host: o.host, port: port(o.port, '--port'), adminPort: port(o.adminPort, '--admin-port'),
      ...(o.adminHost === undefined ? {} : { adminHost: o.adminHost }), ...(adminToken === undefined ? {} : { adminToken }),
      debounceMs: parseTtl(o.debounce, '--debounce'), ...(svidTtlMs === undefined ? {} : { svidTtlMs }),
      // On a cluster, a pod's first CSR may carry its projected service-account token instead of a bootstrap token.
      ...(kube === undefined ? {} : { tokenReviewer: (t: string) => kube!.reviewToken(t) }),
    });
    await cp.start();
  } catch (err) {
    kube?.stop();
    process.stderr.write(`rampart control-plane: ${(err as Error).message}\n`);
    return 2;
  }
  const adminUrl = `http://${urlHost(o.adminHost ?? '127.0.0.1')}:${cp.adminPort}`;
  log.info({ event: 'ready', port: cp.port, admin: cp.adminPort, console: `${adminUrl}/console/`, identity: cp.identity.uri, version: cp.state?.version }, `control plane ready on ${o.host}:${cp.port} (console: ${adminUrl}/console/, status: ${adminUrl}/status)`);
  const reason = await lifetime().stopped;
  log.info({ event: 'stopping', reason }, `stopping (${reason})`);
  await cp.stop();
  kube?.stop();
  return 0;
}

/** A token file's content: one line, not empty. */
async function readToken(file: string, flag: string): Promise<string> {
  let text: string;
  try {
    text = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    throw new Error(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  if (text === '' || /\s/.test(text)) throw new Error(`${flag} ${file}: the file must hold one token (no spaces), not ${text === '' ? 'nothing' : 'several words'}`);
  return text;
}

function urlHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** `rampart status`: the control plane's view of its proxies. */
export async function runStatus(o: { readonly admin: string; readonly adminTokenFile?: string; readonly json?: boolean }): Promise<CommandOutput> {
  let body: string;
  let token: string | undefined;
  try {
    token = o.adminTokenFile === undefined ? undefined : await readToken(o.adminTokenFile, '--admin-token-file');
  } catch (err) {
    return { stdout: '', stderr: `rampart status: ${(err as Error).message}\n`, exitCode: 2 };
  }
  try {
    const res = await fetch(new URL('/status', o.admin), token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
    body = await res.text();
    if (res.status === 401) return { stdout: '', stderr: `rampart status: ${o.admin} needs its admin token (--admin-token-file FILE)${token === undefined ? '' : '; the one given was refused'}\n`, exitCode: 2 };
    if (!res.ok) return { stdout: '', stderr: `rampart status: ${o.admin} answered ${res.status}\n`, exitCode: 2 };
  } catch (err) {
    return { stdout: '', stderr: `rampart status: cannot reach the control plane at ${o.admin}: ${(err as Error).message}\n`, exitCode: 2 };
  }
  if (o.json === true) return { stdout: body, stderr: '', exitCode: 0 };
  const { formatStatus } = await import('../control/status-text.ts');
  const report = JSON.parse(body) as import('../control/protocol.ts').StatusReport;
  const text = formatStatus(report, new Date());
  // Exit 1 when something needs attention: a rejected file or a proxy not running the current version.
  const attention = report.rejected.length > 0 || report.proxies.some((p) => p.state !== 'ACK' || p.ackedVersion !== report.version);
  return { stdout: text, stderr: '', exitCode: attention ? 1 : 0 };
}
