import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Decision } from '../../src/policy/decision.ts';
import { decideYaml, httpRequest, outcome, tcpRequest } from './decide.ts';

/**
 * Table runner for the istio.io task rows (test/istio-tasks-*.test.ts): one row is one request a task page shows,
 * decided against the YAML the page applies at that step, with the outcome the page states.
 */

export type Outcome = 'ALLOW' | 'DENY 403' | 'DENY 401' | 'DENY 400' | 'DENY refused' | 'DENY reset';

export interface TaskRow {
  readonly name: string;
  /** Every resource in force at that step of the task (multi-document YAML). */
  readonly yaml: string;
  readonly req: unknown;
  readonly want: Outcome;
  /** MeshConfig YAML (bare, or the `istio` ConfigMap). */
  readonly mesh?: string;
  /** What the external authorizer answers, for CUSTOM rows. */
  readonly extAuthz?: 'allow' | 'deny';
  /** Deciding policy `ns/name`; null asserts that no policy decided (default allow, or no ALLOW rule matched). */
  readonly policy?: string | null;
  readonly rule?: number;
  readonly reason?: RegExp;
  /** Further assertions (dry-run shadow results, audit marks, CUSTOM delegation). */
  readonly check?: (d: Decision) => void;
}

/** Registers one test per row, named `<page>: <row name>`. */
export function taskRows(page: string, rows: readonly TaskRow[]): void {
  for (const row of rows) {
    test(`${page}: ${row.name}`, () => {
      const d = decideYaml(row.yaml, row.req, {
        ...(row.mesh === undefined ? {} : { mesh: row.mesh }),
        decide: row.extAuthz === undefined ? {} : { extAuthz: row.extAuthz },
      });
      assert.equal(outcome(d), row.want, `reason: ${d.reason}`);
      if (row.policy !== undefined) assert.equal(d.policy, row.policy, `reason: ${d.reason}`);
      if (row.rule !== undefined) assert.equal(d.rule, row.rule, `reason: ${d.reason}`);
      if (row.reason !== undefined) assert.match(d.reason, row.reason);
      row.check?.(d);
    });
  }
}

/** Template tag for indented YAML blocks: drops the first newline and the common indentation. */
export function yaml(strings: TemplateStringsArray, ...values: readonly unknown[]): string {
  let text = strings.raw.reduce((acc, s, i) => acc + s + (i < values.length ? String(values[i]) : ''), '');
  text = text.replace(/^\n/, '').replace(/\n[ \t]*$/, '\n');
  const lines = text.split('\n');
  const indents = lines.filter((l) => l.trim() !== '').map((l) => /^ */.exec(l)![0].length);
  const cut = indents.length === 0 ? 0 : Math.min(...indents);
  return lines.map((l) => l.slice(cut)).join('\n');
}

/** Joins documents into one multi-document YAML stream. */
export const stream = (...documents: readonly string[]): string => documents.join('---\n');

/** A verified JWT as the `auth` field of a check request: `principal` is `iss/sub`, `claims` the payload. */
export function jwt(claims: Readonly<Record<string, unknown>>): { principal: string; claims: Readonly<Record<string, unknown>> } {
  const iss = typeof claims['iss'] === 'string' ? claims['iss'] : '';
  const sub = typeof claims['sub'] === 'string' ? claims['sub'] : '';
  return { principal: `${iss}/${sub}`, claims };
}

type HttpOver = Parameters<typeof httpRequest>[0];
type TcpOver = Parameters<typeof tcpRequest>[0];

/** samples/httpbin: Service port 8000, container (workload) port 8080, labels app=httpbin, version=v1. */
export const HTTPBIN = { app: 'httpbin', version: 'v1' } as const;

/** An HTTP request to the httpbin sample in `ns` (default foo) on its workload port. */
export const toHttpbin = (over: HttpOver = {}): unknown =>
  httpRequest({ ns: 'foo', labels: { ...HTTPBIN }, port: 8080, host: `httpbin.${over.ns ?? 'foo'}:8000`, path: '/ip', ...over });

/** A TCP connection to a workload. */
export const tcpTo = (over: TcpOver): unknown => tcpRequest(over);

/** The SPIFFE identity (without `spiffe://`) of service account `sa` in `ns`. */
export const sa = (ns: string, name: string, td = 'cluster.local'): string => `${td}/ns/${ns}/sa/${name}`;
