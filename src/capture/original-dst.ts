/**
 * The original destination of a connection that netfilter redirected (nftables `redirect`/`dnat`, iptables
 * REDIRECT/DNAT) to the proxy's capture port: where the client meant to go, before the rule rewrote it.
 *
 * Linux gives it out only through getsockopt(SO_ORIGINAL_DST) (IP6T_SO_ORIGINAL_DST for IPv6), which looks the
 * connection up in conntrack; Node has no getsockopt, so native/original_dst.c (a few lines of N-API, built at
 * `npm ci` by scripts/build-native.mjs) makes the call. The alternatives do not work from Node either:
 * - TPROXY keeps the original destination as the socket's local address, but the listening socket needs
 *   IP_TRANSPARENT, a setsockopt Node cannot make (and CAP_NET_ADMIN);
 * - one redirect rule per known destination (each to its own port) cannot pass through a destination that is not
 *   known in advance, which outbound capture must (outboundTrafficPolicy ALLOW_ANY, Istio's PassthroughCluster).
 *
 * The addon is loaded on first use, not at import, so that Rampart without capture runs where it was not built.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type net from 'node:net';
import { CaptureError } from '../errors.ts';

export interface OriginalDestination {
  readonly address: string;
  readonly port: number;
  /** The address family of the conntrack entry: 4 also for IPv4 clients of a dual-stack (`::`) listener. */
  readonly family: 4 | 6;
}

interface Addon {
  originalDst(fd: number, family: 4 | 6): { address: string; port: number };
}

// The package root's build/: one level above src/ (tsx) and dist/, two above the benchmark's .bench-out/src/.
const ROOT = [new URL('../../', import.meta.url), new URL('../../../', import.meta.url)]
  .find((u) => existsSync(new URL('package.json', u))) ?? new URL('../../', import.meta.url);
const ADDON_PATH = fileURLToPath(new URL('build/Release/original_dst.node', ROOT));
const ERROR_FILE = new URL('build/native-error.txt', ROOT);
const FIX = 'run `npm rebuild` in the Rampart directory with g++, make and python3 installed (Debian/Ubuntu: `apt-get install g++ make python3`)';

type Loaded = { readonly ok: true; readonly addon: Addon } | { readonly ok: false; readonly reason: string };
let loaded: Loaded | undefined;

function load(): Loaded {
  if (loaded !== undefined) return loaded;
  try {
    const addon = createRequire(import.meta.url)(ADDON_PATH) as Partial<Addon>;
    if (typeof addon.originalDst !== 'function') throw new Error('it does not export originalDst');
    loaded = { ok: true, addon: addon as Addon };
  } catch (err) {
    loaded = { ok: false, reason: notLoadedReason(err) };
  }
  return loaded;
}

function notLoadedReason(err: unknown): string {
  // The install script wrote down why the build failed (no compiler, no headers, not Linux): the most useful text.
  if (existsSync(ERROR_FILE)) return readFileSync(ERROR_FILE, 'utf8').trim();
  if ((err as { code?: unknown }).code === 'MODULE_NOT_FOUND') {
    return process.platform === 'linux'
      ? `the original_dst addon (build/Release/original_dst.node) is not built: ${FIX}`
      : `the original_dst addon reads SO_ORIGINAL_DST, which only Linux has (this is ${process.platform})`;
  }
  // Built, but for another Node ABI or architecture, or damaged.
  return `the original_dst addon (build/Release/original_dst.node) does not load: ${(err as Error).message}; ${FIX}`;
}

/** Whether originalDestination can work here (the addon loads), without throwing. */
export function originalDstSupport(): { ok: true } | { ok: false; reason: string } {
  const l = load();
  return l.ok ? { ok: true } : { ok: false, reason: l.reason };
}

const MAPPED_V4 = /^::ffff:\d+\.\d+\.\d+\.\d+$/i;

const ERRNO_HINT: Readonly<Record<string, string>> = {
  ENOENT: 'conntrack has no entry for it: no nat rule of this network namespace saw the connection',
  ENOPROTOOPT: 'conntrack is not available (nf_conntrack not loaded, or not a TCP socket)',
};

/**
 * The destination `socket` (an accepted TCP connection) had before a netfilter redirect; a connection that was
 * not redirected, in a namespace whose conntrack tracks it, gets its own local address and port. Throws
 * CaptureError ERR_CAPTURE_ADDON when the addon is not built, ERR_ORIGINAL_DST when the kernel has no answer.
 */
export function originalDestination(socket: net.Socket): OriginalDestination {
  const l = load();
  if (!l.ok) throw new CaptureError('ERR_CAPTURE_ADDON', `no original destination: ${l.reason}`);
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new CaptureError('ERR_ORIGINAL_DST', 'no original destination: the socket has no file descriptor (closed, or not a TCP socket)');
  }
  // An IPv4 client of a dual-stack listener has an AF_INET6 socket with an IPv4-mapped local address, but its
  // conntrack entry is IPv4: SOL_IP answers for it (the kernel's ipv6_getsockopt hands SOL_IP to ip_getsockopt),
  // SOL_IPV6 would look for an IPv6 entry and fail with ENOENT.
  const local = socket.localAddress ?? '';
  const family: 4 | 6 = socket.localFamily === 'IPv4' || MAPPED_V4.test(local) ? 4 : 6;
  try {
    // Fields copied one by one: spreading the addon's object costs ~1 µs a call, a third of the syscall's cost.
    const od = l.addon.originalDst(fd, family);
    return { address: od.address, port: od.port, family };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const hint = typeof code === 'string' ? ERRNO_HINT[code] : undefined;
    throw new CaptureError(
      'ERR_ORIGINAL_DST',
      `no original destination for ${socket.remoteAddress}:${socket.remotePort} -> ${local}:${socket.localPort}: ${(err as Error).message}${hint ? `; ${hint}` : ''}`,
      { cause: err },
    );
  }
}
