// The client side of GET /v1/traffic/stream (ControlPlaneClient.watchTraffic):
// a WebSocket over mTLS whose server must prove the expected SPIFFE ID on
// the upgrade answer, before any frame is read (admin-websocket.ts).
import type { TrafficSnapshot } from '@amime/traffic';
import { followAdminSocket, type AdminSocketConnection } from './admin-websocket.js';

/** Largest snapshot frame read (10 000 edges fit). */
export const MAX_TRAFFIC_FRAME_BYTES = 16 << 20;

export type TrafficStreamConnect = AdminSocketConnection;

/** A frame that is a traffic snapshot (the shape GET /v1/traffic answers). */
export function isTrafficSnapshot(v: unknown): v is TrafficSnapshot {
  const o = v as Partial<TrafficSnapshot> | null;
  return typeof o === 'object' && o !== null && typeof o.windowSeconds === 'number' && typeof o.generatedAt === 'string' && Array.isArray(o.edges);
}

/**
 * Follows the stream: `onSnapshot` for the first snapshot and each later
 * one until `signal` aborts (resolves) or the connection ends or is refused
 * (rejects). A throw from `onSnapshot` ends it with that error.
 */
export function followTraffic(c: TrafficStreamConnect, onSnapshot: (s: TrafficSnapshot) => void, opts: { windowSeconds?: number; signal?: AbortSignal } = {}): Promise<void> {
  const url = new URL('/v1/traffic/stream', c.url);
  if (opts.windowSeconds !== undefined) url.searchParams.set('window', String(opts.windowSeconds));
  return followAdminSocket(c, {
    url,
    name: 'traffic stream',
    maxPayload: MAX_TRAFFIC_FRAME_BYTES,
    signal: opts.signal,
    onFrame: (snap) => {
      if (!isTrafficSnapshot(snap)) throw c.transport('bad_response', 'traffic stream: a frame is not a traffic snapshot');
      onSnapshot(snap);
    },
  });
}
