// @amime/traffic: the control plane's live view of per-edge traffic (rps, errors, denials, p99) built from agents' edge reports.
export {
  TrafficView,
  latencyQuantile,
  checkWindow,
  sourceIndex,
  DEFAULT_TRAFFIC_WINDOW_SECONDS,
  MIN_TRAFFIC_WINDOW_SECONDS,
  MAX_TRAFFIC_WINDOW_SECONDS,
  type TrafficReport,
  type TrafficSource,
  type TrafficEdge,
  type TrafficSnapshot,
  type TrafficViewOptions,
  type TrafficViewStats,
} from './traffic-view.js';
