// The tap broker with fake agents and fake clients on a fake clock: query
// validation, fan-out (to late joiners too), what an agent may send, untap on
// every way a tap ends, and bounded buffering for a slow client.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TapEvent, TapEventsMessage, TapMessage, UntapMessage } from '@amime/protocol';
import { ControlPlaneError } from './errors.js';
import { TapBroker, parseTapQuery, type TapRequest, type TapSink } from './tap-broker.js';

const WEB = 'spiffe://example.org/ns/shop/sa/web';

class FakeTime {
  now = 1000;
  #timers: { at: number; fn: () => void; cancelled: boolean }[] = [];
  schedule = (fn: () => void, ms: number) => {
    const t = { at: this.now + ms, fn, cancelled: false };
    this.#timers.push(t);
    return { cancel: () => void (t.cancelled = true) };
  };
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const due = this.#timers.filter((t) => !t.cancelled && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      due.cancelled = true;
      this.now = due.at;
      due.fn();
    }
    this.now = end;
  }
}

class FakeSink implements TapSink {
  bufferedAmount = 0;
  frames: Record<string, unknown>[] = [];
  closed: { code: number; reason: string } | undefined;
  send(text: string): void {
    if (this.closed) throw new Error('closed');
    this.frames.push(JSON.parse(text) as Record<string, unknown>);
  }
  close(code: number, reason: string): void {
    this.closed = { code, reason };
  }
  of(type: string): Record<string, unknown>[] {
    return this.frames.filter((f) => f['type'] === type);
  }
}

function setup(nodes = ['vm1', 'vm2'], maxTaps?: number) {
  const time = new FakeTime();
  const connected = new Set(nodes);
  const sent: { node: string; msg: TapMessage | UntapMessage }[] = [];
  const broker = new TapBroker({
    agents: {
      nodes: () => connected,
      send: (node, msg) => {
        if (!connected.has(node)) return false;
        sent.push({ node, msg });
        return true;
      },
    },
    now: () => time.now,
    schedule: time.schedule,
    ...(maxTaps !== undefined && { maxTaps }),
  });
  return { time, connected, sent, broker };
}

const req = (over: Partial<TapRequest> = {}): TapRequest => ({ service: 'catalog', namespace: 'shop', durationMs: 10_000, maxEventsPerSecond: 100, ...over });

const ev = (node: string, over: Partial<TapEvent> = {}): TapEvent => ({
  time: '2026-11-29T12:00:00.000Z',
  direction: 'inbound',
  protocol: 'http',
  node,
  source: WEB,
  service: 'catalog',
  namespace: 'shop',
  method: 'GET',
  path: '/items',
  status: 200,
  durationMs: 1,
  ...over,
});

const frame = (id: string, events: TapEvent[], extra: Partial<TapEventsMessage> = {}): TapEventsMessage => ({ type: 'tapEvents', id, events, ...extra });

describe('parseTapQuery', () => {
  test('defaults: namespace default, 60 s, 100 events/s', () => {
    assert.deepEqual(parseTapQuery(new URLSearchParams('service=web')), { service: 'web', namespace: 'default', durationMs: 60_000, maxEventsPerSecond: 100 });
    assert.deepEqual(parseTapQuery(new URLSearchParams('service=web&namespace=shop&duration=90s&rate=5')), { service: 'web', namespace: 'shop', durationMs: 90_000, maxEventsPerSecond: 5 });
  });

  test('every error names its parameter', () => {
    const cases: [string, RegExp][] = [
      ['', /^service: required/],
      ['service=', /^service: required/],
      ['service=Web', /^service: must be a DNS-1123 label/],
      ['service=web&namespace=a/b', /^namespace: must be a DNS-1123 label/],
      ['service=web&duration=0s', /^duration: must be from 1s to 10m/],
      ['service=web&duration=11m', /^duration: must be from 1s to 10m/],
      ['service=web&duration=soon', /^duration: /],
      ['service=web&rate=0', /^rate: must be a whole number/],
      ['service=web&rate=1001', /^rate: /],
      ['service=web&rate=1e3', /^rate: /],
      ['service=web&service=db', /^service: give it once/],
      ['service=web&watch=1', /"watch" is not a query parameter of \/v1\/tap; allowed: service, namespace, duration, rate/],
    ];
    for (const [q, msg] of cases) {
      assert.throws(
        () => parseTapQuery(new URLSearchParams(q)),
        (err: unknown) => err instanceof ControlPlaneError && err.status === 400 && err.reason === 'bad_query' && msg.test(err.message),
        q,
      );
    }
  });
});

