import { randomUUID } from 'node:crypto';
import type { Decision } from '../policy/decision.ts';
import { formatDecision } from '../policy/explain.ts';
import { extractTokens } from '../policy/request-authn.ts';
import type { CheckRequest, PreparedRequest } from '../policy/request.ts';
import type { MeshWorkload, WorkloadPort } from '../resources/mesh-file.ts';
import { checkExtAuthzHttp, extAuthzHttpConfig, type CheckedRequest, type ExtAuthzAnswer } from './ext-authz.ts';
import type { Duplex } from 'node:stream';
import type { AccessEntry, InboundState, TlsState } from './inbound.ts';
import { forwardingEdits, payloadOf } from './token-edits.ts';
import { xfccValue } from './xfcc.ts';

/**
 * The decision of one HTTP request on a workload port, whoever carries it: the sidecar's inbound listener and the
 * in-process middleware both build the request from what the connection proved, decide it with the same
 * `WorkloadPolicy.decide` (JWT, CUSTOM through the external authorizer, DENY, ALLOW), answer a denial as Envoy
 * does, compute the headers the app gets, and write the same access entry.
 */

/** What the connection proved and where it came from. */
export interface ConnInfo {
  readonly peer: string | undefined;
  readonly peerCertDer: Buffer | undefined;
  readonly mtls: boolean;
  readonly sourceIp: string | undefined;
  readonly localIp: string | undefined;
  /** The SNI of an mTLS connection (Istio's clients send their outbound cluster name). */
  readonly sni?: string | undefined;
  /** x-forwarded-client-cert for this connection's requests, with the sidecar ID it was made under. */
  xfcc?: { readonly by: string; readonly value: string };
}

/** A local reply (Envoy's answer to a denied or refused request). */
export interface LocalReply {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** Close the connection after it (a refused request: what follows on the connection cannot be trusted). */
  readonly close?: boolean;
}

export interface RequestContext {
  readonly start: number;
  readonly info: ConnInfo;
  readonly st: InboundState;
  readonly prepared: PreparedRequest;
  readonly requestId: string;
  readonly method: string;
  readonly authority: string | undefined;
  /** The request target as received. */
  readonly url: string;
  flags: string;
  received: number;
  sent: number;
  principal: string | undefined;
  /** The verified claims of the request's first token (an allowed request's, once its upstream edits are made). */
  claims?: Readonly<Record<string, unknown>>;
  /** The CUSTOM provider's answer, once asked. */
  extAuthz?: 'allow' | 'deny';
}

/** The workload port requests are decided for, and where their access entries go. */
export interface DecisionSite {
  readonly workload: MeshWorkload;
  readonly port: WorkloadPort;
  readonly state: () => InboundState;
  readonly tls: () => TlsState | undefined;
  readonly onAccess: (entry: AccessEntry) => void;
  /** How to reach an external authorizer (the sidecar's outbound: mTLS in the mesh, the outbound policy outside). */
  readonly connect?: (host: string, port: number) => Promise<Duplex>;
}

export class HttpDecisions {
  readonly #o: DecisionSite;

  constructor(site: DecisionSite) {
    this.#o = site;
  }

