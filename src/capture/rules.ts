/**
 * The traffic-capture rules that istio-init (istio-iptables) installs in a workload's network namespace, in REDIRECT
 * mode: the nat table sends the app's outbound TCP to the sidecar's outbound capture port and the workload's inbound
 * TCP to its inbound capture port, with the exceptions that keep the sidecar's own traffic out of the loop.
 *
 * Pure: options in, rule texts out (`nft -f` input, `iptables-restore --noflush` input). Applying them is apply.ts.
 *
 * Reference: Istio's tools/istio-iptables/pkg/capture/run.go (IptablesConfigurator.Run, handleInboundPortsInclude,
 * handleOutboundIncludeRules) and its testdata/*.golden; "Istio" below means that file unless another is named.
 * Left out on purpose, as Rampart has no use for them: TPROXY mode, DNS capture (UDP 53 → 15053), the HBONE tunnel
 * port 15008 (Istio exempts it from inbound capture and from the hairpin rule), outbound port inclusion, owner-group
 * filters, excluded and virtual interfaces, and UDP (only TCP is captured, so the OUTPUT jump is TCP-only as in
 * Istio before DNS capture).
 */
import { CaptureError } from '../errors.ts';
import { parseCidr, parseIp } from '../match/cidr.ts';

export interface CaptureOptions {
  /** The sidecar's user: its own connections are never captured (Istio's -u, default 1337). */
  readonly proxyUid: number;
  /** The sidecar's group, exempt the same way (Istio's -g, default 1337). */
  readonly proxyGid: number;
  /** Where inbound connections are redirected (Istio's -z, 15006). */
  readonly inboundPort: number;
  /** Where outbound connections are redirected (Istio's -p, 15001). */
  readonly outboundPort: number;
  /** Inbound ports captured: '*' every port (less the excluded ones), or these; [] captures no inbound traffic (-b). */
  readonly includeInboundPorts: '*' | readonly number[];
  /** Inbound ports never captured; only with includeInboundPorts '*', as in Istio (-d). */
  readonly excludeInboundPorts: readonly number[];
  /** Outbound destinations captured: '*' every address, or these CIDRs (both families); [] none (-i). */
  readonly includeOutboundCidrs: '*' | readonly string[];
  /** Outbound destinations never captured (-x). */
  readonly excludeOutboundCidrs: readonly string[];
  /** Outbound destination ports never captured (-o). */
  readonly excludeOutboundPorts: readonly number[];
}

/**
 * Istio's sidecar defaults. The inbound exclusions are the sidecar's own ports: Istio's injector passes its status and
 * metrics ports (15020, 15021, 15090) with -d; Rampart adds its capture ports and the admin port (15001, 15006,
 * 15000) so a peer can never reach them through the capture.
 */
export const DEFAULT_CAPTURE: CaptureOptions = freeze({
  proxyUid: 1337,
  proxyGid: 1337,
  inboundPort: 15006,
  outboundPort: 15001,
  includeInboundPorts: '*',
  excludeInboundPorts: [15001, 15006, 15000, 15020, 15021, 15090],
  includeOutboundCidrs: '*',
  excludeOutboundCidrs: [],
  excludeOutboundPorts: [],
});

/** Flag values as given on the command line (commander's camelCase names); an absent flag takes the default. */
export interface CaptureFlags {
  readonly proxyUid?: string;
  readonly proxyGid?: string;
  readonly inboundPort?: string;
  readonly outboundPort?: string;
  readonly includeInboundPorts?: string;
  readonly excludeInboundPorts?: string;
  readonly includeOutboundCidrs?: string;
  readonly excludeOutboundCidrs?: string;
  readonly excludeOutboundPorts?: string;
}

