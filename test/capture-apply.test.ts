import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CaptureError } from '../src/errors.ts';
import { DEFAULT_CAPTURE, nftRuleset as nftRulesetText, parseCaptureOptions, type CaptureFlags } from '../src/capture/rules.ts';
import { applyCapture, captureInstalled, detectBackend, removeCapture, type CaptureBackend } from '../src/capture/apply.ts';
import { NETNS_SKIP, TestNet, sh, type Host } from './support/netns.ts';

/**
 * The capture rules in real network namespaces, for both backends: where connections land, not only what the rules
 * say. Hosts on one bridge: `app` (the captured workload, with listeners on the capture ports 15001 and 15006, on its
 * own port 8080 and on the excluded inbound port 15020), `peer` (8080, and 9090: an excluded outbound port) and
 * `other` (8080, in an excluded outbound CIDR). Each listener answers which host and port accepted the connection and
 * its local address. The app's client processes run as root (captured), or with the sidecar's uid or gid 1337.
 */

const exec = promisify(execFile);
const ROOT = join(import.meta.dirname, '..');
const PROBE = join(import.meta.dirname, 'fixtures', 'capture-probe.ts');
const WAIT_MS = 15_000;

interface Landing {
  readonly label: string;
  readonly port: number;
  readonly local: string;
}

/** Who the app's client process runs as (setpriv; root otherwise). */
type As = 'root' | 'proxy-uid' | 'proxy-gid';
const AS: Record<As, string[]> = {
  root: [],
  'proxy-uid': ['setpriv', '--reuid=1337', '--regid=4242', '--clear-groups'],
  'proxy-gid': ['setpriv', '--regid=1337', '--clear-groups'],
};

async function connectFrom(h: Host, host: string, port: number, as: As = 'root'): Promise<Landing> {
  const argv = ['netns', 'exec', h.netns, ...AS[as], process.execPath, '--import', 'tsx', PROBE, 'connect', host, String(port)];
  try {
    const { stdout } = await exec('ip', argv, { cwd: ROOT, timeout: WAIT_MS, killSignal: 'SIGKILL' });
    return JSON.parse(stdout) as Landing;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`connect ${host}:${port} from ${h.netns} as ${as}: ${e.stderr?.trim() || e.message}`);
  }
}

/** Resolves when the child prints a line matching `re`; rejects when it exits first or after `ms`. */
function lineFrom(child: ChildProcess, re: RegExp, what: string, ms = WAIT_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let err = '';
    const timer = setTimeout(() => done(new Error(`${what}: no line matching ${re} within ${ms} ms (stderr: ${err.trim()})`)), ms);
    const onData = (b: Buffer): void => {
      buf += b.toString('utf8');
      const line = buf.split('\n').find((l) => re.test(l));
      if (line !== undefined) done(undefined, line);
    };
    const onErr = (b: Buffer): void => void (err += b.toString('utf8'));
    const onExit = (code: number | null): void => done(new Error(`${what}: exited (${code}) before ${re} (stderr: ${err.trim()})`));
    const done = (e: Error | undefined, line?: string): void => {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.stderr!.off('data', onErr);
      child.off('exit', onExit);
      if (e === undefined) resolve(line!);
      else reject(e);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onErr);
    child.once('exit', onExit);
  });
}

async function listen(h: Host, label: string, ports: readonly number[]): Promise<void> {
  const child = h.spawn(process.execPath, ['--import', 'tsx', PROBE, 'listen', label, ...ports.map(String)], { cwd: ROOT });
  await lineFrom(child, /^ready$/, `listeners of ${label}`);
}

/** An IPv6 address beside each host's IPv4 one, on the same bridge (no DAD wait). */
async function addV6(net: TestNet, h: Host): Promise<string> {
  const n = h.address.split('.').at(-1)!;
  const group = (hex: string): string => parseInt(hex, 16).toString(16); // canonical: no leading zeros
  const address = `fd72:${group(net.id.slice(0, 4))}:${group(net.id.slice(4))}::${n}`;
  await sh('ip', ['-n', h.netns, 'addr', 'add', `${address}/64`, 'dev', 'eth0', 'nodad']);
  return address;
}

async function nftRuleset(h: Host): Promise<string> {
  return h.run('nft', ['list', 'ruleset']);
}
async function iptablesSaved(h: Host): Promise<string> {
  return `${await h.run('iptables-save', ['-t', 'nat'])}${await h.run('ip6tables-save', ['-t', 'nat'])}`;
}
const count = (text: string, re: RegExp): number => text.match(new RegExp(re.source, 'gm'))?.length ?? 0;

