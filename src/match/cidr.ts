/**
 * IP addresses and CIDR ranges (IPv4 and IPv6) for ipBlocks, remoteIpBlocks and the *.ip conditions.
 *
 * Parsing follows Go's net/netip, which istiod uses both to validate these values (pkg/config/security ValidateIPs)
 * and to build Envoy's CidrRange (pilot/pkg/networking/util AddrStrToPrefix): strict dotted-quad IPv4 (no leading
 * zeros, no short forms), RFC 4291 IPv6 text with at most 4 hex digits per group, an optional embedded IPv4 tail and,
 * on a bare address only, a `%zone` (dropped). Matching follows Envoy's CidrRange: host bits are masked off, and a
 * range only matches addresses of its own family.
 *
 * Addresses are held as 32-bit words so that `contains` compares numbers and allocates nothing.
 */

/** An address parsed once per request. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is unwrapped to IPv4. */
export interface ParsedIp {
  readonly family: 4 | 6;
  /** Canonical text: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run compressed). */
  readonly text: string;
  /** IPv4: the address as an unsigned 32-bit integer. IPv6: bits 0–31 (most significant word). */
  readonly w0: number;
  /** IPv6 bits 32–63; 0 for IPv4. */
  readonly w1: number;
  /** IPv6 bits 64–95; 0 for IPv4. */
  readonly w2: number;
  /** IPv6 bits 96–127; 0 for IPv4. */
  readonly w3: number;
}

export interface Cidr {
  readonly family: 4 | 6;
  readonly prefixLength: number;
  /** The value as written in the policy. */
  readonly text: string;
  /** Network address with host bits masked off, as Envoy's CidrRange holds it. */
  readonly network: ParsedIp;
  /** `network/prefixLength`, e.g. `10.0.0.0/24` for `10.0.0.1/24`. */
  readonly canonical: string;
}

export interface IpSet {
  contains(ip: ParsedIp): boolean;
}

/**
 * Parses a connection or forwarded address. An IPv4-mapped IPv6 address is unwrapped to IPv4, as Envoy does for
 * peers of a dual-stack listener (Address::addressFromSockAddr), and a `%zone` suffix is ignored.
 */
export function parseIp(text: string): ParsedIp | undefined {
  const w = parseAddrWords(text, true);
  if (w === undefined) return undefined;
  if (w.family === 6 && w.w0 === 0 && w.w1 === 0 && w.w2 === 0xffff) return makeIp(4, w.w3, 0, 0, 0);
  return makeIp(w.family, w.w0, w.w1, w.w2, w.w3);
}

/**
 * An IP (taken as /32 or /128) or a CIDR; `undefined` when it is neither.
 *
 * Accepts exactly what istiod accepts (netip.ParseAddr / netip.ParsePrefix): the prefix length is decimal without sign
 * or leading zero and at most 32 or 128; a zone is allowed on a bare IPv6 address but not in a prefix. An IPv4-mapped
 * IPv6 value stays an IPv6 range, as in Envoy; since request addresses are unwrapped to IPv4 it matches nothing.
 */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.lastIndexOf('/');
  let w: AddrWords | undefined;
  let bits: number;
  if (slash < 0) {
    w = parseAddrWords(text, true);
    if (w === undefined) return undefined;
    bits = w.family === 4 ? 32 : 128;
  } else {
    w = parseAddrWords(text.slice(0, slash), false);
    if (w === undefined) return undefined;
    const b = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(b)) return undefined;
    bits = Number(b);
    if (bits > (w.family === 4 ? 32 : 128)) return undefined;
  }
  const network =
    w.family === 4
      ? makeIp(4, (w.w0 & mask32(bits)) >>> 0, 0, 0, 0)
      : makeIp(
          6,
          (w.w0 & mask32(bits)) >>> 0,
          (w.w1 & mask32(bits - 32)) >>> 0,
          (w.w2 & mask32(bits - 64)) >>> 0,
          (w.w3 & mask32(bits - 96)) >>> 0,
        );
  return { family: w.family, prefixLength: bits, text, network, canonical: `${network.text}/${bits}` };
}

/**
 * Compiles ranges into sorted, merged intervals per family; `contains` is a binary search over typed arrays.
 */
