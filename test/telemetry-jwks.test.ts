import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { JwksSource } from '../src/jwt/jwks-source.ts';
import { jwksTelemetry } from '../src/telemetry/jwks.ts';

async function jwksServer(): Promise<{ uri: string; down: { value: boolean }; close: () => Promise<void> }> {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwks = JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256' }, { kty: 'oct', k: 'c2VjcmV0', kid: 'h1' }] });
  const down = { value: false };
  const server = http.createServer((_req, res) => (down.value ? res.writeHead(503).end('down') : res.writeHead(200, { 'content-type': 'application/json' }).end(jwks)));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    uri: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`,
    down,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

function logLines(): { logger: ReturnType<typeof pino>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ base: null }, sink), lines };
}

const sample = (text: string, name: string, labels: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
};

test('JWKS fetches are counted per URI and result, failures logged once per outage doubling, usability read at scrape time', async () => {
  const server = await jwksServer();
  const registry = new Registry();
  const { logger, lines } = logLines();
  const telemetry = jwksTelemetry({ registry, logger });
  let now = Date.now();
  const source = new JwksSource({ uri: server.uri, onEvent: telemetry.onEvent, now: () => now, staleAfterMs: 60_000 });
  telemetry.watch([source]);
  try {
    const uri = `uri="${server.uri}"`;
    await source.refresh();
    let text = await registry.metrics();
    assert.equal(sample(text, 'rampart_jwks_fetches_total', `${uri},result="success"`), 1);
    assert.equal(sample(text, 'rampart_jwks_usable', uri), 1);
    assert.ok((sample(text, 'rampart_jwks_last_success_timestamp_seconds', uri) ?? 0) > 1.7e9);
    // The oct key is skipped and said so.
    assert.deepEqual(lines.map((l) => l['event']), ['jwks-keys-skipped']);

    server.down.value = true;
    for (let i = 0; i < 5; i++) await source.refresh();
    text = await registry.metrics();
    assert.equal(sample(text, 'rampart_jwks_fetches_total', `${uri},result="failure"`), 5);
    assert.equal(sample(text, 'rampart_jwks_usable', uri), 1, 'the last good set is still fresh');
    const failures = lines.filter((l) => l['event'] === 'jwks-fetch-failed');
    // Attempts 1, 2 and 4 are logged, not 3 and 5: a long outage does not flood the log.
    assert.deepEqual(failures.map((l) => l['consecutiveFailures']), [1, 2, 4]);
    assert.equal(failures[0]!['level'], 50);
    assert.equal(failures[0]!['keepingLastGood'], true);
    assert.match(String(failures[0]!['error']), /HTTP 503/);
    assert.match(String(failures[0]!['msg']), /last good key set stays in use/);

    now += 120_000; // the last good set is now stale: tokens of this issuer fail closed
    text = await registry.metrics();
    assert.equal(sample(text, 'rampart_jwks_usable', uri), 0);

    server.down.value = false;
    await source.refresh();
    text = await registry.metrics();
    assert.equal(sample(text, 'rampart_jwks_usable', uri), 1);
    const recovered = lines.filter((l) => l['event'] === 'jwks-recovered');
    assert.equal(recovered.length, 1);
    assert.equal(recovered[0]!['failures'], 5);
  } finally {
    source.stop();
    await server.close();
  }
});

test('without a registry or a logger the handler still runs (nothing is registered globally)', async () => {
  const telemetry = jwksTelemetry({});
  telemetry.onEvent({ type: 'fetch-failed', uri: 'https://issuer.example/jwks', error: 'ECONNREFUSED', keepingLastGood: false });
  telemetry.onEvent({ type: 'fetched', uri: 'https://issuer.example/jwks', keys: 1, skipped: [] });
  const { register } = await import('prom-client');
  assert.equal(register.getSingleMetric('rampart_jwks_fetches_total'), undefined);
});
