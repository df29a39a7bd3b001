// The client end of GET /v1/tap (a WebSocket), for ControlPlaneClient.tap and
// meshctl. The server must prove the expected SPIFFE ID on the upgrade
// answer before any frame is read; a refusal before the upgrade comes back as
// the control plane's error (ControlPlaneClientError with its reason).
import tls from 'node:tls';
import type { IncomingMessage } from 'node:http';
import { WebSocket, type ClientOptions } from 'ws';
import { verifyPeer, type TrustBundle } from '@amime/identity';
import type { TapEvent } from '@amime/protocol';
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

export interface TapConnection {
  url: URL;
  bundlePem: string;
  bundle: TrustBundle;
  credential: { certPem: string; keyPem: string };
  expectedServerId: string;
  timeoutMs: number;
  /** The client's error values (passed in: client.ts imports this file). */
  transport(reason: string, message: string): Error;
  answer(method: string, path: string, status: number, text: string): Error;
}

/** Largest frame read: one agent frame of events, re-encoded. */
const MAX_TAP_FRAME_BYTES = 256 * 1024;
const FRAME_TYPES = new Set(['started', 'events', 'agent', 'error', 'end']);

/**
 * Follows a tap: `onFrame` for each frame; resolves with the end frame when
 * the tap ends, or undefined once `signal` aborts (the server then untaps).
 * Rejects when refused or when the connection fails.
 */
export function openTapStream(conn: TapConnection, request: TapStreamRequest, onFrame: (f: TapFrame) => void, signal?: AbortSignal): Promise<TapEndFrame | undefined> {
  const url = new URL(TAP_PATH, conn.url);
  url.protocol = 'wss:';
  url.searchParams.set('service', request.service);
  if (request.namespace !== undefined) url.searchParams.set('namespace', request.namespace);
  if (request.duration !== undefined) url.searchParams.set('duration', request.duration);
  if (request.rate !== undefined) url.searchParams.set('rate', String(request.rate));
  const transport = (reason: string, message: string) => conn.transport(reason, message);
  return new Promise((resolve, reject) => {
    let done = false;
    let end: TapEndFrame | undefined;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(end);
    };
    if (signal?.aborted) return finish();
    const tlsOptions: tls.ConnectionOptions = {
      ca: conn.bundlePem,
      cert: conn.credential.certPem,
      key: conn.credential.keyPem,
      minVersion: 'TLSv1.3',
      rejectUnauthorized: true,
      // the SVID names the server by URI SAN: checked on the upgrade below instead
      checkServerIdentity: () => undefined,
    };
    const ws = new WebSocket(url, { ...tlsOptions, maxPayload: MAX_TAP_FRAME_BYTES, perMessageDeflate: false, handshakeTimeout: conn.timeoutMs, followRedirects: false } as ClientOptions);
    const onAbort = () => {
      ws.close(1000, 'done');
      finish();
    };
    signal?.addEventListener('abort', onAbort);
    ws.on('upgrade', (res: IncomingMessage) => {
      const peer = verifyPeer(res.socket as tls.TLSSocket, { bundle: conn.bundle });
      const problem = !peer.ok ? `the control plane's certificate was refused (${peer.reason}): ${peer.message}` : peer.spiffeId !== conn.expectedServerId ? `the server at ${url.host} is ${peer.spiffeId}, not ${conn.expectedServerId}` : undefined;
      if (problem) {
        ws.terminate();
        finish(transport('server_identity', problem));
      }
    });
    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.length < 64 && chunks.push(c));
      res.on('end', () => finish(conn.answer('GET', url.pathname, res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'))));
      res.on('error', (err) => finish(transport('unreachable', err.message)));
    });
    ws.on('message', (data) => {
      if (done) return;
      let f: TapFrame;
      try {
        f = JSON.parse(String(data)) as TapFrame;
      } catch {
        return;
      }
      if (f === null || typeof f !== 'object' || !FRAME_TYPES.has((f as { type?: string }).type ?? '')) return;
      if (f.type === 'end') end = f;
      try {
        onFrame(f);
      } catch (err) {
        ws.terminate();
        finish(err as Error);
      }
    });
    ws.on('error', (err: Error & { code?: string }) => finish(transport(/TLS|SSL|CERT/.test(err.code ?? '') ? 'tls' : 'unreachable', `tap stream: ${err.message}`)));
    ws.on('close', (code: number, reason: Buffer) => {
      if (end || signal?.aborted) finish();
      else finish(transport('unreachable', `the control plane closed the tap stream (${code}${reason.length ? `: ${reason.toString()}` : ''})`));
    });
  });
}
