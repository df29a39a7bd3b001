import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseServiceSni, serviceSni } from './sni.js';
import { TransportConfigError } from './errors.js';

describe('serviceSni / parseServiceSni', () => {
  test('round trip', () => {
    assert.equal(serviceSni({ service: 'catalog', namespace: 'shop' }), 'catalog.shop.svc.amime');
    assert.deepEqual(parseServiceSni('catalog.shop.svc.amime'), { service: 'catalog', namespace: 'shop' });
    const long = 'a'.repeat(63);
    assert.deepEqual(parseServiceSni(serviceSni({ service: long, namespace: 'x-1' })), { service: long, namespace: 'x-1' });
  });

  const invalid: [string, string, string][] = [
    ['upper case', 'Catalog', 'shop'],
    ['leading dash', '-catalog', 'shop'],
    ['trailing dash', 'catalog-', 'shop'],
    ['dot inside', 'cat.alog', 'shop'],
    ['empty', '', 'shop'],
    ['64 chars', 'a'.repeat(64), 'shop'],
    ['underscore', 'cat_alog', 'shop'],
    ['empty namespace', 'catalog', ''],
  ];
  for (const [name, service, namespace] of invalid) {
    test(`serviceSni refuses ${name}`, () => {
      assert.throws(() => serviceSni({ service, namespace }), TransportConfigError);
    });
  }

  const names: [string | false | undefined, ReturnType<typeof parseServiceSni>][] = [
    ['CATALOG.Shop.SVC.amime', { service: 'catalog', namespace: 'shop' }], // SNI is case-insensitive
    ['catalog.svc.amime', undefined], // one label
    ['a.b.c.svc.amime', undefined], // three labels
    ['catalog.shop.svc.amime.', undefined],
    ['catalog.shop.svc.example', undefined],
    ['.shop.svc.amime', undefined],
    ['catalog..svc.amime', undefined],
    ['cat_alog.shop.svc.amime', undefined],
    ['-x.shop.svc.amime', undefined],
    [`${'a'.repeat(64)}.shop.svc.amime`, undefined],
    ['svc.amime', undefined],
    ['', undefined],
    [false, undefined],
    [undefined, undefined],
  ];
  for (const [name, want] of names) {
    test(`parseServiceSni(${JSON.stringify(name)})`, () => {
      assert.deepEqual(parseServiceSni(name), want);
    });
  }
});
