export * from './policy/index.ts';
export * from './resources/index.ts';
export { RampartError, ConfigError, RequestError } from './errors.ts';
