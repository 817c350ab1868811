import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { waitUntil } from '../support/proxy.ts';
import { BIN, exampleCopy, run } from '../support/up.ts';

/**
 * `rampart up` as a user runs it, on a copy of examples/mesh whose ports and addresses are moved to free ones (the
 * example's fixed ports may be taken on a test machine).
 */

function get(o: http.RequestOptions): Promise<number | string> {
  return new Promise((resolve) => {
    const req = http.request({ ...o, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    req.end();
  });
}

describe('rampart up (real processes)', { timeout: 120_000 }, () => {
  it('--demo walks through the seed scenario and every request is decided as Istio decides it', async () => {
    const { args } = await exampleCopy();
    const r = run([...args, '--demo']);
    const code = await r.exit;
    const out = r.out();
    assert.equal(code, 0, out);
    assert.match(out, /all 7 requests decided as Istio decides them/);
    assert.match(out, /1 +sleep calls httpbin over mTLS, no token +yes +none +200 +200 +default\/require-jwt-or-mtls rule 0 +as Istio/);
    assert.match(out, /2 +sleep asks for \/admin .* 403 +403 +default\/deny-admin rule 0/);
    assert.match(out, /4 +guest calls httpbin over mTLS with a valid token .* 200 +200 +default\/require-jwt-or-mtls rule 1/);
    assert.match(out, /5 +guest calls httpbin over mTLS with an expired token .* 401 +401 +RequestAuthentication/);
    assert.match(out, /6 +an outside client .* reset +reset +mTLS mode/);
    assert.match(out, /guest → httpbin {2}GET \/headers {2}401 DENY: Jwt is expired/);
  });

  it('a mesh file with errors: rampart up and rampart control-plane exit 2 naming file, line and field', async () => {
    const { dir, args } = await exampleCopy();
    await writeFile(join(dir, 'mesh.yaml'), 'workloads:\n- {name: Bad_Name, namespace: default, serviceAccount: x, address: 127.0.0.1}\n');
    const up = run(args);
    assert.equal(await up.exit, 2, up.out());
    assert.match(up.out(), /rampart up: the mesh configuration has errors:\n.*mesh\.yaml:2: error .*workloads\[0\]\.name/);
    const ca = join(dir, 'ca');
    const init = spawn(process.execPath, ['--import', 'tsx', BIN, 'ca', 'init', ca], { stdio: 'ignore' });
    await once(init, 'exit');
    const cp = spawn(process.execPath, ['--import', 'tsx', BIN, 'control-plane', dir, '--ca', ca, '--port', '0', '--admin-port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    cp.stderr!.on('data', (c: Buffer) => (err += c.toString('utf8')));
    const [code] = (await once(cp, 'close')) as [number];
    assert.equal(code, 2, err);
    assert.match(err, /rampart control-plane: the mesh configuration has errors:\n.*mesh\.yaml:2: error .*workloads\[0\]\.name/);
  });

  it('stays up printing a line per request, and Ctrl-C stops every process it started', async () => {
    const { dir, args, ports, prefix } = await exampleCopy();
    const r = run(args);
    try {
      await waitUntil('the mesh up', () => (r.out().includes('the mesh is up') ? true : undefined), 60_000, () => `\n${r.out()}`);
      assert.equal(await get({ host: '127.0.0.1', port: ports.sleep, path: 'http://httpbin.default:8000/headers', headers: { host: 'httpbin.default:8000' } }), 200);
      assert.equal(await get({ host: '127.0.0.1', port: ports.guest, path: 'http://httpbin.default:8000/admin', headers: { host: 'httpbin.default:8000' } }), 403);
      await waitUntil('the live lines', () => (/sleep → httpbin {2}GET \/headers {2}200 ALLOW: allowed by default\/require-jwt-or-mtls rule 0 {2}\(mTLS\)/.test(r.out())
        && /guest → httpbin {2}GET \/admin {2}403 DENY: denied by default\/deny-admin rule 0/.test(r.out()) ? true : undefined), 15_000, () => `\n${r.out()}`);
      // The JWT path from the printed line: a token minted by the local issuer lets guest in; an expired one is 401.
      assert.match(r.out(), new RegExp(`curl -x http://127\\.0\\.0\\.1:${ports.guest} -H "authorization: Bearer \\$\\(curl -s http://127\\.0\\.0\\.1:${ports.jwks}/token\\)" http://httpbin\\.default:8000/headers   # as default/guest, with a JWT`));
      const mint = async (query: string): Promise<{ status: number; body: string }> => {
        const res = await fetch(`http://127.0.0.1:${ports.jwks}/token${query}`);
        return { status: res.status, body: (await res.text()).trim() };
      };
      const minted = await mint('?sub=alice&groups=dev&groups=ops');
      assert.equal(minted.status, 200);
      const claims = JSON.parse(Buffer.from(minted.body.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
      assert.deepEqual([claims['iss'], claims['sub'], claims['aud'], claims['groups']], ['https://issuer.rampart.example', 'alice', 'httpbin', ['dev', 'ops']]);
      assert.equal((claims['exp'] as number) - (claims['iat'] as number), 3_600);
      const asGuest = (token: string): Promise<number | string> => get({ host: '127.0.0.1', port: ports.guest, path: 'http://httpbin.default:8000/headers', headers: { host: 'httpbin.default:8000', authorization: `Bearer ${token}` } });
      assert.equal(await asGuest(minted.body), 200);
      assert.equal(await asGuest((await mint('?expired=1')).body), 401);
      await waitUntil('the JWT live line', () => (/guest → httpbin {2}GET \/headers {2}200 ALLOW: allowed by default\/require-jwt-or-mtls rule 1 {2}\(mTLS, JWT https:\/\/issuer\.rampart\.example\/alice\)/.test(r.out()) ? true : undefined), 10_000, () => `\n${r.out()}`);
      assert.deepEqual(await mint('?exp=1'), { status: 400, body: 'exp is set by the issuer; use sub, ttl, expired or claims of your own' });
      assert.equal((await mint('?ttl=0')).status, 400);
      const rebound = await new Promise<number>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: ports.jwks, path: '/token', headers: { host: 'attacker.example' }, agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject);
      });
      assert.equal(rebound, 400, 'no token for a request naming another host');
      // rampart status against it: three proxies in sync.
      const status = spawn(process.execPath, ['--import', 'tsx', BIN, 'status', '--admin', `http://127.0.0.1:${ports.admin}`], { stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      status.stdout!.on('data', (c: Buffer) => (text += c.toString('utf8')));
      const [code] = (await once(status, 'close')) as [number];
      assert.equal(code, 0, text);
      assert.equal(text.match(/SYNCED/g)?.length, 3, text);
      // A bad edit while it runs: refused, and said where.
      await writeFile(join(dir, 'bad.yaml'), 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: bad, namespace: default}\nspec:\n  action: NOPE\n');
      await waitUntil('the rejection', () => (/control plane: 1 file\(s\) rejected .*\n {2}.*bad\.yaml:5: error .*spec\.action/.test(r.out()) ? true : undefined), 10_000, () => `\n${r.out()}`);
      assert.equal(await get({ host: '127.0.0.1', port: ports.sleep, path: 'http://httpbin.default:8000/headers', headers: { host: 'httpbin.default:8000' } }), 200);
    } finally {
      r.child.kill('SIGINT');
    }
    assert.equal(await r.exit, 0, r.out());
    assert.match(r.out(), /stopping: sidecars, control plane, apps/);
    // Nothing left listening: the sidecar, the app, the control plane.
    assert.equal(await get({ host: `${prefix}1`, port: 8000, path: '/' }), 'ECONNREFUSED');
    assert.equal(await get({ host: '127.0.0.1', port: ports.app, path: '/' }), 'ECONNREFUSED');
    assert.equal(await get({ host: '127.0.0.1', port: ports.admin, path: '/status' }), 'ECONNREFUSED');
  });
});
