import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import http from 'node:http';
import { HealthChecker, type HealthCheckTarget } from './health-check.js';
import type { HealthState } from '../resources.js';

const HOST = '127.0.0.1';

async function waitUntil(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, HOST, () => resolve((server.address() as AddressInfo).port)));
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    (server as http.Server).closeAllConnections?.();
    server.close(() => resolve());
  });
}

/** A port nobody listens on: bound then released. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await close(s);
  return port;
}

function recorder() {
  const changes: [string, HealthState][] = [];
  return { changes, onChange: (key: string, state: HealthState) => void changes.push([key, state]) };
}

// Short intervals keep the tests quick; generous timeouts keep them steady on a loaded machine.
const fast = { intervalMs: 20, timeoutMs: 2000, healthyThreshold: 2, unhealthyThreshold: 2 };

describe('HealthChecker', () => {
  test('tcp: a listening port is healthy at the first check; a closed one unhealthy', async () => {
    const server = net.createServer((s) => s.destroy());
    const port = await listen(server);
    const closed = await freePort();
    const r = recorder();
    const hc = new HealthChecker({ onChange: r.onChange, defaults: fast });
    try {
      hc.set([
        { key: 'up', kind: 'tcp', host: HOST, port },
        { key: 'down', kind: 'tcp', host: HOST, port: closed },
      ]);
      await waitUntil(() => r.changes.length === 2, 'both first results');
      assert.deepEqual(new Map(r.changes), new Map([['up', 'healthy'], ['down', 'unhealthy']]));
      assert.equal(hc.status('up'), 'healthy');
      assert.equal(hc.status('down'), 'unhealthy');
      // steady results: no further calls
      await sleep(120);
      assert.equal(r.changes.length, 2);
    } finally {
      hc.stop();
      await close(server);
    }
  });

  test('http: transitions follow the thresholds and fire once each', async () => {
    let status = 200;
    let hits = 0;
    const server = http.createServer((req, res) => {
      hits++;
      assert.equal(req.url, '/healthz');
      res.writeHead(status).end('ok');
    });
    const port = await listen(server);
    const r = recorder();
    const hc = new HealthChecker({ onChange: r.onChange });
    try {
      hc.set([{ key: 'web', kind: 'http', host: HOST, port, path: '/healthz', ...fast, unhealthyThreshold: 3 }]);
      await waitUntil(() => r.changes.length === 1, 'healthy');
      assert.deepEqual(r.changes, [['web', 'healthy']]);

      status = 503;
      let from = hits;
      await waitUntil(() => r.changes.length === 2, 'unhealthy');
      assert.ok(hits - from >= 3, `turned unhealthy after ${hits - from} failures, threshold 3`);
      assert.deepEqual(r.changes[1], ['web', 'unhealthy']);

      status = 302; // 3xx counts as healthy
      from = hits;
      await waitUntil(() => r.changes.length === 3, 'healthy again');
      assert.ok(hits - from >= 2, `turned healthy after ${hits - from} passes, threshold 2`);
      assert.deepEqual(r.changes[2], ['web', 'healthy']);
      await sleep(100);
      assert.equal(r.changes.length, 3);
    } finally {
      hc.stop();
      await close(server);
    }
  });

  test('http: a server that never answers fails by timeout', async () => {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      sockets.add(s); // accept and say nothing
      s.on('error', () => undefined);
    });
    const port = await listen(server);
    const r = recorder();
    const hc = new HealthChecker({ onChange: r.onChange });
    try {
      hc.set([{ key: 'hang', kind: 'http', host: HOST, port, intervalMs: 50, timeoutMs: 30 }]);
      await waitUntil(() => r.changes.length === 1, 'timeout result');
      assert.deepEqual(r.changes, [['hang', 'unhealthy']]);
    } finally {
      hc.stop();
      for (const s of sockets) s.destroy();
      await close(server);
    }
  });

  test('stop() ends every check; set() keeps unchanged targets and drops removed ones', async () => {
    let hitsA = 0;
    let hitsB = 0;
    const a = http.createServer((_req, res) => void (hitsA++, res.end()));
    const b = http.createServer((_req, res) => void (hitsB++, res.end()));
    const portA = await listen(a);
    const portB = await listen(b);
    const r = recorder();
    const hc = new HealthChecker({ onChange: r.onChange, defaults: fast });
    const targetA: HealthCheckTarget = { key: 'a', kind: 'http', host: HOST, port: portA };
    try {
      hc.set([targetA, { key: 'b', kind: 'http', host: HOST, port: portB }]);
      await waitUntil(() => r.changes.length === 2, 'both healthy');
      hc.set([{ ...targetA }]);
      assert.equal(hc.size, 1);
      assert.equal(hc.status('a'), 'healthy', 'an unchanged target keeps its state');
      const frozenB = hitsB;
      const startA = hitsA;
      // Wait for the kept target's next checks rather than a fixed time: the machine may be slow.
      await waitUntil(() => hitsA >= startA + 3, 'a is still checked');
      assert.ok(hitsB <= frozenB + 1, 'the removed target is no longer checked');
      hc.stop();
      const frozenA = hitsA;
      await sleep(80);
      assert.ok(hitsA <= frozenA + 1, 'no checks after stop');
      assert.equal(r.changes.length, 2);
      assert.throws(() => hc.set([targetA]), /stopped/);
    } finally {
      hc.stop();
      await close(a);
      await close(b);
    }
  });

  test('a throwing onChange does not stop the checks', async () => {
    let status = 200;
    const server = http.createServer((_req, res) => res.writeHead(status).end());
    const port = await listen(server);
    const seen: HealthState[] = [];
    const hc = new HealthChecker({
      onChange: (_key, state) => {
        seen.push(state);
        throw new Error('listener bug');
      },
      defaults: { ...fast, unhealthyThreshold: 1 },
    });
    try {
      hc.set([{ key: 'x', kind: 'http', host: HOST, port }]);
      await waitUntil(() => seen.length === 1, 'first change');
      status = 500;
      await waitUntil(() => seen.length === 2, 'second change');
      assert.deepEqual(seen, ['healthy', 'unhealthy']);
    } finally {
      hc.stop();
      await close(server);
    }
  });

  const bad: [string, Partial<HealthCheckTarget>, RegExp][] = [
    ['no key', { key: '' }, /non-empty key/],
    ['bad kind', { kind: 'udp' as 'tcp' }, /kind must be/],
    ['bad port', { port: 70000 }, /port must be 1-65535/],
    ['bad path', { path: 'health z' }, /path must start with/],
    ['zero threshold', { healthyThreshold: 0 }, /healthyThreshold must be a positive integer/],
    ['fractional interval', { intervalMs: 10.5 }, /intervalMs must be a positive integer/],
  ];
  for (const [name, patch, message] of bad) {
    test(`set() refuses a target: ${name}`, () => {
      const hc = new HealthChecker({ onChange: () => undefined });
      try {
        assert.throws(() => hc.set([{ key: 'k', kind: 'tcp', host: HOST, port: 1, ...patch }]), message);
        assert.equal(hc.size, 0);
      } finally {
        hc.stop();
      }
    });
  }

  test('set() refuses repeated keys and more than maxTargets', () => {
    const hc = new HealthChecker({ onChange: () => undefined, maxTargets: 1 });
    try {
      const t: HealthCheckTarget = { key: 'k', kind: 'tcp', host: HOST, port: 1 };
      assert.throws(() => hc.set([t, t]), /more than maxTargets 1/);
      const hc2 = new HealthChecker({ onChange: () => undefined });
      assert.throws(() => hc2.set([t, t]), /repeated/);
      hc2.stop();
    } finally {
      hc.stop();
    }
  });
});
