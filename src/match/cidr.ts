/**
 * IP addresses and CIDR ranges (IPv4 and IPv6) for ipBlocks, remoteIpBlocks and the *.ip conditions.
 * STUB: to be implemented.
 */

/** An address parsed once per request. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is unwrapped to IPv4. */
export interface ParsedIp {
  readonly family: 4 | 6;
  readonly text: string;
}

export interface Cidr {
  readonly family: 4 | 6;
  readonly prefixLength: number;
  readonly text: string;
}

export interface IpSet {
  contains(ip: ParsedIp): boolean;
}

export function parseIp(text: string): ParsedIp | undefined {
  void text;
  return undefined;
}

/** An IP (taken as /32 or /128) or a CIDR; `undefined` when it is neither. */
export function parseCidr(text: string): Cidr | undefined {
  void text;
  return undefined;
}

export function compileIpSet(cidrs: readonly Cidr[]): IpSet {
  void cidrs;
  return { contains: () => false };
}
