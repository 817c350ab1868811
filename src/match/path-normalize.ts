/**
 * Path normalization before authorization, per MeshConfig `pathNormalization.normalization`.
 *
 * istiod maps the mode onto Envoy's HttpConnectionManager (pilot/pkg/networking/core/listener_builder.go
 * buildHTTPConnectionManager):
 *   NONE                      normalize_path=false
 *   BASE (= DEFAULT)          normalize_path=true,  path_with_escaped_slashes_action=KEEP_UNCHANGED
 *   MERGE_SLASHES             normalize_path=true,  merge_slashes=true
 *   DECODE_AND_MERGE_SLASHES  normalize_path=true,  merge_slashes=true, path_with_escaped_slashes_action=UNESCAPE_AND_FORWARD
 * and Envoy applies, in this order (source/common/http/conn_manager_impl.cc decodeHeaders,
 * conn_manager_utility.cc maybeNormalizePath, path_utility.cc):
 *   1. a path that does not start with '/' gets a local 404 (only relative paths are supported);
 *   2. the `#fragment` is cut off (istiod sets http_reject_path_with_fragment=false in the bootstrap, so Envoy strips
 *      rather than rejects);
 *   3. escaped slashes `%2F`/`%2f` → `/` and `%5C`/`%5c` → `\` (DECODE_AND_MERGE_SLASHES only);
 *   4. normalize_path: parameters are stripped from `.`/`..` segments (`/..;x/` → `/../`), then the path is
 *      canonicalized by googleurl's CanonicalizePath (see {@link canonicalizePath}); a failure (an escaped NUL) → 400;
 *   5. merge_slashes: runs of `/` become one.
 * The query is never touched.
 */
export type PathNormalization = 'NONE' | 'BASE' | 'MERGE_SLASHES' | 'DECODE_AND_MERGE_SLASHES';

export type NormalizedPath =
  | { readonly ok: true; readonly path: string; readonly query: string }
  | { readonly ok: false; readonly reason: string };

/**
 * Stable first word of every `reason`, named after Envoy's response code details. `absolute_path` and
 * `missing_path` are answered by Envoy with 404, the others with 400 (see {@link rejectionStatus}).
 */
export type PathRejection = 'absolute_path' | 'missing_path' | 'invalid_url' | 'path_normalization_failed';

/** The HTTP status Envoy answers a rejected request target with. */
export function rejectionStatus(result: { readonly reason: string }): 400 | 404 {
  return result.reason.startsWith('absolute_path') || result.reason.startsWith('missing_path') ? 404 : 400;
}

const reject = (code: PathRejection, detail: string): NormalizedPath => ({ ok: false, reason: `${code}: ${detail}` });

const SLASH = 0x2f;
const BACKSLASH = 0x5c;
const DOT = 0x2e;
const PERCENT = 0x25;
const QUESTION = 0x3f;
const HASH = 0x23;
const SEMICOLON = 0x3b;

/**
 * Splits the raw request target into path and query (`?…`, kept as sent) and normalizes the path.
 * `ok: false` means the proxy rejects the request (400, or 404 for a target that is not a path: see
 * {@link rejectionStatus}).
 *
 * Rampart rejects a path containing `%00` in every mode. Envoy does so only when it normalizes (BASE and up): with
 * NONE it forwards `%00` as is. Deliberately stricter: an escaped NUL is never legitimate and is a classic way to
 * split what the proxy and the application see.
 */
