// Bounded waits for the transport specs (the machine may be busy: bounds are generous).
import assert from 'node:assert/strict';

export const BOUND_MS = 20_000;

/** Resolves with p, or fails the test after `ms`. */
export function within<V>(p: Promise<V>, what: string, ms = BOUND_MS): Promise<V> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Polls a condition on the event loop, at most BOUND_MS. */
export async function until(cond: () => boolean, what: string): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > BOUND_MS) assert.fail(`condition not reached: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
