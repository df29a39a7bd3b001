// Rate limit on edge reports, per node: one interval's report may span
// several frames (same seq), but a new seq sooner than half the configured
// report interval after the previous one is dropped, and a node that does it
// STRIKES times in a row is ignored for a ban period. The clock is injected.

export const REPORT_STRIKES = 3;
/** Frames one interval's report may span: an agent's 10 000 edges at 200 a frame, and the short last frame. */
export const MAX_FRAMES_PER_REPORT = 51;

export type GateVerdict = 'ok' | 'too_fast' | 'too_many_frames' | 'banned';

interface NodeGate {
  seq: number;
  at: number;
  frames: number;
  strikes: number;
  bannedUntil: number;
}

export interface ReportGateOptions {
  now?: () => number;
  /** Ban length once a node struck out; default 10 intervals. */
  banMs?: (intervalMs: number) => number;
  /** Nodes tracked at most (the least recently seen is forgotten). Default 100 000. */
  maxNodes?: number;
}

export class ReportGate {
  readonly #now: () => number;
  readonly #banMs: (intervalMs: number) => number;
  readonly #maxNodes: number;
  readonly #nodes = new Map<string, NodeGate>();
  intervalMs: number;

  constructor(intervalMs: number, opts: ReportGateOptions = {}) {
    this.intervalMs = intervalMs;
    this.#now = opts.now ?? Date.now;
    this.#banMs = opts.banMs ?? ((i) => 10 * i);
    this.#maxNodes = opts.maxNodes ?? 100_000;
  }

  check(node: string, seq: number): GateVerdict {
    const now = this.#now();
    const g = this.#nodes.get(node);
    if (!g) {
      if (this.#nodes.size >= this.#maxNodes) this.#nodes.delete(this.#nodes.keys().next().value!);
      this.#nodes.set(node, { seq, at: now, frames: 1, strikes: 0, bannedUntil: 0 });
      return 'ok';
    }
    if (now < g.bannedUntil) return 'banned';
    if (seq === g.seq) return ++g.frames > MAX_FRAMES_PER_REPORT ? 'too_many_frames' : 'ok';
    if (now - g.at < this.intervalMs / 2) {
      if (++g.strikes >= REPORT_STRIKES) {
        g.bannedUntil = now + this.#banMs(this.intervalMs);
        g.strikes = 0;
        return 'banned';
      }
      return 'too_fast';
    }
    g.seq = seq;
    g.at = now;
    g.frames = 1;
    g.strikes = 0;
    return 'ok';
  }
}
