// Subsets by label (a Service's trafficPolicy.subsets, chosen by a Route
// backend's `subset`): the endpoints carrying every given label. Runs when
// endpoints or routes change, not per request; each subset gets its own Balancer.
import type { EndpointInput } from './endpoint.js';

/** The endpoints whose labels include every pair in `labels` (all of them for an empty selector), in input order. */
export function selectSubset(endpoints: readonly EndpointInput[], labels: Readonly<Record<string, string>>): EndpointInput[] {
  const wanted = Object.entries(labels);
  return endpoints.filter((e) => {
    const have = e.labels;
    for (const [k, v] of wanted) {
      if (!have || !Object.hasOwn(have, k) || have[k] !== v) return false;
    }
    return true;
  });
}
