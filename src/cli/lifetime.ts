/**
 * When a long-running command should stop. SIGINT and SIGTERM as everywhere; SIGHUP too, because its default action
 * kills the process at once and leaves its children holding their ports (a closed terminal). And, when asked, the
 * parent going away: a process whose parent dies is re-parented and gets no signal at all — `kill` of `npm start`,
 * a supervisor killed with SIGKILL — so it compares its parent's pid with the one it started under.
 */

export type StopReason = 'SIGINT' | 'SIGTERM' | 'SIGHUP' | 'parent-exited';

const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export interface Lifetime {
  /** Resolves once, with the first reason. */
  readonly stopped: Promise<StopReason>;
  /** Removes the handlers (a second signal after this gets the default action: an impatient Ctrl-C still kills). */
  dispose(): void;
}

export interface LifetimeOptions {
  /** Stop when the parent process exits. */
  readonly withParent?: boolean;
  /** How often the parent is checked (ms). */
  readonly pollMs?: number;
}

export function lifetime(opts: LifetimeOptions = {}): Lifetime {
  let resolve!: (r: StopReason) => void;
  const stopped = new Promise<StopReason>((r) => (resolve = r));
  const handlers = STOP_SIGNALS.map((sig) => {
    const h = (): void => {
      dispose();
      resolve(sig);
    };
    process.once(sig, h);
    return [sig, h] as const;
  });
  const parent = process.ppid;
  // Started by init already (pid 1): nothing to watch.
  const timer = opts.withParent === true && parent > 1
    ? setInterval(() => {
      if (process.ppid !== parent) {
        dispose();
        resolve('parent-exited');
      }
    }, opts.pollMs ?? 250)
    : undefined;
  timer?.unref();
  function dispose(): void {
    for (const [sig, h] of handlers) process.removeListener(sig, h);
    if (timer !== undefined) clearInterval(timer);
  }
  return { stopped, dispose };
}
