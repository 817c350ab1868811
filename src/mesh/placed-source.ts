import { isMap, isSeq, parseDocument } from 'yaml';
import type { ConfigSource } from '../control/source.ts';
import type { SourceInput } from '../control/snapshot.ts';

/**
 * A configuration source whose mesh file says where `rampart up` placed each workload: the `address` of each
 * workload named in `addresses` (`namespace/name` → its network namespace's address) replaces the file's, the rest
 * of the text (comments, order, the other fields) as written, so that diagnostics still point into the user's file.
 * The file itself is not changed.
 */
export class PlacedSource implements ConfigSource {
  readonly #inner: ConfigSource;
  readonly #addresses: ReadonlyMap<string, string>;
  readonly description: string;

  constructor(inner: ConfigSource, addresses: ReadonlyMap<string, string>) {
    this.#inner = inner;
    this.#addresses = addresses;
    this.description = inner.description;
  }

  async read(): Promise<SourceInput> {
    const input = await this.#inner.read();
    return { ...input, mesh: { ...input.mesh, text: placeWorkloads(input.mesh.text, this.#addresses) } };
  }

  watch(onChange: () => void): () => void {
    return this.#inner.watch(onChange);
  }
}

/** The mesh text with the workloads' addresses replaced; a text that does not parse is returned as it is (the
 * control plane reports its errors). */
export function placeWorkloads(text: string, addresses: ReadonlyMap<string, string>): string {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) return text;
  const workloads = doc.get('workloads');
  if (!isSeq(workloads)) return text;
  let changed = false;
  for (const item of workloads.items) {
    if (!isMap(item)) continue;
    const ns = item.get('namespace');
    const ref = `${typeof ns === 'string' ? ns : 'default'}/${String(item.get('name'))}`;
    const address = addresses.get(ref);
    if (address === undefined) continue;
    item.set('address', address);
    changed = true;
  }
  return changed ? doc.toString() : text;
}
