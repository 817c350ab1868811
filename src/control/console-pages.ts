import { meshAccessMatrix, type AccessCell, type AccessMatrix } from '../policy/access-matrix.ts';
import { PolicyEngine } from '../policy/engine.ts';
import type { MeshWorkload } from '../resources/mesh-file.ts';
import type { FeedEntry } from './decision-feed.ts';
import type { StatusReport } from './protocol.ts';
import type { MeshState } from './snapshot.ts';

/**
 * The console's pages, rendered on the server from the control plane's state: plain HTML that works without
 * script; the decision stream alone needs the small script of console-assets.ts. Pure: state and time in, text out.
 * Everything shown that came from configuration or from a request (names, paths, reasons) is escaped: a request
 * path is attacker-controlled text.
 */

/** Escapes text for HTML element content and double-quoted attribute values. */
export function escapeHtml(v: unknown): string {
  return String(v).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A template whose interpolations are escaped, except those already rendered (`Raw`). */
class Raw {
  constructor(readonly html: string) {}
}
function html(strings: TemplateStringsArray, ...values: unknown[]): Raw {
  let out = strings[0]!;
  values.forEach((v, i) => {
    const text = v instanceof Raw ? v.html : Array.isArray(v) ? v.map((x) => (x instanceof Raw ? x.html : escapeHtml(x))).join('') : escapeHtml(v ?? '');
    out += text + strings[i + 1]!;
  });
  return new Raw(out);
}

export type ConsolePage = 'workloads' | 'policies' | 'access' | 'decisions';

function layout(title: string, page: ConsolePage, status: StatusReport, body: Raw): string {
  const nav: [ConsolePage, string, string][] = [['workloads', 'Workloads', './'], ['policies', 'Policies', 'policies'], ['access', 'Access', 'access'], ['decisions', 'Decisions', 'decisions']];
  return `<!doctype html>\n${html`<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title} · Rampart</title><link rel="stylesheet" href="/console/console.css"></head>
<body data-page="${page}"><header><span class="brand">Rampart</span><nav>${nav.map(([p, label, href]) => html`<a href="/console/${href === './' ? '' : href}"${new Raw(p === page ? ' aria-current="page"' : '')}>${label}</a>`)}</nav>
<span class="version">config version <b data-testid="config-version">${status.version ?? '–'}</b> · ${status.source}</span></header>
<main>${status.rejected.length > 0 ? html`<div class="alert" role="alert"><b>${status.rejectedFiles.length} file(s) rejected; their last good content stays in force.</b><pre>${status.rejected.join('\n')}</pre></div>` : ''}${body}</main>
<script src="/console/console.js" defer></script></body></html>`.html}\n`;
}

/** "in 23 h 59 min", "2 min ago": how far `iso` is from `now`. */
export function relativeTime(iso: string, now: Date): string {
  const ms = Date.parse(iso) - now.getTime();
  const a = Math.abs(ms);
  const text = a < 60_000 ? `${Math.round(a / 1000)} s` : a < 3_600_000 ? `${Math.floor(a / 60_000)} min` : a < 172_800_000 ? `${Math.floor(a / 3_600_000)} h ${Math.floor((a % 3_600_000) / 60_000)} min` : `${Math.floor(a / 86_400_000)} days`;
  return ms >= 0 ? `in ${text}` : `${text} ago`;
}

const key = (w: Pick<MeshWorkload, 'namespace' | 'name'>): string => `${w.namespace}/${w.name}`;

export function workloadsPage(state: MeshState, status: StatusReport, now: Date): string {
  const td = state.mesh.mesh.trustDomain;
  const rows = state.mesh.workloads.map((w) => {
    const proxies = status.proxies.filter((p) => p.workload === key(w));
    const id = `spiffe://${td}/ns/${w.namespace}/sa/${w.serviceAccount}`;
    const proxyCells = proxies.length === 0
      ? html`<td class="warn">no sidecar connected</td><td>–</td><td>–</td>`
      : html`<td>${proxies.map((p) => html`<div><span class="badge ${p.state === 'ACK' && p.ackedVersion === status.version ? 'ok' : 'warn'}">${p.state}</span> proxy ${p.id} at ${p.address}${p.error === null ? '' : html`<div class="error">${p.error}</div>`}</div>`)}</td>
<td>${proxies.map((p) => html`<div>${p.ackedVersion ?? '–'}${p.ackedVersion !== status.version ? html` <span class="warn">(current: ${status.version})</span>` : ''}</div>`)}</td>
<td>${proxies.map((p) => html`<div>${p.certNotAfter === null ? '–' : html`<time datetime="${p.certNotAfter}" title="${p.certNotAfter}">${relativeTime(p.certNotAfter, now)}</time>`}</div>`)}</td>`;
    return html`<tr data-workload="${key(w)}"><td><a href="/console/policies#${key(w)}">${key(w)}</a></td><td><code>${id}</code></td>
<td>${w.ports.map((p) => html`<div>${p.port} ${p.protocol}</div>`)}</td>${proxyCells}</tr>`;
  });
  const cp = status.controlPlane;
  const body = html`<h1>Workloads</h1>
<p>${state.mesh.workloads.length} workload(s) in trust domain <code>${td}</code>; ${status.proxies.length} sidecar(s) connected. Control plane <code>${cp.identity}</code>${cp.certNotAfter === null ? '' : html`, its certificate expires <time datetime="${cp.certNotAfter}">${relativeTime(cp.certNotAfter, now)}</time>`}.</p>
<table class="grid" data-testid="workloads"><thead><tr><th>Workload</th><th>Identity (SPIFFE ID)</th><th>Ports</th><th>Sidecar</th><th>Config version</th><th>Certificate expires</th></tr></thead>
<tbody>${rows}</tbody></table>`;
  return layout('Workloads', 'workloads', status, body);
}

