// Which node a caller's address belongs to, for the pattern monitor: the
// addresses agents registered instances at (Endpoint.spec.address) and the
// addresses their push sessions come from. An address several nodes share
// (one host running several agents) resolves to the one the caller's
// identity is assigned to, else to the first by name; an address no node
// owns is `unknown:<ip>`.
import type { Resource } from '@amime/protocol';

export interface SourceNodesDeps {
  /** Every Endpoint resource. */
  endpoints(): readonly Resource[];
  /** Connected agents: node and remote address. */
  sessions(): Iterable<{ node: string; address: string }>;
  /** Whether `identity` is assigned to `node`; undefined when unknown. */
  assigned(node: string, identity: string): boolean | undefined;
}

/** `::ffff:10.0.0.1` → `10.0.0.1`; IPv6 lowercased. */
export function normalizeIp(ip: string): string {
  const lower = ip.toLowerCase();
  return lower.startsWith('::ffff:') && lower.includes('.') ? lower.slice(7) : lower;
}

export class SourceNodes {
  readonly #deps: SourceNodesDeps;
  #byIp: Map<string, string[]> | undefined;

  constructor(deps: SourceNodesDeps) {
    this.#deps = deps;
  }

  /** Endpoints or sessions changed: the index is rebuilt on the next lookup. */
  invalidate(): void {
    this.#byIp = undefined;
  }

  resolve(peerAddress: string, identity: string): string {
    const ip = normalizeIp(peerAddress);
    const nodes = this.#index().get(ip);
    if (!nodes) return `unknown:${ip}`;
    if (nodes.length === 1) return nodes[0]!;
    return nodes.find((n) => this.#deps.assigned(n, identity) === true) ?? nodes[0]!;
  }

  #index(): Map<string, string[]> {
    if (this.#byIp) return this.#byIp;
    const sets = new Map<string, Set<string>>();
    const add = (ip: string, node: string) => {
      const k = normalizeIp(ip);
      let s = sets.get(k);
      if (!s) sets.set(k, (s = new Set()));
      s.add(node);
    };
    for (const r of this.#deps.endpoints()) if (r.kind === 'Endpoint') add(r.spec.address, r.spec.node);
    for (const s of this.#deps.sessions()) if (s.address) add(s.address, s.node);
    this.#byIp = new Map([...sets].map(([ip, s]) => [ip, [...s].sort()]));
    return this.#byIp;
  }
}
