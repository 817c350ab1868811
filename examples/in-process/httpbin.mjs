// httpbin as an Express app with Rampart inside: mTLS with its own SVID, the seed policies decided
// in-process, the caller's verified identity in req.rampart. No sidecar.
//   node examples/in-process/httpbin.mjs CA_DIR
import express from 'express';
import { Workload } from 'rampart/node';

const here = new URL('.', import.meta.url).pathname;
const ca = process.argv[2] ?? '/tmp/rampart-ca';
const workload = await Workload.start({
  workload: 'default/httpbin',
  mesh: `${here}mesh.yaml`,
  config: [`${here}../quickstart/policies.yaml`],
  ca,
});

const app = express();
app.use(workload.middleware());                 // first: nothing runs before the decision
app.get('/metrics', async (_req, res) => {
  const m = await workload.admin('/metrics');
  res.type(m.contentType).send(m.body);
});
app.use((req, res) => res.json({ path: req.url, caller: req.rampart.principal ?? null, claims: req.rampart.claims ?? null }));

const server = workload.createServer(app);      // mTLS and, where a port allows it, plaintext on one socket
server.server.listen(8000, '127.0.0.10', () => console.error(`httpbin as ${workload.spiffeId} on 127.0.0.10:8000`));
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, async () => {
  await server.close(1_000);
  await workload.close();
});
