import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { holds, meshAccessMatrix, type AccessCell } from '../src/policy/access-matrix.ts';
import { PolicyEngine } from '../src/policy/engine.ts';
import { authenticate } from '../src/policy/request-authn.ts';
import { parseCheckRequest, prepareAuth, type CheckRequest, type PreparedRequest } from '../src/policy/request.ts';
import { loadResources } from '../src/resources/load.ts';
import { parseMeshFile, type MeshFile } from '../src/resources/mesh-file.ts';

const EXAMPLE = join(import.meta.dirname, '..', 'examples', 'mesh');

function build(meshText: string, policies: string): { engine: PolicyEngine; mesh: MeshFile } {
  const m = parseMeshFile(meshText, 'mesh.yaml');
  assert.deepEqual(m.diagnostics.filter((d) => d.severity === 'error'), []);
  const loaded = loadResources([{ file: 'policies.yaml', text: policies }], { rootNamespace: m.mesh.mesh.rootNamespace });
  assert.deepEqual(loaded.diagnostics.filter((d) => d.severity === 'error'), [], 'the generated policies load');
  return { engine: new PolicyEngine(loaded.resources, m.mesh.mesh), mesh: m.mesh };
}

const cellOf = (cells: readonly AccessCell[], source: string, destination: string): AccessCell => cells.find((c) => c.source === source && c.destination === destination)!;

test('the seed scenario: who may call httpbin, and on what condition', async () => {
  const { engine, mesh } = build(await readFile(join(EXAMPLE, 'mesh.yaml'), 'utf8'), await readFile(join(EXAMPLE, 'policies.yaml'), 'utf8'));
  const m = meshAccessMatrix(engine, mesh);
  assert.deepEqual(m.sources, ['default/guest', 'default/httpbin', 'default/my-service-account', 'no mTLS', 'any JWT']);
  assert.deepEqual(m.destinations, [{ workload: 'default/httpbin', port: 8000, traffic: 'HTTP' }]);
  const sleep = cellOf(m.cells, 'default/my-service-account', 'default/httpbin');
  assert.equal(sleep.outcome, 'conditional');
  assert.equal(sleep.condition, 'not DENY default/deny-admin rule 0 [to[0].operation.paths in ["/admin", "/admin/*"]]');
  const guest = cellOf(m.cells, 'default/guest', 'default/httpbin');
  assert.equal(guest.outcome, 'denied');
  assert.equal(guest.reason, 'no ALLOW rule can match this caller');
  const plain = cellOf(m.cells, 'no mTLS', 'default/httpbin');
  assert.equal(plain.outcome, 'denied');
  assert.match(plain.reason, /connection refused: the port is STRICT/);
  const jwt = cellOf(m.cells, 'any JWT', 'default/httpbin');
  assert.equal(jwt.outcome, 'conditional');
  assert.equal(jwt.condition, '(ALLOW default/require-jwt-or-mtls rule 0 [from[0].source.principals in ["cluster.local/ns/default/sa/my-service-account"]] or '
    + 'ALLOW default/require-jwt-or-mtls rule 1 [from[0].source.requestPrincipals in ["https://issuer.rampart.example/*"]]) and '
    + 'not DENY default/deny-admin rule 0 [from[0].source.notPrincipals not in ["cluster.local/ns/ops/sa/admin"] and to[0].operation.paths in ["/admin", "/admin/*"]]');
});

/** A small deterministic generator, so that a failure names a seed that reproduces it. */
function prng(seed: number): { int(n: number): number; pick<T>(xs: readonly T[]): T; some<T>(xs: readonly T[]): T[] } {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return { int, pick: (xs) => xs[int(xs.length)]!, some: (xs) => xs.filter(() => next() < 0.4).slice(0, 3) };
}

const NAMESPACES = ['foo', 'bar'];
const ACCOUNTS = ['a', 'b', 'c'];
const PATHS = ['/admin', '/admin/*', '/api/*', '*/public', '/health'];
const METHODS = ['GET', 'POST', 'DELETE'];
const ISSUERS = ['https://one.example', 'https://two.example'];

interface Generated { meshText: string; policies: string }