export function normalizePath(target: string, mode: PathNormalization): NormalizedPath {
  let t = target;
  if (t.length === 0) return reject('missing_path', 'the request has no path');
  if (t.charCodeAt(0) !== SLASH) {
    const reduced = reduceAbsoluteForm(t);
    if (reduced === undefined) {
      // Envoy's HCM answers 404 for any :path not starting with '/', `OPTIONS *` included.
      return reject('absolute_path', `request target ${JSON.stringify(truncate(t))} is not an absolute path`);
    }
    if (typeof reduced !== 'string') return reduced;
    t = reduced;
    if (t.charCodeAt(0) !== SLASH) {
      return reject('absolute_path', `request target ${JSON.stringify(truncate(target))} has no absolute path`);
    }
  }

  // One scan over the path part decides whether anything has to change.
  const normalize = mode !== 'NONE';
  const merge = mode === 'MERGE_SLASHES' || mode === 'DECODE_AND_MERGE_SLASHES';
  const decodeSlashes = mode === 'DECODE_AND_MERGE_SLASHES';
  const n = t.length;
  let i = 0;
  let work = false;
  for (; i < n; i++) {
    const c = t.charCodeAt(i);
    if (c === QUESTION || c === HASH) break;
    if (c <= 0x20 || c === 0x7f) return rejectControl(c);
    if (c === PERCENT) {
      const v = decodeHexPair(t, i + 1, n);
      if (v === 0) return reject('path_normalization_failed', 'the path contains an escaped NUL (%00)');
      if (!normalize) continue;
      if (v < 0 || (CHAR_FLAGS[v]! & UNESCAPE) !== 0 || v === DOT || (decodeSlashes && (v === SLASH || v === BACKSLASH))) {
        work = true;
      } else {
        i += 2;
      }
      continue;
    }
    if (!normalize || work) continue;
    if (c >= 0x80 || (CHAR_FLAGS[c]! & ESCAPE_BIT) !== 0) work = true;
    else if (c === SLASH && merge && i > 0 && t.charCodeAt(i - 1) === SLASH) work = true;
    else if (c === DOT && t.charCodeAt(i - 1) === SLASH && mayStartDotSegment(t, i + 1, n)) work = true;
  }
  const pathEnd = i;
  let query = '';
  if (i < n) {
    // The fragment may also follow the query; cut at the first '#' anywhere (ConnectionManagerUtility::maybeNormalizePath).
    let hash = t.charCodeAt(i) === HASH ? i : -1;
    for (let j = i + 1; j < n; j++) {
      const c = t.charCodeAt(j);
      if (c === HASH && hash < 0) hash = j;
      else if (c <= 0x20 || c === 0x7f) return rejectControl(c);
    }
    if (hash < 0) query = t.slice(i);
    else if (hash > i) query = t.slice(i, hash);
  }
  const raw = pathEnd === n ? t : t.slice(0, pathEnd);
  if (!work) return { ok: true, path: raw, query };

  let p = raw;
  if (decodeSlashes) p = unescapeSlashes(p);
  p = stripParametersFromDotSegments(p);
  const canonical = canonicalizePath(p);
  if (canonical === undefined) return reject('path_normalization_failed', 'the path contains an escaped NUL (%00)');
  if (canonical === false) return reject('path_normalization_failed', 'the path is not valid UTF-16 (lone surrogate)');
  p = canonical;
  if (merge) p = mergeSlashes(p);
  return { ok: true, path: p, query };
}

function rejectControl(c: number): NormalizedPath {
  // HTTP codecs refuse control characters and spaces in the request target before Envoy sees a :path.
  return reject('invalid_url', `the request target contains the control or space character 0x${c.toString(16).padStart(2, '0')}`);
}

function truncate(s: string): string {
  return s.length > 64 ? `${s.slice(0, 64)}…` : s;
}

/**
 * Absolute-form `http://host/p?q` (a request to a forward proxy) → `/p?q`, as Envoy's HTTP/1 codec does with
 * allow_absolute_url (ServerConnectionImpl::handlePath, Utility::Url): the path is `/` when the URL has none.
 * Returns `undefined` when `t` is not absolute-form, a rejection when it is malformed.
 */
function reduceAbsoluteForm(t: string): string | NormalizedPath | undefined {
  const m = /^(https?):\/\//i.exec(t);
  if (m === null) return undefined;
  const start = m[0].length;
  let end = start;
  while (end < t.length) {
    const c = t.charCodeAt(end);
    if (c === SLASH || c === QUESTION || c === HASH) break;
    end++;
  }
  if (end === start) return reject('invalid_url', `request target ${JSON.stringify(truncate(t))} has no host`);
  return end === t.length ? '/' : t.slice(end);
}

/** After `/.`: could this dot begin a `.`/`..` segment (possibly `%2e`-encoded or with `;parameters`)? */
function mayStartDotSegment(t: string, i: number, n: number): boolean {
  if (i >= n) return true;
  const c = t.charCodeAt(i);
  return c === SLASH || c === BACKSLASH || c === DOT || c === PERCENT || c === SEMICOLON || c === QUESTION || c === HASH;
}