export function compileIpSet(cidrs: readonly Cidr[]): IpSet {
  const v4: [number, number][] = [];
  const v6: [number[], number[]][] = [];
  for (const c of cidrs) {
    const n = c.network;
    if (c.family === 4) {
      v4.push([n.w0, (n.w0 | ~mask32(c.prefixLength)) >>> 0]);
    } else {
      const lo = [n.w0, n.w1, n.w2, n.w3];
      const hi = lo.map((word, i) => (word | ~mask32(c.prefixLength - 32 * i)) >>> 0);
      v6.push([lo, hi]);
    }
  }
  const set4 = mergeV4(v4);
  const set6 = mergeV6(v6);
  return {
    contains(ip: ParsedIp): boolean {
      return ip.family === 4 ? contains4(set4, ip.w0) : contains6(set6, ip);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Matching

/** [start0, end0, start1, end1, …], sorted and non-overlapping, inclusive bounds. */
type Ranges4 = Float64Array;
/** 8 words per range: start w0..w3, end w0..w3; sorted and non-overlapping, inclusive bounds. */
type Ranges6 = Uint32Array;

function contains4(r: Ranges4, a: number): boolean {
  let lo = 0;
  let hi = (r.length >> 1) - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (a < r[2 * mid]!) hi = mid - 1;
    else if (a > r[2 * mid + 1]!) lo = mid + 1;
    else return true;
  }
  return false;
}

function contains6(r: Ranges6, ip: ParsedIp): boolean {
  let lo = 0;
  let hi = (r.length >> 3) - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const base = mid << 3;
    if (cmp6(ip, r, base) < 0) hi = mid - 1;
    else if (cmp6(ip, r, base + 4) > 0) lo = mid + 1;
    else return true;
  }
  return false;
}

function cmp6(ip: ParsedIp, r: Ranges6, at: number): number {
  if (ip.w0 !== r[at]) return ip.w0 < r[at]! ? -1 : 1;
  if (ip.w1 !== r[at + 1]) return ip.w1 < r[at + 1]! ? -1 : 1;
  if (ip.w2 !== r[at + 2]) return ip.w2 < r[at + 2]! ? -1 : 1;
  if (ip.w3 !== r[at + 3]) return ip.w3 < r[at + 3]! ? -1 : 1;
  return 0;
}

function mergeV4(ranges: [number, number][]): Ranges4 {
  ranges.sort((a, b) => a[0] - b[0]);
  const out: number[] = [];
  for (const [s, e] of ranges) {
    const last = out.length - 1;
    if (last > 0 && s <= out[last]! + 1) out[last] = Math.max(out[last]!, e);
    else out.push(s, e);
  }
  return Float64Array.from(out);
}

function cmpWords(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < 4; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return 0;
}

function mergeV6(ranges: [number[], number[]][]): Ranges6 {
  ranges.sort((a, b) => cmpWords(a[0], b[0]));
  const merged: [number[], number[]][] = [];
  for (const [s, e] of ranges) {
    const last = merged[merged.length - 1];
    // CIDR blocks are either nested or disjoint, so "starts inside the previous block" is the only overlap.
    if (last !== undefined && cmpWords(s, last[1]) <= 0) {
      if (cmpWords(e, last[1]) > 0) last[1] = e;
    } else {
      merged.push([s, e]);
    }
  }
  const out = new Uint32Array(merged.length * 8);
  merged.forEach(([s, e], i) => {
    out.set(s, i * 8);
    out.set(e, i * 8 + 4);
  });
  return out;
}

/** The top `bits` bits of a 32-bit word set (bits ≤ 0 → 0, bits ≥ 32 → all ones). */
function mask32(bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= 32) return 0xffffffff;
  return (0xffffffff << (32 - bits)) >>> 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing (Go net/netip ParseAddr semantics)

interface AddrWords {
  readonly family: 4 | 6;
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
}

function parseAddrWords(s: string, allowZone: boolean): AddrWords | undefined {
  // netip.ParseAddr decides the family by the first '.', ':' or '%' it meets.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2e) {
      const v = parseIPv4(s, 0, s.length);
      return v < 0 ? undefined : { family: 4, w0: v, w1: 0, w2: 0, w3: 0 };
    }
    if (c === 0x3a) return parseIPv6(s, allowZone);
    if (c === 0x25) return undefined;
  }
  return undefined;
}

