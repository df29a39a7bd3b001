import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Balancer, type Algorithm } from './index.js';
import { endpoints, seededRandom } from './testing/fake-env.js';

// pick() must not allocate on the common path. Measured as heap growth over
// a window of picks once the code is optimized: an allocation of even one
// small object per pick grows the heap by ≥ 16 B × 20 000 = 320 KB. A window
// in which a scavenge ran (the heap shrank) proves nothing and is retried.
// The clock returns small integers: a real performance.now() returns a boxed
// double, the one allocation a timed pick cannot avoid.
const WINDOW = 20_000;
const cases: { algorithm: Algorithm; hashKeys: boolean }[] = [
  { algorithm: 'p2c-ewma', hashKeys: false },
  { algorithm: 'round-robin', hashKeys: false },
  { algorithm: 'least-request', hashKeys: false },
  { algorithm: 'ring-hash', hashKeys: true },
];
for (const c of cases) {
  test(`${c.algorithm}: pick() allocates nothing`, (t) => {
    let tick = 0;
    const b = new Balancer({
      algorithm: c.algorithm,
      localZone: 'z1',
      now: () => (tick++ >> 4) & 0xffff,
      random: seededRandom(1),
      outlier: { consecutiveFailures: 5, baseEjectionMs: 1000, maxEjectionPercent: 50 },
    });
    b.update(endpoints(20).map((e, i) => ({ ...e, zone: `z${i % 2}` })));
    // Short keys that hash to small integers would hide boxing; use a fixed set made up front.
    const keys = Array.from({ length: 64 }, (_, i) => `session-${i * 7919}`);
    const avoid = b.pick(keys[0]);
    let sink = 0;
    const run = (n: number) => {
      for (let i = 0; i < n; i++) {
        const e = b.pick(c.hashKeys ? keys[i & 63] : undefined, (i & 7) === 0 ? avoid : undefined);
        if (e === avoid) sink++;
      }
    };
    run(300_000);
    const growth: number[] = [];
    for (let attempt = 0; attempt < 8; attempt++) {
      const before = process.memoryUsage().heapUsed;
      run(WINDOW);
      const delta = process.memoryUsage().heapUsed - before;
      growth.push(delta);
      if (delta >= 0 && delta < 8_192) break;
    }
    t.diagnostic(`heap growth per window of ${WINDOW} picks: ${growth.join(', ')} bytes (sink ${sink})`);
    assert.ok(growth.some((d) => d >= 0 && d < 8_192), `heap grew by ${growth.join(', ')} bytes over ${WINDOW} picks`);
  });
}