const FLAG: Record<keyof CaptureFlags, string> = {
  proxyUid: '--proxy-uid',
  proxyGid: '--proxy-gid',
  inboundPort: '--inbound-port',
  outboundPort: '--outbound-port',
  includeInboundPorts: '--include-inbound-ports',
  excludeInboundPorts: '--exclude-inbound-ports',
  includeOutboundCidrs: '--include-outbound-cidrs',
  excludeOutboundCidrs: '--exclude-outbound-cidrs',
  excludeOutboundPorts: '--exclude-outbound-ports',
};

/**
 * Validates flag values into options. Every problem is reported, in one CaptureError (code ERR_CAPTURE_OPTION) whose
 * message names each flag and value. Lists are comma-separated; an empty value is an empty list.
 *
 * Stricter than Istio, which skips a CIDR it cannot parse "for bug compatibility" and passes ports to iptables
 * unchecked: a typo here would silently widen or narrow what is captured, so it is an error.
 */
export function parseCaptureOptions(flags: CaptureFlags): CaptureOptions {
  const problems: string[] = [];
  const bad = (key: keyof CaptureFlags, value: string, why: string): void => {
    problems.push(`${FLAG[key]} ${JSON.stringify(value)}: ${why}`);
  };

  const id = (key: 'proxyUid' | 'proxyGid', dflt: number): number => {
    const v = flags[key];
    if (v === undefined) return dflt;
    const t = v.trim();
    // (uid_t)-1 means "no change" to the kernel, never an owner.
    if (!/^(0|[1-9][0-9]{0,9})$/.test(t) || Number(t) > 4294967294) {
      bad(key, v, `not a ${key === 'proxyUid' ? 'user' : 'group'} id (a whole number from 0 to 4294967294)`);
      return dflt;
    }
    return Number(t);
  };
  const port = (key: keyof CaptureFlags, text: string, whole: string): number | undefined => {
    if (!/^[1-9][0-9]{0,4}$/.test(text) || Number(text) > 65535) {
      bad(key, whole, text === whole ? 'not a port (1-65535)' : `${JSON.stringify(text)} is not a port (1-65535)`);
      return undefined;
    }
    return Number(text);
  };
  const single = (key: 'inboundPort' | 'outboundPort', dflt: number): number => {
    const v = flags[key];
    return v === undefined ? dflt : (port(key, v.trim(), v) ?? dflt);
  };
  const items = (key: keyof CaptureFlags, v: string): string[] | undefined => {
    if (v.trim() === '') return [];
    const parts = v.split(',').map((s) => s.trim());
    if (parts.includes('')) {
      bad(key, v, 'an empty item in the list');
      return undefined;
    }
    if (parts.includes('*')) {
      bad(key, v, key === 'includeInboundPorts' || key === 'includeOutboundCidrs' ? "'*' stands alone, not in a list" : "'*' is not allowed here");
      return undefined;
    }
    return parts;
  };
  const ports = (key: 'excludeInboundPorts' | 'excludeOutboundPorts' | 'includeInboundPorts', v: string): number[] => {
    const out: number[] = [];
    for (const p of items(key, v) ?? []) {
      const n = port(key, p, v);
      if (n !== undefined && !out.includes(n)) out.push(n);
    }
    return out;
  };
  const cidrs = (key: 'includeOutboundCidrs' | 'excludeOutboundCidrs', v: string): string[] => {
    const out: string[] = [];
    for (const c of items(key, v) ?? []) {
      // Go's netip.ParsePrefix, as istio-iptables parses these; a bare address is taken as /32 or /128.
      const parsed = c.includes('%') ? undefined : parseCidr(c);
      if (parsed === undefined) bad(key, v, `${JSON.stringify(c)} is not a CIDR (e.g. 10.0.0.0/8, fd00::/8) or an address`);
      else if (!out.includes(parsed.canonical)) out.push(parsed.canonical);
    }
    return out;
  };

  const proxyUid = id('proxyUid', DEFAULT_CAPTURE.proxyUid);
  const proxyGid = id('proxyGid', DEFAULT_CAPTURE.proxyGid);
  const inboundPort = single('inboundPort', DEFAULT_CAPTURE.inboundPort);
  const outboundPort = single('outboundPort', DEFAULT_CAPTURE.outboundPort);
  if (flags.inboundPort !== undefined || flags.outboundPort !== undefined) {
    // Istio does not check this; with one port the sidecar could not tell a workload's callers from its callees.
    if (inboundPort === outboundPort) problems.push(`--inbound-port and --outbound-port must differ (both ${inboundPort})`);
  }
  const inc = flags.includeInboundPorts;
  const includeInboundPorts = inc === undefined ? DEFAULT_CAPTURE.includeInboundPorts : inc.trim() === '*' ? '*' : ports('includeInboundPorts', inc);
  const exIn = flags.excludeInboundPorts;
  const excludeInboundPorts = exIn === undefined ? DEFAULT_CAPTURE.excludeInboundPorts : ports('excludeInboundPorts', exIn);
  const incOut = flags.includeOutboundCidrs;
  const includeOutboundCidrs = incOut === undefined ? DEFAULT_CAPTURE.includeOutboundCidrs : incOut.trim() === '*' ? '*' : cidrs('includeOutboundCidrs', incOut);
  const exOut = flags.excludeOutboundCidrs;
  let excludeOutboundCidrs = DEFAULT_CAPTURE.excludeOutboundCidrs;
  if (exOut !== undefined) {
    // Istio: "invalid value for OUTBOUND_IP_RANGES_EXCLUDE" (excluding everything is --include-outbound-cidrs '').
    if (exOut.trim() === '*') bad('excludeOutboundCidrs', exOut, "'*' is not allowed (to capture no outbound traffic, pass --include-outbound-cidrs '')");
    else excludeOutboundCidrs = cidrs('excludeOutboundCidrs', exOut);
  }
  const exPorts = flags.excludeOutboundPorts;
  const excludeOutboundPorts = exPorts === undefined ? DEFAULT_CAPTURE.excludeOutboundPorts : ports('excludeOutboundPorts', exPorts);

  if (problems.length > 0) throw new CaptureError('ERR_CAPTURE_OPTION', problems.join('; '));
  return freeze({ proxyUid, proxyGid, inboundPort, outboundPort, includeInboundPorts, excludeInboundPorts, includeOutboundCidrs, excludeOutboundCidrs, excludeOutboundPorts });
}

