import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DerError, readRoot, seq, smallInteger, oid, readOid, children, readSmallInteger, time, readTime } from './der.js';

test('round-trips integers, OIDs and times', () => {
  const der = seq(smallInteger(300), oid('1.2.840.113549.1.9.14'), time(new Date('2049-12-31T23:59:59Z')), time(new Date('2050-01-01T00:00:00Z')));
  const [i, o, t1, t2] = children(readRoot(der));
  assert.equal(readSmallInteger(i!), 300);
  assert.equal(readOid(o!), '1.2.840.113549.1.9.14');
  assert.equal(t1!.tag, 0x17);
  assert.equal(t2!.tag, 0x18);
  assert.equal(readTime(t1!).toISOString(), '2049-12-31T23:59:59.000Z');
  assert.equal(readTime(t2!).toISOString(), '2050-01-01T00:00:00.000Z');
});

test('refuses non-DER and truncated input', () => {
  assert.throws(() => readRoot(Buffer.from([0x30, 0x80, 0, 0])), DerError); // indefinite
  assert.throws(() => readRoot(Buffer.from([0x30, 0x81, 0x01, 0x05])), /non-minimal/);
  assert.throws(() => readRoot(Buffer.from([0x30, 0x05, 0x02, 0x01])), /truncated/);
  assert.throws(() => readRoot(Buffer.from([0x02, 0x01, 0x00, 0x00])), /trailing/);
});
