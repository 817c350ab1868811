import { RampartError } from '../errors.ts';
import { formatDiagnostic } from '../resources/diagnostic.ts';
import { parseDocuments } from '../resources/yaml-source.ts';

/**
 * `demo.yaml` beside a mesh file: what `rampart up` runs besides the control plane and the sidecars — a local JWT
 * issuer, echo apps, the client apps' HTTP proxy ports, and the roles of the scripted walk-through. Every field is
 * optional; a mesh directory without the file gets the control plane and the sidecars only.
 */

export class DemoConfigError extends RampartError {
  constructor(message: string) {
    super('ERR_DEMO_CONFIG', message);
  }
}

export interface DemoIssuer {
  readonly iss: string;
  readonly audience: string;
  readonly host: string;
  readonly port: number;
}

export interface DemoConfig {
  readonly issuer?: DemoIssuer;
  /** `namespace/name` of workloads that get an echo app on every port. */
  readonly apps: readonly string[];
  readonly clients: ReadonlyArray<{ readonly workload: string; readonly outboundPort: number }>;
  readonly walkthrough?: { readonly server: string; readonly meshClient: string; readonly otherClient: string };
}

export const EMPTY_DEMO: DemoConfig = { apps: [], clients: [] };

export function parseDemoConfig(text: string, file: string): DemoConfig {
  const parsed = parseDocuments(text, file);
  const errors = parsed.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0) throw new DemoConfigError(errors.map(formatDiagnostic).join('\n'));
  const v = parsed.documents[0]?.value ?? {};
  const fail = (path: string, what: string): never => {
    throw new DemoConfigError(`${file}: ${path}: ${what}`);
  };
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('(top)', 'expected a mapping');
  const o = v as Record<string, unknown>;
  const str = (x: unknown, path: string): string => (typeof x === 'string' && x !== '' ? x : fail(path, 'expected a non-empty string'));
  const workload = (x: unknown, path: string): string => (/^[a-z0-9-]+\/[a-z0-9.-]+$/.test(str(x, path)) ? (x as string) : fail(path, 'expected NAMESPACE/NAME'));
  const port = (x: unknown, path: string): number => (typeof x === 'number' && Number.isInteger(x) && x > 0 && x < 65536 ? x : fail(path, 'expected a port number'));
  let issuer: DemoIssuer | undefined;
  if (o['issuer'] !== undefined) {
    const i = o['issuer'] as Record<string, unknown>;
    const listen = str(i['listen'], 'issuer.listen');
    const m = /^([0-9.]+):(\d+)$/.exec(listen) ?? fail('issuer.listen', 'expected HOST:PORT');
    issuer = { iss: str(i['iss'], 'issuer.iss'), audience: str(i['audience'], 'issuer.audience'), host: m[1]!, port: port(Number(m[2]), 'issuer.listen') };
  }
  const list = (key: string): unknown[] => (o[key] === undefined ? [] : Array.isArray(o[key]) ? (o[key] as unknown[]) : fail(key, 'expected a list'));
  const apps = list('apps').map((a, i) => workload(a, `apps[${i}]`));
  const clients = list('clients').map((c, i) => {
    const x = c as Record<string, unknown>;
    return { workload: workload(x['workload'], `clients[${i}].workload`), outboundPort: port(x['outboundPort'], `clients[${i}].outboundPort`) };
  });
  let walkthrough: DemoConfig['walkthrough'];
  if (o['walkthrough'] !== undefined) {
    const w = o['walkthrough'] as Record<string, unknown>;
    walkthrough = { server: workload(w['server'], 'walkthrough.server'), meshClient: workload(w['meshClient'], 'walkthrough.meshClient'), otherClient: workload(w['otherClient'], 'walkthrough.otherClient') };
  }
  return { ...(issuer === undefined ? {} : { issuer }), apps, clients, ...(walkthrough === undefined ? {} : { walkthrough }) };
}
