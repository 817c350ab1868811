import http from 'node:http';

/**
 * The demo's echo app: what the sidecar told the app about the caller (x-forwarded-client-cert, x-forwarded-proto)
 * and what was asked, as JSON. `rampart up` runs it in-process for loopback hosts and as `rampart demo-app` inside a
 * workload's namespace.
 */
export function echoApp(ref: string): http.Server {
  return http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({
        app: ref, method: req.method, path: req.url,
        'x-forwarded-client-cert': req.headers['x-forwarded-client-cert'] ?? null,
        'x-forwarded-proto': req.headers['x-forwarded-proto'] ?? null,
      }, null, 2);
      res.writeHead(200, { 'content-type': 'application/json' }).end(`${body}\n`);
    });
  });
}
