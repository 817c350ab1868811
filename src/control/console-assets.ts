/**
 * The console's stylesheet and its one script, served from the admin port itself (no CDN, no build step). The script
 * only fills the live decision table from the event stream and shows a denial's explanation; every other page is
 * complete HTML. It writes request data into the page with textContent only, never as markup.
 */

export const CONSOLE_CSS = `
:root { --ok: #1a7f37; --bad: #cf222e; --cond: #9a6700; --line: #d0d7de; --muted: #57606a; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; }
header { display: flex; gap: 24px; align-items: center; padding: 10px 20px; background: #24292f; color: #fff; }
header .brand { font-weight: 700; letter-spacing: .02em; }
header nav a { color: #d0d7de; text-decoration: none; margin-right: 14px; }
header nav a[aria-current] { color: #fff; border-bottom: 2px solid #fff; }
header .version { margin-left: auto; color: #d0d7de; font-size: 12px; }
main { padding: 16px 20px; }
h1 { font-size: 20px; margin: 4px 0 8px; } h2 { font-size: 16px; margin: 18px 0 6px; }
code, pre { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
pre { background: var(--bg); border: 1px solid var(--line); padding: 8px; overflow: auto; white-space: pre-wrap; }
table { border-collapse: collapse; }
.grid th, .grid td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
.grid thead th { background: var(--bg); }
.muted { color: var(--muted); } .warn { color: var(--cond); } .error { color: var(--bad); }
.badge { display: inline-block; padding: 0 6px; border-radius: 10px; font-size: 11px; border: 1px solid var(--line); }
.badge.ok { color: var(--ok); border-color: var(--ok); } .badge.warn { color: var(--cond); border-color: var(--cond); }
.action-deny { color: var(--bad); } .action-allow { color: var(--ok); } .action-custom, .action-jwt, .action-audit { color: #0969da; }
.alert { border: 1px solid var(--bad); background: #ffebe9; padding: 8px; margin-bottom: 12px; }
ul.policies { list-style: none; padding: 0; } ul.policies li { margin: 4px 0; }
.matrix th, .matrix td { border: 1px solid var(--line); padding: 6px; font-size: 12px; }
.matrix thead th { background: var(--bg); vertical-align: bottom; }
.matrix tbody th { text-align: left; background: var(--bg); white-space: nowrap; }
.cell { min-width: 120px; max-width: 240px; vertical-align: top; }
.cell .mark { font-size: 18px; font-weight: 700; }
.cell .why { font-size: 11px; color: #1f2328; }
.cell.allowed, .legend .allowed { background: #dafbe1; } .cell.allowed .mark { color: var(--ok); }
.cell.denied, .legend .denied { background: #ffebe9; } .cell.denied .mark { color: var(--bad); }
.cell.conditional, .legend .conditional { background: #fff8c5; } .cell.conditional .mark { color: var(--cond); }
.legend .cell { display: inline-block; min-width: 0; padding: 0 6px; margin-left: 6px; }
.decisions tr.deny { background: #fff5f5; cursor: pointer; } .decisions tr.deny:hover { background: #ffebe9; }
.decisions tr.selected { outline: 2px solid #0969da; }
.decisions td.decision-deny { color: var(--bad); font-weight: 600; } .decisions td.decision-allow { color: var(--ok); }
aside#explanation { position: sticky; bottom: 0; background: #fff; border-top: 2px solid #0969da; padding: 6px 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; } dl.facts dt { color: var(--muted); }
main.login { max-width: 420px; margin: 60px auto; }
`;

export const CONSOLE_JS = `
'use strict';
(function () {
  if (document.body.dataset.page !== 'decisions') return;
  var tbody = document.querySelector('table.decisions tbody');
  var state = document.querySelector('[data-testid=stream-state]');
  var aside = document.getElementById('explanation');
  var pre = aside.querySelector('pre');
  var MAX_ROWS = 500;
  function cell(tr, text, cls) {
    var td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function show(id, tr) {
    var prev = tbody.querySelector('tr.selected');
    if (prev) prev.classList.remove('selected');
    tr.classList.add('selected');
    aside.hidden = false;
    pre.textContent = 'loading…';
    fetch('/console/api/decisions/' + id, { credentials: 'same-origin' }).then(function (r) {
      if (!r.ok) throw new Error('the console answered ' + r.status);
      return r.json();
    }).then(function (e) {
      pre.textContent = e.explanation || (e.decision + ': ' + e.reason + (e.policy ? ' (' + e.policy + (e.rule === null ? '' : ' rule ' + e.rule) + ')' : ''));
    }).catch(function (err) { pre.textContent = String(err); });
  }
  function add(e) {
    var tr = document.createElement('tr');
    tr.dataset.id = String(e.id);
    tr.dataset.decision = e.decision;
    tr.className = e.decision === 'DENY' ? 'deny' : 'allow';
    var time = cell(tr, '');
    var a = document.createElement('a');
    a.href = '/console/decisions/' + e.id;
    a.textContent = e.time.slice(11, 23);
    time.appendChild(a);
    cell(tr, e.workload);
    cell(tr, (e.sourcePrincipal || 'no peer identity') + (e.mtls ? '' : ' (plaintext)'));
    cell(tr, e.kind === 'http' ? (e.method + ' ' + (e.authority || '') + (e.path || '')) : e.kind + ' :' + e.port);
    cell(tr, e.status === undefined ? '–' : String(e.status));
    cell(tr, e.decision, 'decision-' + e.decision.toLowerCase());
    cell(tr, e.decidedBy + (e.policy ? ' ' + e.policy + (e.rule === null ? '' : ' rule ' + e.rule) : ''));
    cell(tr, e.reason, 'reason');
    if (e.decision === 'DENY') tr.addEventListener('click', function (ev) { if (ev.target.tagName !== 'A') { ev.preventDefault(); show(e.id, tr); } });
    tbody.insertBefore(tr, tbody.firstChild);
    while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(tbody.rows.length - 1);
  }
  var source = new EventSource('/console/events');
  source.addEventListener('open', function () { state.textContent = 'live'; });
  source.addEventListener('error', function () { state.textContent = 'reconnecting…'; });
  source.addEventListener('decisions', function (m) { JSON.parse(m.data).forEach(add); });
})();
`;
