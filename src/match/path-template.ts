/**
 * Envoy URI templates as Istio uses them in AuthorizationPolicy `paths` (`{*}`, `{**}`).
 * STUB: to be implemented.
 */

/** True when `path` uses template operators and must be matched as a template. */
export function isPathTemplate(path: string): boolean {
  return path.includes('{*}') || path.includes('{**}');
}

/** Why `path` is not a valid template, or `undefined` when it is. */
export function validatePathTemplate(path: string): string | undefined {
  void path;
  return undefined;
}

/** A matcher for a valid template, applied to a normalized path without its query. */
export function compilePathTemplate(template: string): (path: string) => boolean {
  return (path) => path === template;
}