for (const backend of ['nft', 'iptables'] as const satisfies readonly CaptureBackend[]) {
  describe(`capture with ${backend}: where connections land`, { skip: NETNS_SKIP }, () => {
    let net: TestNet | undefined;
    let app: Host;
    let peer: Host;
    let other: Host;
    let app6: string;
    let peer6: string;
    let flags: CaptureFlags;

    before(async () => {
      net = await TestNet.create();
      app = await net.addHost('app');
      peer = await net.addHost('peer');
      other = await net.addHost('other');
      app6 = await addV6(net, app);
      peer6 = await addV6(net, peer);
      const other6 = await addV6(net, other);
      await Promise.all([
        listen(app, 'app', [15001, 15006, 8080, 15020]),
        listen(peer, 'peer', [8080, 9090]),
        listen(other, 'other', [8080]),
      ]);
      flags = { excludeOutboundPorts: '9090', excludeOutboundCidrs: `${other.address}/32,${other6}/128` };
      const applied = await applyCapture(parseCaptureOptions(flags), { netns: app.netns, backend });
      assert.equal(applied.backend, backend);
    });
    after(async () => {
      if (net === undefined) return;
      try {
        await removeCapture({ netns: app.netns });
      } finally {
        await net.remove();
      }
    });

    test('a plain client to another host lands on 15001 (the redirect makes it local, 127.0.0.1 / ::1)', async () => {
      assert.deepEqual(await connectFrom(app, peer.address, 8080), { label: 'app', port: 15001, local: '127.0.0.1' });
      assert.deepEqual(await connectFrom(app, peer6, 8080), { label: 'app', port: 15001, local: '::1' });
    });

    test("the sidecar's own connections (uid 1337, or gid 1337 alone) reach the real destination", async () => {
      assert.equal((await connectFrom(app, peer.address, 8080, 'proxy-uid')).label, 'peer');
      assert.equal((await connectFrom(app, peer.address, 8080, 'proxy-gid')).label, 'peer');
      assert.equal((await connectFrom(app, peer6, 8080, 'proxy-gid')).label, 'peer');
    });

    test('127.0.0.1 and ::1 are not captured, nor is the app calling its own address over lo', async () => {
      assert.deepEqual(await connectFrom(app, '127.0.0.1', 8080), { label: 'app', port: 8080, local: '127.0.0.1' });
      assert.deepEqual(await connectFrom(app, '::1', 8080), { label: 'app', port: 8080, local: '::1' });
      assert.deepEqual(await connectFrom(app, app.address, 8080), { label: 'app', port: 8080, local: app.address });
      // The sidecar to 127.0.0.1 is not hairpinned either (the rule wants a destination other than loopback).
      assert.deepEqual(await connectFrom(app, '127.0.0.1', 8080, 'proxy-uid'), { label: 'app', port: 8080, local: '127.0.0.1' });
    });

    test("the sidecar calling the pod's own address over lo goes to the inbound port (Istio's hairpin)", async () => {
      // A redirect in OUTPUT rewrites the destination to loopback; SO_ORIGINAL_DST still tells the pod address.
      assert.deepEqual(await connectFrom(app, app.address, 8080, 'proxy-uid'), { label: 'app', port: 15006, local: '127.0.0.1' });
      assert.deepEqual(await connectFrom(app, app6, 8080, 'proxy-uid'), { label: 'app', port: 15006, local: '::1' });
      // Istio's order: the uid rules come first, and "over lo and not the proxy uid → RETURN" takes a process of the
      // proxy gid alone before the gid's hairpin rule is reached. That rule only acts with a loopback CIDR included.
      assert.deepEqual(await connectFrom(app, app.address, 8080, 'proxy-gid'), { label: 'app', port: 8080, local: app.address });
    });

    test('an excluded outbound port and an excluded CIDR are not captured', async () => {
      assert.deepEqual(await connectFrom(app, peer.address, 9090), { label: 'peer', port: 9090, local: peer.address });
      assert.deepEqual(await connectFrom(app, other.address, 8080), { label: 'other', port: 8080, local: other.address });
    });

    test('a connection from another host to the app lands on 15006; an excluded inbound port is not captured', async () => {
      assert.deepEqual(await connectFrom(peer, app.address, 8080), { label: 'app', port: 15006, local: app.address });
      assert.deepEqual(await connectFrom(peer, app6, 8080), { label: 'app', port: 15006, local: app6 });
      assert.deepEqual(await connectFrom(peer, app.address, 15020), { label: 'app', port: 15020, local: app.address });
      // The peer has no rules: its own outbound is untouched.
      assert.equal((await connectFrom(peer, other.address, 8080)).label, 'other');
    });

    test('applying again replaces the rules: one copy, for both families', async () => {
      const o = parseCaptureOptions(flags);
      await applyCapture(o, { netns: app.netns, backend });
      await applyCapture(o, { netns: app.netns, backend });
      if (backend === 'nft') {
        const rs = await nftRuleset(app);
        assert.equal(count(rs, /^table inet rampart /), 1);
        assert.equal(count(rs, /redirect to :15001$/), 1, rs);
        assert.equal(count(rs, /jump inbound$/), 1, rs);
      } else {
        const saved = await iptablesSaved(app);
        assert.equal(count(saved, /^-A OUTPUT -p tcp -j RAMPART_OUTPUT$/), 2, saved); // one per family
        assert.equal(count(saved, /^-A PREROUTING -p tcp -j RAMPART_INBOUND$/), 2, saved);
        assert.equal(count(saved, /^-A RAMPART_REDIRECT /), 2, saved);
      }
      const installed = await captureInstalled({ netns: app.netns });
      assert.deepEqual(installed.map((i) => i.backend), [backend]);
      assert.deepEqual(await connectFrom(app, peer.address, 8080), { label: 'app', port: 15001, local: '127.0.0.1' });
    });

    test('remove leaves no rule of ours, traffic flows uncaptured, and removing again is no error', async () => {
      assert.deepEqual(await removeCapture({ netns: app.netns, backend }), { removed: true });
      assert.doesNotMatch(await nftRuleset(app), /table inet rampart/);
      assert.doesNotMatch(await iptablesSaved(app), /RAMPART/);
      assert.deepEqual(await captureInstalled({ netns: app.netns }), []);
      assert.deepEqual(await connectFrom(app, peer.address, 8080), { label: 'peer', port: 8080, local: peer.address });
      assert.deepEqual(await connectFrom(peer, app.address, 8080), { label: 'app', port: 8080, local: app.address });
      assert.deepEqual(await removeCapture({ netns: app.netns, backend }), { removed: false });
      assert.deepEqual(await removeCapture({ netns: app.netns }), { removed: false });
    });
  });
}

