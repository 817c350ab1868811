import { lookup as dnsLookup } from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { RampartError } from '../errors.ts';
import { parseIp } from '../match/cidr.ts';
import { forbiddenAddress, forbiddenHost } from '../match/fetch-target.ts';

/**
 * One GET of a key document (a JWKS, or an issuer's OIDC discovery document) that cannot be pointed at a link-local
 * or metadata address: not by the URL, not by a redirect, not by what the name resolves to. Names are resolved
 * here, every address is checked, and the connection goes to a checked address (the name is kept for TLS and the
 * Host header), so a DNS answer that changes between a check and the connect cannot slip through. Redirects are
 * followed by hand for the same reason, at most five, never from https to http. The body is capped while it is
 * read, and one deadline covers the whole exchange.
 */

export type ResolvedAddress = { readonly address: string; readonly family: number };
export type Resolver = (hostname: string) => Promise<readonly ResolvedAddress[]>;

export interface KeyFetchOptions {
  /** The whole exchange, redirects included (RequestAuthentication `timeout`, default 5 s). */
  readonly timeoutMs: number;
  readonly maxBytes?: number;
  readonly maxRedirects?: number;
  /** Name resolution (default: the system resolver, every address). */
  readonly resolve?: Resolver;
}

export interface KeyDocument {
  /** The URL that answered, after redirects. */
  readonly url: string;
  readonly status: number;
  readonly body: string;
}

/** What fetches key documents: this module's fetchKeyDocument, or a test's own with the same contract. */
export type KeyFetcher = (url: string, options: KeyFetchOptions) => Promise<KeyDocument>;

/** A fetch refused before any connection, because of where it would go. */
export class KeyFetchRefused extends RampartError {
  constructor(message: string) {
    super('ERR_KEY_FETCH_REFUSED', message);
  }
}

/** A fetch that got no usable answer in time. */
export class KeyFetchTimeout extends RampartError {
  constructor(timeoutMs: number) {
    super('ERR_KEY_FETCH_TIMEOUT', `no answer within ${timeoutMs} ms`);
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_BYTES = 1 << 20;

const systemResolver: Resolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

export const fetchKeyDocument: KeyFetcher = async (url, options) => {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new KeyFetchTimeout(options.timeoutMs)), options.timeoutMs);
  try {
    return await Promise.race([
      follow(url, options, deadline.signal),
      new Promise<never>((_, reject) => deadline.signal.addEventListener('abort', () => reject(deadline.signal.reason as Error), { once: true })),
    ]);
  } finally {
    clearTimeout(timer);
    deadline.abort();
  }
};

async function follow(start: string, options: KeyFetchOptions, signal: AbortSignal): Promise<KeyDocument> {
  const maxRedirects = options.maxRedirects ?? 5;
  let current = new URL(start);
  for (let hop = 0; ; hop++) {
    if (current.protocol !== 'http:' && current.protocol !== 'https:') throw new KeyFetchRefused(`${current.href}: only http and https are fetched`);
    const forbidden = forbiddenHost(current.hostname);
    if (forbidden !== undefined) throw new KeyFetchRefused(`${hop === 0 ? '' : 'redirected to '}${current.href}: refused: ${forbidden}`);
    const addresses = await checkedAddresses(current, options.resolve ?? systemResolver);
    const answer = await request(current, addresses, options.maxBytes ?? MAX_BYTES, signal);
    if (!REDIRECTS.has(answer.status) || answer.location === undefined) return { url: current.href, status: answer.status, body: answer.body };
    if (hop >= maxRedirects) throw new RampartError('ERR_KEY_FETCH_FAILED', `${start}: more than ${maxRedirects} redirects`);
    const next = new URL(answer.location, current);
    if (current.protocol === 'https:' && next.protocol === 'http:') throw new KeyFetchRefused(`${current.href} redirected to ${next.href}: refused: a redirect from https to plain http`);
    current = next;
  }
}

/** The addresses a URL's host may be connected at: every one the resolver gives, each checked; refused otherwise. */
export async function checkedAddresses(url: URL, resolve: Resolver = systemResolver): Promise<readonly ResolvedAddress[]> {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  // An address literal goes through the resolver too (which returns it as it is): one path for every connection.
  const found = await resolve(host);
  if (found.length === 0) throw new RampartError('ERR_KEY_FETCH_FAILED', `${host} resolves to no address`);
  for (const a of found) {
    const ip = parseIp(a.address);
    const why = ip === undefined ? `${a.address} is not an address` : forbiddenAddress(ip);
    // One bad answer refuses the name: a resolver that hands out a metadata address is not to be trusted with the rest.
    if (why !== undefined) throw new KeyFetchRefused(`${url.href}: refused: ${host} resolves to ${why}`);
  }
  return found;
}

interface Answer {
  readonly status: number;
  readonly location: string | undefined;
  readonly body: string;
}

/** The first address that accepts the connection answers (the others are tried only on a connection error). */
async function request(url: URL, addresses: readonly ResolvedAddress[], maxBytes: number, signal: AbortSignal): Promise<Answer> {
  let last: unknown;
  for (const a of addresses) {
    try {
      return await requestOnce(url, a.address, maxBytes, signal);
    } catch (err) {
      if (!isConnectError(err)) throw err;
      last = err;
    }
  }
  throw last;
}

function isConnectError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL';
}

function requestOnce(url: URL, address: string, maxBytes: number, signal: AbortSignal): Promise<Answer> {
  const tls = url.protocol === 'https:';
  const name = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return new Promise<Answer>((resolve, reject) => {
    const req = (tls ? https : http).request({
      host: address,
      port: url.port === '' ? (tls ? 443 : 80) : Number(url.port),
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      headers: { host: url.host, accept: 'application/json' },
      agent: false,
      signal,
      // The certificate is checked against the name in the URL, not the address connected to.
      ...(tls && isIP(name) === 0 ? { servername: name } : {}),
    }, (res) => {
      const status = res.statusCode ?? 0;
      const location = typeof res.headers.location === 'string' ? res.headers.location : undefined;
      if (REDIRECTS.has(status)) {
        res.resume();
        res.once('end', () => resolve({ status, location, body: '' }));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) {
          req.destroy(new RampartError('ERR_KEY_FETCH_FAILED', `the document is larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.once('end', () => resolve({ status, location, body: Buffer.concat(chunks).toString('utf8') }));
      res.once('error', reject);
    });
    req.once('error', reject);
    req.end();
  });
}
