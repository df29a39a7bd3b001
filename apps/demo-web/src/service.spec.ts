import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createWebServer } from './service.js';

async function listen(s: http.Server): Promise<string> {
  s.listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

test('web combines catalog and reviews; every N-th request also calls inventory and reports its status', async () => {
  const stub = (body: unknown, status = 200) =>
    http.createServer((_req, res) => {
      res.statusCode = status;
      res.end(JSON.stringify(body));
    });
  const servers = [stub({ service: 'catalog', items: [] }), stub({ service: 'reviews', version: 'v2' }), stub({ error: 'denied' }, 403)];
  const [catalog, reviews, inventory] = await Promise.all(servers.map(listen));
  const web = createWebServer({ catalog: catalog!, reviews: reviews!, inventory: inventory!, denyEvery: 2 });
  const base = await listen(web);
  try {
    const first = (await (await fetch(`${base}/`)).json()) as Record<string, { service?: string; version?: string }>;
    assert.equal(first['catalog']!.service, 'catalog');
    assert.equal(first['reviews']!.version, 'v2');
    assert.equal(first['inventoryDirect'], undefined);
    const second = await fetch(`${base}/`);
    assert.equal(second.status, 200, 'a refused direct call does not fail the page');
    assert.equal(((await second.json()) as { inventoryDirect: { status: number } }).inventoryDirect.status, 403);
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
  } finally {
    for (const s of [web, ...servers]) {
      s.closeAllConnections();
      s.close();
    }
  }
});
