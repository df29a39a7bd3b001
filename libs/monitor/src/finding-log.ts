// The recent findings: a fixed-size ring (the oldest is overwritten), read
// newest first.
import type { Finding } from './finding.js';

export const DEFAULT_FINDING_LOG_SIZE = 1000;

export class FindingLog {
  readonly #ring: (Finding | undefined)[];
  #next = 0;
  #size = 0;

  constructor(readonly capacity = DEFAULT_FINDING_LOG_SIZE) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`finding log: capacity must be a positive integer, got ${capacity}`);
    this.#ring = new Array<Finding | undefined>(capacity);
  }

  add(f: Finding): void {
    this.#ring[this.#next] = f;
    this.#next = (this.#next + 1) % this.capacity;
    if (this.#size < this.capacity) this.#size++;
  }

  get size(): number {
    return this.#size;
  }

  /** Newest first; only findings at or after `sinceMs` (epoch ms) when given; at most `limit`. */
  list(sinceMs?: number, limit = this.capacity): Finding[] {
    const out: Finding[] = [];
    for (let i = 1; i <= this.#size && out.length < limit; i++) {
      const f = this.#ring[(this.#next - i + this.capacity) % this.capacity]!;
      if (sinceMs !== undefined && Date.parse(f.at) < sinceMs) break;
      out.push(f);
    }
    return out;
  }
}
