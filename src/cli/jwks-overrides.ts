import { readFile } from 'node:fs/promises';
import { ConfigError } from '../errors.ts';

/** `--jwks ISSUER=FILE...`: each issuer's key set text, read from its file. */
export async function readJwksOverrides(specs: readonly string[]): Promise<Map<string, string>> {
  const overrides = new Map<string, string>();
  for (const spec of specs) {
    const eq = spec.lastIndexOf('=');
    if (eq <= 0) throw new ConfigError('ERR_JWKS_OPTION', `--jwks ${spec}: write it as ISSUER=FILE`);
    try {
      overrides.set(spec.slice(0, eq), await readFile(spec.slice(eq + 1), 'utf8'));
    } catch {
      throw new ConfigError('ERR_JWKS_OPTION', `--jwks ${spec}: cannot read ${spec.slice(eq + 1)}`);
    }
  }
  return overrides;
}