function decodeHexPair(s: string, i: number, n: number): number {
  if (i + 2 > n) return -1;
  const a = hexValue(s.charCodeAt(i));
  const b = hexValue(s.charCodeAt(i + 1));
  return a < 0 || b < 0 ? -1 : a * 16 + b;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** PathUtil::unescapeSlashes: one left-to-right pass, so `%252F` stays as is. */
function unescapeSlashes(p: string): string {
  if (!p.includes('%')) return p;
  return p.replace(/%2f|%5c/gi, (m) => (m[2] === 'f' || m[2] === 'F' ? '/' : '\\'));
}

/**
 * PathUtil::stripParametersFromDotSegments (runtime guard envoy.reloadable_features.strip_dotdot_segments_with_parameters,
 * on by default): a segment starting `..;` becomes `..`, one starting `.;` becomes `.`, so canonicalization resolves
 * them. Only raw dots count; segments are split on '/' only.
 */
function stripParametersFromDotSegments(p: string): string {
  if (!p.includes('.;')) return p;
  return p
    .split('/')
    .map((s) => (s.startsWith('..;') ? '..' : s.startsWith('.;') ? '.' : s))
    .join('/');
}

/**
 * PathUtil::mergeSlashes: when the path has `//`, rebuild it as leading `/` + non-empty segments joined by `/` +
 * trailing `/`. Reproduces the quirk that `//` (and `///`) become `//`, not `/`.
 */
function mergeSlashes(p: string): string {
  if (!p.includes('//')) return p;
  const prefix = p.startsWith('/') ? '/' : '';
  const suffix = p.endsWith('/') ? '/' : '';
  return prefix + p.split('/').filter((s) => s !== '').join('/') + suffix;
}

// ---------------------------------------------------------------------------------------------------------------
// googleurl CanonicalizePath (url/url_canon_path.cc in the snapshot Envoy links): the character table and the
// algorithm below reproduce its behaviour on 8-bit input.

/** Copied as is. */
const PASS = 0;
/** Needs special handling (dot, backslash, percent, or one of the bits below). */
const SPECIAL = 1;
const ESCAPE_BIT = 2;
/** Percent-encoded in the output. */
const ESCAPE = ESCAPE_BIT | SPECIAL;
/** An escape of this character is decoded (unreserved characters). Not SPECIAL: the raw character is copied. */
const UNESCAPE = 4;
const INVALID_BIT = 8;
/** NUL: escaped in the output, and canonicalization fails. */
const INVALID = INVALID_BIT | SPECIAL;

const CHAR_FLAGS: Uint8Array = (() => {
  const t = new Uint8Array(256).fill(ESCAPE); // controls and all bytes ≥ 0x80
  t[0] = INVALID;
  for (const c of "!$&'()*+,/:;=?@[]") t[c.charCodeAt(0)] = PASS;
  for (let c = 0x30; c <= 0x39; c++) t[c] = UNESCAPE;
  for (let c = 0x41; c <= 0x5a; c++) t[c] = UNESCAPE;
  for (let c = 0x61; c <= 0x7a; c++) t[c] = UNESCAPE;
  for (const c of '-_~') t[c.charCodeAt(0)] = UNESCAPE;
  t[DOT] = SPECIAL;
  // Escaped: space " # % < > \ ^ ` { | } DEL (backslash and percent are handled before the escape flag is read).
  for (const c of ' "#%<>\\^`{|}\x7f') t[c.charCodeAt(0)] = ESCAPE;
  // '?' never reaches the canonicalizer (the query was split off); in the table it is escaped.
  t[QUESTION] = ESCAPE;
  return t;
})();

const HEX = '0123456789ABCDEF';

/**
 * The path with dot segments resolved, `\` turned into `/`, escapes of unreserved characters decoded, characters
 * outside the URL path set percent-encoded (UTF-8 for non-ASCII), other escapes kept exactly as written (hex case
 * included) and an invalid `%` left alone. `undefined` when the path holds `%00`; `false` for a lone surrogate.
 */
export function canonicalizePath(path: string): string | undefined | false {
  const out: number[] = [];
  const end = path.length;
  if (end === 0 || (path.charCodeAt(0) !== SLASH && path.charCodeAt(0) !== BACKSLASH)) out.push(SLASH);
  const begin = 0; // the path starts at the beginning of the output
  let ok = true;
  let lastInvalidPercent = Number.MIN_SAFE_INTEGER;
  for (let i = 0; i < end; i++) {
    const ch = path.charCodeAt(i);
    if (ch >= 0x80) {
      const next = appendUtf8Escaped(path, i, out);
      if (next < 0) return false;
      i = next;
      continue;
    }
    const flags = CHAR_FLAGS[ch]!;
    if ((flags & SPECIAL) === 0) {
      out.push(ch);
      continue;
    }
    const dotLen = isDot(path, i, end);
    if (dotLen > 0) {
      if (out.length > begin && out[out.length - 1] === SLASH) {
        const after = i + dotLen;
        const { kind, consumed } = classifyAfterDot(path, after, end);
        if (kind === 'file') {
          out.push(DOT);
          i += dotLen - 1;
        } else {
          if (kind === 'up') backUpToPreviousSlash(begin, out);
          i += dotLen + consumed - 1;
        }
      } else {
        out.push(DOT);
        i += dotLen - 1;
      }
    } else if (ch === BACKSLASH) {
      out.push(SLASH);
    } else if (ch === PERCENT) {
      const v = decodeHexPair(path, i + 1, end);
      if (v >= 0) {
        i += 2;
        const f = CHAR_FLAGS[v]!;
        if ((f & UNESCAPE) !== 0) {
          out.push(v);
          if (lastInvalidPercent >= out.length - 3) checkForNestedEscapes(path, i + 1, end, lastInvalidPercent, out);
        } else {
          out.push(PERCENT, path.charCodeAt(i - 1), path.charCodeAt(i));
          if ((f & INVALID_BIT) !== 0) ok = false;
        }
      } else {
        // An invalid escape passes through unchanged (googleurl is permissive, like most browsers).
        lastInvalidPercent = out.length;
        out.push(PERCENT);
      }
    } else if ((flags & INVALID_BIT) !== 0) {
      appendEscaped(ch, out);
      ok = false;
    } else if ((flags & ESCAPE_BIT) !== 0) {
      appendEscaped(ch, out);
    }
  }
  return ok ? fromCodes(out) : undefined;
}

/** 1 for `.`, 3 for `%2e`/`%2E`, else 0. */
function isDot(s: string, i: number, end: number): number {
  const c = s.charCodeAt(i);
  if (c === DOT) return 1;
  if (c === PERCENT && i + 3 <= end && s.charCodeAt(i + 1) === 0x32 && (s.charCodeAt(i + 2) | 0x20) === 0x65) return 3;
  return 0;
}

function isSlash(c: number): boolean {
  return c === SLASH || c === BACKSLASH;
}

function classifyAfterDot(s: string, after: number, end: number): { kind: 'file' | 'cur' | 'up'; consumed: number } {
  if (after === end) return { kind: 'cur', consumed: 0 };
  if (isSlash(s.charCodeAt(after))) return { kind: 'cur', consumed: 1 };
  const second = isDot(s, after, end);
  if (second > 0) {
    const afterSecond = after + second;
    if (afterSecond === end) return { kind: 'up', consumed: second };
    if (isSlash(s.charCodeAt(afterSecond))) return { kind: 'up', consumed: second + 1 };
  }
  return { kind: 'file', consumed: 0 };
}

/** Output ends with '/': drop the last segment, never going above the first slash. */
function backUpToPreviousSlash(begin: number, out: number[]): void {
  let i = out.length - 1;
  if (i === begin) return;
  do i--;
  while (out[i] !== SLASH && i > begin);
  out.length = i + 1;
}

/**
 * googleurl's CheckForNestedEscapes: after decoding an escape just behind an invalid '%', make sure the output does
 * not now read as a valid escape (`%%30%30` must not turn into `%00`); if it would, the '%' is written as `%25`.
 */
function checkForNestedEscapes(spec: string, next: number, end: number, percentAt: number, out: number[]): void {
  const length = out.length;
  const lastUnescaped = out[length - 1]!;
  const appendNext = percentAt === length - 2;
  if (appendNext) {
    if (next === end || spec.charCodeAt(next) >= 0x80) return;
    out.push(spec.charCodeAt(next));
  }
  const a = hexValue(out[percentAt + 1]!);
  const b = percentAt + 2 < out.length ? hexValue(out[percentAt + 2]!) : -1;
  if (a >= 0 && b >= 0) {
    if (!appendNext) out.push(out[percentAt + 1]!);
    out[percentAt + 1] = 0x32; // '2'
    out[percentAt + 2] = 0x35; // '5'
    out.push(lastUnescaped);
  } else if (appendNext) {
    out.length = length;
  }
}

function appendEscaped(byte: number, out: number[]): void {
  out.push(PERCENT, HEX.charCodeAt(byte >> 4), HEX.charCodeAt(byte & 15));
}

/** Percent-encodes the UTF-8 bytes of the code point at `i`; returns the index of its last UTF-16 unit, or -1. */
function appendUtf8Escaped(s: string, i: number, out: number[]): number {
  const cp = s.codePointAt(i)!;
  if (cp >= 0xd800 && cp <= 0xdfff) return -1;
  if (cp < 0x800) {
    appendEscaped(0xc0 | (cp >> 6), out);
  } else if (cp < 0x10000) {
    appendEscaped(0xe0 | (cp >> 12), out);
    appendEscaped(0x80 | ((cp >> 6) & 63), out);
  } else {
    appendEscaped(0xf0 | (cp >> 18), out);
    appendEscaped(0x80 | ((cp >> 12) & 63), out);
    appendEscaped(0x80 | ((cp >> 6) & 63), out);
  }
  appendEscaped(0x80 | (cp & 63), out);
  return cp >= 0x10000 ? i + 1 : i;
}

function fromCodes(codes: number[]): string {
  let s = '';
  for (let i = 0; i < codes.length; i += 8192) s += String.fromCharCode(...codes.slice(i, i + 8192));
  return s;
}
