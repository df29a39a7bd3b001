// What the monitor reports: one finding per departure, with its evidence.

export const FINDING_KINDS = ['new_edge', 'denial_spike', 'error_spike', 'volume_deviation', 'new_node'] as const;
export type FindingKind = (typeof FINDING_KINDS)[number];

/** An edge of the communication graph: a source identity calling a service. */
export interface EdgeKey {
  /** The caller's SPIFFE ID (verified by the destination agent). */
  source: string;
  service: string;
  namespace: string;
}

export interface FindingEdge extends EdgeKey {
  /** The node whose agent the caller connected from; `unknown:<ip>` when no node owns the address. */
  sourceNode: string;
}

export interface Finding {
  /** Unique for this control plane's lifetime, increasing. */
  id: string;
  kind: FindingKind;
  /** ISO time. */
  at: string;
  edge: FindingEdge;
  /** The destination node (the agent that reported the traffic). */
  node: string;
  /**
   * What was expected: requests/s (new_edge: 0, volume_deviation: the EWMA
   * mean), a rate from 0 to 1 (error_spike, denial_spike), or the nodes the
   * identity was seen on before (new_node).
   */
  baseline: number | string[];
  /** What was seen: requests/s, a rate, or the new node. */
  observed: number | string;
  /** The boundary crossed, in the unit of `observed` (0 for new_edge and new_node). */
  threshold: number;
  /** Unit of baseline, observed and threshold. */
  unit: 'requests/s' | 'ratio' | 'node';
  /** One line for people. */
  message: string;
  /** Extra evidence: counts in the interval, σ, whether the node is assigned the identity. */
  detail?: Record<string, number | string | boolean>;
}

/** `ns/service <- source`: how edges are named in messages and tables. */
export const edgeName = (e: EdgeKey): string => `${e.namespace}/${e.service} <- ${e.source}`;

/** The map key of an edge. */
export const edgeId = (e: EdgeKey): string => `${e.namespace}/${e.service}\0${e.source}`;
