import { parseIp, type ParsedIp } from './cidr.ts';

/**
 * Where key material may not be fetched from: link-local addresses (169.254.0.0/16, fe80::/10) and the cloud
 * metadata services. A `jwksUri`, an issuer's OIDC discovery, a redirect or a DNS answer that points there would
 * let whoever controls a RequestAuthentication (or the issuer's DNS, or a redirecting server) make every sidecar
 * read the node's metadata service, credentials included (server-side request forgery). istiod has no such rule; it
 * is a deliberate, stricter choice. Pure: callers resolve names and pass the addresses.
 */

/** Names of metadata services, which resolve to one of the addresses below inside their clouds. */
const METADATA_HOSTS: ReadonlySet<string> = new Set([
  'metadata',
  'metadata.google.internal',
  'metadata.goog',
  'instance-data',
  'instance-data.ec2.internal',
  'metadata.azure.internal',
  'metadata.tencentyun.com',
  'metadata.platformequinix.com',
]);

/** Metadata addresses outside the link-local ranges: AWS's IPv6 endpoint and Alibaba Cloud's. */
const METADATA_ADDRESSES: ReadonlySet<string> = new Set(['fd00:ec2::254', '100.100.100.200']);

/** Why fetching from this address is refused, or undefined when it may be used. */
export function forbiddenAddress(ip: ParsedIp): string | undefined {
  if (ip.family === 4 && ip.w0 >>> 16 === 0xa9fe) return `${ip.text} is a link-local address (169.254.0.0/16, where cloud metadata services answer)`;
  if (ip.family === 6 && ip.w0 >>> 22 === 0x3fa) return `${ip.text} is a link-local address (fe80::/10)`;
  if (METADATA_ADDRESSES.has(ip.text)) return `${ip.text} is a cloud metadata service address`;
  return undefined;
}

/**
 * Why a URL's host is refused, or undefined. The host is taken as the WHATWG URL parser leaves it (so decimal,
 * octal and hex IPv4 forms are already dotted quads); IPv6 brackets, a trailing dot and IPv4-mapped IPv6 are
 * looked through.
 */
export function forbiddenHost(hostname: string): string | undefined {
  let host = hostname.toLowerCase();
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  while (host.endsWith('.')) host = host.slice(0, -1);
  if (METADATA_HOSTS.has(host)) return `${host} is a cloud metadata service`;
  const ip = parseIp(host);
  return ip === undefined ? undefined : forbiddenAddress(ip);
}

/** Why a URL may not be fetched for keys, or undefined; an unparsable URL is left to the caller's own checks. */
export function forbiddenUrl(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  return forbiddenHost(u.hostname);
}