describe('capture: backends side by side, options the kernel must accept, errors', { skip: NETNS_SKIP }, () => {
  let net: TestNet | undefined;
  let app: Host;

  before(async () => {
    net = await TestNet.create();
    app = await net.addHost('app');
  });
  after(async () => {
    if (net === undefined) return;
    try {
      await removeCapture({ netns: app.netns });
    } finally {
      await net.remove();
    }
  });

  test('detection picks nft where it works', async () => {
    assert.equal(await detectBackend(app.netns), 'nft');
  });

  test("iptables here is iptables-nft: its rules are nftables tables too, apart from inet rampart", async () => {
    const version = await sh('iptables', ['-V']);
    await applyCapture(DEFAULT_CAPTURE, { netns: app.netns, backend: 'iptables' });
    const rs = await nftRuleset(app);
    if (/nf_tables/.test(version)) {
      assert.match(rs, /table ip nat \{[\s\S]*chain RAMPART_OUTPUT/);
      assert.match(rs, /table ip6 nat \{[\s\S]*chain RAMPART_OUTPUT/);
    }
    assert.doesNotMatch(rs, /table inet rampart/);
  });

  test("applying with one backend removes the other's rules: both would redirect, in no defined order", async () => {
    await applyCapture(DEFAULT_CAPTURE, { netns: app.netns, backend: 'nft' });
    assert.deepEqual((await captureInstalled({ netns: app.netns })).map((i) => i.backend), ['nft']);
    assert.doesNotMatch(await iptablesSaved(app), /RAMPART/);
    await applyCapture(DEFAULT_CAPTURE, { netns: app.netns, backend: 'iptables' });
    assert.deepEqual((await captureInstalled({ netns: app.netns })).map((i) => i.backend), ['iptables']);
    assert.doesNotMatch(await nftRuleset(app), /table inet rampart/);
    assert.deepEqual(await removeCapture({ netns: app.netns }), { removed: true });
    assert.deepEqual(await captureInstalled({ netns: app.netns }), []);
  });

  test('what an apply leaves of iptables-nft after remove: its empty nat tables, none of our chains', async () => {
    await applyCapture(DEFAULT_CAPTURE, { netns: app.netns, backend: 'iptables' });
    await removeCapture({ netns: app.netns });
    const saved = await iptablesSaved(app);
    assert.doesNotMatch(saved, /RAMPART/);
    assert.match(saved, /^:OUTPUT ACCEPT/m);
  });

  const optionRows: CaptureFlags[] = [
    { includeInboundPorts: '8080,9090', includeOutboundCidrs: '10.0.0.0/8,fd00::/8' },
    { includeInboundPorts: '', includeOutboundCidrs: '' },
    { includeOutboundCidrs: '127.0.0.0/8,::1/128', excludeOutboundPorts: '22,53,443', excludeOutboundCidrs: '10.96.0.0/12,2001:db8::/32' },
    { proxyUid: '0', proxyGid: '65534', inboundPort: '1', outboundPort: '65535', excludeInboundPorts: '' },
  ];
  for (const backend of ['nft', 'iptables'] as const) {
    test(`${backend} accepts the rules of every option combination`, async () => {
      for (const flags of optionRows) {
        const o = parseCaptureOptions(flags);
        await applyCapture(o, { netns: app.netns, backend });
        const [installed] = await captureInstalled({ netns: app.netns });
        assert.equal(installed?.backend, backend, JSON.stringify(flags));
        assert.match(installed.rules, new RegExp(backend === 'nft' ? `redirect to :${o.outboundPort}` : `--to-ports ${o.outboundPort}`));
      }
      await removeCapture({ netns: app.netns });
    });
  }

  test('errors: a namespace that does not exist, a name that cannot be one', async () => {
    const code = (c: string) => (e: unknown): boolean => e instanceof CaptureError && e.code === c;
    await assert.rejects(applyCapture(DEFAULT_CAPTURE, { netns: `${app.netns}-gone`, backend: 'nft' }), code('ERR_CAPTURE_NETNS'));
    await assert.rejects(detectBackend(`${app.netns}-gone`), code('ERR_CAPTURE_NETNS'));
    await assert.rejects(removeCapture({ netns: '../etc' }), code('ERR_CAPTURE_NETNS'));
    await assert.rejects(detectBackend('a b'), code('ERR_CAPTURE_NETNS'));
    await assert.rejects(captureInstalled({ netns: `${app.netns}-gone` }), (e: unknown) => e instanceof CaptureError && /no network namespace/.test(e.message));
  });
});

test('dry run: the rules for the named backend, nothing run (no root needed)', async () => {
  const nft = await applyCapture(DEFAULT_CAPTURE, { backend: 'nft', dryRun: true, netns: 'never-looked-at' });
  assert.equal(nft.backend, 'nft');
  assert.match(nft.rules, /^table inet rampart \{$/m);
  const ipt = await applyCapture(DEFAULT_CAPTURE, { backend: 'iptables', dryRun: true });
  assert.equal(ipt.backend, 'iptables');
  assert.equal(count(ipt.rules, /^\*nat$/), 2);
  assert.match(ipt.rules, /-s 127\.0\.0\.6\/32[\s\S]*-s ::6\/128/);
});

const BIN = join(ROOT, 'src', 'cli', 'bin.ts');
const nftRulesetOf = (flags: CaptureFlags): string => nftRulesetText(parseCaptureOptions(flags));

/** Runs a command with `input` on stdin; resolves with its exit code and output (bounded by WAIT_MS). */
function runWith(file: string, args: readonly string[], input = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, [...args], { cwd: ROOT, timeout: WAIT_MS, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : undefined;
      if (code === undefined) reject(new Error(`${file} ${args.join(' ')}: ${err?.message} ${stderr}`));
      else resolve({ code, stdout, stderr });
    });
    child.stdin!.end(input);
  });
}
const rampart = (args: readonly string[]) => runWith(process.execPath, ['--import', 'tsx', BIN, ...args]);

