// @amime/monitor: the communication-pattern monitor. It learns the normal
// graph of who calls what (per edge: volume, error and denial rates; per
// identity: the nodes it calls from) and flags departures as findings.
export { PatternMonitor, DEFAULT_MAX_EDGES, type PatternMonitorOptions, type EdgeObservation, type ReportFrame, type ResolveSourceNode, type MonitorStats } from './pattern-monitor.js';
export { FindingLog, DEFAULT_FINDING_LOG_SIZE } from './finding-log.js';
export { FINDING_KINDS, edgeId, edgeName, type Finding, type FindingKind, type FindingEdge, type EdgeKey } from './finding.js';
export {
  DEFAULT_MONITOR_SETTINGS,
  FLOORS,
  SENSITIVITY_LEVELS,
  checkSettings,
  ewmaAlpha,
  thresholds,
  type MonitorSettings,
  type Sensitivity,
  type SensitivityLevel,
  type Thresholds,
} from './settings.js';
export { ewmaUpdate, newEwma, type Ewma } from './ewma.js';
