import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { createReviewsServer } from './service.js';

test('reviews answers its version; v1 has no stars, v2 has', async () => {
  for (const version of ['v1', 'v2']) {
    const s = createReviewsServer(version).listen(0, '127.0.0.1');
    await new Promise((r) => s.once('listening', r));
    const base = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
    try {
      const body = (await (await fetch(`${base}/reviews`)).json()) as { version: string; reviews: { stars?: number }[] };
      assert.equal(body.version, version);
      assert.equal(body.reviews.some((x) => x.stars !== undefined), version === 'v2');
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
    } finally {
      s.closeAllConnections();
      s.close();
    }
  }
});
