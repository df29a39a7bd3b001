// @amime/balancing: endpoint picking for the node agent's outbound proxy.
// Pure logic (no I/O, no timers); one Balancer per upstream (a service, or a
// subset of it chosen with selectSubset), fed the full endpoint set on every
// change with update(), asked pick() per request (or connection) and told
// start()/finish() around it.
//
// - Algorithms: p2c-ewma (default; Linkerd's power of two choices over
//   peak-EWMA latency × (in flight + 1)), round-robin (smooth weighted, nginx),
//   least-request (P2C over in flight per unit of weight, Envoy), ring-hash
//   (consistent hashing on a bounded ring of weighted virtual nodes).
// - Candidates: healthy and not ejected; in the local zone while any is
//   available there (zoneFailover); when none is available, panic mode picks
//   unhealthy-but-not-ejected endpoints, then any, rather than failing
//   (counted in counters.panicPicks).
// - Outlier detection: consecutive failures eject for base × n (capped), never
//   more than maxEjectionPercent of the endpoints; ejections end by time,
//   checked lazily; the multiplier decays by one per quiet period; each
//   ejection is reported to the onEject option (for metrics).
// - Hot path: pick() allocates nothing (candidate tiers, cumulative weights and
//   the ring are built on update() and ejection changes); only update() and the
//   constructor throw (BalancingError), never pick/start/finish.
export {
  Balancer,
  ALGORITHMS,
  type Algorithm,
  type BalancerOptions,
  type OutlierOptions,
  type EndpointStats,
  type BalancerCounters,
} from './balancer.js';
export type { Endpoint, EndpointInput } from './endpoint.js';
export { selectSubset } from './subset.js';
export { BalancingError, type BalancingErrorCode } from './errors.js';
