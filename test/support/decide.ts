import assert from 'node:assert/strict';
import { PolicyEngine, type DecideOptions } from '../../src/policy/engine.ts';
import type { Decision } from '../../src/policy/decision.ts';
import { parseCheckRequest, type CheckRequest } from '../../src/policy/request.ts';
import { loadResources } from '../../src/resources/load.ts';
import { DEFAULT_MESH, parseMeshConfig, type MeshSettings } from '../../src/resources/mesh-config.ts';

/** Loads YAML (failing the test on any load error), builds an engine and decides one request with the trace on. */
export function decideYaml(yaml: string, request: unknown, opts: { mesh?: string; decide?: DecideOptions } = {}): Decision {
  let mesh: MeshSettings = DEFAULT_MESH;
  if (opts.mesh !== undefined) {
    const m = parseMeshConfig(opts.mesh, 'mesh.yaml');
    assert.deepEqual(m.diagnostics.filter((d) => d.severity === 'error'), [], 'mesh config has errors');
    mesh = m.mesh;
  }
  const loaded = loadResources([{ file: 'policies.yaml', text: yaml }], { rootNamespace: mesh.rootNamespace });
  const errors = loaded.diagnostics.filter((d) => d.severity === 'error');
  assert.deepEqual(errors, [], 'policies have errors');
  const engine = new PolicyEngine(loaded.resources, mesh);
  const req: CheckRequest = parseCheckRequest(request);
  return engine.decide(req, { trace: true, ...opts.decide });
}

/** Short form of a decision for table assertions: `ALLOW`, `DENY 403`, `DENY refused`, `DENY reset`, `DENY 401`. */
export function outcome(d: Decision): string {
  if (d.decision === 'ALLOW') return 'ALLOW';
  if (d.status === null) return `DENY ${d.connection ?? 'closed'}`;
  return `DENY ${d.status}`;
}

/** An mTLS HTTP request from `principal` to a workload in `ns` with `labels`. */
export function httpRequest(over: {
  ns?: string;
  labels?: Record<string, string>;
  port?: number;
  principal?: string | null;
  sourceIp?: string;
  method?: string;
  path?: string;
  host?: string;
  headers?: Record<string, string | string[]>;
  auth?: unknown;
  remoteIp?: string;
  sni?: string;
  destIp?: string;
}): unknown {
  return {
    destination: { namespace: over.ns ?? 'foo', labels: over.labels ?? { app: 'httpbin' }, port: over.port ?? 8000, ...(over.destIp === undefined ? {} : { ip: over.destIp }) },
    source: {
      ...(over.principal === null ? {} : { principal: over.principal ?? 'cluster.local/ns/foo/sa/sleep' }),
      ip: over.sourceIp ?? '10.0.0.9',
    },
    ...(over.remoteIp === undefined ? {} : { remoteIp: over.remoteIp }),
    ...(over.sni === undefined ? {} : { sni: over.sni }),
    http: { method: over.method ?? 'GET', host: over.host ?? 'httpbin.foo:8000', path: over.path ?? '/ip', headers: over.headers ?? {} },
    ...(over.auth === undefined ? {} : { auth: over.auth }),
  };
}

/** The same as a TCP connection (no http). */
export function tcpRequest(over: { ns?: string; labels?: Record<string, string>; port?: number; principal?: string | null; sourceIp?: string; destIp?: string; sni?: string }): unknown {
  return {
    destination: { namespace: over.ns ?? 'foo', labels: over.labels ?? { app: 'tcp-echo' }, port: over.port ?? 9000, ...(over.destIp === undefined ? {} : { ip: over.destIp }) },
    source: { ...(over.principal === null ? {} : { principal: over.principal ?? 'cluster.local/ns/foo/sa/sleep' }), ip: over.sourceIp ?? '10.0.0.9' },
    ...(over.sni === undefined ? {} : { sni: over.sni }),
  };
}
