import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { forgeLeaf, newCa } from './support/certs.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';

const BIN = join(import.meta.dirname, '..', 'src', 'cli', 'bin.ts');
const EX = join(import.meta.dirname, '..', 'examples', 'quickstart');
const ISS = 'https://issuer.rampart.example';
const NOW = Math.floor(Date.now() / 1000);

function rampart(args: string[], input = ''): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', BIN, ...args], { encoding: 'utf8', input, timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The same as rampart(), without blocking this process (which serves the JWKS in the HTTPS test). */
function rampartAsync(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', BIN, ...args], { env, timeout: 30_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += String(d)));
    child.stderr.on('data', (d) => (stderr += String(d)));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const dir = mkdtempSync(join(tmpdir(), 'rampart-jwt-'));
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const JWKS = join(dir, 'jwks.json');
writeFileSync(JWKS, JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256' }] }));
const sign = (claims: Record<string, unknown>): Promise<string> =>
  new SignJWT({ iss: ISS, sub: 'alice', aud: 'httpbin', exp: NOW + 3600, iat: NOW, ...claims }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(privateKey);

function request(token: string, path = '/headers'): string {
  const file = join(dir, `req-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify({
    destination: { namespace: 'default', labels: { app: 'httpbin' }, port: 8000 },
    source: { principal: 'cluster.local/ns/default/sa/other', ip: '10.0.0.7' },
    http: { method: 'GET', host: 'httpbin.default:8000', path, headers: { authorization: `Bearer ${token}` } },
  }));
  return file;
}

test('check verifies a raw token with --jwks: valid → allowed by the JWT rule; expired → 401; foreign key → 401', async () => {
  const ok = rampart(['check', '-c', join(EX, 'policies.yaml'), '-r', request(await sign({})), '--jwks', `${ISS}=${JWKS}`, '--json']);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.deepEqual([JSON.parse(ok.stdout).policy, JSON.parse(ok.stdout).rule], ['default/require-jwt-or-mtls', 1]);
  const expired = rampart(['check', '-c', join(EX, 'policies.yaml'), '-r', request(await sign({ exp: NOW - 300 })), '--jwks', `${ISS}=${JWKS}`]);
  assert.equal(expired.code, 1);
  assert.match(expired.stdout, /^DENY \(401\)/);
  assert.match(expired.stdout, /Jwt is expired/);
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const forged = await new SignJWT({ iss: ISS, sub: 'mallory', aud: 'httpbin', exp: NOW + 60 }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(other.privateKey);
  const bad = rampart(['check', '-c', join(EX, 'policies.yaml'), '-r', request(forged), '--jwks', `${ISS}=${JWKS}`, '--json']);
  assert.equal(bad.code, 1);
  assert.equal(JSON.parse(bad.stdout).status, 401);
  assert.match(JSON.parse(bad.stdout).reason, /Jwt verification fails/);
  // Envoy checks the audiences before the signature: a forged token for another audience is 403, not 401.
  const forgedElsewhere = await new SignJWT({ iss: ISS, sub: 'mallory', aud: 'other', exp: NOW + 60 }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(other.privateKey);
  const elsewhere = rampart(['check', '-c', join(EX, 'policies.yaml'), '-r', request(forgedElsewhere), '--jwks', `${ISS}=${JWKS}`, '--json']);
  assert.equal(JSON.parse(elsewhere.stdout).status, 403);
  assert.match(JSON.parse(elsewhere.stdout).reason, /Audiences in Jwt are not allowed/);
  const malformed = rampart(['check', '-c', join(EX, 'policies.yaml'), '-r', request('x'), '--jwks', 'no-equals-sign']);
  assert.equal(malformed.code, 2);
});

test('jwt decode: claims, principal and times; problems make exit 1; the signature is checked only with --jwks', async () => {
  const good = rampart(['jwt', 'decode', await sign({ aud: ['httpbin', 'web'] }), '--jwks', JWKS]);
  assert.equal(good.code, 0, good.stdout);
  assert.match(good.stdout, /^principal  https:\/\/issuer\.rampart\.example\/alice$/m);
  assert.match(good.stdout, /^audiences  \["httpbin","web"\]$/m);
  assert.match(good.stdout, /^exp +\S+ \(in 59m\d+s\)$/m);
  assert.match(good.stdout, /^signature  verified with /m);
  const unchecked = rampart(['jwt', 'decode', '-'], `Bearer ${await sign({})}\n`);
  assert.equal(unchecked.code, 3, 'not verified is not a success');
  assert.match(unchecked.stdout, /signature  not checked/);
  assert.match(unchecked.stdout, /^UNVERIFIED: the signature was not checked, so this says nothing about whether the token is genuine; pass --jwks FILE \(no other problems found\)$/m);
  assert.doesNotMatch(unchecked.stdout, /^no problems found$/m);
  assert.equal((JSON.parse(rampart(['jwt', 'decode', await sign({}), '--json']).stdout) as { verified: boolean }).verified, false);
  assert.equal((JSON.parse(rampart(['jwt', 'decode', await sign({}), '--jwks', JWKS, '--json']).stdout) as { verified: boolean }).verified, true);
  assert.match(good.stdout, /^no problems found$/m);
  const expired = rampart(['jwt', 'decode', await sign({ exp: NOW - 120 }), '--jwks', JWKS, '--json']);
  assert.equal(expired.code, 1);
  const j = JSON.parse(expired.stdout) as { problems: string[]; signature: string };
  assert.match(j.problems.join(), /Jwt is expired/);
  assert.match(j.signature, /^verified/);
  const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: ISS, sub: 'x' })).toString('base64url')}.`;
  const n = rampart(['jwt', 'decode', none]);
  assert.equal(n.code, 1);
  // An unsigned token has an empty third section, which Envoy's parser does not count: not three sections.
  assert.match(n.stdout, /would fail: Jwt is not in the form of Header\.Payload\.Signature .*: the signature section is empty/);
  assert.match(n.stdout, /note: no exp/);
  assert.equal(rampart(['jwt', 'decode', 'garbage']).code, 2);
});

test('check is offline by default; with --fetch-jwks it fetches a jwksUri over HTTPS (a real TLS server on 127.0.0.1, trusted through NODE_EXTRA_CA_CERTS)', async () => {
  const ca = await newCa();
  const leaf = await forgeLeaf({ issuer: ca.material, uris: [], dnsNames: ['localhost'] });
  const rootFile = join(dir, 'jwks-root.pem');
  writeFileSync(rootFile, ca.trustBundle.pem);
  let served = 0;
  const server = https.createServer({ key: leaf.keyPem, cert: leaf.chainPem }, (req, res) => {
    served++;
    // A redirect from https to plain http (where the keys could be swapped in transit) is never followed.
    if (req.url === '/downgrade') res.writeHead(302, { location: `http://localhost:${(server.address() as AddressInfo).port}/jwks.json` }).end();
    else res.writeHead(200, { 'content-type': 'application/json' }).end(readFileSync(JWKS));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const port = (server.address() as AddressInfo).port;
    const policies = join(dir, 'https-policies.yaml');
    writeFileSync(policies, [
      'apiVersion: security.istio.io/v1', 'kind: RequestAuthentication', 'metadata: {name: jwt, namespace: default}', 'spec:',
      '  jwtRules:', `  - issuer: ${ISS}`, `    jwksUri: https://localhost:${port}/jwks.json`,
    ].join('\n'));
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: rootFile };
    // Offline by default: nothing fetched, the token 401 as Envoy answers a missing key set, and a line saying why.
    const offline = await rampartAsync(['check', '-c', policies, '-r', request(await sign({})), '--json'], env);
    assert.equal(offline.code, 1);
    assert.equal(JSON.parse(offline.stdout).status, 401, offline.stdout);
    assert.match(JSON.parse(offline.stdout).reason, /Jwks remote fetch is failed/);
    assert.match(offline.stderr, new RegExp(`note: keys at https://localhost:${port}/jwks\\.json were not fetched \\(rampart check is offline unless --fetch-jwks\\), so the token got 401; give them with --jwks ISSUER=FILE, or allow fetching with --fetch-jwks`), offline.stderr);
    assert.equal(served, 0, 'no request reached the key server');
    const ok = await rampartAsync(['check', '-c', policies, '-r', request(await sign({})), '--json', '--fetch-jwks'], env);
    assert.equal(served, 1);
    assert.equal(JSON.parse(ok.stdout).decision, 'ALLOW', ok.stderr);
    assert.match(JSON.stringify(JSON.parse(ok.stdout).trace), /principal https:\/\/issuer\.rampart\.example\/alice/);
    // Without trusting that root, the fetch fails and the token fails closed.
    const untrusted = await rampartAsync(['check', '-c', policies, '-r', request(await sign({})), '--json', '--fetch-jwks'], { ...process.env, NODE_EXTRA_CA_CERTS: '' });
    assert.equal(JSON.parse(untrusted.stdout).status, 401, untrusted.stdout);
    assert.match(JSON.parse(untrusted.stdout).reason, /Jwks remote fetch is failed/);
    assert.match(untrusted.stderr, /could not be fetched \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)/, untrusted.stderr);
    writeFileSync(policies, readFileSync(policies, 'utf8').replace('/jwks.json', '/downgrade'));
    const downgraded = await rampartAsync(['check', '-c', policies, '-r', request(await sign({})), '--json', '--fetch-jwks'], env);
    assert.equal(JSON.parse(downgraded.stdout).status, 401, downgraded.stdout);
    assert.match(downgraded.stderr, /refused: a redirect from https to plain http/, downgraded.stderr);
  } finally {
    server.close();
  }
});