  /** The access entry of a refusal before any policy: a connection, or a request the parser or a limit refused. */
  refusal(kind: 'connection' | 'http', start: number, info: Partial<ConnInfo> | undefined, status: number | undefined, flags: string, reason: string,
    request: { method?: string; authority?: string; path?: string; bytesSent?: number } = {}): void {
    const { bytesSent = 0, ...http } = request;
    this.#o.onAccess({
      kind, start, durationMs: Date.now() - start, port: this.#o.port.port, sourceIp: info?.sourceIp, sourcePrincipal: info?.peer, mtls: info?.mtls ?? false,
      ...http, status, responseFlags: flags, bytesReceived: 0, bytesSent, requestPrincipal: undefined, decision: 'DENY', decidedBy: 'connection',
      policy: null, rule: null, reason, requestId: undefined, configVersion: this.#o.state().version,
    });
  }


  checkRequest(info: ConnInfo, http?: CheckRequest['http']): CheckRequest {
    const w = this.#o.workload;
    return {
      destination: { namespace: w.namespace, labels: w.labels, ...(info.localIp === undefined ? {} : { ip: info.localIp }), port: this.#o.port.port },
      source: {
        ...(info.peer === undefined ? {} : { principal: info.peer.slice('spiffe://'.length) }),
        ...(info.sourceIp === undefined ? {} : { ip: info.sourceIp }),
      },
      ...(info.sni === undefined ? {} : { sni: info.sni }),
      ...(http === undefined ? {} : { http }),
    };
  }


  /** The engine's decision on a request's head (JWT, then CUSTOM, DENY, ALLOW), as `rampart check` decides it. */
  decideHttp(info: ConnInfo, start: number, method: string, authority: string | undefined, url: string, headers: Readonly<Record<string, string | readonly string[]>>,
    requestId: string | undefined): { ctx: RequestContext; d: Decision } {
    const st = this.#o.state();
    const check = this.checkRequest(info, { method, ...(authority === undefined ? {} : { host: authority }), path: url, headers });
    const prepared = st.engine.prepare(check);
    const d = st.policy.decide(prepared, st.jwt === undefined ? {} : { jwtVerifier: st.jwt });
    const ctx: RequestContext = {
      start, info, st, prepared, requestId: requestId === undefined || requestId === '' ? randomUUID() : requestId, method, authority, url,
      flags: '-', received: 0, sent: 0, principal: undefined,
    };
    return { ctx, d };
  }

  /**
   * Completes a decision that a CUSTOM policy delegated: asks the authorizer, then decides again with its answer
   * (DENY and ALLOW policies still apply after an allow, as Envoy's filter order has it). `decided` gets the final
   * decision with the authorizer's extra headers; `refused` the authorizer's own answer when it denied.
   */
  authorize(ctx: RequestContext, d: Decision, extAuthzRequest: () => CheckedRequest, decided: (d: Decision, upstreamExtra?: Readonly<Record<string, string>>, downstreamExtra?: Readonly<Record<string, string>>) => void,
    refused: (d: Decision, answer: Extract<ExtAuthzAnswer, { allow: false }>, reason: string, debug: Readonly<Record<string, string>>) => void): void {
    const { st, prepared } = ctx;
    const provider = d.decidedBy === 'custom' && d.customProvider !== null && d.status === 403 ? st.engine.mesh.extensionProviders.find((p) => p.name === d.customProvider) : undefined;
    if (provider === undefined || this.#o.connect === undefined) {
      decided(d);
      return;
    }
    const cfg = extAuthzHttpConfig(provider);
    if (typeof cfg === 'string') {
      decided({ ...d, reason: `${d.reason}: ${cfg}` });
      return;
    }
    const opts = st.jwt === undefined ? {} : { jwtVerifier: st.jwt };
    void checkExtAuthzHttp(cfg, extAuthzRequest(), this.#o.connect).then((answer) => {
      ctx.extAuthz = answer.allow ? 'allow' : 'deny';
      if (answer.allow) {
        const after = st.policy.decide(prepared, { ...opts, extAuthz: 'allow' });
        // A request let on by failOpen says so in its access entry: the authorizer was never asked.
        const final = answer.failedOpen === undefined ? after : { ...after, reason: `${after.reason} (CUSTOM provider "${d.customProvider ?? ''}" unreachable, failOpen: ${answer.failedOpen})` };
        decided(final, answer.upstreamHeaders, answer.downstreamHeaders);
        return;
      }
      const denied = st.policy.decide(prepared, { ...opts, extAuthz: 'deny' });
      if (denied.decidedBy !== 'custom') {
        decided(denied);
        return;
      }
      ctx.flags = 'UAEX';
      const reason = answer.error === undefined ? `denied by CUSTOM provider "${provider.name}" (${answer.status})` : `CUSTOM provider "${provider.name}" failed: ${answer.error}`;
      refused(denied, answer, reason, st.debugHeaders ? { 'x-rampart-request-id': ctx.requestId, 'x-rampart-decided-by': 'custom' } : {});
    });
  }

  /** Envoy's local reply for a denial; null when the connection itself is refused (no reply). */
  denial(ctx: RequestContext, d: Decision): LocalReply | null {
    if (d.status === null) return null;
    const body = d.decidedBy === 'jwt' ? d.reason : d.status === 403 ? 'RBAC: access denied' : d.reason;
    const h: Record<string, string> = { 'content-type': 'text/plain' };
    if (d.status === 401) h['www-authenticate'] = `Bearer realm="http://${ctx.authority ?? ''}${ctx.prepared.http?.path ?? '/'}", error="invalid_token"`;
    if (ctx.st.debugHeaders) {
      h['x-rampart-request-id'] = ctx.requestId;
      h['x-rampart-decided-by'] = d.decidedBy;
      if (d.policy !== null) h['x-rampart-policy'] = `${d.policy}${d.rule === null ? '' : ` rule ${d.rule}`}`;
    }
    return { status: d.status, headers: h, body };
  }

  /** Header edits of an allowed request on its way to the app: token edits, the authorizer's, XFCC, proto, id. */
  upstreamEdits(ctx: RequestContext, upstreamExtra: Readonly<Record<string, string>> | undefined): { readonly remove: readonly string[]; readonly set: Record<string, string> } {
    const { info, st, prepared } = ctx;
    const found = st.policy.jwtRules.length > 0 ? extractTokens(st.policy.jwtRules, prepared) : [];
    let remove: readonly string[] = [];
    const set: Record<string, string> = Object.create(null) as Record<string, string>;
    if (found.length > 0) {
      // The tokens verified (the request was allowed), so their payloads may be read; once each.
      const payloads = found.map((f) => (st.jwt?.verifiedPayload(f.token) as Record<string, unknown> | undefined) ?? payloadOf(f.token));
      const first = payloads[0];
      ctx.principal = typeof first?.['iss'] === 'string' && typeof first['sub'] === 'string' ? `${first['iss']}/${first['sub']}` : undefined;
      if (first !== undefined) ctx.claims = first;
      const edits = forwardingEdits(found, payloads);
      remove = edits.removeHeaders;
      Object.assign(set, edits.setHeaders);
    }
    if (upstreamExtra !== undefined) Object.assign(set, upstreamExtra);
    if (info.mtls && info.peer !== undefined && info.peerCertDer !== undefined) {
      // Hashing the peer certificate once per connection, not per request (its SVID cannot change on it).
      const by = this.#o.tls()?.spiffeId ?? '';
      if (info.xfcc?.by !== by) info.xfcc = { by, value: xfccValue(by, info.peerCertDer, info.peer) };
      set['x-forwarded-client-cert'] = info.xfcc.value;
    }
    set['x-forwarded-proto'] = info.mtls ? 'https' : 'http';
    set['x-request-id'] = ctx.requestId;
    return { remove, set };
  }

  log(ctx: RequestContext, d: Decision, status: number | undefined, reason = d.reason): void {
    const { info, st } = ctx;
    this.#o.onAccess({
      kind: 'http', start: ctx.start, durationMs: Date.now() - ctx.start, port: this.#o.port.port, sourceIp: info.sourceIp, sourcePrincipal: info.peer, mtls: info.mtls,
      method: ctx.method, authority: ctx.authority ?? '', path: ctx.url, status, responseFlags: ctx.flags, bytesReceived: ctx.received, bytesSent: ctx.sent,
      requestPrincipal: ctx.principal, decision: d.decision, decidedBy: d.decidedBy, policy: d.policy, rule: d.rule, reason, requestId: ctx.requestId, configVersion: st.version,
      ...(d.decision === 'DENY' ? { explain: () => this.explain(ctx) } : {}),
    });
  }

  /** The decision of a denied request decided again with its trace: the same inputs, the authorizer's same answer. */
  explain(ctx: RequestContext): string {
    const { st, prepared } = ctx;
    const opts = { trace: true, ...(st.jwt === undefined ? {} : { jwtVerifier: st.jwt }), ...(ctx.extAuthz === undefined ? {} : { extAuthz: ctx.extAuthz }) };
    return formatDecision(st.policy.decide(prepared, opts));
  }

  /** The path forwarded: normalized as it was decided. */
  forwardPath(ctx: RequestContext): string {
    return ctx.prepared.http === undefined ? ctx.url : ctx.prepared.http.path + ctx.prepared.http.query;
  }
}
