import { test } from 'node:test';
import assert from 'node:assert/strict';
import { claimHeaderValue, upstreamEdits } from '../src/jwt/forwarding.ts';
import type { FoundToken, JwtRuleRef } from '../src/policy/request-authn.ts';
import type { JwtRule } from '../src/resources/types.ts';

const payload = { iss: 'i', sub: 's', nested: { 'nested-2': { key2: 'v2' } }, n: 42, ok: true, list: ['a'], obj: { a: 1 } };
const token = `h.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.s`;
const ref = (rule: Partial<JwtRule>): JwtRuleRef => ({ policy: 'foo/jwt', index: 0, rule: { issuer: 'i', ...rule } as JwtRule });

function edits(rule: Partial<JwtRule>, where: FoundToken['sources'][number]['kind'] = 'header', name = 'authorization') {
  const r = ref(rule);
  const found: FoundToken = { token, locations: [name], sources: [{ kind: where, name, rule: r }], rules: [r] };
  return upstreamEdits([found], new Map([[token, [r]]]), new Map([[token, payload]]));
}

test('the token header is removed unless forwardOriginalToken', () => {
  assert.deepEqual(edits({}).removeHeaders, ['authorization']);
  assert.deepEqual(edits({ forwardOriginalToken: true }).removeHeaders, []);
  assert.deepEqual(edits({}, 'param', 'access_token').removeHeaders, [], 'only headers are stripped');
});

test('outputPayloadToHeader carries the payload section; outputClaimToHeaders copies scalar claims, dotted paths for nested ones', () => {
  const e = edits({
    outputPayloadToHeader: 'X-Jwt-Payload',
    outputClaimToHeaders: [
      { header: 'x-sub', claim: 'sub' }, { header: 'x-nested', claim: 'nested.nested-2.key2' }, { header: 'x-n', claim: 'n' },
      { header: 'x-ok', claim: 'ok' }, { header: 'x-list', claim: 'list' }, { header: 'x-obj', claim: 'obj' }, { header: 'x-missing', claim: 'nope' },
    ],
  });
  assert.deepEqual(e.setHeaders, { 'x-jwt-payload': token.split('.')[1], 'x-sub': 's', 'x-nested': 'v2', 'x-n': '42', 'x-ok': 'true' });
  assert.deepEqual(JSON.parse(Buffer.from(e.setHeaders['x-jwt-payload']!, 'base64url').toString()), payload);
});

test('a header that is set is not also removed (a claim output may reuse the token header name)', () => {
  const e = edits({ outputClaimToHeaders: [{ header: 'Authorization', claim: 'sub' }] });
  assert.deepEqual(e.removeHeaders, []);
  assert.equal(e.setHeaders['authorization'], 's');
});

test('a claim becomes a header value only without control characters; non-ASCII as its UTF-8 bytes', () => {
  const rows: Array<[string, string | undefined]> = [
    ['plain', 'plain'],
    ['with\ttab', 'with\ttab'],
    ['x\r\nTransfer-Encoding: chunked', undefined],
    ['line\nfeed', undefined],
    ['nul\u0000', undefined],
    ['del\u007f', undefined],
    ['café', Buffer.from('café', 'utf8').toString('latin1')],
  ];
  for (const [claim, want] of rows) assert.equal(claimHeaderValue(claim), want, JSON.stringify(claim));
  // Through upstreamEdits: the header is left out, the others still set.
  const evil = { iss: 'i', sub: 'a\r\nx-injected: 1', name: 'ok' };
  const t = `h.${Buffer.from(JSON.stringify(evil)).toString('base64url')}.s`;
  const r = ref({ outputClaimToHeaders: [{ header: 'x-sub', claim: 'sub' }, { header: 'x-name', claim: 'name' }] });
  const found: FoundToken = { token: t, locations: ['authorization'], sources: [{ kind: 'header', name: 'authorization', rule: r }], rules: [r] };
  assert.deepEqual(upstreamEdits([found], new Map([[t, [r]]]), new Map([[t, evil]])).setHeaders, { 'x-name': 'ok' });
});
