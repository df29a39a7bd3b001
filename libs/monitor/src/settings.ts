// The monitor's settings (MeshConfig spec.monitor, as numbers) and what a
// sensitivity means: the k of "mean ± k·σ" and the floors that keep small or
// quiet edges from flagging noise.

export const SENSITIVITY_LEVELS = ['low', 'medium', 'high'] as const;
export type SensitivityLevel = (typeof SENSITIVITY_LEVELS)[number];
/** A level, or k itself (σ multiples, 1 to 20). */
export type Sensitivity = SensitivityLevel | number;

export interface MonitorSettings {
  /** From the monitor's start, nothing is flagged for this long; baselines learn. */
  learningWindowMs: number;
  sensitivity: Sensitivity;
  /** How often agents report; sets the EWMA weight and the report rate limit. */
  reportIntervalMs: number;
}

export const DEFAULT_MONITOR_SETTINGS: Readonly<MonitorSettings> = {
  learningWindowMs: 10 * 60_000,
  sensitivity: 'medium',
  reportIntervalMs: 10_000,
};

/** The numbers a sensitivity stands for. */
export interface Thresholds {
  /** Flag beyond mean ± k·σ. */
  k: number;
  /** Volume: the deviation must also be at least this share of the baseline mean. */
  minRelativeVolumeChange: number;
  /** Rates: the observed rate must also be at least this multiple of the baseline rate. */
  minRateFactor: number;
}

const LEVELS: Readonly<Record<SensitivityLevel, Thresholds>> = {
  // One edge is judged 8640 times a day at a 10 s interval: k = 5 keeps a
  // quiet edge's false alarms to about one a year (one-sided normal tail 3e-7).
  low: { k: 6, minRelativeVolumeChange: 0.75, minRateFactor: 3 },
  medium: { k: 5, minRelativeVolumeChange: 0.5, minRateFactor: 2 },
  high: { k: 4, minRelativeVolumeChange: 0.3, minRateFactor: 1.5 },
};

/** Fixed floors, whatever the sensitivity. */
export const FLOORS = {
  /** Intervals an edge must have been seen (per destination node) before volume or rates are judged. */
  minSamples: 5,
  /** Requests in an interval below which error and denial rates are not judged. */
  minRequests: 20,
  /** Errors (or denials) in an interval below which no spike is flagged. */
  minEvents: 5,
  /** A rate spike is at least this far (absolute) above the baseline rate. */
  minRateExcess: 0.05,
  /** The binomial σ of a rate is computed from at least this rate, so a 0 % baseline still has a spread. */
  rateSigmaFloor: 0.02,
  /** A volume deviation is at least this many requests in the interval (bursty, mostly idle edges stay quiet). */
  minVolumeDeltaRequests: 20,
} as const;

export function thresholds(s: Sensitivity): Thresholds {
  if (typeof s === 'number') return { ...LEVELS.medium, k: s };
  return LEVELS[s];
}

/**
 * The EWMA weight per interval: the baseline remembers about one learning
 * window (α = 2 / (N + 1), N = window / interval), within [0.01, 0.3].
 */
export function ewmaAlpha(s: MonitorSettings): number {
  const n = Math.max(1, s.learningWindowMs / s.reportIntervalMs);
  return Math.min(0.3, Math.max(0.01, 2 / (n + 1)));
}

/** Throws a RangeError naming the field unless the settings make sense. */
export function checkSettings(s: MonitorSettings): MonitorSettings {
  if (!Number.isFinite(s.learningWindowMs) || s.learningWindowMs < 0) throw new RangeError(`monitor: learningWindowMs must be 0 or more, got ${s.learningWindowMs}`);
  if (!Number.isFinite(s.reportIntervalMs) || s.reportIntervalMs < 1000) throw new RangeError(`monitor: reportIntervalMs must be at least 1000, got ${s.reportIntervalMs}`);
  const k = s.sensitivity;
  if (typeof k === 'number' ? !(Number.isFinite(k) && k >= 1 && k <= 20) : !SENSITIVITY_LEVELS.includes(k)) {
    throw new RangeError(`monitor: sensitivity must be low, medium, high or a number from 1 to 20, got ${JSON.stringify(k)}`);
  }
  return s;
}
