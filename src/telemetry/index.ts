export { jwksTelemetry, type EventLog, type JwksTelemetry } from './jwks.ts';
