import { RequestError } from '../errors.ts';
import { parseCheckRequest, type CheckRequest } from '../policy/request.ts';
import { decodeEnum, decodeList, decodeObject, decodeString, isPlainObject, type Path } from '../resources/decode.ts';
import type { Diagnostic } from '../resources/diagnostic.ts';
import type { MeshFile } from '../resources/mesh-file.ts';
import { Reporter } from '../resources/report.ts';
import { parseDocuments } from '../resources/yaml-source.ts';

/**
 * Policy test files (docs/policy-testing.md): requests in the `rampart check` format, each with the decision it must
 * get. Pure: the text in, cases or diagnostics (file, line, field path) out. Workload names are resolved against the
 * mesh file when one is given, so that a suite can say `source: {workload: default/sleep}`.
 */

export interface ExpectedDecision {
  readonly decision: 'ALLOW' | 'DENY';
  readonly status?: number | null;
  readonly connection?: 'refused' | 'reset';
  /** `namespace/name` of the deciding policy, or null for "no policy decided". */
  readonly policy?: string | null;
  readonly rule?: number | null;
  readonly decidedBy?: string;
  /** A part of the reason. */
  readonly reason?: string;
}

export interface SuiteCase {
  readonly name: string;
  readonly file: string;
  readonly line: number;
  readonly request: CheckRequest;
  /** Unset in a suite run only for `--diff`, where the two configurations are compared instead. */
  readonly expect: ExpectedDecision | undefined;
  readonly extAuthz: 'allow' | 'deny' | undefined;
}

export interface Suite {
  readonly file: string;
  /** What token times are judged against (`now:` in the file), in ms; the real clock when absent. */
  readonly now: number | undefined;
  readonly cases: readonly SuiteCase[];
}

const CASE_FIELDS = ['name', 'request', 'expect', 'extAuthz'];
const EXPECT_FIELDS = ['decision', 'status', 'connection', 'policy', 'rule', 'decidedBy', 'reason'];
const DECIDED_BY = ['mtls', 'request', 'jwt', 'custom', 'deny', 'allow', 'default'];

/** A suite is a mapping (`now`, `cases`) or just the list of cases. */
export function parseSuite(text: string, file: string, mesh: MeshFile | undefined): { suite: Suite; diagnostics: Diagnostic[] } {
  const { documents, diagnostics } = parseDocuments(text, file);
  const cases: SuiteCase[] = [];
  let now: number | undefined;
  const doc = documents[0];
  if (doc === undefined) {
    if (diagnostics.length === 0) diagnostics.push({ severity: 'error', code: 'ERR_SUITE_EMPTY', message: 'no test cases', file, line: 1, path: '' });
    return { suite: { file, now, cases }, diagnostics };
  }
  const r = new Reporter(doc);
  let list: unknown[] | undefined;
  let base: Path = [];
  if (Array.isArray(doc.value)) {
    list = doc.value;
  } else {
    const top = decodeObject(r, doc.value, [], ['now', 'cases']);
    if (top !== undefined) {
      const t = top['now'];
      if (t !== undefined) {
        const ms = t instanceof Date ? t.getTime() : typeof t === 'string' ? Date.parse(t) : NaN;
        if (Number.isNaN(ms)) r.error(['now'], 'ERR_SUITE_NOW', 'must be a date and time, e.g. 2026-12-06T10:00:00Z');
        else now = ms;
      }
      list = decodeList(r, top['cases'], ['cases']);
      if (top['cases'] === undefined) r.error(['cases'], 'ERR_SUITE_EMPTY', 'a suite needs `cases`, a list of requests with their expected decisions');
      base = ['cases'];
    }
  }
  const names = new Set<string>();
  (list ?? []).forEach((item, i) => {
    const path: Path = [...base, i];
    const c = decodeObject(r, item, path, CASE_FIELDS);
    if (c === undefined) {
      if (item === undefined || !isPlainObject(item)) r.error(path, 'ERR_FIELD_TYPE', 'a case must be a mapping');
      return;
    }
    const name = decodeString(r, c['name'], [...path, 'name']) ?? `case ${i + 1}`;
    if (names.has(name)) r.error([...path, 'name'], 'ERR_SUITE_DUPLICATE', `another case is named "${name}"`);
    names.add(name);
    const request = decodeRequest(r, c['request'], [...path, 'request'], mesh);
    const expect = decodeExpect(r, c['expect'], [...path, 'expect']);
    const extAuthz = decodeEnum(r, c['extAuthz'], [...path, 'extAuthz'], ['allow', 'deny'] as const);
    if (request !== undefined) cases.push({ name, file, line: r.lineOf(path), request, expect, extAuthz });
  });
  if (list !== undefined && list.length === 0) r.error(base, 'ERR_SUITE_EMPTY', 'no test cases');
  return { suite: { file, now, cases }, diagnostics: [...diagnostics, ...r.diagnostics] };
}

