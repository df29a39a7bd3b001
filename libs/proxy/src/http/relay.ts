// Moving a response body to the client with backpressure (pipe) and one completion
// callback. Cheaper than stream.pipeline, which builds an AbortController and a
// DOMException per call: measurable at proxy request rates.
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Pipes `src` into `dst` and calls `done` once: true when the whole body reached
 * `dst`, false when either side broke (the other is then destroyed, so a cut
 * response is visible to the client as a reset, never as a short complete one).
 */
export function relayBody(src: IncomingMessage, dst: ServerResponse, done: (ok: boolean) => void): void {
  let settled = false;
  const settle = (ok: boolean): void => {
    if (settled) return;
    settled = true;
    done(ok);
  };
  src.on('error', noop);
  src.on('close', () => {
    if (!src.complete) {
      dst.destroy();
      settle(false);
    }
  });
  dst.on('finish', () => settle(true));
  dst.on('close', () => {
    if (!dst.writableFinished) {
      src.destroy();
      settle(false);
    }
  });
  src.pipe(dst);
}

/** Reads a cancellation the way an AbortSignal would, without its per-use allocations. */
export class Cancellation {
  /** Why it was cancelled; undefined while it is not. */
  reason: string | undefined = undefined;
  private hook: (() => void) | undefined = undefined;

  get cancelled(): boolean {
    return this.reason !== undefined;
  }

  cancel(reason: string): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    const h = this.hook;
    this.hook = undefined;
    h?.();
  }

  /** The one thing to stop on cancel (the current attempt, wait or body); replaces the previous one. */
  onCancel(hook: (() => void) | undefined): void {
    this.hook = hook;
  }

  /** Resolves after `ms`, or early (false) when cancelled. */
  wait(ms: number): Promise<boolean> {
    if (this.reason !== undefined) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.hook = undefined;
        resolve(true);
      }, ms);
      this.hook = () => {
        clearTimeout(timer);
        resolve(false);
      };
    });
  }
}

function noop(): void {
  // errors surface through 'close' without `complete`
}
