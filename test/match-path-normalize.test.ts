import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizePath, rejectionStatus, type PathNormalization } from '../src/match/path-normalize.ts';

// Sources:
//   lb     = istio/istio pilot/pkg/networking/core/listener_builder.go buildHTTPConnectionManager (mode → HCM settings)
//   boot   = istio/istio pkg/bootstrap/config.go (envoy.reloadable_features.http_reject_path_with_fragment=false)
//   hcm    = envoyproxy/envoy source/common/http/conn_manager_impl.cc decodeHeaders (non-relative path → 404)
//   cmu    = envoyproxy/envoy source/common/http/conn_manager_utility.cc maybeNormalizePath (order of the steps)
//   pu     = envoyproxy/envoy test/common/http/path_utility_test.cc (PathUtil::canonicalPath / mergeSlashes /
//            unescapeSlashes / stripParametersFromDotSegments cases)
//   gurl   = googleurl url/url_canon_path.cc (kPathCharLookup, DoPartialPath, CheckForNestedEscapes)
//   codec  = envoyproxy/envoy source/common/http/http1/codec_impl.cc handlePath (absolute-form → path)
//   it     = istio/istio tests/integration/security/authz_test.go TestAuthz_PathNormalization
//   spec   = ISTIO-SEMANTICS.md §5

type Row = [target: string, mode: PathNormalization, path: string, query?: string];

function check(rows: readonly Row[]): void {
  for (const [target, mode, path, query = ''] of rows) {
    const got = normalizePath(target, mode);
    assert.deepEqual(got, { ok: true, path, query }, `${mode} ${JSON.stringify(target)}`);
  }
}

test('BASE: RFC 3986 dot segments, backslashes, unreserved escapes', () => {
  check([
    ['/a/b/c', 'BASE', '/a/b/c'], // pu AlreadyNormalPaths
    ['/a/b/../c', 'BASE', '/a/c'], // pu: parent dir
    ['/a/b/./c', 'BASE', '/a/b/c'], // pu: current dir
    ['/a/b/../../../../c', 'BASE', '/c'], // pu: never above the root
    ['/a/..\\c', 'BASE', '/c'], // pu: "..\" canonicalization
    ['/a\\b', 'BASE', '/a/b'], // gurl: backslash → slash
    ['/%c0%af', 'BASE', '/%c0%af'], // pu: other escapes kept, hex case untouched
    ['/%5c%25', 'BASE', '/%5c%25'], // pu: reserved characters stay escaped
    ['/a/b/%2E%2E/c', 'BASE', '/a/c'], // pu: %2E is a dot
    ['/a/b/%2e%2e/c', 'BASE', '/a/c'], // pu NormalizeCasePath
    ['/a/%2F%2f/c', 'BASE', '/a/%2F%2f/c'], // pu NormalizeCasePath; lb: BASE keeps escaped slashes (KEEP_UNCHANGED)
    ['/A/B/C', 'BASE', '/A/B/C'], // pu NormalizeCasePath: no case folding
    ['/%41%7a%30%2D%2e%5F%7E', 'BASE', '/Az0-._~'], // gurl UNESCAPE: letters, digits, -._~ decoded
    ['/%20%3F%23%2B', 'BASE', '/%20%3F%23%2B'], // gurl: escapes of other characters kept
    ['/a"b<c>d`e{f}g|h^i', 'BASE', '/a%22b%3Cc%3Ed%60e%7Bf%7Dg%7Ch%5Ei'], // gurl ESCAPE set
    ["/a!$&'()*+,;=:@[]", 'BASE', "/a!$&'()*+,;=:@[]"], // gurl PASS set
    ['/caf\u00e9', 'BASE', '/caf%C3%A9'], // gurl: non-ASCII escaped as UTF-8
    ['/\u{1F600}', 'BASE', '/%F0%9F%98%80'], // gurl: astral code point → 4 UTF-8 bytes
    ['/a%zz', 'BASE', '/a%zz'], // gurl: an invalid escape passes through
    ['/a%4', 'BASE', '/a%4'], // gurl: a truncated escape passes through
    ['/%%30%30', 'BASE', '/%2500'], // gurl CheckForNestedEscapes: must not become %00
    ['/%%34%31', 'BASE', '/%2541'], // gurl CheckForNestedEscapes: must not become %41
    ['/a/.', 'BASE', '/a/'], // gurl: trailing "."
    ['/a/b/..', 'BASE', '/a/'], // gurl: trailing ".."
    ['/..', 'BASE', '/'], // gurl: ".." at the root
    ['/a/.b/..c/...', 'BASE', '/a/.b/..c/...'], // gurl: dots inside names are not segments
    ['/.well-known/x', 'BASE', '/.well-known/x'], // gurl: dot-file names untouched
    ['/a/%2e/b', 'BASE', '/a/b'], // gurl IsDot: %2e alone is "."
    ['/a/b.%2E', 'BASE', '/a/b..'], // gurl: %2E not after a slash is just decoded
    ['/a//b', 'BASE', '/a//b'], // lb: BASE does not merge slashes (gurl never does)
    ['/a//../b', 'BASE', '/a/b'], // gurl: ".." removes the empty segment
    ['/xyz/..;foo=bar/abc', 'BASE', '/abc'], // pu: dotdot with parameters in the middle
    ['/..;foo=bar/abc', 'BASE', '/abc'], // pu: starting dotdot with parameters
    ['/xyz/..;foo=bar', 'BASE', '/'], // pu: ending dotdot with parameters
    ['/xyz/.;foo=bar/abc', 'BASE', '/xyz/abc'], // pu: dot with parameters
    ['/xyz/.;foo=bar', 'BASE', '/xyz/'], // pu: ending dot with parameters
    ['/.;aaa/..;foo=bar/abc/.;mmm', 'BASE', '/abc/'], // pu: mixed dot segments with parameters
    ['/xyz/..;foo=bar/.;fff=zzz/remain;blah-bluh?query', 'BASE', '/remain;blah-bluh', '?query'], // pu
    ['/a;x=1/b', 'BASE', '/a;x=1/b'], // pu: other path parameters are kept
    ['/public/../private', 'BASE', '/private'], // it
    ['/public/./../private', 'BASE', '/private'], // it
    ['/public/.././private', 'BASE', '/private'], // it
    ['/public/%2E/%2E%2E/private', 'BASE', '/private'], // it
    ['/public/%2e%2e/%2e/private', 'BASE', '/private'], // it
  ]);
});

