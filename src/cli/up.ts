import { RampartError } from '../errors.ts';
import { LocalMesh } from '../mesh/local-mesh.ts';
import { meshHostsUnavailable, MeshHostsError } from '../mesh/mesh-hosts.ts';
import { originalDstSupport } from '../capture/original-dst.ts';
import { accessLine, runWalkthrough, summaryTable, walkthroughSteps } from '../mesh/walkthrough.ts';
import { parseTtl } from './duration.ts';
import { lifetime } from './lifetime.ts';

export interface UpOptions {
  readonly dir: string;
  readonly demo?: boolean;
  readonly port: string;
  readonly adminPort: string;
  readonly svidTtl?: string;
  /** `auto` (default): network namespaces where they can be made, loopback addresses otherwise. */
  readonly hosts?: string;
  readonly netnsPrefix?: string;
}

/** Why the workloads cannot each get a network namespace with captured traffic here, or undefined. */
async function netnsUnavailable(): Promise<string | undefined> {
  const why = await meshHostsUnavailable();
  if (why !== undefined) return why;
  const addon = originalDstSupport();
  return addon.ok ? undefined : addon.reason;
}

/**
 * `rampart up [DIR]`: the control plane, a sidecar per workload and the demo's apps, then one line per request until
 * Ctrl-C; with --demo, the scripted walk-through and its summary instead, then a clean exit (1 if any step differs).
 */
