import { echoApp } from '../mesh/echo-app.ts';
import { listenExplained } from '../io/listen.ts';
import { lifetime } from './lifetime.ts';

/** `rampart demo-app`: the demo's echo app as a process of its own (rampart up starts it in a workload's namespace). */
export async function runDemoApp(o: { readonly workload: string; readonly port: string; readonly exitWithParent?: boolean }): Promise<number> {
  const port = Number(o.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    process.stderr.write(`rampart demo-app: --port: not a port: ${o.port}\n`);
    return 2;
  }
  const server = echoApp(o.workload);
  try {
    // Every address of the namespace: the sidecar reaches it on 127.0.0.1, nothing else gets past the capture.
    await listenExplained(server, port, '0.0.0.0', { what: `the demo app of ${o.workload}`, movedBy: `the targetPort of ${o.workload} in the mesh file` });
  } catch (err) {
    process.stderr.write(`rampart demo-app: ${(err as Error).message}\n`);
    return 2;
  }
  process.stdout.write(`demo app of ${o.workload} on port ${port}\n`);
  await lifetime({ withParent: o.exitWithParent === true }).stopped;
  server.closeAllConnections();
  server.close();
  return 0;
}