/** Strict dotted quad in s[from, to); the address as uint32, or -1. */
function parseIPv4(s: string, from: number, to: number): number {
  let value = 0;
  let fields = 0;
  let field = -1;
  let digits = 0;
  for (let i = from; i <= to; i++) {
    const c = i < to ? s.charCodeAt(i) : 0x2e;
    if (c >= 0x30 && c <= 0x39) {
      // Go: "IPv4 field has octet with leading zero".
      if (digits === 1 && field === 0) return -1;
      field = digits === 0 ? c - 0x30 : field * 10 + (c - 0x30);
      digits++;
      if (field > 255) return -1;
    } else if (c === 0x2e) {
      if (digits === 0 || fields === 4) return -1;
      value = value * 256 + field;
      fields++;
      digits = 0;
      field = -1;
    } else {
      return -1;
    }
  }
  return fields === 4 ? value : -1;
}

function parseIPv6(s: string, allowZone: boolean): AddrWords | undefined {
  let end = s.length;
  const pct = s.indexOf('%');
  if (pct >= 0) {
    // Go: a zone must be non-empty; netip.ParsePrefix refuses zones; PrefixFrom drops them.
    if (!allowZone || pct === s.length - 1) return undefined;
    end = pct;
  }
  const groups = [0, 0, 0, 0, 0, 0, 0, 0];
  let n = 0;
  let ellipsis = -1;
  let i = 0;
  if (end >= 2 && s.charCodeAt(0) === 0x3a && s.charCodeAt(1) === 0x3a) {
    ellipsis = 0;
    i = 2;
    if (i === end) return words6(groups);
  }
  while (i < end) {
    let value = 0;
    let digits = 0;
    let j = i;
    for (; j < end; j++) {
      const h = hexValue(s.charCodeAt(j));
      if (h < 0) break;
      value = value * 16 + h;
      digits++;
      if (digits > 4) return undefined;
    }
    if (digits === 0) return undefined;
    if (j < end && s.charCodeAt(j) === 0x2e) {
      // Embedded IPv4 tail: must be last and needs room for two groups.
      if (ellipsis < 0 && n !== 6) return undefined;
      if (n + 2 > 8) return undefined;
      const v4 = parseIPv4(s, i, end);
      if (v4 < 0) return undefined;
      groups[n++] = Math.floor(v4 / 0x10000);
      groups[n++] = v4 & 0xffff;
      i = end;
      break;
    }
    if (n === 8) return undefined;
    groups[n++] = value;
    i = j;
    if (i === end) break;
    if (s.charCodeAt(i) !== 0x3a) return undefined;
    i++;
    if (i < end && s.charCodeAt(i) === 0x3a) {
      if (ellipsis >= 0) return undefined;
      ellipsis = n;
      i++;
      if (i === end) break;
    } else if (i === end) {
      return undefined; // trailing single ':'
    }
  }
  if (ellipsis >= 0) {
    if (n === 8) return undefined; // '::' must stand for at least one group
    const shift = 8 - n;
    for (let k = n - 1; k >= ellipsis; k--) groups[k + shift] = groups[k]!;
    for (let k = ellipsis; k < ellipsis + shift; k++) groups[k] = 0;
  } else if (n !== 8) {
    return undefined;
  }
  return words6(groups);
}

function words6(g: readonly number[]): AddrWords {
  return {
    family: 6,
    w0: (g[0]! * 0x10000 + g[1]!) >>> 0,
    w1: (g[2]! * 0x10000 + g[3]!) >>> 0,
    w2: (g[4]! * 0x10000 + g[5]!) >>> 0,
    w3: (g[6]! * 0x10000 + g[7]!) >>> 0,
  };
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

function makeIp(family: 4 | 6, w0: number, w1: number, w2: number, w3: number): ParsedIp {
  return { family, text: family === 4 ? formatIPv4(w0) : formatIPv6(w0, w1, w2, w3), w0, w1, w2, w3 };
}

function formatIPv4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

/** RFC 5952: lower-case hex, longest run (≥ 2) of zero groups as `::`, first run on ties; mapped v4 dotted. */
function formatIPv6(w0: number, w1: number, w2: number, w3: number): string {
  const g = [w0 >>> 16, w0 & 0xffff, w1 >>> 16, w1 & 0xffff, w2 >>> 16, w2 & 0xffff, w3 >>> 16, w3 & 0xffff];
  if (w0 === 0 && w1 === 0 && w2 === 0xffff) return `::ffff:${formatIPv4(w3)}`;
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number, b: number): string => g.slice(a, b).map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLen, 8)}`;
}