/** The nftables table the rules live in; nothing else in the namespace is touched. */
export const NFT_TABLE = 'inet rampart';

/** The iptables chains of the nat table the rules live in, and the base chains that jump to them. */
export const IPTABLES_CHAINS = ['RAMPART_INBOUND', 'RAMPART_IN_REDIRECT', 'RAMPART_OUTPUT', 'RAMPART_REDIRECT'] as const;

interface Family {
  readonly v: 4 | 6;
  /** Istio's HostIPv4LoopbackCidr (127.0.0.1/32) or ::1/128. */
  readonly loopback: string;
  /** The source address of the sidecar's inbound passthrough connections to the app (Istio: 127.0.0.6 or ::6). */
  readonly passthrough: string;
}
const V4: Family = { v: 4, loopback: '127.0.0.1', passthrough: '127.0.0.6' };
const V6: Family = { v: 6, loopback: '::1', passthrough: '::6' };

function familyOf(cidr: string): 4 | 6 {
  return cidr.includes(':') ? 6 : 4;
}

/**
 * Istio leaves out the "app to itself over lo is not captured" rule when an included CIDR is a loopback address
 * (NetworkRange.HasLoopBackIP, checked on the prefix's address as written; both families count for both).
 */
function includesLoopback(o: CaptureOptions): boolean {
  if (o.includeOutboundCidrs === '*') return false;
  return o.includeOutboundCidrs.some((c) => {
    const ip = parseIp(c.slice(0, c.indexOf('/')));
    return ip !== undefined && (ip.family === 4 ? ip.w0 >>> 24 === 127 : ip.w0 === 0 && ip.w1 === 0 && ip.w2 === 0 && ip.w3 === 1);
  });
}

