/**
 * `rampart/node`: zero trust inside a Node process, with the sidecar's identity, decisions and logs and no hop.
 * See docs/in-process.md.
 */
export { Workload, WorkloadError, type WorkloadOptions, type WorkloadLogger, type FastifyPlugin, type FastifyLike, type FastifyReplyLike, type FastifyRequestLike } from './workload.ts';
export { InProcessServer, type AppHandler } from './server.ts';
export type { RequestIdentity, EnforceOptions, RequestHandler } from './enforce.ts';
