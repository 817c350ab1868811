import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePathTemplate, isPathTemplate, validatePathTemplate } from '../src/match/path-template.ts';
import { RampartError } from '../src/errors.ts';

// Sources:
//   istio  = istio/istio pkg/config/security/security.go CheckValidPathTemplate + security_test.go
//            (TestCheckValidPathTemplate, TestIsValidLiteral)
//   envoy  = envoyproxy/envoy source/extensions/path/uri_template_lib/uri_template_internal.cc
//            (parsePathPatternSyntax, validateNoDoublePathSeparator, toRegexPattern)
//   it     = istio/istio tests/integration/security/authz_test.go TestAuthz_PathTemplating

test('isPathTemplate: only the {*} and {**} operators make a template', () => {
  const rows: [string, boolean][] = [
    ['/foo/{*}', true], // istio ContainsPathTemplate
    ['/foo/{**}', true], // istio ContainsPathTemplate
    ['/foo/*', false], // a bare * is a plain prefix/suffix string match, not a template
    ['/foo/{id}', false], // named variables are not operators
  ];
  for (const [path, want] of rows) assert.equal(isPathTemplate(path), want, path);
});

test('validatePathTemplate: accepted values', () => {
  const rows: string[] = [
    '/{*}/foo', // istio: valid path template - matchOneTemplate
    '/{*}/foo/', // istio: ... with trailing slash
    '/foo/{**}/bar', // istio: matchAnyTemplate followed by literals
    '/foo/bar/{**}', // istio: matchAnyTemplate at end
    '/{*}/{*}/foo/{**}/bar', // istio matcher/template_test.go matchAnyAndMultipleOnes
    "/-._~%20!$&'()+,;:@/{*}", // istio TestIsValidLiteral: every pchar but '*'
    '/a=c/{*}', // istio TestIsValidLiteral: "=" allowed (envoy kLiteral includes it too)
    '/foo/*', // not a template: istio only checks braces, a '*' literal is fine
    '/', // not a template
  ];
  for (const path of rows) assert.equal(validatePathTemplate(path), undefined, path);
});