test('query and fragment', () => {
  check([
    ['/a?b=1', 'BASE', '/a', '?b=1'], // spec: query split at the first '?', kept as sent
    ['/a/../b?x=/../%41#f', 'BASE', '/b', '?x=/../%41'], // pu/cmu: only the path is normalized
    ['/a?', 'BASE', '/a', '?'], // pu MergeSlashes "empty query": '?' kept
    ['/a??b', 'NONE', '/a', '??b'], // split at the first '?'
    ['/a#frag', 'BASE', '/a'], // boot + cmu: the fragment is stripped, not rejected
    ['/a#frag?x', 'BASE', '/a'], // cmu: cut at the first '#', even before a '?'
    ['/a?x#frag', 'NONE', '/a', '?x'], // cmu: a '#' inside the query also starts the fragment; every mode
    ['/a/../b#x', 'NONE', '/a/../b'], // cmu: fragment stripped even without normalization
    ['/a//b?c//d', 'MERGE_SLASHES', '/a/b', '?c//d'], // pu MergeSlashes: slashes in the query are ignored
    ['/a%2Fb?c%2Fd', 'DECODE_AND_MERGE_SLASHES', '/a/b', '?c%2Fd'], // pu UnescapeSlashes: query is untouched
  ]);
});

test('MERGE_SLASHES: BASE, then runs of / collapse', () => {
  check([
    ['/a//b/c', 'MERGE_SLASHES', '/a/b/c'], // pu MergeSlashes: double / in the middle
    ['//a/b/c', 'MERGE_SLASHES', '/a/b/c'], // pu: double / start
    ['/a/b/c//', 'MERGE_SLASHES', '/a/b/c/'], // pu: double / end
    ['/a////b/c', 'MERGE_SLASHES', '/a/b/c'], // pu: quadruple / in the middle
    ['/a/b/c/', 'MERGE_SLASHES', '/a/b/c/'], // pu: trailing slash kept
    ['//', 'MERGE_SLASHES', '//'], // Envoy PathUtil::mergeSlashes quirk: prefix "/" + "" + suffix "/"
    ['/a/..//b', 'MERGE_SLASHES', '/b'], // cmu: merge runs after canonicalization
    ['/a\\\\b', 'MERGE_SLASHES', '/a/b'], // gurl turns both backslashes into slashes, then merge
    ['/a/%2F/b', 'MERGE_SLASHES', '/a/%2F/b'], // lb: MERGE_SLASHES keeps escaped slashes
  ]);
});

