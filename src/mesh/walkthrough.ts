import type { MeshFile } from '../resources/mesh-file.ts';
import { httpStatus, type LocalMesh, type MeshAccess } from './local-mesh.ts';

/**
 * `rampart up --demo`: requests with and without mTLS and with a valid, an expired and a missing token, each shown
 * with what the server's sidecar decided and why (its access entry), then a summary table. Each step names what
 * Istio does with the same YAML; a step whose outcome differs is a failure (exit 1).
 */

export interface Step {
  readonly title: string;
  readonly from: string;
  readonly mtls: boolean;
  readonly token: 'none' | 'valid' | 'expired';
  readonly path: string;
  /** What Istio answers: a status, or 'reset' for a refused connection. */
  readonly expect: number | 'reset';
  readonly why: string;
}

export interface StepResult {
  readonly step: Step;
  readonly got: number | 'reset' | 'error';
  readonly access: MeshAccess | undefined;
  readonly ok: boolean;
}

/** Who sent a request, by the principal the server's sidecar verified (or the address, for plaintext). */
export function callerName(mesh: MeshFile, principal: string | undefined, ip: string | undefined): string {
  if (principal === undefined || principal === '') return `outside (${ip ?? '?'})`;
  const m = /\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(principal);
  const names = m === null ? [] : mesh.workloads.filter((w) => w.namespace === m[1] && w.serviceAccount === m[2]).map((w) => w.name);
  return names.length > 0 ? names.join('|') : principal;
}

/** The live line for one inbound access entry. */
export function accessLine(mesh: MeshFile, a: MeshAccess): string {
  const time = a.time.slice(11, 19);
  const to = a.workload.split('/')[1] ?? a.workload;
  const from = callerName(mesh, a.sourcePrincipal, a.sourceIp);
  if (a.kind === 'connection') return `${time}  ${from} → ${to}  connection refused: ${a.reason}`;
  const who = [a.mtls ? 'mTLS' : 'plaintext', a.requestPrincipal === undefined ? undefined : `JWT ${a.requestPrincipal}`].filter((x) => x !== undefined).join(', ');
  const request = a.kind === 'tcp' ? 'TCP' : `${a.method ?? ''} ${a.path ?? ''}`;
  // A policy names itself; otherwise the reason says what decided (no rule matched, a bad token…).
  const why = a.policy === null ? a.reason : `${a.decision === 'ALLOW' ? 'allowed' : 'denied'} by ${deciderName(a)}`;
  return `${time}  ${from} → ${to}  ${request}  ${a.status ?? '-'} ${a.decision}: ${why}  (${who})`;
}

/** The deciding policy and rule, or the layer that decided when no policy did. */
export function deciderName(a: MeshAccess): string {
  if (a.kind === 'connection') return 'mTLS mode';
  if (a.policy !== null) return `${a.policy}${a.rule === null ? '' : ` rule ${a.rule}`}`;
  return DECIDERS[a.decidedBy] ?? a.decidedBy;
}

const DECIDERS: Readonly<Record<string, string>> = {
  allow: 'no ALLOW rule matched',
  jwt: 'RequestAuthentication',
  custom: 'external authorizer',
  default: 'no policy applies',
  mtls: 'mTLS mode',
  request: 'malformed request',
};

export function walkthroughSteps(server: string, meshClient: string, otherClient: string): Step[] {
  const s = server.split('/')[1]!;
  const mc = meshClient.split('/')[1]!;
  const oc = otherClient.split('/')[1]!;
  return [
    { title: `${mc} calls ${s} over mTLS, no token`, from: meshClient, mtls: true, token: 'none', path: '/headers', expect: 200, why: `its identity is in require-jwt-or-mtls rule 0` },
    { title: `${mc} asks for /admin`, from: meshClient, mtls: true, token: 'none', path: '/admin', expect: 403, why: 'deny-admin: only the ops service account reaches /admin' },
    { title: `${oc} calls ${s} over mTLS, no token`, from: otherClient, mtls: true, token: 'none', path: '/headers', expect: 403, why: 'its identity is not allowed and it brings no token' },
    { title: `${oc} calls ${s} over mTLS with a valid token`, from: otherClient, mtls: true, token: 'valid', path: '/headers', expect: 200, why: 'the verified token matches require-jwt-or-mtls rule 1' },
    { title: `${oc} calls ${s} over mTLS with an expired token`, from: otherClient, mtls: true, token: 'expired', path: '/headers', expect: 401, why: 'RequestAuthentication refuses a bad token before authorization' },
    { title: `an outside client calls ${s} in plaintext with a valid token`, from: 'outside', mtls: false, token: 'valid', path: '/headers', expect: 'reset', why: 'STRICT mTLS: no certificate, no connection' },
    { title: `an outside client calls ${s} in plaintext, no token`, from: 'outside', mtls: false, token: 'none', path: '/headers', expect: 'reset', why: 'STRICT mTLS' },
  ];
}

/** Runs the steps one at a time, each matched with the server sidecar's access entry for it. */
export async function runWalkthrough(mesh: LocalMesh, server: string, steps: readonly Step[], onStep: (r: StepResult, index: number) => void): Promise<StepResult[]> {
  const w = mesh.workload(server);
  const port = w.ports[0];
  if (port === undefined) throw new Error(`${server} has no port to call`);
  const serviceHost = `${w.name}.${w.namespace}:${port.port}`;
  const entries: MeshAccess[] = [];
  const off = mesh.onAccess((a) => {
    if (a.workload === server) entries.push(a);
  });
  const results: StepResult[] = [];
  try {
    for (const [i, step] of steps.entries()) {
      const id = `demo-${Date.now()}-${i}`;
      const headers: Record<string, string> = { 'x-request-id': id, host: serviceHost };
      if (step.token !== 'none') headers['authorization'] = `Bearer ${await mesh.token(step.token)}`;
      const seen = entries.length;
      const got = step.mtls
        ? await mesh.request(step.from, serviceHost, step.path, headers)
        : await httpStatus({ host: w.address, port: port.port, path: step.path, headers });
      // The sidecar writes its access log every 100 ms.
      let access: MeshAccess | undefined;
      for (const end = Date.now() + 2_000; access === undefined && Date.now() < end;) {
        access = entries.slice(seen).find((a) => a.requestId === id || (!step.mtls && a.kind === 'connection'));
        if (access === undefined) await new Promise((r) => setTimeout(r, 20));
      }
      const r: StepResult = { step, got, access, ok: got === step.expect };
      results.push(r);
      onStep(r, i);
    }
  } finally {
    off();
  }
  return results;
}

/** The summary table of a walk-through. */
export function summaryTable(results: readonly StepResult[]): string {
  const head = ['#', 'request', 'mTLS', 'token', 'expected', 'got', 'decided by', ''];
  const rows = results.map((r, i) => [
    String(i + 1), r.step.title, r.step.mtls ? 'yes' : 'no', r.step.token, String(r.step.expect), String(r.got),
    r.access === undefined ? '-' : deciderName(r.access),
    r.ok ? 'as Istio' : 'DIFFERS',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  return [head, ...rows].map((row) => row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}
