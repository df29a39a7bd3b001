// A bidirectional L4 byte stream between two sockets.
//
// - Backpressure: each direction is a stream pipe(), which pauses the reader
//   while the writer's buffer is above its highWaterMark: memory per splice
//   is bounded by the two writable buffers, never by the traffic.
// - Half-close: when one side ends (FIN), the other side is ended after its
//   buffered bytes; the opposite direction keeps flowing (both sockets are
//   switched to allowHalfOpen).
// - An error on either side, a side closing before it ended (destroyed), or
//   the idle timeout destroys both.
// - Byte counts are reported once, at close, through onBytes and the result.

import type { Duplex } from 'node:stream';
import { IdleTimeoutError, positiveInt } from './errors.js';

export interface SpliceOptions {
  /** Destroy both sides after this long without a byte in either direction; default none. */
  idleTimeoutMs?: number;
  /** Called once when both sides are closed. */
  onBytes?(aToB: number, bToA: number): void;
}

export interface SpliceResult {
  /** Bytes read from b and written towards a. */
  readonly bytesIn: number;
  /** Bytes read from a and written towards b. */
  readonly bytesOut: number;
  /** The first error either side reported, or an IdleTimeoutError. */
  readonly error?: Error;
}

export interface Splice {
  /** Resolves (never rejects) when both sides are closed. */
  readonly closed: Promise<SpliceResult>;
  /** Bytes so far, a → b and b → a. */
  readonly bytesOut: number;
  readonly bytesIn: number;
  /** Destroys both sides (the result carries `error` if given). */
  destroy(error?: Error): void;
}

type Side = Duplex & { setNoDelay?: (noDelay?: boolean) => unknown; allowHalfOpen?: boolean };

/** Splices a (usually the downstream connection) and b (the upstream one). */
export function splice(a: Duplex, b: Duplex, opts: SpliceOptions = {}): Splice {
  const idleMs = positiveInt('idleTimeoutMs', opts.idleTimeoutMs, 0, 0);
  const sa = a as Side;
  const sb = b as Side;
  for (const s of [sa, sb]) {
    s.allowHalfOpen = true;
    if (typeof s.setNoDelay === 'function') s.setNoDelay(true);
  }

  let aToB = 0;
  let bToA = 0;
  let error: Error | undefined;
  let open = 2;
  let lastActivity = 0;
  let timer: NodeJS.Timeout | undefined;
  let resolveClosed!: (r: SpliceResult) => void;
  const closed = new Promise<SpliceResult>((r) => (resolveClosed = r));

  const destroyBoth = (err?: Error): void => {
    if (err !== undefined && error === undefined) error = err;
    if (!sa.destroyed) sa.destroy();
    if (!sb.destroyed) sb.destroy();
  };

  // one timer per splice, re-armed lazily: a chunk only stamps the time
  if (idleMs > 0) {
    lastActivity = Date.now();
    const check = (): void => {
      const idle = Date.now() - lastActivity;
      if (idle >= idleMs) {
        timer = undefined;
        destroyBoth(new IdleTimeoutError(idleMs));
      } else {
        timer = setTimeout(check, idleMs - idle);
      }
    };
    timer = setTimeout(check, idleMs);
  }

  sa.on('data', (chunk: Buffer) => {
    aToB += chunk.length;
    if (idleMs > 0) lastActivity = Date.now();
  });
  sb.on('data', (chunk: Buffer) => {
    bToA += chunk.length;
    if (idleMs > 0) lastActivity = Date.now();
  });
  // pipe() ends the destination when the source ends: half-close forwarded
  sa.pipe(sb);
  sb.pipe(sa);

  const onError = (err: Error): void => destroyBoth(err);
  sa.on('error', onError);
  sb.on('error', onError);

  const seen = new Set<Side>();
  const onClose = (self: Side, other: Side): void => {
    if (seen.has(self)) return;
    seen.add(self);
    // the other direction (other → self) can no longer be delivered; and if
    // self went away without ending, self → other is cut short
    if (!other.destroyed && (!self.readableEnded || !other.readableEnded)) other.destroy();
    if (--open > 0) return;
    if (timer !== undefined) clearTimeout(timer);
    if (opts.onBytes !== undefined) {
      try {
        opts.onBytes(aToB, bToA);
      } catch {
        // a metrics callback must not break the data plane
      }
    }
    resolveClosed(error === undefined ? { bytesIn: bToA, bytesOut: aToB } : { bytesIn: bToA, bytesOut: aToB, error });
  };
  sa.once('close', () => onClose(sa, sb));
  sb.once('close', () => onClose(sb, sa));
  // already closed before we started (a race with the caller)
  if (sa.closed) queueMicrotask(() => onClose(sa, sb));
  if (sb.closed) queueMicrotask(() => onClose(sb, sa));

  return {
    closed,
    get bytesOut() {
      return aToB;
    },
    get bytesIn() {
      return bToA;
    },
    destroy: (err?: Error) => destroyBoth(err),
  };
}
