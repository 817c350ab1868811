// A caller as a Fastify app: GET http://127.0.0.1:PORT/call/<path> fetches httpbin.default:8000/<path>
// as this workload (mTLS with its SVID, httpbin's identity checked against the registry) and answers
// with httpbin's status and body.
//   node examples/in-process/caller.mjs CA_DIR sleep 8081
import Fastify from 'fastify';
import { Workload } from 'rampart/node';

const here = new URL('.', import.meta.url).pathname;
const [ca = '/tmp/rampart-ca', name = 'sleep', port = '8081'] = process.argv.slice(2);
const workload = await Workload.start({
  workload: `default/${name}`,
  mesh: `${here}mesh.yaml`,
  config: [`${here}../quickstart/policies.yaml`],
  ca,
});
const dispatcher = workload.dispatcher();

const app = Fastify();
app.get('/call/*', async (request, reply) => {
  const url = `http://httpbin.default:8000/${request.params['*']}`;
  try {
    const r = await fetch(url, { dispatcher });
    reply.code(r.status).type(r.headers.get('content-type') ?? 'text/plain').send(await r.text());
  } catch (err) {
    reply.code(502).send(`${err.message}: ${err.cause?.message ?? ''}\n`);
  }
});
await app.listen({ port: Number(port), host: '127.0.0.1' });
console.error(`${name} as ${workload.spiffeId}; curl http://127.0.0.1:${port}/call/headers`);
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, async () => {
  await app.close();
  await dispatcher.close();
  await workload.close();
});
