import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CaptureError } from '../src/errors.ts';
import {
  DEFAULT_CAPTURE, describeCapture, iptablesRules, nftRuleset, parseCaptureOptions, type CaptureFlags, type CaptureOptions,
} from '../src/capture/rules.ts';

// Source: istio/istio tools/istio-iptables/pkg/capture/run.go (IptablesConfigurator.Run) and its testdata/*.golden
// (outbound-ports-exclude.golden, ipv6-ipnets.golden, inbound-ports-include.golden), REDIRECT mode. Rampart leaves out
// the HBONE tunnel port 15008 (`--dport 15008 -j RETURN`, `! --dport 15008` on the hairpin rule) and DNS capture.

const ISTIO_DEFAULT_V4 = `# rampart capture: Istio's istio-iptables REDIRECT rules, IPv4 (iptables-restore --noflush)
*nat
:RAMPART_INBOUND - [0:0]
:RAMPART_IN_REDIRECT - [0:0]
:RAMPART_OUTPUT - [0:0]
:RAMPART_REDIRECT - [0:0]
-A RAMPART_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A RAMPART_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A PREROUTING -p tcp -j RAMPART_INBOUND
-A RAMPART_INBOUND -p tcp --dport 15001 -j RETURN
-A RAMPART_INBOUND -p tcp --dport 15006 -j RETURN
-A RAMPART_INBOUND -p tcp --dport 15000 -j RETURN
-A RAMPART_INBOUND -p tcp --dport 15020 -j RETURN
-A RAMPART_INBOUND -p tcp --dport 15021 -j RETURN
-A RAMPART_INBOUND -p tcp --dport 15090 -j RETURN
-A RAMPART_INBOUND -p tcp -j RAMPART_IN_REDIRECT
-A OUTPUT -p tcp -j RAMPART_OUTPUT
-A RAMPART_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A RAMPART_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp -m owner --uid-owner 1337 -j RAMPART_IN_REDIRECT
-A RAMPART_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A RAMPART_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A RAMPART_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp -m owner --gid-owner 1337 -j RAMPART_IN_REDIRECT
-A RAMPART_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A RAMPART_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A RAMPART_OUTPUT -d 127.0.0.1/32 -j RETURN
-A RAMPART_OUTPUT -j RAMPART_REDIRECT
COMMIT
`;

const ISTIO_DEFAULT_NFT = `# rampart capture: Istio's istio-iptables REDIRECT rules (nft -f; replaces table inet rampart)
table inet rampart {}
delete table inet rampart
table inet rampart {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    meta l4proto tcp jump inbound
  }

  chain inbound {
    tcp dport { 15001, 15006, 15000, 15020, 15021, 15090 } return
    meta l4proto tcp jump in_redirect
  }

  chain in_redirect {
    meta l4proto tcp redirect to :15006
  }

  chain output {
    type nat hook output priority -100; policy accept;
    meta l4proto != tcp return
    oifname "lo" ip saddr 127.0.0.6 return
    oifname "lo" ip6 saddr ::6 return
    oifname "lo" ip daddr != 127.0.0.1 meta skuid 1337 jump in_redirect
    oifname "lo" ip6 daddr != ::1 meta skuid 1337 jump in_redirect
    oifname "lo" meta skuid != 1337 return
    meta skuid 1337 return
    oifname "lo" ip daddr != 127.0.0.1 meta skgid 1337 jump in_redirect
    oifname "lo" ip6 daddr != ::1 meta skgid 1337 jump in_redirect
    oifname "lo" meta skgid != 1337 return
    meta skgid 1337 return
    ip daddr 127.0.0.1 return
    ip6 daddr ::1 return
    jump out_redirect
  }

  chain out_redirect {
    meta l4proto tcp redirect to :15001
  }
}
`;

/** The rule lines (no comments, blank lines or chain declarations) of a text, trimmed. */
const rules = (text: string): string[] => text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith(':'));
const chainOf = (nft: string, chain: string): string[] => {
  const m = new RegExp(`\\n  chain ${chain} \\{\\n([\\s\\S]*?)\\n  \\}`).exec(nft);
  assert.ok(m !== null, `chain ${chain} in\n${nft}`);
  return rules(m[1]!).filter((l) => !l.startsWith('type '));
};

