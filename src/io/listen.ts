import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type net from 'node:net';
import { RampartError } from '../errors.ts';

/**
 * Listening with an error a person can act on. A bare `EADDRINUSE` names neither what the port is for, nor who holds
 * it, nor how to move it; every listener of a long-running command goes through here with those two words.
 */

export interface ListenPurpose {
  /** What the port is, e.g. "the control plane's mTLS port". */
  readonly what: string;
  /** The flag or file field that moves it, e.g. "--port" or "examples/mesh/demo.yaml issuer.listen". */
  readonly movedBy: string;
}

export class ListenError extends RampartError {
  readonly host: string;
  readonly port: number;
  readonly purpose: ListenPurpose;
  constructor(code: string, message: string, host: string, port: number, purpose: ListenPurpose, cause: unknown) {
    super(code, message, { cause });
    this.host = host;
    this.port = port;
    this.purpose = purpose;
  }
}

export function listenExplained(server: net.Server, port: number, host: string, purpose: ListenPurpose, options: { readonly ipv6Only?: boolean } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(explainListenError(err, host, port, purpose));
    server.once('error', onError);
    server.listen({ port, host, ...(options.ipv6Only === true ? { ipv6Only: true } : {}) }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export function explainListenError(err: NodeJS.ErrnoException, host: string, port: number, purpose: ListenPurpose): ListenError {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  switch (err.code) {
    case 'EADDRINUSE': {
      const owner = portOwner(port);
      return new ListenError('ERR_PORT_IN_USE', `cannot listen on ${purpose.what}, ${where}: in use${owner === undefined ? ' by another process' : ` by ${owner}`}; stop that process, or move this port with ${purpose.movedBy}`, host, port, purpose, err);
    }
    case 'EADDRNOTAVAIL':
      return new ListenError('ERR_ADDRESS_UNAVAILABLE', `cannot listen on ${purpose.what}, ${where}: no interface of this machine has the address ${host}${host.startsWith('127.') ? ' (Linux answers the whole 127.0.0.0/8; elsewhere add it as a loopback alias)' : ''}; change it with ${purpose.movedBy}`, host, port, purpose, err);
    case 'EACCES':
      return new ListenError('ERR_PORT_FORBIDDEN', `cannot listen on ${purpose.what}, ${where}: not allowed to listen there (ports below 1024 need privileges); move it with ${purpose.movedBy}`, host, port, purpose, err);
    default:
      return new ListenError('ERR_LISTEN', `cannot listen on ${purpose.what}, ${where}: ${err.message}; move it with ${purpose.movedBy}`, host, port, purpose, err);
  }
}

/**
 * Who listens on `port`: "pid 123 (node server.js)" from /proc on Linux, when this process may see it; otherwise
 * undefined (the message then just says the port is taken).
 */
export function portOwner(port: number): string | undefined {
  try {
    const inodes = new Set<string>();
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      let text: string;
      try {
        text = readFileSync(table, 'utf8');
      } catch {
        continue;
      }
      for (const line of text.split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        // local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the socket's inode.
        if (f.length < 10 || f[3] !== '0A') continue;
        if (Number.parseInt(f[1]!.split(':')[1] ?? '', 16) === port) inodes.add(f[9]!);
      }
    }
    if (inodes.size === 0) return undefined;
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${pid}/fd`);
      } catch {
        continue;
      }
      for (const fd of fds) {
        let link: string;
        try {
          link = readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          continue;
        }
        const m = /^socket:\[(\d+)\]$/.exec(link);
        if (m !== null && inodes.has(m[1]!)) {
          if (Number(pid) === process.pid) return `this same process (pid ${pid}): two of its listeners ask for the same port`;
          const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((s) => s !== '').join(' ');
          return `pid ${pid} (${cmd.length > 80 ? `${cmd.slice(0, 77)}...` : cmd})`;
        }
      }
    }
    return undefined;
  } catch {
    return undefined;
  }
}