function generate(seed: number): Generated {
  const g = prng(seed);
  const workloads = [
    { name: 'web', namespace: 'foo', serviceAccount: 'a', labels: { app: 'web' }, address: '10.0.0.1', ports: [{ name: 'http', port: 8000, targetPort: 18000 }, { name: 'tcp-db', port: 5432, targetPort: 15432 }] },
    { name: 'api', namespace: 'bar', serviceAccount: 'b', labels: { app: 'api' }, address: '10.0.0.2', ports: [{ name: 'http', port: 9080, targetPort: 19080 }] },
    { name: 'cli', namespace: 'foo', serviceAccount: 'c', labels: { app: 'cli' }, address: '10.0.0.3', ports: [] },
  ];
  const meshText = stringify({ meshConfig: { trustDomain: 'cluster.local', extensionProviders: [{ name: 'authz', envoyExtAuthzHttp: { service: 'authz.foo.svc.cluster.local', port: 8000 } }] }, workloads });
  const docs: unknown[] = [];
  const principal = (): string => `cluster.local/ns/${g.pick(NAMESPACES)}/sa/${g.pick(ACCOUNTS)}`;
  const source = (): Record<string, unknown> => {
    const s: Record<string, unknown> = {};
    const n = g.int(3);
    for (let i = 0; i <= n; i++) {
      const f = g.pick(['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'requestPrincipals', 'notRequestPrincipals', 'ipBlocks']);
      if (f === 'principals' || f === 'notPrincipals') s[f] = [principal(), ...(g.int(3) === 0 ? ['*'] : [])].slice(0, 1 + g.int(2));
      else if (f === 'namespaces' || f === 'notNamespaces') s[f] = [g.pick(NAMESPACES)];
      else if (f === 'ipBlocks') s[f] = [g.pick(['10.1.0.0/16', '192.168.0.1'])];
      else s[f] = [g.pick([...ISSUERS.map((i) => `${i}/*`), '*', `${ISSUERS[0]}/alice`])];
    }
    return s;
  };
  const operation = (): Record<string, unknown> => {
    const o: Record<string, unknown> = {};
    if (g.int(2) === 0) {
      const paths = g.some(PATHS);
      o['paths'] = paths.length > 0 ? paths : ['/admin'];
    }
    if (g.int(3) === 0) o['methods'] = [g.pick(METHODS)];
    if (g.int(3) === 0) o[g.pick(['ports', 'notPorts'])] = [String(g.pick([8000, 5432, 9080]))];
    if (Object.keys(o).length === 0) o['notPaths'] = [g.pick(PATHS)];
    return o;
  };
  const rule = (): Record<string, unknown> => {
    const r: Record<string, unknown> = {};
    if (g.int(4) !== 0) r['from'] = Array.from({ length: 1 + g.int(2) }, () => ({ source: source() }));
    if (g.int(2) === 0) r['to'] = Array.from({ length: 1 + g.int(2) }, () => ({ operation: operation() }));
    if (g.int(4) === 0) r['when'] = [g.pick([{ key: 'request.headers[x-role]', values: ['admin'] }, { key: 'request.auth.claims[groups]', values: ['ops'] }, { key: 'source.namespace', values: ['foo'] }, { key: 'source.ip', notValues: ['10.1.0.0/16'] }])];
    return r;
  };
  const selector = (): Record<string, unknown> => (g.int(3) === 0 ? {} : { selector: { matchLabels: { app: g.pick(['web', 'api']) } } });
  for (const ns of NAMESPACES) {
    if (g.int(3) !== 0) docs.push({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: ns }, spec: { mtls: { mode: g.pick(['STRICT', 'PERMISSIVE', 'DISABLE']) } } });
  }
  docs.push({ apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'jwt', namespace: 'foo' }, spec: { jwtRules: [{ issuer: ISSUERS[0], jwks: '{"keys":[]}' }, { issuer: ISSUERS[1], jwks: '{"keys":[]}' }] } });
  const count = 1 + g.int(4);
  for (let i = 0; i < count; i++) {
    const action = g.pick(['ALLOW', 'ALLOW', 'DENY', 'CUSTOM']);
    // CUSTOM takes no identity fields (istiod refuses them): requests only.
    const customRule = (): Record<string, unknown> => ({ to: [{ operation: operation() }], ...(g.int(3) === 0 ? { when: [{ key: 'request.headers[x-role]', values: ['admin'] }] } : {}) });
    const spec: Record<string, unknown> = { ...selector(), action, rules: Array.from({ length: 1 + g.int(2) }, action === 'CUSTOM' ? customRule : rule) };
    if (action === 'CUSTOM') spec['provider'] = { name: g.int(4) === 0 ? 'undefined-provider' : 'authz' };
    docs.push({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: `p${i}`, namespace: g.pick(NAMESPACES) }, spec });
  }
  return { meshText, policies: docs.map((d) => stringify(d)).join('---\n') };
}