test('DECODE_AND_MERGE_SLASHES: escaped slashes decoded first', () => {
  check([
    ['/a%2Fb%2fc/', 'DECODE_AND_MERGE_SLASHES', '/a/b/c/'], // pu UnescapeSlashes; lb UNESCAPE_AND_FORWARD
    ['/a%5Cb%5cc', 'DECODE_AND_MERGE_SLASHES', '/a/b/c'], // pu: %5C → '\' → gurl '/'
    ['/x/%2E%2e/z%2f%2Fabc%5C../def', 'DECODE_AND_MERGE_SLASHES', '/z/def'], // pu UnescapeSlashes, then canonical
    ['/public%2F..%2Fprivate', 'DECODE_AND_MERGE_SLASHES', '/private'], // cmu: decoding before dot removal
    ['/a%252Fb', 'DECODE_AND_MERGE_SLASHES', '/a%252Fb'], // pu: single pass, %25 is not re-decoded
    ['/a%%2fb', 'DECODE_AND_MERGE_SLASHES', '/a%/b'], // pu: double escape
    ['/a%2F%2F%2Fb', 'DECODE_AND_MERGE_SLASHES', '/a/b'], // spec: decode then merge
    ['/a%2F..;x/b', 'DECODE_AND_MERGE_SLASHES', '/b'], // cmu: decoded before dot-segment parameters are stripped
  ]);
});

test('NONE: the path is evaluated as received', () => {
  check([
    ['/a/../b', 'NONE', '/a/../b'], // lb: normalize_path=false
    ['/a/%2E%2E/b', 'NONE', '/a/%2E%2E/b'], // lb
    ['/a\\b', 'NONE', '/a\\b'], // lb
    ['/a//b', 'NONE', '/a//b'], // lb: no merge_slashes
    ['/%41', 'NONE', '/%41'], // lb
    ['/caf\u00e9', 'NONE', '/caf\u00e9'], // lb: forwarded as received
  ]);
});

test('absolute-form request targets are reduced to their path', () => {
  check([
    ['http://example.com/a/../b?q=1', 'BASE', '/b', '?q=1'], // codec handlePath: :path = path and query of the URL
    ['HTTPS://example.com:8443/x', 'NONE', '/x'], // codec: scheme is case-insensitive
    ['http://example.com', 'BASE', '/'], // codec Utility::Url: no path → "/"
  ]);
});

test('fast path returns the input unchanged, without copying', () => {
  // The common case must not allocate a new path string: same string identity back.
  const t = '/api/v1/users/42/orders.json';
  for (const mode of ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const) {
    const got = normalizePath(t, mode);
    assert.ok(got.ok);
    assert.equal(got.path, t, mode);
  }
  const withEscape = normalizePath('/a%20b/%2F', 'BASE'); // kept escapes do not force the slow path
  assert.deepEqual(withEscape, { ok: true, path: '/a%20b/%2F', query: '' });
});

test('rejected request targets', () => {
  const rows: [string, PathNormalization, RegExp, 400 | 404][] = [
    ['/xyz/.%00../abc', 'BASE', /^path_normalization_failed/, 400], // pu InvalidPaths
    ['/xyz/%00.%00./abc', 'MERGE_SLASHES', /^path_normalization_failed/, 400], // pu InvalidPaths
    ['/xyz/AAAAA%%0000/abc', 'DECODE_AND_MERGE_SLASHES', /^path_normalization_failed/, 400], // pu InvalidPaths
    ['/a%00', 'NONE', /%00/, 400], // spec §5 "always"; Rampart rejects it even where Envoy (NONE) would forward it
    ['/a%00?x', 'BASE', /%00/, 400], // spec §5
    ['/a\u0000b', 'NONE', /^invalid_url/, 400], // codecs refuse a raw NUL
    ['/a b', 'BASE', /^invalid_url/, 400], // codecs refuse spaces in the target
    ['/a\r\nb', 'NONE', /^invalid_url/, 400], // codecs refuse control characters
    ['/a?x y', 'NONE', /^invalid_url/, 400], // ... in the query too
    ['/\ud800', 'BASE', /^path_normalization_failed/, 400], // a lone surrogate has no byte form
    ['', 'BASE', /^missing_path/, 404], // hcm: empty :path → 404 missing_path
    ['*', 'BASE', /^absolute_path/, 404], // hcm: OPTIONS * is not a relative path → 404 before any filter
    ['a/b', 'NONE', /^absolute_path/, 404], // hcm: any :path not starting with '/' → 404
    ['http:///a', 'BASE', /^invalid_url/, 400], // codec: absolute URL without a host
    ['http://h?x', 'BASE', /^absolute_path/, 404], // codec keeps "?x" as :path; hcm: not starting with '/'
    ['http://h#f', 'BASE', /^absolute_path/, 404], // codec keeps "#f" as :path; hcm: not starting with '/'
  ];
  for (const [target, mode, reason, status] of rows) {
    const got = normalizePath(target, mode);
    assert.equal(got.ok, false, `${mode} ${JSON.stringify(target)} should be rejected`);
    if (got.ok) continue;
    assert.match(got.reason, reason, JSON.stringify(target));
    assert.equal(rejectionStatus(got), status, JSON.stringify(target));
  }
});
