// What the admin API's /v1/traffic routes need, and their one query
// parameter: `?window=` whole seconds from 10 to 3600, given at most once.
import { MAX_TRAFFIC_WINDOW_SECONDS, MIN_TRAFFIC_WINDOW_SECONDS, type TrafficSnapshot } from '@amime/traffic';
import { cpError } from './errors.js';

export const TRAFFIC_PATH = '/v1/traffic';
export const TRAFFIC_STREAM_PATH = '/v1/traffic/stream';

/** The live per-edge view (TrafficView has it). */
export interface TrafficApi {
  /** Every edge in the last `windowSeconds` (default: the view's, 60 s). */
  snapshot(windowSeconds?: number): TrafficSnapshot;
  /** Changes when a snapshot could differ. */
  readonly version: number;
}

/** `?window=` as seconds, undefined when absent; a 400 naming the fix otherwise. */
export function windowOf(query: URLSearchParams): number | undefined {
  const all = query.getAll('window');
  if (all.length === 0) return undefined;
  const v = all[0]!;
  const n = /^\d{1,5}$/.test(v) ? Number(v) : NaN;
  if (all.length > 1 || !(n >= MIN_TRAFFIC_WINDOW_SECONDS && n <= MAX_TRAFFIC_WINDOW_SECONDS)) {
    throw cpError(
      'AMIME_ERR_CP_BAD_REQUEST',
      `window: give it once, as whole seconds from ${MIN_TRAFFIC_WINDOW_SECONDS} to ${MAX_TRAFFIC_WINDOW_SECONDS} (e.g. ?window=60), not ${JSON.stringify(all.join(',').slice(0, 40))}`,
      'bad_query',
    );
  }
  return n;
}