/** Requests of one caller to one port: the values the generator uses, and others. */
function probes(cell: AccessCell, mesh: MeshFile): CheckRequest[] {
  const [namespace, name] = cell.destination.split('/') as [string, string];
  const w = mesh.workloads.find((x) => x.namespace === namespace && x.name === name)!;
  const peers: (string | undefined)[] = cell.source === 'no mTLS' ? [undefined]
    : cell.source === 'any JWT' ? [undefined, ...NAMESPACES.flatMap((n) => ACCOUNTS.map((a) => `cluster.local/ns/${n}/sa/${a}`))]
      : [`cluster.local/ns/${cell.source.split('/')[0]}/sa/${cell.source.split('/')[1]}`];
  const out: CheckRequest[] = [];
  for (const peer of peers) {
    // The token holder's row is about callers with mTLS where the port requires it.
    if (cell.source === 'any JWT' && peer === undefined && cell.mtlsMode === 'STRICT') continue;
    for (const ip of ['10.1.2.3', '10.9.9.9']) {
      const base = { destination: { namespace, labels: w.labels, port: cell.port }, source: { ...(peer === undefined ? {} : { principal: peer }), ip } };
      if (cell.traffic === 'TCP') {
        out.push(parseCheckRequest(base));
        continue;
      }
      for (const path of ['/admin', '/admin/x', '/api/v1', '/x/public', '/health', '/other']) {
        for (const method of METHODS) {
          for (const headers of [{}, { 'x-role': 'admin' }]) {
            const tokens = cell.source === 'any JWT'
              ? [...ISSUERS.map((iss) => ({ principal: `${iss}/bob`, claims: { iss, sub: 'bob', groups: ['dev'] } })), { principal: `${ISSUERS[0]}/alice`, claims: { iss: ISSUERS[0], sub: 'alice', groups: ['ops'] } }]
              : [undefined];
            for (const auth of tokens) out.push(parseCheckRequest({ ...base, http: { method, path, host: name, headers }, ...(auth === undefined ? {} : { auth }) }));
          }
        }
      }
    }
  }
  return out;
}

/** The request as the policies see it: with request.auth.* once a RequestAuthentication has accepted its token. */
function authenticated(engine: PolicyEngine, req: CheckRequest): PreparedRequest {
  const r = engine.prepare(req);
  const outcome = authenticate(engine.workload(r.namespace, r.labels).jwtRules, r, undefined);
  return outcome.kind === 'verified' ? { ...r, auth: prepareAuth(outcome.jwt, outcome.spaceDelimited) } : r;
}

test('every cell of generated meshes agrees with the engine\'s decision for every request it covers', () => {
  let checked = 0;
  const seen = { allowed: 0, denied: 0, conditional: 0 };
  for (let seed = 1; seed <= 60; seed++) {
    const { meshText, policies } = generate(seed);
    const { engine, mesh } = build(meshText, policies);
    const m = meshAccessMatrix(engine, mesh);
    for (const cell of m.cells) {
      seen[cell.outcome]++;
      for (const req of probes(cell, mesh)) {
        for (const extAuthz of ['allow', 'deny'] as const) {
          const d = engine.decide(req, { extAuthz });
          const expected = cell.outcome === 'allowed' ? true : cell.outcome === 'denied' ? false : holds(cell.allowedWhen!, authenticated(engine, req), extAuthz);
          checked++;
          if ((d.decision === 'ALLOW') !== expected) {
            assert.fail(`seed ${seed}: ${cell.source} → ${cell.destination}:${cell.port} is ${cell.outcome} (${cell.condition ?? cell.reason}), `
              + `but ${JSON.stringify(req)} with extAuthz ${extAuthz} is ${d.decision}: ${d.reason}\n${policies}`);
          }
        }
      }
    }
  }
  assert.ok(checked > 10_000, `${checked} requests checked`);
  // The generator reaches every kind of cell, or the agreement above proves little.
  assert.ok(seen.allowed > 10 && seen.denied > 10 && seen.conditional > 10, JSON.stringify(seen));
});