test('validatePathTemplate: rejected values', () => {
  const rows: [string, RegExp][] = [
    ['/foo/{**}buzz/bar', /'\{' or '\}'/], // istio: matchAnyTemplate with additional chars
    ['/{*}/foo/{}/bar', /'\{' or '\}'/], // istio: empty curly braces
    ['/foo/{*}/bar/*', /pchar/], // istio: '*' literal in a template
    ['/foo/{*}/bar/**/buzz', /pchar/], // istio: '**' literal in a template
    ['/foo/{buzz}/bar', /'\{' or '\}'/], // istio: named variable, even without an operator
    ['/{buzz}', /'\{' or '\}'/], // istio: only a named variable
    ['/foo/{buzz=*}/bar/{**}', /'\{' or '\}'/], // istio: named variable with a match
    ['/{*}/foo/{*}.txt', /'\{' or '\}'/], // istio: mixed segment (file extension)
    ['/{*}/foo/{temp', /'\{' or '\}'/], // istio: unmatched '{'
    ['/{*}/foo/temp}/bar', /'\{' or '\}'/], // istio: unmatched '}'
    ['/{**}/foo/temp/{*}/bar', /last operator/], // istio: {**} not the last operator
    ['/{**}/{**}', /last operator/], // istio: two {**}
    ['/{*}/foo/?abc', /pchar/], // istio: '?' is not pchar
    ['/a//{*}', /empty segment/], // istio: the empty segment fails the literal check
    ['//{*}', /double slashes|\/\//], // envoy validateNoDoublePathSeparator (istio trims leading slashes, accepts)
    ['/{*}//', /\/\//], // envoy validateNoDoublePathSeparator (istio trims trailing slashes, accepts)
    ['{*}/a', /start with \//], // envoy: pattern must match ^/[[:graph:]]*$ (istio trims, accepts)
  ];
  for (const [path, reason] of rows) {
    const got = validatePathTemplate(path);
    assert.ok(got !== undefined, `${path} should be rejected`);
    assert.match(got, reason, path);
  }
});

test('compilePathTemplate: matching', () => {
  const rows: [string, string, boolean][] = [
    ['/allow/admin/{**}', '/allow/admin/', true], // it
    ['/allow/admin/{**}', '/allow/admin', false], // it: a final {**} needs the trailing slash
    ['/allow/admin/{**}', '/allow/user/', false], // it
    ['/allow/admin/{**}', '/allow', false], // it
    ['/allow/admin/{**}', '/allow/admin/temp', true], // it
    ['/allow/admin/{**}', '/allow/admin/temp.txt', true], // it
    ['/allow/admin/{**}', '/allow/admin/foo/temp.txt', true], // it: {**} crosses segments
    ['/allow/admin/{**}', '/allow/admin?param=value', false], // it: query removed first, then no trailing slash
    ['/foo/{*}/bar/{**}', '/foo/buzz/bar/bat.txt', true], // it
    ['/foo/{*}/bar/{**}', '/foo/buzz/bar/bat.temp.txt', true], // it
    ['/foo/{*}/bar/{**}', '/foo/buzz/bar/bat/fuzz.txt', true], // it
    ['/foo/{*}/bar/{**}', '/foo/buzz/bar/bat', true], // it
    ['/foo/{*}/bar/{**}', '/foo/bar/bat.txt', false], // it: {*} needs its own segment
    ['/foo/{*}/bar/{**}', '/foo//bar/bat.txt', false], // it: {*} never matches an empty segment
    ['/foo/{*}/bar/{**}', '/foo/a/b/bar/x', false], // envoy: {*} = [pchar]+, no '/'
    ['/store/{**}/cart', '/store//cart', true], // it: {**} may be empty
    ['/store/{**}/cart', '/store/cart', false], // it
    ['/store/{**}/cart', '/store/foo/cart', true], // it
    ['/store/{**}/cart', '/store/foo/bar/cart', true], // it
    ['/{*}', '/a%20b', true], // envoy: '%' is in the operator character class
    ['/{*}', '/a b', false], // envoy: space is outside pchar
    ['/{*}', '/a"b', false], // envoy: '"' is outside pchar
    ['/{**}', '/a*b', false], // envoy: '*' is excluded from kLiteral
    ['/{*}/x', '/A/x', true], // envoy: case-sensitive literals, any pchar in the operator
    ['/{*}/x', '/a/X', false], // envoy: literals are case-sensitive
    ['/v1.0/{*}', '/v1x0/a', false], // envoy toRegexPattern escapes '.' in literals
    ['/a+b/{*}', '/a+b/c', true], // envoy toRegexPattern escapes '+' in literals
    ['/a$/{*}', '/a$/c', true], // envoy toRegexPattern escapes '$' in literals
    ['/(a)/{*}', '/(a)/c', true], // envoy toRegexPattern escapes '(' and ')' in literals
    ['/a/{*}/', '/a/b/', true], // istio accepts a trailing slash; envoy keeps it literal
    ['/a/{*}/', '/a/b', false], // ... so it is required
    ['/a/{*}', '/a/b?x=/y', true], // envoy UriTemplateMatcher::match strips the query first
    ['/a/{*}', '/a/b#frag', true], // ... and the fragment
    ['/a/{*}', '/a/b/c?x', false], // ... but the rest must still match
  ];
  for (const [template, path, want] of rows) {
    assert.equal(compilePathTemplate(template)(path), want, `${template} vs ${path}`);
  }
});

test('compilePathTemplate refuses a template that validation rejects', () => {
  // A rejected value never reaches Envoy as a matcher (istiod validation or Envoy NACK); failing loudly keeps a
  // caller from silently compiling a matcher Istio would never run.
  assert.throws(
    () => compilePathTemplate('/{**}/{*}'),
    (e: unknown) => e instanceof RampartError && e.code === 'ERR_PATH_TEMPLATE_INVALID',
  );
});
