// Per-request recording for the agent's proxies without per-request label
// objects: the label children of a (service, peer, destination, status) are
// resolved on first sight and reused. The label values come from config and
// verified identities, so the set is bounded by the mesh.
import type { AgentMetrics } from './agent-metrics.js';

interface Inc {
  inc(): void;
}
interface Observe {
  observe(value: number): void;
}

export class RequestRecorder {
  readonly #counts = new Map<string, Inc>();
  readonly #durations = new Map<string, Observe>();
  readonly #metrics: Pick<AgentMetrics, 'requests' | 'requestDuration'>;
  readonly #direction: 'inbound' | 'outbound';

  constructor(metrics: Pick<AgentMetrics, 'requests' | 'requestDuration'>, direction: 'inbound' | 'outbound') {
    this.#metrics = metrics;
    this.#direction = direction;
  }

  /**
   * One request to `service` from `peer` (the source identity) served by
   * `destination` (the destination identity; '' when unknown) that ended
   * with `status` after `durationMs`.
   */
  record(service: string, peer: string, status: number, durationMs: number, destination = ''): void {
    const k = `${service}\0${peer}\0${destination}\0${status}`;
    let c = this.#counts.get(k);
    if (!c) {
      c = this.#metrics.requests.labels({ direction: this.#direction, service, source: peer, destination, code: String(status), class: codeClass(status) });
      this.#counts.set(k, c);
    }
    c.inc();
    let d = this.#durations.get(service);
    if (!d) {
      d = this.#metrics.requestDuration.labels({ direction: this.#direction, service });
      this.#durations.set(service, d);
    }
    d.observe(durationMs / 1000);
  }
}

/** The status class label: '2xx'..'5xx' (and '1xx'), 'other' for anything outside 100..599. */
export function codeClass(status: number): string {
  return Number.isInteger(status) && status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : 'other';
}
