// Request bodies: read into memory up to a bound (so they can be replayed for
// retries and mirrors), or hand over what was read so far and stream the rest.
import type { IncomingMessage } from 'node:http';

/** Bodies up to this size are buffered for retries and mirrors; larger ones stream and are never replayed. */
export const MAX_REPLAY_BODY_BYTES = 64 * 1024;

export type ReadBodyResult =
  | { readonly kind: 'buffered'; readonly body: Buffer }
  /** Over the limit: `prefix` was read, the rest is still in the (paused) request. */
  | { readonly kind: 'streaming'; readonly prefix: readonly Buffer[]; readonly prefixBytes: number }
  | { readonly kind: 'failed' };

/** Whether the request declares a body (Content-Length above 0 or Transfer-Encoding). */
export function hasBody(req: IncomingMessage): boolean {
  const cl = req.headers['content-length'];
  return (cl !== undefined && cl !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/** Declared Content-Length, or -1 for a chunked body. */
export function declaredLength(req: IncomingMessage): number {
  const cl = req.headers['content-length'];
  return cl === undefined ? -1 : Number(cl);
}

/**
 * Reads the request body into one Buffer if it fits in `limit` bytes. `onStop` is given
 * a function that abandons the read (resolving 'failed'), for deadlines and cancellation.
 */
export function readBody(req: IncomingMessage, limit: number, onStop?: (stop: () => void) => void): Promise<ReadBodyResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onFail);
      req.off('aborted', onFail);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      bytes += chunk.length;
      if (bytes > limit) {
        req.pause();
        cleanup();
        resolve({ kind: 'streaming', prefix: chunks, prefixBytes: bytes });
      }
    };
    const onEnd = (): void => {
      cleanup();
      resolve({ kind: 'buffered', body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bytes) });
    };
    const onFail = (): void => {
      cleanup();
      resolve({ kind: 'failed' });
    };
    const onClose = (): void => {
      if (!req.complete) onFail();
    };
    onStop?.(() => {
      cleanup();
      resolve({ kind: 'failed' });
    });
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onFail);
    req.on('aborted', onFail);
    req.on('close', onClose);
  });
}