test('cli: capture apply --dry-run prints a summary line and the rules of the backend, as valid input for the tool', async () => {
  const nft = await rampart(['capture', 'apply', '--dry-run', '--backend', 'nft', '--exclude-outbound-ports', '22']);
  assert.equal(nft.code, 0, nft.stderr);
  const [first, ...rest] = nft.stdout.split('\n');
  assert.equal(first, '# dry run, nothing applied: the nft rules; inbound: TCP to every port but 15001,15006,15000,15020,15021,15090 → :15006; outbound: TCP to every address but port 22, 127.0.0.1, ::1 → :15001; uid 1337 and gid 1337 (the sidecar) exempt');
  assert.equal(rest.join('\n'), nftRulesetOf({ excludeOutboundPorts: '22' }));
  const ipt = await rampart(['capture', 'apply', '--dry-run', '--backend', 'iptables', '--netns', 'not-touched']);
  assert.equal(ipt.code, 0, ipt.stderr);
  assert.match(ipt.stdout, /^# dry run, nothing applied: the iptables rules in netns not-touched; /);
  assert.equal(count(ipt.stdout, /^COMMIT$/), 2);
});

test('cli: a bad option is exit 1 with rampart capture: and every problem', async () => {
  const r = await rampart(['capture', 'apply', '--dry-run', '--proxy-uid', 'istio', '--exclude-outbound-cidrs', '10.0.0.0/40']);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, 'rampart capture: --proxy-uid "istio": not a user id (a whole number from 0 to 4294967294); --exclude-outbound-cidrs "10.0.0.0/40": "10.0.0.0/40" is not a CIDR (e.g. 10.0.0.0/8, fd00::/8) or an address\n');
});

