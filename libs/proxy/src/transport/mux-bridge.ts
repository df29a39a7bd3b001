// Joins a plain socket (the app's connection) to a mux stream: the L4 splice
// of amime-mux/1.
//
// - Backpressure both ways: the socket is paused while the stream has no
//   credit; credit is granted back only for bytes the socket accepted (held
//   while its buffer is full, released on 'drain').
// - Half-close: the socket's FIN becomes END, END becomes the socket's FIN;
//   the other direction keeps flowing.
// - A reset destroys the socket; a socket that closes without both ends done
//   resets the stream.

import type { Duplex } from 'node:stream';
import type { MuxResetReason, MuxStream } from './mux.js';

export interface BridgeResult {
  /** Bytes from the stream written to the socket. */
  readonly bytesIn: number;
  /** Bytes from the socket sent on the stream. */
  readonly bytesOut: number;
  /** Set when the stream was reset (by either side or the session's end). */
  readonly reset?: MuxResetReason;
  /** The socket's first error, if any. */
  readonly error?: Error;
}

export interface Bridge {
  /** Resolves (never rejects) once the socket is closed. */
  readonly closed: Promise<BridgeResult>;
  destroy(): void;
}

type Side = Duplex & { setNoDelay?: (noDelay?: boolean) => unknown; allowHalfOpen?: boolean };

export function bridge(socket: Duplex, stream: MuxStream): Bridge {
  const sock = socket as Side;
  sock.allowHalfOpen = true;
  sock.setNoDelay?.(true);
  let bytesIn = 0;
  let bytesOut = 0;
  let heldCredit = 0;
  let paused = false;
  let reset: MuxResetReason | undefined;
  let error: Error | undefined;
  let resolve!: (r: BridgeResult) => void;
  const closed = new Promise<BridgeResult>((r) => (resolve = r));

  sock.on('data', (chunk: Buffer) => {
    bytesOut += chunk.length;
    if (!stream.write(chunk)) {
      paused = true;
      sock.pause();
    }
  });
  stream.ondrain = () => {
    if (paused) {
      paused = false;
      sock.resume();
    }
  };
  sock.on('end', () => stream.end());

  stream.ondata = (chunk) => {
    bytesIn += chunk.length;
    if (sock.write(chunk)) stream.consumed(chunk.length);
    else heldCredit += chunk.length;
  };
  sock.on('drain', () => {
    if (heldCredit > 0) {
      const n = heldCredit;
      heldCredit = 0;
      stream.consumed(n);
    }
  });
  stream.onend = () => sock.end();
  stream.onreset = (reason) => {
    reset = reason;
    // an RST, as a TCP proxy whose upstream reset would give: a cut stream must not look like a clean end
    const rst = (sock as Duplex & { resetAndDestroy?: () => unknown }).resetAndDestroy;
    if (typeof rst === 'function' && !sock.destroyed) rst.call(sock);
    else sock.destroy();
  };

  sock.on('error', (err: Error) => {
    error ??= err;
  });
  let done = false;
  const onClose = (): void => {
    if (done) return;
    done = true;
    // A clean close has both FINs; data we still owe the peer (waiting for
    // credit) is then sent by the stream on its own. Anything else aborts.
    if (!stream.closed && !(stream.endRequested && stream.remoteEnded)) stream.reset('cancel');
    resolve({ bytesIn, bytesOut, ...(reset !== undefined && { reset }), ...(error !== undefined && { error }) });
  };
  sock.once('close', onClose);
  // closed before we started (a race with the caller)
  if (sock.closed) queueMicrotask(onClose);

  return { closed, destroy: () => sock.destroy() };
}
