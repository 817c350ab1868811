import { test } from 'node:test';
import assert from 'node:assert/strict';
import ipaddr from 'ipaddr.js';
import { compileIpSet, parseCidr, parseIp, type Cidr } from '../src/match/cidr.ts';

// Sources:
//   netip  = Go net/netip ParseAddr / ParsePrefix / PrefixFrom, which istiod uses in pkg/config/security ValidateIPs
//            and pilot/pkg/networking/util AddrStrToPrefix (ipBlocks, remoteIpBlocks, source.ip, …)
//   envoy  = envoyproxy/envoy source/common/network/cidr_range.cc (CidrRange::create masks host bits;
//            isInRange compares only within one IP version) and address_impl.cc addressFromSockAddr
//            (v4-mapped peers of a dual-stack listener become IPv4)

const cidr = (s: string): Cidr => {
  const c = parseCidr(s);
  assert.ok(c !== undefined, `${s} should parse`);
  return c;
};

test('parseIp: accepted addresses and their canonical form', () => {
  const rows: [string, 4 | 6, string][] = [
    ['10.1.2.3', 4, '10.1.2.3'], // netip: dotted quad
    ['0.0.0.0', 4, '0.0.0.0'], // netip: a lone 0 is not a leading zero
    ['255.255.255.255', 4, '255.255.255.255'], // netip: max octet
    ['2001:DB8::1', 6, '2001:db8::1'], // netip: hex is case-insensitive; RFC 5952 output
    ['2001:db8:0:0:1:0:0:1', 6, '2001:db8::1:0:0:1'], // RFC 5952: first of two equal zero runs compressed
    ['::', 6, '::'], // netip: unspecified
    ['::1', 6, '::1'], // netip: loopback
    ['1::', 6, '1::'], // netip: trailing ellipsis
    ['::ffff:10.0.0.1', 4, '10.0.0.1'], // envoy addressFromSockAddr: v4-mapped peer is IPv4
    ['::ffff:a00:1', 4, '10.0.0.1'], // ... whatever the text form of the mapped address
    ['1:2:3:4:5:6:1.2.3.4', 6, '1:2:3:4:5:6:102:304'], // netip: embedded IPv4 replaces the last two groups
    ['fe80::1%eth0', 6, 'fe80::1'], // netip: a zone is allowed on an address; Rampart ignores it
  ];
  for (const [text, family, canonical] of rows) {
    const ip = parseIp(text);
    assert.ok(ip !== undefined, text);
    assert.equal(ip.family, family, text);
    assert.equal(ip.text, canonical, text);
  }
});

test('parseIp: rejected addresses', () => {
  const rows: string[] = [
    '', // netip: unable to parse IP
    '10.1.2', // netip: IPv4 needs four fields
    '10.1.2.3.4', // netip: too many fields
    '010.1.2.3', // netip: IPv4 field has octet with leading zero
    '10.1.2.256', // netip: IPv4 field has value >255
    '10.1.2.', // netip: empty field
    '0x0a.1.2.3', // netip: no hex octets (inet_aton forms are not IP text)
    '1.2.3.4%eth0', // netip: a zone only exists on IPv6
    '%eth0', // netip: missing IPv6 address
    'fe80::1%', // netip: zone must be a non-empty string
    '2001:db8::12345', // netip: each colon-separated field must have at most 4 hex digits
    '1:2:3:4:5:6:7:8:9', // netip: trailing garbage after address
    '1:2:3:4:5:6:7:8::', // netip: the :: must expand to at least one field of zeros
    '1::2::3', // netip: multiple :: in address
    ':1::', // netip: each colon-separated field must have at least one digit
    '1:2:3', // netip: address string too short
    '1:2:', // netip: colon must be followed by more characters
    '1:2:3:4:5:6:7:1.2.3.4', // netip: embedded IPv4 must replace exactly the final 2 fields
    '::ffff:01.2.3.4', // netip: embedded IPv4 follows the IPv4 rules (leading zero)
    'localhost', // netip: names are not addresses
    ' 10.0.0.1', // netip: no surrounding whitespace
  ];
  for (const text of rows) assert.equal(parseIp(text), undefined, JSON.stringify(text));
});

test('parseCidr: accepted values, masked like Envoy', () => {
  const rows: [string, 4 | 6, number, string][] = [
    ['10.0.0.1', 4, 32, '10.0.0.1/32'], // netip AddrStrToPrefix: a bare IPv4 is /32
    ['2001:db8::1', 6, 128, '2001:db8::1/128'], // ... a bare IPv6 is /128
    ['10.0.0.0/8', 4, 8, '10.0.0.0/8'], // netip ParsePrefix
    ['10.0.0.1/24', 4, 24, '10.0.0.0/24'], // envoy CidrRange::create masks host bits (istiod passes them on)
    ['0.0.0.0/0', 4, 0, '0.0.0.0/0'], // netip: /0 is valid
    ['2001:db8::1/32', 6, 32, '2001:db8::/32'], // envoy: masking IPv6
    ['2001:db8:1:2:3:4:5:6/97', 6, 97, '2001:db8:1:2:3:4::/97'], // envoy: mask inside a word
    ['::/0', 6, 0, '::/0'], // netip: /0 IPv6
    ['fe80::1%eth0', 6, 128, 'fe80::1/128'], // netip PrefixFrom drops the zone of a bare address
    ['::ffff:10.0.0.0/104', 6, 104, '::ffff:10.0.0.0/104'], // netip/envoy: a mapped value stays an IPv6 range
  ];
  for (const [text, family, bits, canonical] of rows) {
    const c = cidr(text);
    assert.equal(c.family, family, text);
    assert.equal(c.prefixLength, bits, text);
    assert.equal(c.canonical, canonical, text);
    assert.equal(c.text, text, text);
  }
});

