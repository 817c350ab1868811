/**
 * The apps of the data-path benchmark's app-to-app paths, one process each:
 *
 *   node pair-app.js front https|in-process CONFIG_JSON   plain HTTP for wrk, each request sent on to the back app
 *   node pair-app.js back  https|in-process CONFIG_JSON   answers 1 KB after reading the body
 *
 * `https`: plain HTTPS between the two apps (a server certificate checked against the root, no client certificate,
 * no policy): what an app costs with TLS and nothing else. `in-process`: both apps run rampart/node — mTLS with their
 * SVIDs, secure naming, and the back app deciding the JWT and the policies in its own process.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { Agent, request, type Dispatcher } from 'undici';
import { Workload } from '../src/node/index.ts';

interface Config {
  readonly listenHost: string;
  readonly listenPort: number;
  readonly bodyBytes: number;
  /** front: where the back app is (https: host and port; in-process: the service name). */
  readonly backUrl?: string;
  /** https: the back app's key and certificate, and the root the front checks it against. */
  readonly keyFile?: string;
  readonly certFile?: string;
  readonly rootFile?: string;
  /** in-process: the mesh file, policies and CA directory. */
  readonly mesh?: string;
  readonly config?: readonly string[];
  readonly ca?: string;
  readonly workload?: string;
}

const [role, mode, json] = process.argv.slice(2);
// A normal exit on SIGTERM, so that --cpu-prof and the like write their files.
process.once('SIGTERM', () => process.exit(0));
const cfg = JSON.parse(json ?? '{}') as Config;
const body = Buffer.alloc(cfg.bodyBytes, 'b');

const answer = (req: http.IncomingMessage, res: http.ServerResponse): void => {
  req.resume();
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body));
};

async function workload(): Promise<Workload> {
  return Workload.start({ workload: cfg.workload!, mesh: cfg.mesh!, config: cfg.config!, ca: cfg.ca! });
}

if (role === 'back') {
  if (mode === 'https') {
    const server = https.createServer({ key: readFileSync(cfg.keyFile!), cert: readFileSync(cfg.certFile!), keepAliveTimeout: 120_000 }, answer);
    server.listen(cfg.listenPort, cfg.listenHost, () => process.stdout.write('{"event":"listening"}\n'));
  } else {
    const w = await workload();
    const server = w.createServer(answer);
    server.server.listen(cfg.listenPort, cfg.listenHost, () => process.stdout.write('{"event":"listening"}\n'));
  }
} else {
  let dispatcher: Dispatcher;
  if (mode === 'https') {
    const root = readFileSync(cfg.rootFile!);
    // The certificate is an SVID (no DNS name): checked against the root, its name not compared.
    dispatcher = new Agent({ connect: { ca: root, checkServerIdentity: () => undefined } });
  } else {
    dispatcher = (await workload()).dispatcher();
  }
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const auth = req.headers['authorization'];
      request(cfg.backUrl!, {
        method: 'POST', dispatcher, body: Buffer.concat(chunks),
        headers: { 'content-type': 'application/octet-stream', ...(auth === undefined ? {} : { authorization: auth }) },
      }).then(async (r) => {
        const out = Buffer.from(await r.body.arrayBuffer());
        res.writeHead(r.statusCode, { 'content-type': 'application/octet-stream', 'content-length': out.length }).end(out);
      }, (err: Error) => res.writeHead(502).end(err.message));
    });
  });
  server.keepAliveTimeout = 120_000;
  server.listen(cfg.listenPort, cfg.listenHost, () => process.stdout.write('{"event":"listening"}\n'));
}