export async function runUp(o: UpOptions): Promise<number> {
  // A terminal closed or a pipe whose reader died must not turn the next line into a crash that skips the cleanup.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
  const say = (line: string): void => void process.stdout.write(`${line}\n`);
  const num = (v: string, flag: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new RampartError('ERR_ARGUMENT', `${flag}: not a port: ${v}`);
    return n;
  };
  const asked = o.hosts ?? 'auto';
  if (asked !== 'auto' && asked !== 'netns' && asked !== 'loopback') {
    process.stderr.write(`rampart up: --hosts: auto, netns or loopback, not ${asked}\n`);
    return 2;
  }
  let hosts: 'netns' | 'loopback' = asked === 'loopback' ? 'loopback' : 'netns';
  if (hosts === 'netns') {
    const why = await netnsUnavailable();
    if (why !== undefined) {
      if (asked === 'netns') {
        process.stderr.write(`rampart up: --hosts netns: ${why}\n`);
        return 2;
      }
      say(`no network namespaces (${why}): the workloads run on loopback addresses, the apps pointed at their sidecars`);
      hosts = 'loopback';
    }
  }
  let mesh: LocalMesh;
  const make = (h: 'netns' | 'loopback'): LocalMesh => {
    const svidTtlMs = o.svidTtl === undefined ? undefined : parseTtl(o.svidTtl, '--svid-ttl');
    return new LocalMesh({ dir: o.dir, controlPlanePort: num(o.port, '--port'), adminPort: num(o.adminPort, '--admin-port'), say, hosts: h,
      ...(o.netnsPrefix === undefined ? {} : { netnsPrefix: o.netnsPrefix }), ...(svidTtlMs === undefined ? {} : { svidTtlMs }) });
  };
  try {
    mesh = make(hosts);
  } catch (err) {
    process.stderr.write(`rampart up: ${(err as Error).message}\n`);
    return 2;
  }
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= mesh.stop());
  // Whatever ends it — Ctrl-C, SIGTERM or SIGHUP to it or to npm, or its parent dying — every sidecar stops and every
  // port is freed.
  const life = lifetime({ withParent: true });
  const interrupted = life.stopped.then((reason) => ({ reason }));
  say(`rampart up ${o.dir}: starting the control plane and the sidecars`);
  const attempt = (): Promise<'started' | { reason: string } | { failed: unknown }> =>
    Promise.race([mesh.start().then(() => 'started' as const, (err: unknown) => ({ failed: err })), interrupted]);
  let started = await attempt();
  if (typeof started === 'object' && 'failed' in started && started.failed instanceof MeshHostsError && asked === 'auto') {
    // The namespaces could not be made (one of that name exists, say): loopback addresses, said in one line.
    await mesh.stop();
    say(`no network namespaces (${started.failed.message}): the workloads run on loopback addresses, the apps pointed at their sidecars`);
    mesh = make('loopback');
    started = await attempt();
  }
  if (started !== 'started') {
    if ('failed' in started) process.stderr.write(`rampart up: ${started.failed instanceof RampartError ? started.failed.message : String(started.failed)}\n`);
    await stop();
    return 'failed' in started ? 2 : 130;
  }
  if (o.demo === true) {
    const w = mesh.demo.walkthrough;
    if (w === undefined) {
      process.stderr.write(`rampart up --demo: ${o.dir}/demo.yaml has no walkthrough section\n`);
      await stop();
      return 2;
    }
    say('\nwalk-through: each request, what the server\'s sidecar decided, and why\n');
    const results = await runWalkthrough(mesh, w.server, walkthroughSteps(w.server, w.meshClient, w.otherClient), (r, i) => {
      say(`${i + 1}. ${r.step.title}`);
      say(`   got ${r.got} (Istio: ${r.step.expect}, ${r.step.why})`);
      if (r.access !== undefined) say(`   ${accessLine(mesh.mesh, r.access)}`);
    });
    say(`\n${summaryTable(results)}\n`);
    const differs = results.filter((r) => !r.ok).length;
    say(differs === 0 ? `all ${results.length} requests decided as Istio decides them` : `${differs} of ${results.length} requests decided otherwise`);
    await stop();
    return differs === 0 ? 0 : 1;
  }
  const off = mesh.onAccess((a) => say(accessLine(mesh.mesh, a)));
  const placed = mesh.hosts;
  // How a client workload's app makes a request: from its namespace, captured; or through its sidecar's proxy port.
  const from = (ref: string, outboundPort: number): string =>
    placed === undefined ? `curl -x http://127.0.0.1:${outboundPort}` : `ip netns exec ${placed.host(mesh.workload(ref)).netns} curl`;
  const clients = mesh.demo.clients.map((c) => `  ${from(c.workload, c.outboundPort)} http://${hostOf(mesh, mesh.demo.walkthrough?.server)}/headers   # as ${c.workload}`);
  // The JWT path: a token from the local issuer, for the client that has no identity the policy accepts.
  const issuer = mesh.demo.issuer;
  const tokenClient = mesh.demo.clients.find((c) => c.workload === mesh.demo.walkthrough?.otherClient) ?? mesh.demo.clients.at(-1);
  const jwtTry = issuer === undefined || tokenClient === undefined ? [] : [
    `  ${from(tokenClient.workload, tokenClient.outboundPort)} -H "authorization: Bearer $(curl -s http://${issuer.host}:${issuer.port}/token)" http://${hostOf(mesh, mesh.demo.walkthrough?.server)}/headers   # as ${tokenClient.workload}, with a JWT`,
  ];
  say(['', 'the mesh is up; one line per request follows (Ctrl-C stops everything). Try:', ...clients, ...jwtTry,
    ...(mesh.demo.walkthrough === undefined ? [] : [`  curl http://${serverAddress(mesh, mesh.demo.walkthrough.server)}/headers   # outside the mesh, no certificate`]),
    `  rampart status --admin http://127.0.0.1:${mesh.controlPlane?.adminPort ?? o.adminPort}`,
    `the console (workloads, policies, who may call what, live decisions): http://127.0.0.1:${mesh.controlPlane?.adminPort ?? o.adminPort}/console/`, ''].join('\n'));
  const { reason } = await interrupted;
  off();
  say(`${reason === 'parent-exited' ? 'the parent process exited; ' : ''}stopping: sidecars, control plane, apps`);
  await stop();
  return 0;
}

function hostOf(mesh: LocalMesh, ref: string | undefined): string {
  if (ref === undefined) return 'SERVICE.NAMESPACE:PORT';
  const w = mesh.workload(ref);
  return `${w.name}.${w.namespace}:${w.ports[0]?.port ?? 80}`;
}

function serverAddress(mesh: LocalMesh, ref: string): string {
  const w = mesh.workload(ref);
  return `${w.address}:${w.ports[0]?.port ?? 80}`;
}
