// Consistent hash ring (Envoy's ring_hash, Karger et al.): each endpoint gets
// virtual nodes in proportion to its weight, hashed from its key, so adding
// one endpoint to N moves about 1/(N+1) of the keys and removing one moves
// only its own. Built on update() when the membership or a weight changes,
// not on health or ejection changes: a lookup walks clockwise past endpoints
// that are not candidates, so their keys spill to the next endpoint and come
// back when they return.
import type { EndpointState } from './endpoint.js';
import { hash32 } from './hash.js';

/** The ring never holds more than this many virtual nodes (plus one per endpoint of tiny weight). */
export const MAX_RING_SIZE = 65_536;
/** Virtual nodes for the lightest endpoint when the cap allows (weight 100 → 100 when it is the lightest). */
export const MIN_VNODES = 100;

export class HashRing {
  /** Sorted ring positions. */
  private positions = new Uint32Array(0);
  /** owners[i] holds positions[i]. */
  private owners: EndpointState[] = [];

  get size(): number {
    return this.positions.length;
  }

  /** Virtual nodes per unit of weight: the lightest endpoint gets MIN_VNODES, capped so the ring stays ≤ MAX_RING_SIZE. */
  static scale(eps: readonly EndpointState[]): number {
    let min = Infinity;
    let total = 0;
    for (const ep of eps) {
      if (ep.weight < min) min = ep.weight;
      total += ep.weight;
    }
    if (total === 0) return 0;
    return Math.min(Math.max(1, MIN_VNODES / min), MAX_RING_SIZE / total);
  }

  build(eps: readonly EndpointState[]): void {
    const scale = HashRing.scale(eps);
    const entries: { h: number; ep: EndpointState; i: number }[] = [];
    for (const ep of eps) {
      const count = Math.max(1, Math.floor(ep.weight * scale));
      // Vnode i of an endpoint is the same point whatever the other endpoints
      // are, so a change of weight or scale only adds or removes points.
      for (let i = 0; i < count; i++) entries.push({ h: hash32(`${ep.key}#${i}`), ep, i });
    }
    // Ties (rare 32-bit collisions) are broken by key and vnode, so every agent builds the same ring.
    entries.sort((x, y) => x.h - y.h || (x.ep.key < y.ep.key ? -1 : x.ep.key > y.ep.key ? 1 : x.i - y.i));
    this.positions = new Uint32Array(entries.length);
    this.owners = new Array<EndpointState>(entries.length);
    for (let i = 0; i < entries.length; i++) {
      this.positions[i] = entries[i]!.h;
      this.owners[i] = entries[i]!.ep;
    }
  }

  /**
   * The first endpoint clockwise from hash32(`key`) that is a member of tier `tierId`
   * and is not `avoid`; `avoid` itself when it is the only member met; undefined
   * for an empty ring. Walks at most once around.
   */
  lookup(key: string, tierId: number, avoid: EndpointState | undefined): EndpointState | undefined {
    const pos = this.positions;
    const n = pos.length;
    if (n === 0) return undefined;
    // Hashed here rather than by the caller: a uint32 above 2^30 passed as an
    // argument would be boxed into a heap number on every pick.
    const h = hash32(key);
    let a = 0;
    let b = n;
    while (a < b) {
      const m = (a + b) >>> 1;
      if (pos[m]! < h) a = m + 1;
      else b = m;
    }
    let fallback: EndpointState | undefined;
    for (let k = 0, i = a === n ? 0 : a; k < n; k++, i = i + 1 === n ? 0 : i + 1) {
      const ep = this.owners[i]!;
      if (ep.tierIndex[tierId]! < 0) continue;
      if (ep === avoid) {
        fallback = ep;
        continue;
      }
      return ep;
    }
    return fallback;
  }
}