function decodeRequest(r: Reporter, value: unknown, path: Path, mesh: MeshFile | undefined): CheckRequest | undefined {
  if (value === undefined) {
    r.error(path, 'ERR_FIELD_REQUIRED', 'a case needs a request (the rampart check format)');
    return undefined;
  }
  if (!isPlainObject(value)) {
    r.error(path, 'ERR_FIELD_TYPE', 'must be a mapping');
    return undefined;
  }
  const req: Record<string, unknown> = { ...value };
  // Workload names instead of labels and principals, from the mesh file.
  for (const side of ['destination', 'source'] as const) {
    const v = req[side];
    if (!isPlainObject(v) || v['workload'] === undefined) continue;
    const ref = v['workload'];
    const at = [...path, side, 'workload'];
    if (mesh === undefined) {
      r.error(at, 'ERR_SUITE_WORKLOAD', 'a workload name needs a mesh directory (mesh.yaml) to look it up in');
      return undefined;
    }
    const w = typeof ref === 'string' ? mesh.workloads.find((x) => `${x.namespace}/${x.name}` === ref) : undefined;
    if (w === undefined) {
      const known = mesh.workloads.map((x) => `${x.namespace}/${x.name}`).join(', ');
      r.error(at, 'ERR_SUITE_WORKLOAD', `no workload ${JSON.stringify(ref)} in the mesh file (it has ${known === '' ? 'none' : known})`);
      return undefined;
    }
    const { workload: _, ...rest } = v;
    req[side] = side === 'destination'
      ? { namespace: w.namespace, labels: w.labels, ...(w.ports[0] === undefined ? {} : { port: w.ports[0].port }), ...rest }
      : { principal: `${mesh.mesh.trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}`, ...rest };
  }
  try {
    return parseCheckRequest(req);
  } catch (e) {
    if (!(e instanceof RequestError)) throw e;
    const segments: Path = e.path === 'request' ? [] : e.path.split('.').map((s) => (/^\d+$/.test(s) ? Number(s) : s));
    r.error([...path, ...segments], 'ERR_REQUEST_INVALID', e.message.slice(e.path.length + 2));
    return undefined;
  }
}

function decodeExpect(r: Reporter, value: unknown, path: Path): ExpectedDecision | undefined {
  if (value === undefined) return undefined;
  // Short form: `expect: ALLOW` or `expect: DENY 403` / `DENY refused`.
  if (typeof value === 'string') {
    const m = /^(ALLOW|DENY)(?: (\d{3}|refused|reset))?$/.exec(value.trim());
    if (m === null) {
      r.error(path, 'ERR_SUITE_EXPECT', 'write ALLOW, DENY, "DENY 403", "DENY 401", "DENY refused" or "DENY reset", or a mapping');
      return undefined;
    }
    const more = m[2] === undefined ? {} : /^\d+$/.test(m[2]) ? { status: Number(m[2]) } : { status: null, connection: m[2] as 'refused' | 'reset' };
    return { decision: m[1] as 'ALLOW' | 'DENY', ...more };
  }
  const e = decodeObject(r, value, path, EXPECT_FIELDS);
  if (e === undefined) return undefined;
  const decision = decodeEnum(r, e['decision'], [...path, 'decision'], ['ALLOW', 'DENY'] as const);
  if (decision === undefined) {
    if (e['decision'] === undefined) r.error([...path, 'decision'], 'ERR_FIELD_REQUIRED', 'ALLOW or DENY');
    return undefined;
  }
  const out: { -readonly [K in keyof ExpectedDecision]: ExpectedDecision[K] } = { decision };
  const status = e['status'];
  if (status !== undefined) {
    if (status === null || (typeof status === 'number' && Number.isInteger(status) && status >= 100 && status <= 599)) out.status = status;
    else r.error([...path, 'status'], 'ERR_FIELD_TYPE', 'an HTTP status (200, 401, 403…), or null for no HTTP answer');
  }
  const connection = decodeEnum(r, e['connection'], [...path, 'connection'], ['refused', 'reset'] as const);
  if (connection !== undefined) out.connection = connection;
  const policy = e['policy'];
  if (policy !== undefined) {
    if (policy === null || (typeof policy === 'string' && /^[^/\s]+\/[^/\s]+$/.test(policy))) out.policy = policy;
    else r.error([...path, 'policy'], 'ERR_FIELD_TYPE', 'namespace/name of the deciding policy, or null');
  }
  const rule = e['rule'];
  if (rule !== undefined) {
    if (rule === null || (typeof rule === 'number' && Number.isInteger(rule) && rule >= 0)) out.rule = rule;
    else r.error([...path, 'rule'], 'ERR_FIELD_TYPE', 'the index of the deciding rule, or null');
  }
  const decidedBy = decodeEnum(r, e['decidedBy'], [...path, 'decidedBy'], DECIDED_BY);
  if (decidedBy !== undefined) out.decidedBy = decidedBy;
  const reason = decodeString(r, e['reason'], [...path, 'reason']);
  if (reason !== undefined) out.reason = reason;
  return out;
}
