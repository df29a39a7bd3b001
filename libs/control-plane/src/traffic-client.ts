// The client side of GET /v1/traffic/stream (ControlPlaneClient.watchTraffic):
// a WebSocket over mTLS whose server must prove the expected SPIFFE ID on
// the upgrade answer, before any frame is read. Errors are made by the
// caller's factories, so this file needs nothing from client.ts.
import tls from 'node:tls';
import type { IncomingMessage } from 'node:http';
import { WebSocket, type ClientOptions } from 'ws';
import { verifyPeer, type TrustBundle } from '@amime/identity';
import type { TrafficSnapshot } from '@amime/traffic';

/** Largest snapshot frame read (10 000 edges fit). */
export const MAX_TRAFFIC_FRAME_BYTES = 16 << 20;

export interface TrafficStreamConnect {
  /** https://host:port of the admin API. */
  url: URL;
  bundlePem: string;
  bundle: TrustBundle;
  credential: { certPem: string; keyPem: string };
  expectedServerId: string;
  timeoutMs: number;
  transport(reason: string, message: string): Error;
  answer(method: string, path: string, status: number, text: string): Error;
}

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
  url.protocol = 'wss:';
  if (opts.windowSeconds !== undefined) url.searchParams.set('window', String(opts.windowSeconds));
  const { signal } = opts;
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    if (signal?.aborted) return finish();
    const tlsOptions: tls.ConnectionOptions = {
      ca: c.bundlePem,
      cert: c.credential.certPem,
      key: c.credential.keyPem,
      minVersion: 'TLSv1.3',
      rejectUnauthorized: true,
      // the SVID names the server by URI SAN: checked on the upgrade below instead
      checkServerIdentity: () => undefined,
    };
    const ws = new WebSocket(url, {
      ...tlsOptions,
      maxPayload: MAX_TRAFFIC_FRAME_BYTES,
      perMessageDeflate: false,
      handshakeTimeout: c.timeoutMs,
      followRedirects: false,
    } as ClientOptions);
    const onAbort = () => {
      ws.close(1000, 'done');
      finish();
    };
    signal?.addEventListener('abort', onAbort);
    ws.on('upgrade', (res: IncomingMessage) => {
      const peer = verifyPeer(res.socket as tls.TLSSocket, { bundle: c.bundle });
      const problem = !peer.ok ? `the control plane's certificate was refused (${peer.reason}): ${peer.message}` : peer.spiffeId !== c.expectedServerId ? `the server at ${url.host} is ${peer.spiffeId}, not ${c.expectedServerId}` : undefined;
      if (problem) {
        ws.terminate();
        finish(c.transport('server_identity', problem));
      }
    });
    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.length < 64 && chunks.push(d));
      res.on('end', () => finish(c.answer('GET', url.pathname, res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'))));
      res.on('error', (err) => finish(c.transport('unreachable', err.message)));
    });
    ws.on('message', (data) => {
      let snap: unknown;
      try {
        snap = JSON.parse(String(data));
      } catch {
        snap = undefined;
      }
      if (!isTrafficSnapshot(snap)) {
        ws.terminate();
        finish(c.transport('bad_response', 'traffic stream: a frame is not a traffic snapshot'));
        return;
      }
      try {
        onSnapshot(snap);
      } catch (err) {
        ws.terminate();
        finish(err as Error);
      }
    });
    ws.on('error', (err: Error & { code?: string }) => finish(c.transport(/TLS|SSL|CERT/.test(err.code ?? '') ? 'tls' : 'unreachable', `traffic stream: ${err.message}`)));
    ws.on('close', (code: number, reason: Buffer) => {
      if (signal?.aborted) finish();
      else finish(c.transport('unreachable', `the control plane closed the traffic stream (${code}${reason.length ? `: ${reason.toString()}` : ''})`));
    });
  });
}
