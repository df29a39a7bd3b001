// The client end of GET /v1/tap (a WebSocket), for ControlPlaneClient.tap and
// meshctl. The server must prove the expected SPIFFE ID on the upgrade
// answer before any frame is read; a refusal before the upgrade comes back as
// the control plane's error (ControlPlaneClientError with its reason).
import type { TapEvent } from '@amime/protocol';
import { followAdminSocket, type AdminSocketConnection } from './admin-websocket.js';
import { TAP_PATH } from './tap-broker.js';

export interface TapStreamRequest {
  service: string;
  /** Default "default". */
  namespace?: string;
  /** A duration (30s, 2m); default 60s on the server. */
  duration?: string;
  /** Events per second per agent; default 100 on the server. */
  rate?: number;
}

export interface TapDropped {
  rateLimited: number;
  slowClient: number;
  excess: number;
}

export type TapFrame =
  | { type: 'started'; id: string; service: string; namespace: string; durationMs: number; maxEventsPerSecond: number; agents: string[] }
  | { type: 'events'; node: string; events: TapEvent[]; dropped?: TapDropped }
  | { type: 'agent'; node: string; state: 'joined' | 'left' }
  | { type: 'error'; node: string; code: string; message: string }
  | TapEndFrame;

export interface TapEndFrame {
  type: 'end';
  reason: string;
  events: number;
  dropped: TapDropped;
}

export type TapConnection = AdminSocketConnection;

/** Largest frame read: one agent frame of events, re-encoded. */
const MAX_TAP_FRAME_BYTES = 256 * 1024;
const FRAME_TYPES = new Set(['started', 'events', 'agent', 'error', 'end']);

/**
 * Follows a tap: `onFrame` for each frame; resolves with the end frame when
 * the tap ends, or undefined once `signal` aborts (the server then untaps).
 * Rejects when refused or when the connection fails.
 */
export async function openTapStream(conn: TapConnection, request: TapStreamRequest, onFrame: (f: TapFrame) => void, signal?: AbortSignal): Promise<TapEndFrame | undefined> {
  const url = new URL(TAP_PATH, conn.url);
  url.searchParams.set('service', request.service);
  if (request.namespace !== undefined) url.searchParams.set('namespace', request.namespace);
  if (request.duration !== undefined) url.searchParams.set('duration', request.duration);
  if (request.rate !== undefined) url.searchParams.set('rate', String(request.rate));
  let end: TapEndFrame | undefined;
  await followAdminSocket(conn, {
    url,
    name: 'tap stream',
    maxPayload: MAX_TAP_FRAME_BYTES,
    signal,
    ended: () => end !== undefined,
    onFrame: (v) => {
      // not JSON or not a frame of ours: skipped
      const f = v as TapFrame | null | undefined;
      if (f === null || typeof f !== 'object' || !FRAME_TYPES.has((f as { type?: string }).type ?? '')) return;
      if (f.type === 'end') end = f;
      onFrame(f);
    },
  });
  return end;
}
