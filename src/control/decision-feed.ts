import type { ReportedAccess } from './protocol.ts';

/**
 * The decisions proxies report, for the console: the most recent ones kept in a ring, each numbered, and handed to
 * live listeners as they arrive. What proxies could not report (their rate bound, a closed stream) is counted.
 */

export interface FeedEntry extends ReportedAccess {
  /** Increases by one per entry, from 1: the console's handle on it (`/console/decisions/ID`). */
  readonly id: number;
  /** `namespace/name` of the workload whose sidecar decided. */
  readonly workload: string;
  /** The reporting proxy's number in `rampart status`. */
  readonly proxy: number;
}

export type FeedListener = (entries: readonly FeedEntry[]) => void;

/** How many decisions the console can show after the fact. */
export const DEFAULT_FEED_CAPACITY = 1_000;

export class DecisionFeed {
  readonly #capacity: number;
  readonly #ring: (FeedEntry | undefined)[];
  #next = 1;
  #dropped = 0;
  readonly #listeners = new Set<FeedListener>();

  constructor(capacity = DEFAULT_FEED_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`feed capacity must be a positive integer, not ${capacity}`);
    this.#capacity = capacity;
    this.#ring = new Array<FeedEntry | undefined>(capacity);
  }

  /** Decisions that proxies counted as not reported. */
  get dropped(): number {
    return this.#dropped;
  }

  /** The id the next entry will get. */
  get nextId(): number {
    return this.#next;
  }

  add(workload: string, proxy: number, entries: readonly ReportedAccess[], dropped = 0): readonly FeedEntry[] {
    if (Number.isInteger(dropped) && dropped > 0) this.#dropped += dropped;
    const added: FeedEntry[] = [];
    for (const e of entries) {
      const entry: FeedEntry = { ...e, id: this.#next++, workload, proxy };
      this.#ring[entry.id % this.#capacity] = entry;
      added.push(entry);
    }
    if (added.length > 0) for (const l of this.#listeners) l(added);
    return added;
  }

  get(id: number): FeedEntry | undefined {
    const e = this.#ring[id % this.#capacity];
    return e?.id === id ? e : undefined;
  }

  /** Up to `limit` most recent entries, oldest first; only those after `afterId` when given. */
  recent(limit = this.#capacity, afterId = 0): FeedEntry[] {
    const out: FeedEntry[] = [];
    const first = Math.max(afterId + 1, this.#next - Math.min(limit, this.#capacity), 1);
    for (let id = first; id < this.#next; id++) {
      const e = this.get(id);
      if (e !== undefined) out.push(e);
    }
    return out;
  }

  subscribe(listener: FeedListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** Whether a message's entries have the shape of reports (a proxy is authenticated, not trusted to be well formed). */
export function validReports(entries: unknown): entries is ReportedAccess[] {
  if (!Array.isArray(entries)) return false;
  return entries.every((e: unknown) => {
    if (typeof e !== 'object' || e === null) return false;
    const r = e as Record<string, unknown>;
    return (r['decision'] === 'ALLOW' || r['decision'] === 'DENY') && typeof r['time'] === 'string' && typeof r['reason'] === 'string'
      && typeof r['port'] === 'number' && (r['kind'] === 'http' || r['kind'] === 'tcp' || r['kind'] === 'connection')
      && (r['explanation'] === undefined || typeof r['explanation'] === 'string');
  });
}
