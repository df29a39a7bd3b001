import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createCatalogServer } from './service.js';

async function listen(s: http.Server): Promise<string> {
  s.listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

test('catalog answers /items with the stock from inventory, 502 when inventory refuses', async () => {
  let refuse = false;
  const inventory = http.createServer((_req, res) => {
    res.statusCode = refuse ? 403 : 200;
    res.end(refuse ? 'denied' : JSON.stringify({ service: 'inventory', stock: { a: 1 } }));
  });
  const catalog = createCatalogServer({ inventory: await listen(inventory) });
  const base = await listen(catalog);
  try {
    const ok = (await (await fetch(`${base}/items`)).json()) as { items: unknown[]; inventory: { stock: Record<string, number> } };
    assert.ok(ok.items.length > 0);
    assert.deepEqual(ok.inventory.stock, { a: 1 });
    refuse = true;
    const r = await fetch(`${base}/items`);
    assert.equal(r.status, 502);
    assert.equal(((await r.json()) as { inventory: { status: number } }).inventory.status, 403);
  } finally {
    for (const s of [catalog, inventory]) {
      s.closeAllConnections();
      s.close();
    }
  }
});