test('parseCidr: rejected values', () => {
  const rows: string[] = [
    '10.0.0.0/33', // netip: prefix length out of range
    '2001:db8::/129', // netip: prefix length out of range
    '10.0.0.0/08', // netip: bad bits after slash (leading zero)
    '10.0.0.0/+8', // netip: bad bits after slash (sign)
    '10.0.0.0/', // netip: bad bits after slash (empty)
    '10.0.0.0/8/8', // netip: the last '/' splits; "10.0.0.0/8" is not an address
    'fe80::%eth0/64', // netip: IPv6 zones cannot be present in a prefix
    '10.0.0/8', // netip: the address must be a full dotted quad
    '', // istiod: empty value
    '*', // istiod: no wildcards for IP fields
  ];
  for (const text of rows) assert.equal(parseCidr(text), undefined, JSON.stringify(text));
});

test('IpSet.contains', () => {
  const rows: [string[], string, boolean][] = [
    [['10.0.0.0/8'], '10.255.0.1', true], // envoy isInRange
    [['10.0.0.0/8'], '11.0.0.0', false], // envoy isInRange
    [['10.0.0.1/24'], '10.0.0.200', true], // envoy: host bits masked before matching
    [['10.0.0.1'], '10.0.0.1', true], // netip: bare IP = /32
    [['10.0.0.1'], '10.0.0.2', false], // netip: bare IP = /32
    [['0.0.0.0/0'], '203.0.113.9', true], // /0 matches every IPv4
    [['0.0.0.0/0'], '2001:db8::1', false], // envoy: an IPv4 range never matches IPv6
    [['::/0'], '10.0.0.1', false], // envoy: an IPv6 range never matches IPv4
    [['::/0'], '2001:db8::1', true], // /0 matches every IPv6
    [['10.0.0.0/8'], '::ffff:10.1.1.1', true], // envoy: v4-mapped peer unwrapped to IPv4 first
    [['::ffff:10.0.0.0/104'], '::ffff:10.1.1.1', false], // envoy: a mapped range is IPv6; unwrapped peers never match it
    [['2001:db8::/32'], '2001:db8:ffff::1', true], // envoy isInRange IPv6
    [['2001:db8::/32'], '2001:db9::1', false], // envoy isInRange IPv6
    [['2001:db8::1/127'], '2001:db8::', true], // mask inside the last word
    [['2001:db8::/127'], '2001:db8::2', false], // mask inside the last word
    [['192.168.0.0/16', '10.0.0.0/8', '172.16.0.0/12'], '172.31.255.255', true], // any range of the set (OR)
    [['192.168.0.0/16', '10.0.0.0/8', '172.16.0.0/12'], '172.32.0.0', false], // just past the last range
    [['10.0.0.0/8', '10.1.0.0/16'], '10.200.0.1', true], // nested ranges merge to the outer one
    [['10.0.0.0/24', '10.0.1.0/24'], '10.0.1.255', true], // adjacent ranges
    [['255.255.255.255'], '255.255.255.255', true], // unsigned 32-bit arithmetic at the top
    [['128.0.0.0/1'], '127.255.255.255', false], // sign bit boundary
    [['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128'], 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', true], // top of IPv6
    [[], '10.0.0.1', false], // empty set
  ];
  for (const [ranges, address, want] of rows) {
    const set = compileIpSet(ranges.map(cidr));
    const ip = parseIp(address);
    assert.ok(ip !== undefined, address);
    assert.equal(set.contains(ip), want, `${ranges.join(',')} ∋ ${address}`);
  }
});

test('agrees with ipaddr.js on addresses and ranges both accept', () => {
  // An independent implementation as oracle: same 128/32 bits, same membership, over a grid of values.
  const addresses = ['10.0.0.1', '10.0.255.255', '192.168.1.1', '0.0.0.0', '255.255.255.255', '2001:db8::1',
    '2001:db8:8000::', 'fe80::abcd', '::', '::1', 'ffff::1', '2001:db8:0:0:8000::'];
  const ranges = ['10.0.0.0/16', '10.0.0.0/17', '192.168.0.0/23', '0.0.0.0/0', '255.255.255.254/31', '2001:db8::/33',
    '2001:db8::/32', 'fe80::/10', '::/127', '::/0', '2001:db8::/65', '8000::/1'];
  for (const a of addresses) {
    const ours = parseIp(a)!;
    const theirs = ipaddr.parse(a).toByteArray();
    const bytes = ours.family === 4 ? [ours.w0] : [ours.w0, ours.w1, ours.w2, ours.w3];
    const flat = bytes.flatMap((w) => [w >>> 24, (w >>> 16) & 255, (w >>> 8) & 255, w & 255]);
    assert.deepEqual(flat, theirs, a);
    for (const r of ranges) {
      const [net, bits] = ipaddr.parseCIDR(r);
      const addr = ipaddr.parse(a);
      const want = addr.kind() === net.kind() && addr.match(net, bits);
      assert.equal(compileIpSet([cidr(r)]).contains(ours), want, `${r} ∋ ${a}`);
    }
  }
});
