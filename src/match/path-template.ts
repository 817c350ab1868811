/**
 * Envoy URI templates as Istio uses them in AuthorizationPolicy `paths` (`{*}`, `{**}`).
 *
 * istiod checks the value (pkg/config/security/security.go CheckValidPathTemplate), rewrites `{*}` → `*` and
 * `{**}` → `**` (pilot/pkg/security/authz/matcher/template.go sanitizePathTemplate) and hands the result to Envoy's
 * `uri_template` path matcher, which compiles it to an RE2 regex and full-matches it against the path with query and
 * fragment removed (source/extensions/path/uri_template_lib/uri_template_internal.cc, path/match/uri_template).
 */
import { RampartError } from '../errors.ts';

const MATCH_ONE = '{*}';
const MATCH_ANY = '{**}';

/**
 * RFC 3986 pchar minus `*` (and minus `/`): the characters a literal segment may use and the characters `{*}` and
 * `{**}` may match. Envoy's kLiteral and istiod's validLiteral are the same set, `=` included.
 */
const PCHAR_CLASS = "a-zA-Z0-9\\-._~%!$&'()+,;:@=";
const LITERAL = new RegExp(`^[${PCHAR_CLASS}]+$`);
/** Envoy: `*` (path glob) = one or more pchar, so never crosses or matches an empty segment. */
const PATH_GLOB = `[${PCHAR_CLASS}]+`;
/** Envoy: `**` (text glob) = zero or more pchar or `/`. */
const TEXT_GLOB = `[${PCHAR_CLASS}/]*`;
/** Envoy parsePathPatternSyntax: the whole template must be `^/[[:graph:]]*$` (printable ASCII, no space). */
const PRINTABLE = /^\/[\x21-\x7e]*$/;

/** True when `path` uses template operators and must be matched as a template. */
export function isPathTemplate(path: string): boolean {
  return path.includes(MATCH_ONE) || path.includes(MATCH_ANY);
}

/**
 * Why `path` (one `paths`/`notPaths` value) is rejected, or `undefined` when it is accepted.
 *
 * Applies istiod's CheckValidPathTemplate to every value, template or not (a plain path with `{` or `}` is rejected
 * too), then, for templates, the checks Envoy makes when it parses the rewritten template. istiod does not make the
 * Envoy checks: a value such as `//{*}` or `{*}/a` passes istiod but Envoy rejects the listener that carries it
 * (NACK, the proxy keeps its previous configuration). Rampart rejects these values up front instead — deliberately
 * stricter than istiod.
 */
export function validatePathTemplate(path: string): string | undefined {
  const template = isPathTemplate(path);
  // istiod trims every leading and trailing '/' before splitting into segments.
  const segments = trimSlashes(path).split('/');
  let sawMatchAny = false;
  for (const segment of segments) {
    if (segment === MATCH_ONE || segment === MATCH_ANY) {
      if (sawMatchAny) return `${MATCH_ANY} must be the last operator in the template (found ${segment} after it)`;
      if (segment === MATCH_ANY) sawMatchAny = true;
      continue;
    }
    if (segment.includes('{') || segment.includes('}')) {
      return `segment ${JSON.stringify(segment)} contains '{' or '}' outside a ${MATCH_ONE} or ${MATCH_ANY} operator`;
    }
    if (template && !LITERAL.test(segment)) {
      return segment === ''
        ? 'template contains an empty segment (//)'
        : `segment ${JSON.stringify(segment)} has characters outside RFC 3986 pchar (letters, digits, -._~%!$&'()+,;:@=)`;
    }
  }
  if (!template) return undefined;
  // Envoy-only checks (istiod accepts these; Envoy would reject the compiled template).
  if (!path.startsWith('/')) return 'a template must start with /';
  if (!PRINTABLE.test(path)) return 'a template may only contain printable ASCII characters';
  if (path.includes('//')) return 'a template may not contain // (Envoy rejects double slashes in uri_template)';
  return undefined;
}

/**
 * A matcher for a valid template, applied to a normalized path without its query. Throws ERR_PATH_TEMPLATE_INVALID
 * for a value that {@link validatePathTemplate} rejects.
 */
export function compilePathTemplate(template: string): (path: string) => boolean {
  const problem = validatePathTemplate(template);
  if (problem !== undefined) {
    throw new RampartError('ERR_PATH_TEMPLATE_INVALID', `invalid path template ${JSON.stringify(template)}: ${problem}`);
  }
  const re = new RegExp(templateRegexSource(template));
  return (path) => re.test(path);
}

/**
 * The regex Envoy builds for `template` (after istiod's `{*}`→`*`, `{**}`→`**` rewrite), anchored. Envoy strips the
 * query and fragment before matching (PathUtil::removeQueryAndFragment); the optional `[?#]…` tail reproduces that
 * without allocating, should a caller pass a path that still carries one.
 */
export function templateRegexSource(template: string): string {
  let body = '';
  let start = 0;
  // Envoy tokenizes on '/': each piece between slashes is an operator or a literal; the slashes stay literal.
  for (;;) {
    const slash = template.indexOf('/', start);
    const piece = slash < 0 ? template.slice(start) : template.slice(start, slash);
    if (piece === MATCH_ANY) body += TEXT_GLOB;
    else if (piece === MATCH_ONE) body += PATH_GLOB;
    else body += escapeRegex(piece);
    if (slash < 0) break;
    body += '/';
    start = slash + 1;
  }
  return `^${body}(?:[?#][\\s\\S]*)?$`;
}

function trimSlashes(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && s.charCodeAt(a) === 0x2f) a++;
  while (b > a && s.charCodeAt(b - 1) === 0x2f) b--;
  return s.slice(a, b);
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}
