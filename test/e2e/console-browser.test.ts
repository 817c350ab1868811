import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { loadMeshDirectory } from '../../src/cli/mesh-dir.ts';
import type { StatusReport } from '../../src/control/protocol.ts';
import { meshAccessMatrix } from '../../src/policy/access-matrix.ts';
import { PolicyEngine } from '../../src/policy/engine.ts';
import { waitUntil } from '../support/proxy.ts';
import { exampleCopy, run } from '../support/up.ts';

/**
 * The console in a real browser (Debian's chromium, driven by playwright-core) against `rampart up` on a copy of the
 * README's example: the workloads page, the access matrix against the engine's own, and the live decision stream
 * with a denial's explanation. Screenshots go to test-artifacts/console/.
 */

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(import.meta.dirname, '..', '..', 'test-artifacts', 'console');
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (Debian packages chromium and chromium-driver; .ci/run installs them)`;

function viaSidecar(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: `http://httpbin.default:8000${path}`, headers: { host: 'httpbin.default:8000' }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the console in headless Chromium, against rampart up', { skip, timeout: 180_000 }, () => {
  let up: ReturnType<typeof run>;
  let browser: Browser;
  let page: Page;
  let base: string;
  let mesh: Awaited<ReturnType<typeof exampleCopy>>;

  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    mesh = await exampleCopy();
    up = run(mesh.args);
    const url = await waitUntil('rampart up to print the console URL', () => /the console \(.*\): (http:\/\/\S+)/.exec(up.out())?.[1], 60_000, up.out);
    base = url;
    // Every sidecar connected and running the current version before the pages are read.
    const end = Date.now() + 30_000;
    for (;;) {
      const s = (await (await fetch(new URL('/status', base))).json()) as StatusReport;
      if (s.proxies.length === 3 && s.proxies.every((p) => p.state === 'ACK')) break;
      if (Date.now() > end) throw new Error(`sidecars not all connected and ACKing: ${JSON.stringify(s.proxies)}\n${up.out()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM, headless: true,
      // As root Chromium needs --no-sandbox; the rest keep it off the (closed) network.
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  });

  after(async () => {
    await browser?.close();
    up?.child.kill('SIGINT');
    await up?.exit;
  });

  it('lists the three workloads with their SPIFFE identities, config version and certificate expiry', async () => {
    await page.goto(base);
    const rows = page.locator('[data-testid=workloads] tbody tr');
    assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-workload'))), ['default/httpbin', 'default/sleep', 'default/guest']);
    const httpbin = page.locator('tr[data-workload="default/httpbin"]');
    assert.match(await httpbin.innerText(), /spiffe:\/\/cluster\.local\/ns\/default\/sa\/httpbin/);
    assert.match(await httpbin.innerText(), /ACK/);
    assert.match(await httpbin.locator('time').first().innerText(), /^in \d+ h \d+ min$/);
    assert.equal(await page.getByTestId('config-version').innerText(), '1');
    await page.screenshot({ path: join(ARTIFACTS, 'workloads.png'), fullPage: true });
  });

  it('shows the policies that apply to each workload', async () => {
    await page.goto(new URL('policies', base).href);
    const httpbin = page.locator('section[data-workload="default/httpbin"]');
    const text = await httpbin.innerText();
    assert.match(text, /DENY\s+AuthorizationPolicy default\/deny-admin/);
    assert.match(text, /ALLOW\s+AuthorizationPolicy default\/require-jwt-or-mtls/);
    assert.match(text, /JWT\s+RequestAuthentication default\/httpbin-jwt/);
    assert.match(text, /8000: STRICT/);
    await page.screenshot({ path: join(ARTIFACTS, 'policies.png'), fullPage: true });
  });

  it('draws the access matrix, every cell as the engine computes it', async () => {
    await page.goto(new URL('access', base).href);
    const loaded = await loadMeshDirectory(mesh.dir);
    const m = meshAccessMatrix(new PolicyEngine(loaded.resources, loaded.meshFile.mesh), loaded.meshFile);
    const cells = await page.locator('td.cell').evaluateAll((tds) => tds.map((td) => ({ source: td.getAttribute('data-source'), destination: td.getAttribute('data-destination'), cls: td.getAttribute('class') })));
    assert.equal(cells.length, m.cells.length);
    for (const c of m.cells) {
      const shown = cells.find((x) => x.source === c.source && x.destination === `${c.destination}:${c.port}`);
      assert.ok(shown !== undefined, `${c.source} → ${c.destination}:${c.port} not drawn`);
      assert.equal(shown.cls, `cell ${c.outcome}`, `${c.source} → ${c.destination}:${c.port}`);
    }
    assert.ok(cells.some((c) => c.cls === 'cell denied') && cells.some((c) => c.cls !== 'cell denied'), 'the example has both denied and other cells');
    await page.screenshot({ path: join(ARTIFACTS, 'access.png'), fullPage: true });
  });

  it('streams a request made through the mesh within a second, and a denial shows its reason and trace', async () => {
    await page.goto(new URL('decisions', base).href);
    await page.getByTestId('stream-state').filter({ hasText: 'live' }).waitFor({ timeout: 10_000 });
    const before = await page.locator('table.decisions tbody tr').count();

    assert.equal(await viaSidecar(mesh.ports['sleep']!, '/headers?from=sleep'), 200);
    const answered = Date.now();
    const allowed = page.locator('table.decisions tbody tr[data-decision=ALLOW]', { hasText: '/headers?from=sleep' });
    await allowed.waitFor({ timeout: 1_000 });
    const latency = Date.now() - answered;
    assert.ok(latency <= 1_000, `shown after ${latency} ms`);
    assert.match(await allowed.innerText(), /default\/httpbin\s+spiffe:\/\/cluster\.local\/ns\/default\/sa\/my-service-account/);

    assert.equal(await viaSidecar(mesh.ports['guest']!, '/headers?from=guest'), 403);
    const denied = page.locator('table.decisions tbody tr[data-decision=DENY]', { hasText: '/headers?from=guest' });
    await denied.waitFor({ timeout: 1_000 });
    assert.match(await denied.innerText(), /403\s+DENY/);
    assert.match(await denied.locator('td.reason').innerText(), /no rule of the 1 ALLOW policy matched/);
    assert.ok((await page.locator('table.decisions tbody tr').count()) >= before + 2);

    // One click: the full explanation, as the sidecar decided it.
    await denied.locator('td.reason').click();
    const explanation = page.getByTestId('explanation');
    await explanation.filter({ hasText: 'trace:' }).waitFor({ timeout: 5_000 });
    const text = await explanation.innerText();
    assert.match(text, /^DENY \(403\) {2}no rule of the 1 ALLOW policy matched/);
    assert.match(text, /ALLOW default\/require-jwt-or-mtls .*: no match/);
    assert.match(text, /source\.principals: "cluster\.local\/ns\/default\/sa\/guest" not in \["cluster\.local\/ns\/default\/sa\/my-service-account"\]/);
    await page.screenshot({ path: join(ARTIFACTS, 'decisions.png'), fullPage: true });

    // The row's link: the same decision on a page of its own, without script.
    const id = await denied.getAttribute('data-id');
    await page.goto(new URL(`decisions/${id}`, base).href);
    assert.match(await page.locator('h1').innerText(), new RegExp(`^Decision ${id}: DENY \\(403\\)$`));
    assert.match(await page.getByTestId('explanation').innerText(), /not in \["cluster\.local\/ns\/default\/sa\/my-service-account"\]/);
  });
});
