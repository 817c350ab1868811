import type { AccessEntry } from './inbound.ts';
import type { OutboundEntry } from './outbound.ts';

/**
 * The access log's JSON lines, as `rampart proxy` writes them and in-process enforcement writes them too: the line
 * pino would write for `info(entry)` under `log: "access"`, built directly (pino's per-key serialization was a fifth
 * of a sidecar's CPU per request, and an entry is a flat object).
 */
export function accessLine(e: AccessEntry | OutboundEntry, workload: string): string {
  const time = 'start' in e ? `,"time":"${new Date(e.start).toISOString()}"` : '';
  return `{"level":30,"log":"access",${JSON.stringify(e).slice(1, -1)}${time},"workload":${JSON.stringify(workload)}}\n`;
}

/**
 * Entries kept and written as lines every 100 ms (or every 256 entries), as Envoy flushes its access log on an
 * interval: one write per request was a system call per request at low rates, and serializing a batch in one go
 * runs warm where one entry at a time, between requests, ran on cold code.
 */
export class AccessLogWriter {
  readonly #write: (text: string) => void;
  #entries: Array<AccessEntry | OutboundEntry> = [];
  #workloads: string[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(write: (text: string) => void) {
    this.#write = write;
  }

  push(e: AccessEntry | OutboundEntry, workload: string): void {
    this.#entries.push(e);
    this.#workloads.push(workload);
    if (this.#entries.length >= 256) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), 100);
  }

  /** Writes what is kept now. */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#entries.length === 0) return;
    let text = '';
    for (let i = 0; i < this.#entries.length; i++) text += accessLine(this.#entries[i]!, this.#workloads[i]!);
    this.#entries = [];
    this.#workloads = [];
    this.#write(text);
  }
}