describe('cli: capture apply, show and remove in a namespace', { skip: NETNS_SKIP }, () => {
  let net: TestNet | undefined;
  let app: Host;
  before(async () => {
    net = await TestNet.create();
    app = await net.addHost('app');
  });
  after(async () => {
    if (net === undefined) return;
    try {
      await removeCapture({ netns: app.netns });
    } finally {
      await net.remove();
    }
  });

  for (const backend of ['nft', 'iptables'] as const) {
    test(`${backend}: apply says what it did, show lists the rules, remove removes them, and again is no error`, async () => {
      const applied = await rampart(['capture', 'apply', '--netns', app.netns, '--backend', backend, '--outbound-port', '15101']);
      assert.equal(applied.code, 0, applied.stderr);
      assert.equal(applied.stdout, `capture applied with ${backend} in netns ${app.netns}: inbound: TCP to every port but 15001,15006,15000,15020,15021,15090 → :15006; outbound: TCP to every address but 127.0.0.1, ::1 → :15101; uid 1337 and gid 1337 (the sidecar) exempt\n`);
      const shown = await rampart(['capture', 'show', '--netns', app.netns]);
      assert.equal(shown.code, 0, shown.stderr);
      assert.match(shown.stdout, new RegExp(`^# capture rules installed with ${backend} in netns ${app.netns}\n`));
      assert.match(shown.stdout, backend === 'nft' ? /redirect to :15101/ : /-A RAMPART_REDIRECT -p tcp -j REDIRECT --to-ports 15101/);
      const removed = await rampart(['capture', 'remove', '--netns', app.netns]);
      assert.deepEqual(removed, { code: 0, stdout: `capture removed: the capture rules in netns ${app.netns} are gone\n`, stderr: '' });
      assert.deepEqual(await rampart(['capture', 'show', '--netns', app.netns]), { code: 0, stdout: `no capture rules installed in netns ${app.netns}\n`, stderr: '' });
      assert.deepEqual(await rampart(['capture', 'remove', '--netns', app.netns, '--backend', backend]), { code: 0, stdout: `no ${backend} capture rules to remove in netns ${app.netns}\n`, stderr: '' });
    });
  }

  test('the dry-run output is accepted as it is by nft -f and iptables-restore', async () => {
    const nft = await rampart(['capture', 'apply', '--dry-run', '--backend', 'nft']);
    const checked = await runWith('ip', ['netns', 'exec', app.netns, 'nft', '--check', '-f', '-'], nft.stdout);
    assert.equal(checked.code, 0, checked.stderr);
    const ipt = await rampart(['capture', 'apply', '--dry-run', '--backend', 'iptables', '--include-outbound-cidrs', '10.0.0.0/8,fd00::/8']);
    const at = ipt.stdout.indexOf("# rampart capture: Istio's istio-iptables REDIRECT rules, IPv6");
    for (const [tool, text] of [['iptables-restore', ipt.stdout.slice(0, at)], ['ip6tables-restore', ipt.stdout.slice(at)]] as const) {
      const tested = await runWith('ip', ['netns', 'exec', app.netns, tool, '--test', '--noflush'], text);
      assert.equal(tested.code, 0, `${tool}: ${tested.stderr}`);
    }
    assert.deepEqual(await captureInstalled({ netns: app.netns }), [], 'checking applies nothing');
  });

  test('a namespace that is not there: exit 1 and why', async () => {
    const r = await rampart(['capture', 'apply', '--netns', `${app.netns}-gone`, '--backend', 'nft']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^rampart capture: no network namespace "${app.netns}-gone"`));
  });
});