/**
 * One `table inet rampart` for both families. The first two lines make `nft -f` of the text replace whatever an
 * earlier apply left, in the same transaction: creating an empty table is a no-op when it exists, and deleting it then
 * always succeeds. The helper chain Istio calls ISTIO_REDIRECT is `out_redirect` here: `redirect` is an nft keyword and
 * nft 1.0.6 (Debian 12) accepts it as a chain name neither bare nor quoted.
 */
export function nftRuleset(o: CaptureOptions): string {
  const L: string[] = [];
  const rule = (s: string): void => void L.push(`    ${s}`);
  L.push(`# rampart capture: Istio's istio-iptables REDIRECT rules (nft -f; replaces table ${NFT_TABLE})`);
  L.push(`table ${NFT_TABLE} {}`, `delete table ${NFT_TABLE}`, `table ${NFT_TABLE} {`);

  L.push('  chain prerouting {', '    type nat hook prerouting priority dstnat; policy accept;');
  if (capturesInbound(o)) rule('meta l4proto tcp jump inbound');
  L.push('  }', '', '  chain inbound {');
  if (o.includeInboundPorts === '*') {
    if (o.excludeInboundPorts.length > 0) rule(`tcp dport ${nftSet(o.excludeInboundPorts)} return`);
    rule('meta l4proto tcp jump in_redirect');
  } else if (o.includeInboundPorts.length > 0) {
    rule(`tcp dport ${nftSet(o.includeInboundPorts)} jump in_redirect`);
  }
  L.push('  }', '', '  chain in_redirect {');
  rule(`meta l4proto tcp redirect to :${o.inboundPort}`);
  L.push('  }', '', '  chain output {', '    type nat hook output priority -100; policy accept;');
  rule('meta l4proto != tcp return');
  for (const r of outputRules(o)) rule(nftRule(r));
  L.push('  }', '', '  chain out_redirect {');
  rule(`meta l4proto tcp redirect to :${o.outboundPort}`);
  L.push('  }', '}', '');
  return L.join('\n');
}

/**
 * `iptables-restore --noflush` input for one family (`ip6tables-restore` for 6): the nat table's RAMPART_* chains
 * (declaring a chain empties it) and the jumps to them from PREROUTING and OUTPUT. Only this family's addresses appear;
 * CIDRs of the other family are left out, as Istio's AppendRuleV4/AppendRuleV6 do. On its own, applying it twice adds
 * the jumps twice: apply.ts deletes the old jumps in the same transaction.
 */
export function iptablesRules(o: CaptureOptions, family: 4 | 6): string {
  const L: string[] = [];
  const [inbound, inRedirect, output, redirect] = IPTABLES_CHAINS;
  const tool = family === 4 ? 'iptables-restore' : 'ip6tables-restore';
  L.push(`# rampart capture: Istio's istio-iptables REDIRECT rules, IPv${family} (${tool} --noflush)`, '*nat');
  for (const c of IPTABLES_CHAINS) L.push(`:${c} - [0:0]`);
  // Istio's order (testdata/*.golden): the redirect chains, the inbound chain, then OUTPUT.
  L.push(`-A ${inRedirect} -p tcp -j REDIRECT --to-ports ${o.inboundPort}`);
  L.push(`-A ${redirect} -p tcp -j REDIRECT --to-ports ${o.outboundPort}`);
  if (capturesInbound(o)) {
    L.push(`-A PREROUTING -p tcp -j ${inbound}`);
    if (o.includeInboundPorts === '*') {
      for (const p of o.excludeInboundPorts) L.push(`-A ${inbound} -p tcp --dport ${p} -j RETURN`);
      L.push(`-A ${inbound} -p tcp -j ${inRedirect}`);
    } else {
      for (const p of o.includeInboundPorts) L.push(`-A ${inbound} -p tcp --dport ${p} -j ${inRedirect}`);
    }
  }
  L.push(`-A OUTPUT -p tcp -j ${output}`);
  for (const r of outputRules(o)) {
    if (r.family !== undefined && r.family !== family) continue;
    for (const line of iptablesRule(r)) L.push(line);
  }
  L.push('COMMIT', '');
  return L.join('\n');
}

