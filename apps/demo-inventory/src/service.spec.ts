import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { createInventoryServer } from './service.js';

test('inventory answers /stock with the verified caller, /healthz, and 404 otherwise', async () => {
  const s = createInventoryServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const base = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  try {
    const r = await fetch(`${base}/stock`, { headers: { 'x-amime-source-identity': 'spiffe://t/ns/demo/sa/catalog' } });
    const body = (await r.json()) as { service: string; stock: Record<string, number>; caller: string };
    assert.equal(body.service, 'inventory');
    assert.ok(Object.keys(body.stock).length > 0);
    assert.equal(body.caller, 'spiffe://t/ns/demo/sa/catalog');
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  } finally {
    s.closeAllConnections();
    s.close();
  }
});
