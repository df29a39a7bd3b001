import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { splice, type Splice } from './pipe.js';
import { IdleTimeoutError } from './errors.js';

/**
 * client ⇄ [a | splice | b] ⇄ upstream: a is the proxy's accepted socket,
 * b its connection to the upstream server.
 */
interface Rig {
  client: net.Socket;
  upstream: net.Socket;
  a: net.Socket;
  b: net.Socket;
  sp: Splice;
  bytes: [number, number][];
  close(): void;
}

async function rig(opts: { idleTimeoutMs?: number } = {}): Promise<Rig> {
  const upstreamServer = net.createServer({ allowHalfOpen: true });
  upstreamServer.listen(0, '127.0.0.1');
  await once(upstreamServer, 'listening');
  const proxy = net.createServer({ allowHalfOpen: false });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');

  const upstreamP = once(upstreamServer, 'connection') as Promise<[net.Socket]>;
  const aP = once(proxy, 'connection') as Promise<[net.Socket]>;
  const client = net.connect({ port: (proxy.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  const [a] = await aP;
  const b = net.connect({ port: (upstreamServer.address() as net.AddressInfo).port, host: '127.0.0.1' });
  const [upstream] = await upstreamP;
  const bytes: [number, number][] = [];
  const sp = splice(a, b, { ...opts, onBytes: (x, y) => bytes.push([x, y]) });
  for (const s of [client, upstream]) s.on('error', () => { /* expected */ });
  return {
    client,
    upstream,
    a,
    b,
    sp,
    bytes,
    close: () => {
      client.destroy();
      upstream.destroy();
      proxy.close();
      upstreamServer.close();
    },
  };
}

async function readAll(s: net.Socket): Promise<string> {
  let out = '';
  s.setEncoding('utf8');
  s.on('data', (d: string) => (out += d));
  await once(s, 'end');
  return out;
}

describe('splice', { timeout: 30_000 }, () => {
  test('bytes flow both ways; half-close keeps the other direction open; counts reported once', async () => {
    const r = await rig();
    try {
      const upstreamGot = readAll(r.upstream);
      r.client.end('request body'); // client → FIN
      assert.equal(await upstreamGot, 'request body'); // upstream saw the FIN after the data
      // the upstream → client direction still flows after the client's FIN
      const clientGot = readAll(r.client);
      r.upstream.write('response part 1, ');
      r.upstream.end('part 2');
      assert.equal(await clientGot, 'response part 1, part 2');
      const result = await r.sp.closed;
      assert.equal(result.error, undefined);
      assert.equal(result.bytesOut, 'request body'.length);
      assert.equal(result.bytesIn, 'response part 1, part 2'.length);
      assert.deepEqual(r.bytes, [[12, 23]]);
    } finally {
      r.close();
    }
  });

  test('an error (reset) on one side destroys both and is reported', async () => {
    const r = await rig();
    try {
      r.client.write('x');
      await once(r.upstream, 'data');
      const upstreamEnded = once(r.upstream, 'end'); // b's FIN (the upstream server allows half-open)
      r.client.resetAndDestroy();
      const result = await r.sp.closed;
      assert.equal((result.error as NodeJS.ErrnoException | undefined)?.code, 'ECONNRESET');
      assert.ok(r.a.destroyed && r.b.destroyed);
      await upstreamEnded;
      assert.equal(r.bytes.length, 1);
    } finally {
      r.close();
    }
  });

  test('one side destroyed without ending cuts the other side too', async () => {
    const r = await rig();
    try {
      r.b.destroy();
      const result = await r.sp.closed;
      assert.equal(result.error, undefined);
      assert.ok(r.a.destroyed);
    } finally {
      r.close();
    }
  });

  test('idle timeout destroys both sides; traffic keeps it open', async () => {
    const r = await rig({ idleTimeoutMs: 400 });
    try {
      // traffic every ~20 ms for ~160 ms: far from idle for 400 ms
      for (let i = 0; i < 8; i++) {
        r.client.write('k');
        await new Promise((res) => setTimeout(res, 20));
      }
      assert.equal(r.a.destroyed, false);
      const result = await r.sp.closed; // then idle
      assert.ok(result.error instanceof IdleTimeoutError);
      assert.equal(result.error.code, 'AMIME_ERR_PROXY_IDLE_TIMEOUT');
      assert.equal(result.bytesOut, 8);
    } finally {
      r.close();
    }
  });

  test('backpressure: a slow reader stops the writer; the proxy buffers a bounded amount', async () => {
    const r = await rig();
    try {
      r.upstream.pause(); // the reader is stalled
      const chunk = Buffer.alloc(64 * 1024, 7);
      const maxChunks = 2048; // 128 MiB at most
      let written = 0;
      let blocked = false;
      let maxBuffered = 0;
      for (let i = 0; i < maxChunks && !blocked; i++) {
        written += chunk.length;
        maxBuffered = Math.max(maxBuffered, r.b.writableLength, r.a.readableLength);
        if (!r.client.write(chunk)) {
          // wait for drain; a writer blocked for 300 ms means backpressure reached it
          const drained = await Promise.race([once(r.client, 'drain').then(() => true), new Promise<boolean>((res) => setTimeout(() => res(false), 300))]);
          blocked = !drained;
        }
      }
      assert.ok(blocked, `the writer was never blocked after ${written} bytes`);
      maxBuffered = Math.max(maxBuffered, r.b.writableLength, r.a.readableLength);
      // the proxy holds at most a few highWaterMarks, not the traffic
      assert.ok(maxBuffered <= 1024 * 1024, `proxy buffered ${maxBuffered} bytes`);
      assert.ok(written < maxChunks * chunk.length);

      // resume the reader: every byte arrives
      let got = 0;
      r.upstream.on('data', (d: Buffer) => (got += d.length));
      r.upstream.resume();
      r.client.end();
      await once(r.upstream, 'end');
      assert.equal(got, written);
    } finally {
      r.close();
    }
  });

  test('destroy() ends both sides with the given error', async () => {
    const r = await rig();
    try {
      const boom = new Error('policy changed');
      r.sp.destroy(boom);
      const result = await r.sp.closed;
      assert.equal(result.error, boom);
      assert.ok(r.a.destroyed && r.b.destroyed);
    } finally {
      r.close();
    }
  });
});