/** One line for people: what the options capture. */
export function describeCapture(o: CaptureOptions): string {
  const inbound = !capturesInbound(o)
    ? 'inbound: nothing'
    : o.includeInboundPorts === '*'
      ? `inbound: TCP to every port${o.excludeInboundPorts.length > 0 ? ` but ${o.excludeInboundPorts.join(',')}` : ''} → :${o.inboundPort}`
      : `inbound: TCP to ${o.includeInboundPorts.join(',')} → :${o.inboundPort}`;
  const to = o.includeOutboundCidrs === '*' ? 'every address' : o.includeOutboundCidrs.length === 0 ? undefined : o.includeOutboundCidrs.join(',');
  const but = [
    ...o.excludeOutboundCidrs,
    ...(o.excludeOutboundPorts.length > 0 ? [`port ${o.excludeOutboundPorts.join(',')}`] : []),
    '127.0.0.1', '::1',
  ];
  const outbound = to === undefined ? 'outbound: nothing' : `outbound: TCP to ${to} but ${but.join(', ')} → :${o.outboundPort}`;
  return `${inbound}; ${outbound}; uid ${o.proxyUid} and gid ${o.proxyGid} (the sidecar) exempt`;
}

function capturesInbound(o: CaptureOptions): boolean {
  return o.includeInboundPorts === '*' || o.includeInboundPorts.length > 0;
}

function nftSet(ports: readonly number[]): string {
  return ports.length === 1 ? String(ports[0]) : `{ ${ports.join(', ')} }`;
}

/** One rule of the OUTPUT chain, rendered by nftRule and iptablesRule. */
interface OutputRule {
  /** The rule's addresses are of this family only; undefined: a rule for both. */
  readonly family?: 4 | 6;
  readonly oifLo?: true;
  readonly saddr?: string;
  readonly daddr?: string;
  readonly daddrNot?: true;
  readonly dports?: readonly number[];
  readonly owner?: { readonly kind: 'uid' | 'gid'; readonly id: number; readonly not?: true };
  /** return; jump to the inbound redirect (the hairpin); jump to the outbound redirect. */
  readonly verdict: 'return' | 'inbound' | 'outbound';
}

/** The OUTPUT rules in Istio's order (tools/istio-iptables/pkg/capture/run.go, Run). */
function outputRules(o: CaptureOptions): OutputRule[] {
  const R: OutputRule[] = [];
  // Istio: "Apply port based exclusions. Must be applied before connections back to self are redirected."
  if (o.excludeOutboundPorts.length > 0) R.push({ dports: o.excludeOutboundPorts, verdict: 'return' });
  // Istio: "127.0.0.6/::6 is bind connect from inbound passthrough cluster".
  for (const f of [V4, V6]) R.push({ family: f.v, oifLo: true, saddr: f.passthrough, verdict: 'return' });
  const lo = includesLoopback(o);
  for (const [kind, id] of [['uid', o.proxyUid], ['gid', o.proxyGid]] as const) {
    // Istio: "Redirect app calls back to itself via Envoy when using the service VIP": the sidecar's own connection
    // over lo to the pod's address (not to loopback) goes to the inbound port.
    for (const f of [V4, V6]) R.push({ family: f.v, oifLo: true, daddr: f.loopback, daddrNot: true, owner: { kind, id }, verdict: 'inbound' });
    // Istio: "Do not redirect app calls to back itself via Envoy when using the endpoint address", unless an included
    // CIDR is a loopback address.
    if (!lo) R.push({ oifLo: true, owner: { kind, id, not: true }, verdict: 'return' });
    // Istio: "Avoid infinite loops. Don't redirect Envoy traffic directly back to Envoy for non-loopback traffic."
    R.push({ owner: { kind, id }, verdict: 'return' });
  }
  // Istio: "Skip redirection for Envoy-aware applications and container-to-container traffic both of which
  // explicitly use localhost."
  for (const f of [V4, V6]) R.push({ family: f.v, daddr: f.loopback, verdict: 'return' });
  // Istio: "Apply outbound IPv4 exclusions. Must be applied before inclusions."
  for (const c of o.excludeOutboundCidrs) R.push({ family: familyOf(c), daddr: c, verdict: 'return' });
  if (o.includeOutboundCidrs === '*') R.push({ verdict: 'outbound' });
  else for (const c of o.includeOutboundCidrs) R.push({ family: familyOf(c), daddr: c, verdict: 'outbound' });
  return R;
}