/** A state's engine and matrix, built once per configuration version. */
export class ConsoleModel {
  #version = -1;
  #engine: PolicyEngine | undefined;
  #matrix: AccessMatrix | undefined;

  engine(state: MeshState): PolicyEngine {
    if (this.#version !== state.version || this.#engine === undefined) {
      this.#version = state.version;
      this.#engine = new PolicyEngine(state.resources, state.mesh.mesh);
      this.#matrix = undefined;
    }
    return this.#engine;
  }

  matrix(state: MeshState): AccessMatrix {
    const engine = this.engine(state);
    return (this.#matrix ??= meshAccessMatrix(engine, state.mesh));
  }
}

export function policiesPage(state: MeshState, status: StatusReport, model: ConsoleModel): string {
  const engine = model.engine(state);
  const docOf = (kind: string, ns: string, name: string): string | undefined => {
    const d = state.documents.find((x) => x.kind === kind && x.namespace === ns && x.name === name);
    return d === undefined ? undefined : JSON.stringify(JSON.parse(d.json) as unknown, null, 2);
  };
  const sections = state.mesh.workloads.map((w) => {
    const wp = engine.workload(w.namespace, w.labels);
    const ports = w.ports.map((p) => `${p.port}: ${wp.mtls.modeFor(p.port)}`).join(', ');
    const resources = [
      ...wp.requestAuthentications.map((r) => ({ kind: r.kind, r, action: 'JWT' })),
      ...wp.authorizationPolicies.map((r) => ({ kind: r.kind, r, action: r.spec.action ?? 'ALLOW' })),
    ];
    const items = resources.map(({ kind, r, action }) => {
      const text = docOf(kind, r.meta.namespace, r.meta.name);
      const dry = r.meta.annotations?.['istio.io/dry-run'] === 'true' ? html` <span class="badge">dry-run</span>` : '';
      return html`<li><span class="badge action-${action.toLowerCase()}">${action}</span> <b>${kind}</b> ${r.meta.namespace}/${r.meta.name}${dry} <span class="muted">${r.source.file}:${r.source.line}</span>
${text === undefined ? '' : html`<details><summary>resource</summary><pre>${text}</pre></details>`}</li>`;
    });
    const levels = wp.mtls.levels.map((l) => `${l.level} ${l.policy}: ${l.mode}`).join('; ');
    return html`<section id="${key(w)}" data-workload="${key(w)}"><h2>${key(w)}</h2>
<p>mTLS per port: <b>${ports}</b>${levels === '' ? ' (no PeerAuthentication: PERMISSIVE)' : html` <span class="muted">(${levels})</span>`}</p>
${resources.length === 0 ? html`<p class="muted">No RequestAuthentication or AuthorizationPolicy applies: every request that passes mTLS is allowed.</p>` : html`<ul class="policies">${items}</ul>`}</section>`;
  });
  return layout('Policies', 'policies', status, html`<h1>Policies per workload</h1>
<p>What each workload's sidecar enforces: the resources whose scope and selector select it, in the order Istio applies them (CUSTOM, DENY, ALLOW; AUDIT only logs).</p>${sections}`);
}

const OUTCOME: Record<AccessCell['outcome'], string> = { allowed: 'allowed', denied: 'denied', conditional: 'conditional' };

export function accessPage(state: MeshState, status: StatusReport, model: ConsoleModel): string {
  const m = model.matrix(state);
  const cellOf = (s: string, d: AccessMatrix['destinations'][number]): AccessCell => m.cells.find((c) => c.source === s && c.destination === d.workload && c.port === d.port)!;
  const head = html`<tr><th>caller ↓ / destination →</th>${m.destinations.map((d) => html`<th><div>${d.workload}</div><div class="muted">:${d.port} ${d.traffic}</div></th>`)}</tr>`;
  const rows = m.sources.map((s) => html`<tr><th>${s}</th>${m.destinations.map((d) => {
    const c = cellOf(s, d);
    const why = c.outcome === 'conditional' ? `allowed when ${c.condition ?? ''}` : c.reason;
    return html`<td class="cell ${OUTCOME[c.outcome]}" data-source="${s}" data-destination="${d.workload}:${d.port}" title="${why}"><span class="mark">${c.outcome === 'allowed' ? '✓' : c.outcome === 'denied' ? '✕' : '?'}</span><div class="why">${why}</div></td>`;
  })}</tr>`);
  return layout('Access', 'access', status, html`<h1>Who may call what</h1>
<p>Computed from the compiled policies of version ${status.version ?? '–'}, not by sampling requests (the same as <code>rampart access</code>). <span class="legend"><span class="cell allowed">✓ allowed</span> <span class="cell conditional">? allowed on a condition</span> <span class="cell denied">✕ denied</span></span></p>
<table class="matrix" data-testid="access-matrix"><thead>${head}</thead><tbody>${rows}</tbody></table>`);
}

export function decisionsPage(status: StatusReport, dropped: number): string {
  return layout('Decisions', 'decisions', status, html`<h1>Live decisions</h1>
<p>Every request the sidecars decide, as they report it (newest first). Select a denial for its explanation. <span class="muted" data-testid="stream-state">connecting…</span>${dropped > 0 ? html` <span class="warn">${dropped} decision(s) were over the sidecars' reporting rate and are not shown.</span>` : ''}</p>
<table class="grid decisions" data-testid="decisions"><thead><tr><th>Time</th><th>Workload</th><th>Caller</th><th>Request</th><th>Status</th><th>Decision</th><th>Decided by</th><th>Reason</th></tr></thead><tbody></tbody></table>
<aside id="explanation" hidden><h2>Why</h2><pre data-testid="explanation"></pre></aside>`);
}

/** A decision on its own page: the link target of a stream row, and the answer without script. */
export function decisionPage(status: StatusReport, e: FeedEntry | undefined, id: number): string {
  if (e === undefined) return layout('Decision', 'decisions', status, html`<h1>Decision ${id}</h1><p>Not kept any more (the console keeps the most recent decisions only), or never reported.</p>`);
  return layout(`Decision ${id}`, 'decisions', status, html`<h1>Decision ${id}: ${e.decision}${e.status === undefined ? '' : ` (${e.status})`}</h1>
<dl class="facts"><dt>Time</dt><dd>${e.time}</dd><dt>Workload</dt><dd>${e.workload} (proxy ${e.proxy}, config version ${e.configVersion})</dd>
<dt>Caller</dt><dd>${e.sourcePrincipal ?? 'no peer identity'}${e.mtls ? ' (mTLS)' : ' (plaintext)'} from ${e.sourceIp ?? '?'}${e.requestPrincipal === undefined ? '' : `; token ${e.requestPrincipal}`}</dd>
<dt>Request</dt><dd>${e.kind === 'http' ? `${e.method ?? ''} ${e.authority ?? ''}${e.path ?? ''}` : e.kind} on port ${e.port}</dd>
<dt>Decided by</dt><dd>${e.decidedBy}${e.policy === null ? '' : ` ${e.policy}${e.rule === null ? '' : ` rule ${e.rule}`}`}</dd><dt>Reason</dt><dd>${e.reason}</dd></dl>
${e.explanation === undefined ? html`<p class="muted">${e.decision === 'DENY' ? 'The sidecar sent no explanation (over its reporting budget).' : 'Allowed requests carry no trace.'}</p>` : html`<h2>Explanation</h2><pre data-testid="explanation">${e.explanation}</pre>`}`);
}

export function loginPage(failed: boolean): string {
  return `<!doctype html>\n${html`<html lang="en"><head><meta charset="utf-8"><title>Sign in · Rampart</title><link rel="stylesheet" href="/console/console.css"></head>
<body><main class="login"><h1>Rampart console</h1><p>This admin port is bound beyond the loopback address; it needs the token given to <code>--admin-token-file</code>.</p>
${failed ? html`<p class="error" role="alert">That token is not the one.</p>` : ''}<form method="post" action="/console/login"><label>Token <input type="password" name="token" autocomplete="current-password" required autofocus></label> <button type="submit">Sign in</button></form></main></body></html>`.html}\n`;
}