test('defaults: Istio sidecar values', () => {
  assert.deepEqual({ ...DEFAULT_CAPTURE }, {
    proxyUid: 1337, proxyGid: 1337, inboundPort: 15006, outboundPort: 15001,
    includeInboundPorts: '*', excludeInboundPorts: [15001, 15006, 15000, 15020, 15021, 15090],
    includeOutboundCidrs: '*', excludeOutboundCidrs: [], excludeOutboundPorts: [],
  });
  assert.ok(Object.isFrozen(DEFAULT_CAPTURE) && Object.isFrozen(DEFAULT_CAPTURE.excludeInboundPorts));
  assert.deepEqual(parseCaptureOptions({}), DEFAULT_CAPTURE);
});

test('iptables defaults: the rules of Istio\'s golden files, in their order (less the 15008 tunnel port)', () => {
  assert.equal(iptablesRules(DEFAULT_CAPTURE, 4), ISTIO_DEFAULT_V4);
});

test('nft defaults: one inet table, the same rules in the same order, replaced as a whole by nft -f', () => {
  const text = nftRuleset(DEFAULT_CAPTURE);
  assert.equal(text, ISTIO_DEFAULT_NFT);
  // The table is created (a no-op when it exists) and deleted before being defined: one transaction replaces it.
  assert.deepEqual(text.split('\n').slice(1, 4), ['table inet rampart {}', 'delete table inet rampart', 'table inet rampart {']);
  assert.equal(text.match(/^table inet rampart \{$/gm)?.length, 1);
});

test('IPv6: ::6 and ::1 stand in for 127.0.0.6 and 127.0.0.1, no IPv4 address appears (ipv6-ipnets.golden)', () => {
  const v6 = iptablesRules(parseCaptureOptions({ excludeOutboundCidrs: '10.0.0.0/8,fd00::/8', includeOutboundCidrs: '2001:db8::/32,192.168.0.0/16' }), 6);
  assert.ok(v6.includes('-A RAMPART_OUTPUT -o lo -s ::6/128 -j RETURN'));
  assert.ok(v6.includes('-A RAMPART_OUTPUT -o lo ! -d ::1/128 -p tcp -m owner --uid-owner 1337 -j RAMPART_IN_REDIRECT'));
  assert.ok(v6.includes('-A RAMPART_OUTPUT -d ::1/128 -j RETURN'));
  assert.ok(v6.includes('-A RAMPART_OUTPUT -d fd00::/8 -j RETURN'));
  assert.ok(v6.includes('-A RAMPART_OUTPUT -d 2001:db8::/32 -j RAMPART_REDIRECT'));
  assert.doesNotMatch(v6, /\b\d+\.\d+\.\d+\.\d+\b/, 'no IPv4 address in the IPv6 text');
  const v4 = iptablesRules(parseCaptureOptions({ excludeOutboundCidrs: '10.0.0.0/8,fd00::/8', includeOutboundCidrs: '2001:db8::/32,192.168.0.0/16' }), 4);
  assert.ok(v4.includes('-A RAMPART_OUTPUT -d 10.0.0.0/8 -j RETURN'));
  assert.ok(v4.includes('-A RAMPART_OUTPUT -d 192.168.0.0/16 -j RAMPART_REDIRECT'));
  assert.doesNotMatch(v4, /::/, 'no IPv6 address in the IPv4 text');
  // Both families by default, each with its own loopback: the v6 text has the same rules as the v4 one.
  assert.equal(rules(iptablesRules(DEFAULT_CAPTURE, 6)).length, rules(ISTIO_DEFAULT_V4).length);
});

test('nft: each address rule is bound to its family (ip / ip6)', () => {
  const out = chainOf(nftRuleset(parseCaptureOptions({ excludeOutboundCidrs: '10.0.0.0/8,fd00::/8', includeOutboundCidrs: '2001:db8::/32,192.168.0.0/16' })), 'output');
  assert.deepEqual(out.slice(-4), [
    'ip daddr 10.0.0.0/8 return',
    'ip6 daddr fd00::/8 return',
    'ip6 daddr 2001:db8::/32 jump out_redirect',
    'ip daddr 192.168.0.0/16 jump out_redirect',
  ]);
});

// One row per option: flags, the lines that must appear (in this order) and lines that must not.
const rows: { name: string; flags: CaptureFlags; nft: { chain: string; has: string[]; not?: string[] }; v4: { has: string[]; not?: string[] } }[] = [
  {
    name: 'include inbound ports: only those are redirected, the exclusions do not apply (Istio writes them only for *)',
    flags: { includeInboundPorts: '8080, 9090' },
    nft: { chain: 'inbound', has: ['tcp dport { 8080, 9090 } jump in_redirect'], not: ['tcp dport { 15001, 15006, 15000, 15020, 15021, 15090 } return', 'meta l4proto tcp jump in_redirect'] },
    v4: {
      has: ['-A PREROUTING -p tcp -j RAMPART_INBOUND', '-A RAMPART_INBOUND -p tcp --dport 8080 -j RAMPART_IN_REDIRECT', '-A RAMPART_INBOUND -p tcp --dport 9090 -j RAMPART_IN_REDIRECT'],
      not: ['-A RAMPART_INBOUND -p tcp --dport 15020 -j RETURN', '-A RAMPART_INBOUND -p tcp -j RAMPART_IN_REDIRECT'],
    },
  },
  {
    name: 'include no inbound ports: no jump from PREROUTING (Istio: InboundPortsInclude == "")',
    flags: { includeInboundPorts: '' },
    nft: { chain: 'prerouting', has: [], not: ['meta l4proto tcp jump inbound'] },
    v4: { has: [], not: ['-A PREROUTING -p tcp -j RAMPART_INBOUND'] },
  },
  {
    name: 'exclude inbound ports replace the defaults',
    flags: { excludeInboundPorts: '22' },
    nft: { chain: 'inbound', has: ['tcp dport 22 return', 'meta l4proto tcp jump in_redirect'] },
    v4: { has: ['-A RAMPART_INBOUND -p tcp --dport 22 -j RETURN', '-A RAMPART_INBOUND -p tcp -j RAMPART_IN_REDIRECT'], not: ['-A RAMPART_INBOUND -p tcp --dport 15020 -j RETURN'] },
  },
  {
    name: 'exclude outbound ports come first in OUTPUT, before the loopback and owner rules (outbound-ports-exclude.golden)',
    flags: { excludeOutboundPorts: '22,443' },
    nft: { chain: 'output', has: ['meta l4proto != tcp return', 'tcp dport { 22, 443 } return', 'oifname "lo" ip saddr 127.0.0.6 return'] },
    v4: { has: ['-A OUTPUT -p tcp -j RAMPART_OUTPUT', '-A RAMPART_OUTPUT -p tcp --dport 22 -j RETURN', '-A RAMPART_OUTPUT -p tcp --dport 443 -j RETURN', '-A RAMPART_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN'] },
  },
  {
    name: 'exclude outbound CIDRs return after the 127.0.0.1 rule and before the redirect ("must be applied before inclusions")',
    flags: { excludeOutboundCidrs: '10.96.0.0/12,169.254.169.254' },
    nft: { chain: 'output', has: ['ip daddr 127.0.0.1 return', 'ip daddr 10.96.0.0/12 return', 'ip daddr 169.254.169.254/32 return', 'jump out_redirect'] },
    v4: { has: ['-A RAMPART_OUTPUT -d 127.0.0.1/32 -j RETURN', '-A RAMPART_OUTPUT -d 10.96.0.0/12 -j RETURN', '-A RAMPART_OUTPUT -d 169.254.169.254/32 -j RETURN', '-A RAMPART_OUTPUT -j RAMPART_REDIRECT'] },
  },
  {
    name: 'include outbound CIDRs: only those are redirected; host bits are masked',
    flags: { includeOutboundCidrs: '10.1.2.3/16' },
    nft: { chain: 'output', has: ['ip daddr 10.1.0.0/16 jump out_redirect'], not: ['jump out_redirect'] },
    v4: { has: ['-A RAMPART_OUTPUT -d 10.1.0.0/16 -j RAMPART_REDIRECT'], not: ['-A RAMPART_OUTPUT -j RAMPART_REDIRECT'] },
  },
  {
    name: 'include no outbound CIDRs: only the hairpin rule redirects',
    flags: { includeOutboundCidrs: '' },
    nft: { chain: 'output', has: ['oifname "lo" ip daddr != 127.0.0.1 meta skuid 1337 jump in_redirect'], not: ['jump out_redirect'] },
    v4: { has: ['-A RAMPART_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp -m owner --uid-owner 1337 -j RAMPART_IN_REDIRECT'], not: ['-A RAMPART_OUTPUT -j RAMPART_REDIRECT'] },
  },
  {
    name: 'a loopback CIDR included: the "app to itself over lo" RETURN goes (Istio: HasLoopBackIP)',
    flags: { includeOutboundCidrs: '127.0.0.0/8' },
    nft: { chain: 'output', has: ['meta skuid 1337 return', 'ip daddr 127.0.0.1 return', 'ip daddr 127.0.0.0/8 jump out_redirect'], not: ['oifname "lo" meta skuid != 1337 return', 'oifname "lo" meta skgid != 1337 return'] },
    v4: { has: ['-A RAMPART_OUTPUT -m owner --uid-owner 1337 -j RETURN'], not: ['-A RAMPART_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN'] },
  },
  {
    name: 'proxy uid, gid and ports',
    flags: { proxyUid: '101', proxyGid: '102', inboundPort: '16006', outboundPort: '16001' },
    nft: { chain: 'output', has: ['oifname "lo" ip daddr != 127.0.0.1 meta skuid 101 jump in_redirect', 'meta skuid 101 return', 'meta skgid 102 return'] },
    v4: { has: ['-A RAMPART_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006', '-A RAMPART_REDIRECT -p tcp -j REDIRECT --to-ports 16001', '-A RAMPART_OUTPUT -m owner --uid-owner 101 -j RETURN', '-A RAMPART_OUTPUT -m owner --gid-owner 102 -j RETURN'] },
  },
];

for (const row of rows) {
  test(`option: ${row.name}`, () => {
    const o = parseCaptureOptions(row.flags);
    const inOrder = (lines: string[], want: string[], what: string): void => {
      let at = -1;
      for (const w of want) {
        const i = lines.indexOf(w, at + 1);
        assert.ok(i > at, `${what}: ${JSON.stringify(w)} after ${JSON.stringify(lines[at])}\n${lines.join('\n')}`);
        at = i;
      }
    };
    const nft = chainOf(nftRuleset(o), row.nft.chain);
    inOrder(nft, row.nft.has, `nft chain ${row.nft.chain}`);
    for (const n of row.nft.not ?? []) assert.ok(!nft.includes(n), `nft: no ${n}\n${nft.join('\n')}`);
    const v4 = rules(iptablesRules(o, 4));
    inOrder(v4, row.v4.has, 'iptables v4');
    for (const n of row.v4.not ?? []) assert.ok(!v4.includes(n), `iptables: no ${n}\n${v4.join('\n')}`);
  });
}

test('parse: values are trimmed, duplicates dropped, CIDRs canonical; the result is frozen', () => {
  const o: CaptureOptions = parseCaptureOptions({
    excludeInboundPorts: ' 22 , 22,15020', excludeOutboundCidrs: '10.0.0.0/8, 10.0.0.0/8,2001:DB8::1/32,fd00::1', includeInboundPorts: ' * ', includeOutboundCidrs: '*',
  });
  assert.deepEqual(o.excludeInboundPorts, [22, 15020]);
  assert.deepEqual(o.excludeOutboundCidrs, ['10.0.0.0/8', '2001:db8::/32', 'fd00::1/128']);
  assert.equal(o.includeInboundPorts, '*');
  assert.ok(Object.isFrozen(o) && Object.isFrozen(o.excludeOutboundCidrs));
  assert.deepEqual(parseCaptureOptions({ excludeInboundPorts: '' }).excludeInboundPorts, []);
});

test('parse: every bad value is reported, with the flag and the value, as ERR_CAPTURE_OPTION', () => {
  const rows: [CaptureFlags, RegExp][] = [
    [{ proxyUid: 'istio-proxy' }, /--proxy-uid "istio-proxy": not a user id/],
    [{ proxyUid: '-1' }, /--proxy-uid "-1"/],
    [{ proxyGid: '4294967295' }, /--proxy-gid "4294967295": not a group id/],
    [{ inboundPort: '0' }, /--inbound-port "0": not a port \(1-65535\)/],
    [{ outboundPort: '65536' }, /--outbound-port "65536": not a port/],
    [{ outboundPort: '15006' }, /--inbound-port and --outbound-port must differ \(both 15006\)/],
    [{ includeInboundPorts: '80,http' }, /--include-inbound-ports "80,http": "http" is not a port/],
    [{ includeInboundPorts: '80,*' }, /--include-inbound-ports "80,\*": '\*' stands alone/],
    [{ excludeInboundPorts: '*' }, /--exclude-inbound-ports "\*": '\*' is not allowed here/],
    [{ excludeInboundPorts: '15020,,15021' }, /--exclude-inbound-ports "15020,,15021": an empty item/],
    [{ excludeOutboundPorts: '08080' }, /--exclude-outbound-ports "08080": not a port/],
    [{ includeOutboundCidrs: '10.0.0.0/33' }, /--include-outbound-cidrs "10.0.0.0\/33": "10.0.0.0\/33" is not a CIDR/],
    [{ includeOutboundCidrs: '10.0.0' }, /is not a CIDR/], // netip: no short forms
    [{ excludeOutboundCidrs: '010.0.0.0/8' }, /is not a CIDR/], // netip: no leading zeros
    [{ excludeOutboundCidrs: 'fe80::1%eth0' }, /is not a CIDR/], // a zone means nothing to nft or iptables
    [{ excludeOutboundCidrs: '*' }, /--exclude-outbound-cidrs "\*": '\*' is not allowed/], // Istio: invalid value for OUTBOUND_IP_RANGES_EXCLUDE
  ];
  for (const [flags, message] of rows) {
    assert.throws(() => parseCaptureOptions(flags), (e: unknown) => {
      assert.ok(e instanceof CaptureError, String(e));
      assert.equal(e.code, 'ERR_CAPTURE_OPTION');
      assert.match(e.message, message);
      return true;
    }, JSON.stringify(flags));
  }
  // All at once, not the first only.
  assert.throws(() => parseCaptureOptions({ proxyUid: 'x', inboundPort: 'y', excludeOutboundCidrs: 'z' }), (e: unknown) => {
    assert.ok(e instanceof CaptureError);
    assert.match(e.message, /--proxy-uid "x".*; --inbound-port "y".*; --exclude-outbound-cidrs "z"/);
    return true;
  });
});

test('describe: one line naming what is captured, where it goes, and who is exempt', () => {
  assert.equal(
    describeCapture(DEFAULT_CAPTURE),
    'inbound: TCP to every port but 15001,15006,15000,15020,15021,15090 → :15006; outbound: TCP to every address but 127.0.0.1, ::1 → :15001; uid 1337 and gid 1337 (the sidecar) exempt',
  );
  assert.equal(
    describeCapture(parseCaptureOptions({ includeInboundPorts: '', includeOutboundCidrs: '10.0.0.0/8', excludeOutboundPorts: '22', excludeOutboundCidrs: '10.1.0.0/16' })),
    'inbound: nothing; outbound: TCP to 10.0.0.0/8 but 10.1.0.0/16, port 22, 127.0.0.1, ::1 → :15001; uid 1337 and gid 1337 (the sidecar) exempt',
  );
});
