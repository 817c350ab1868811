export * from './policy/index.ts';
export * from './resources/index.ts';
export * from './identity/index.ts';
export * from './jwt/index.ts';
export * from './telemetry/index.ts';
export { RampartError, ConfigError, RequestError } from './errors.ts';
