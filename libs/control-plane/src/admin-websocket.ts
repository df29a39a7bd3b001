// The client end of the admin API's WebSocket routes (tap, traffic and
// anomaly streams): mTLS with the admin credential, the server's SPIFFE ID
// checked on the upgrade answer before any frame is read, a refusal before
// the upgrade read back as the control plane's error, JSON text frames.
// Errors are made by the caller's factories, so this file needs nothing from
// client.ts (which imports it through tap-client.ts and traffic-client.ts).
import tls from 'node:tls';
import type { IncomingMessage } from 'node:http';
import { WebSocket, type ClientOptions } from 'ws';
import { verifyPeer, type TrustBundle } from '@amime/identity';

/** What an admin WebSocket connects with (ControlPlaneClient holds one). */
export interface AdminSocketConnection {
  /** https://host:port of the admin API. */
  url: URL;
  bundlePem: string;
  bundle: TrustBundle;
  credential: { certPem: string; keyPem: string };
  expectedServerId: string;
  timeoutMs: number;
  /** The client's error values (passed in: client.ts imports the stream clients). */
  transport(reason: string, message: string): Error;
  answer(method: string, path: string, status: number, text: string): Error;
}

export interface AdminSocketStream {
  /** The route with its query, on the admin API's https URL. */
  url: URL;
  /** Names the stream in errors ("traffic stream"). */
  name: string;
  /** Largest frame read. */
  maxPayload: number;
  /**
   * Each frame's JSON value (undefined when it is not JSON). A throw ends the
   * stream with that error.
   */
  onFrame(value: unknown): void;
  /** True when a close from the server is the stream's normal end rather than a failure. */
  ended?(): boolean;
  signal?: AbortSignal;
}

/**
 * Follows one stream: resolves when `signal` aborts or the stream ends
 * normally, rejects when it is refused, the server is not the expected one,
 * `onFrame` throws, or the connection fails. No frame is passed on after that.
 */
export function followAdminSocket(conn: AdminSocketConnection, s: AdminSocketStream): Promise<void> {
  const url = new URL(s.url);
  url.protocol = 'wss:';
  const { signal } = s;
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    const tlsOptions: tls.ConnectionOptions = {
      ca: conn.bundlePem,
      cert: conn.credential.certPem,
      key: conn.credential.keyPem,
      minVersion: 'TLSv1.3',
      rejectUnauthorized: true,
      // the SVID names the server by URI SAN: checked on the upgrade below instead
      checkServerIdentity: () => undefined,
    };
    const ws = new WebSocket(url, { ...tlsOptions, maxPayload: s.maxPayload, perMessageDeflate: false, handshakeTimeout: conn.timeoutMs, followRedirects: false } as ClientOptions);
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
        finish(conn.transport('server_identity', problem));
      }
    });
    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.length < 64 && chunks.push(c));
      res.on('end', () => finish(conn.answer('GET', url.pathname, res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'))));
      res.on('error', (err) => finish(conn.transport('unreachable', err.message)));
    });
    ws.on('message', (data) => {
      // frames already read when the caller aborted are not its business any more
      if (done) return;
      let value: unknown;
      try {
        value = JSON.parse(String(data));
      } catch {
        value = undefined;
      }
      try {
        s.onFrame(value);
      } catch (err) {
        ws.terminate();
        finish(err as Error);
      }
    });
    ws.on('error', (err: Error & { code?: string }) => finish(conn.transport(/TLS|SSL|CERT/.test(err.code ?? '') ? 'tls' : 'unreachable', `${s.name}: ${err.message}`)));
    ws.on('close', (code: number, reason: Buffer) => {
      if (s.ended?.() || signal?.aborted) finish();
      else finish(conn.transport('unreachable', `the control plane closed the ${s.name} (${code}${reason.length ? `: ${reason.toString()}` : ''})`));
    });
  });
}