describe('TapBroker', () => {
  test('a tap goes to every connected agent; their events reach the client', () => {
    const { broker, sent } = setup();
    const sink = new FakeSink();
    const id = broker.open(req(), sink, 'spiffe://example.org/admin/op');
    assert.deepEqual(
      sent.map((s) => [s.node, s.msg]),
      ['vm1', 'vm2'].map((node) => [node, { type: 'tap', id, service: 'catalog', namespace: 'shop', maxEventsPerSecond: 100, durationMs: 10_000 }]),
    );
    assert.deepEqual(sink.frames[0], { type: 'started', id, service: 'catalog', namespace: 'shop', durationMs: 10_000, maxEventsPerSecond: 100, agents: ['vm1', 'vm2'] });
    assert.equal(broker.onTapEvents('vm1', frame(id, [ev('vm1'), ev('vm1', { direction: 'outbound' })])), undefined);
    assert.equal(broker.onTapEvents('vm2', frame(id, [ev('vm2')], { dropped: 4 })), undefined);
    const events = sink.of('events');
    assert.equal(events.length, 2);
    assert.equal(events[0]!['node'], 'vm1');
    assert.equal((events[0]!['events'] as unknown[]).length, 2);
    assert.deepEqual(events[1]!['dropped'], { rateLimited: 4, slowClient: 0, excess: 0 });
  });

  test('an agent may report only its own node, the tapped service and a tap id it was sent', () => {
    const { broker, connected } = setup(['vm1']);
    const sink = new FakeSink();
    const id = broker.open(req(), sink, 'op');
    connected.add('vm9'); // connected after the tap opened, but never told (no nodeConnected call)
    assert.match(broker.onTapEvents('vm1', frame(id, [ev('vm1'), ev('vm2')]))!, /events\[1\]\.node is "vm2", but this agent is vm1/);
    assert.match(broker.onTapEvents('vm1', frame(id, [ev('vm1', { service: 'db' })]))!, /events\[0\] is for shop\/db, but tap .* is for shop\/catalog/);
    assert.match(broker.onTapEvents('vm1', frame('tap-guessed', [ev('vm1')]))!, /tap tap-guessed was not opened on this agent/);
    assert.match(broker.onTapEvents('vm9', frame(id, [ev('vm9')]))!, /was not opened on this agent/);
    assert.equal(sink.of('events').length, 0, 'nothing of a refused frame is forwarded');
  });

  test('an agent connecting while the tap is live gets it for the time left; one connecting in its last second does not', () => {
    const { broker, sent, time, connected } = setup(['vm1']);
    const sink = new FakeSink();
    const id = broker.open(req(), sink, 'op');
    time.advance(4000);
    connected.add('vm3');
    broker.nodeConnected('vm3');
    assert.deepEqual(sent.at(-1), { node: 'vm3', msg: { type: 'tap', id, service: 'catalog', namespace: 'shop', maxEventsPerSecond: 100, durationMs: 6000 } });
    assert.deepEqual(sink.frames.at(-1), { type: 'agent', node: 'vm3', state: 'joined' });
    assert.equal(broker.onTapEvents('vm3', frame(id, [ev('vm3')])), undefined);
    time.advance(5500);
    connected.add('vm4');
    broker.nodeConnected('vm4');
    assert.equal(sent.filter((s) => s.node === 'vm4').length, 0);
  });

  test('the duration ends the tap: untap to every agent told, an end frame, the stream closed; late frames are ignored', () => {
    const { broker, sent, time } = setup();
    const sink = new FakeSink();
    const id = broker.open(req({ durationMs: 2000 }), sink, 'op');
    broker.onTapEvents('vm1', frame(id, [ev('vm1')]));
    time.advance(2000);
    assert.equal(broker.size, 0);
    assert.deepEqual(
      sent.filter((s) => s.msg.type === 'untap').map((s) => s.node),
      ['vm1', 'vm2'],
    );
    assert.deepEqual(sink.frames.at(-1), { type: 'end', reason: 'duration', events: 1, dropped: { rateLimited: 0, slowClient: 0, excess: 0 } });
    assert.equal(sink.closed?.code, 1000);
    assert.equal(broker.onTapEvents('vm1', frame(id, [ev('vm1')])), undefined, 'a frame that crossed the untap is not the agent\'s fault');
  });

  test('a client that leaves ends the tap at once (untap), before its duration', () => {
    const { broker, sent } = setup();
    const sink = new FakeSink();
    const id = broker.open(req(), sink, 'op');
    broker.clientClosed(id);
    assert.equal(broker.size, 0);
    assert.equal(sent.filter((s) => s.msg.type === 'untap').length, 2);
    assert.equal(sink.of('end').length, 0);
  });

  test('a slow client loses events (counted), the broker holds nothing for it', () => {
    const { broker, time } = setup(['vm1']);
    const sink = new FakeSink();
    const id = broker.open(req(), sink, 'op');
    sink.bufferedAmount = 2 << 20;
    broker.onTapEvents('vm1', frame(id, Array.from({ length: 10 }, () => ev('vm1'))));
    assert.equal(sink.of('events').length, 0);
    sink.bufferedAmount = 0;
    broker.onTapEvents('vm1', frame(id, [ev('vm1')]));
    assert.deepEqual(sink.of('events')[0]!['dropped'], { rateLimited: 0, slowClient: 10, excess: 0 });
    time.advance(10_000);
    assert.deepEqual(sink.frames.at(-1), { type: 'end', reason: 'duration', events: 1, dropped: { rateLimited: 0, slowClient: 10, excess: 0 } });
  });

  test('an agent sending past the tap rate has the excess dropped', () => {
    const { broker, time } = setup(['vm1']);
    const sink = new FakeSink();
    const id = broker.open(req({ maxEventsPerSecond: 10 }), sink, 'op');
    broker.onTapEvents('vm1', frame(id, Array.from({ length: 50 }, () => ev('vm1'))));
    assert.equal((sink.of('events')[0]!['events'] as unknown[]).length, 20, 'two seconds of the rate as burst');
    time.advance(1000);
    broker.onTapEvents('vm1', frame(id, Array.from({ length: 50 }, () => ev('vm1'))));
    const last = sink.of('events').at(-1)!;
    assert.equal((last['events'] as unknown[]).length, 10);
    assert.deepEqual(last['dropped'], { rateLimited: 0, slowClient: 0, excess: 70 });
  });

  test('an agent that refuses (too many taps) is reported to the client and not asked again', () => {
    const { broker, sent, time } = setup(['vm1']);
    const sink = new FakeSink();
    const id = broker.open(req({ durationMs: 2000 }), sink, 'op');
    broker.onTapEvents('vm1', frame(id, [], { error: { code: 'too_many_taps', message: 'agent vm1 already serves 8 taps' } }));
    assert.deepEqual(sink.frames.at(-1), { type: 'error', node: 'vm1', code: 'too_many_taps', message: 'agent vm1 already serves 8 taps' });
    assert.equal(broker.onTapEvents('vm1', frame(id, [ev('vm1')])), undefined);
    assert.equal(sink.of('events').length, 0);
    time.advance(2000);
    assert.equal(sent.filter((s) => s.msg.type === 'untap').length, 0, 'it holds no tap to end');
  });

  test('at most maxTaps at once; close() ends every tap', () => {
    const { broker } = setup(['vm1'], 2);
    const sinks = [new FakeSink(), new FakeSink()];
    broker.open(req(), sinks[0]!, 'op');
    broker.open(req(), sinks[1]!, 'op');
    assert.throws(() => broker.open(req(), new FakeSink(), 'op'), (err: unknown) => err instanceof ControlPlaneError && err.reason === 'too_many_taps' && /2 taps are open/.test(err.message));
    broker.close();
    assert.equal(broker.size, 0);
    for (const s of sinks) assert.equal(s.of('end')[0]!['reason'], 'shutdown');
  });

  test('a disconnected agent is dropped from the tap and told again when it reconnects', () => {
    const { broker, sent, connected } = setup(['vm1']);
    const sink = new FakeSink();
    const id = broker.open(req(), sink, 'op');
    connected.delete('vm1');
    broker.nodeDisconnected('vm1');
    assert.deepEqual(sink.frames.at(-1), { type: 'agent', node: 'vm1', state: 'left' });
    assert.match(broker.onTapEvents('vm1', frame(id, [ev('vm1')]))!, /not opened/);
    connected.add('vm1');
    broker.nodeConnected('vm1');
    assert.equal(sent.filter((s) => s.msg.type === 'tap').length, 2);
    assert.equal(broker.onTapEvents('vm1', frame(id, [ev('vm1')])), undefined);
  });
});
