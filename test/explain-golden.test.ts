import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { PolicyEngine } from '../src/policy/engine.ts';
import { formatDecision } from '../src/policy/explain.ts';
import { parseCheckRequest } from '../src/policy/request.ts';
import { loadResources } from '../src/resources/load.ts';

// Explanations are long to assert by hand: they are compared with checked-in files.
// `UPDATE_GOLDEN=1 npm test` rewrites them; review the diff before committing.
const ROOT = join(import.meta.dirname, '..');
const EX = 'examples/quickstart';
const engine = new PolicyEngine(loadResources([{ file: `${EX}/policies.yaml`, text: readFileSync(join(ROOT, EX, 'policies.yaml'), 'utf8') }]).resources);

for (const name of ['request', 'request-admin', 'request-jwt', 'request-plaintext']) {
  test(`golden explanation: ${EX}/${name}.json`, () => {
    const req = parseCheckRequest(JSON.parse(readFileSync(join(ROOT, EX, `${name}.json`), 'utf8')));
    const text = formatDecision(engine.decide(req, { trace: true })) + '\n';
    const golden = join(ROOT, 'test', 'golden', `quickstart-${name}.txt`);
    if (process.env['UPDATE_GOLDEN'] === '1' || !existsSync(golden)) {
      if (process.env['CI'] === 'true' && !existsSync(golden)) assert.fail(`missing golden file ${golden}`);
      writeFileSync(golden, text);
    }
    assert.equal(text, readFileSync(golden, 'utf8'));
  });
}