function nftRule(r: OutputRule): string {
  const ip = r.family === 6 ? 'ip6' : 'ip';
  const m: string[] = [];
  if (r.dports !== undefined) m.push(`tcp dport ${nftSet(r.dports)}`);
  if (r.oifLo) m.push('oifname "lo"');
  if (r.saddr !== undefined) m.push(`${ip} saddr ${r.saddr}`);
  if (r.daddr !== undefined) m.push(`${ip} daddr ${r.daddrNot ? '!= ' : ''}${r.daddr}`);
  if (r.owner !== undefined) m.push(`meta sk${r.owner.kind} ${r.owner.not ? '!= ' : ''}${r.owner.id}`);
  m.push(r.verdict === 'return' ? 'return' : r.verdict === 'inbound' ? 'jump in_redirect' : 'jump out_redirect');
  return m.join(' ');
}

/** The rule as iptables-restore lines: one per excluded port (a bare --dport takes one; multiport at most 15). */
function iptablesRule(r: OutputRule): string[] {
  const [, inRedirect, output, redirect] = IPTABLES_CHAINS;
  const host = r.family === 6 ? 128 : 32;
  const m: string[] = [];
  if (r.oifLo) m.push('-o lo');
  if (r.saddr !== undefined) m.push(`-s ${withPrefix(r.saddr, host)}`);
  if (r.daddr !== undefined) m.push(`${r.daddrNot ? '! ' : ''}-d ${withPrefix(r.daddr, host)}`);
  if (r.verdict === 'inbound') m.push('-p tcp');
  if (r.owner !== undefined) m.push(`-m owner ${r.owner.not ? '! ' : ''}--${r.owner.kind}-owner ${r.owner.id}`);
  const target = `-j ${r.verdict === 'return' ? 'RETURN' : r.verdict === 'inbound' ? inRedirect : redirect}`;
  const line = (extra: string[]): string => [`-A ${output}`, ...extra, ...m, target].join(' ');
  return r.dports === undefined ? [line([])] : r.dports.map((p) => line([`-p tcp --dport ${p}`]));
}

function withPrefix(a: string, host: number): string {
  return a.includes('/') ? a : `${a}/${host}`;
}

function freeze(o: CaptureOptions): CaptureOptions {
  const list = <T>(v: '*' | readonly T[]): '*' | readonly T[] => (v === '*' ? v : Object.freeze([...v]));
  return Object.freeze({
    ...o,
    includeInboundPorts: list(o.includeInboundPorts),
    excludeInboundPorts: Object.freeze([...o.excludeInboundPorts]),
    includeOutboundCidrs: list(o.includeOutboundCidrs),
    excludeOutboundCidrs: Object.freeze([...o.excludeOutboundCidrs]),
    excludeOutboundPorts: Object.freeze([...o.excludeOutboundPorts]),
  });
}
