// The shapes the dashboard reads from the control plane's admin API
// (docs/api/control-plane.md), from the libraries that define them, so that a
// change there fails the dashboard's typecheck instead of its page. The
// dashboard still checks each field where it uses it (graph.ts, views.ts): a
// newer or older control plane may answer differently.
export type { TrafficSnapshot, TrafficEdge } from '@amime/traffic';
export type { EndpointView as EndpointInstance, CertInventory as CertsAnswer, CertEntry } from '@amime/control-plane';

/** The parts of a Service/Route/AuthorizationPolicy resource the page reads. */
export interface ResourceLike {
  kind: string;
  metadata: { name: string; namespace?: string; version?: string };
  spec: Record<string, unknown>;
}
