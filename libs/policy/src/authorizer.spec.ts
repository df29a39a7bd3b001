import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { API_VERSION, RESOURCE_SCHEMAS, validate, type AuthorizationPolicyResource, type AuthorizationPolicySpec } from '@amime/protocol';
import { Authorizer, PolicyError, type AuthorizeRequest, type Decision } from './authorizer.js';
import { normalizePath } from './normalize-path.js';

const TD = 'example.org';
const id = (ns: string, sa: string, td = TD): string => `spiffe://${td}/ns/${ns}/sa/${sa}`;
const WEB = id('shop', 'web');
const BATCH = id('shop', 'batch');
const ADMIN = id('ops', 'admin');
const EVIL = id('shop', 'web', 'evil.example');
const CART = { service: 'cart', namespace: 'shop' } as const;

/** An AuthorizationPolicy, validated by the protocol's own schema. */
function policy(name: string, spec: AuthorizationPolicySpec, namespace = 'shop'): AuthorizationPolicyResource {
  return validate(RESOURCE_SCHEMAS.AuthorizationPolicy, { apiVersion: API_VERSION, kind: 'AuthorizationPolicy', metadata: { name, namespace }, spec }) as AuthorizationPolicyResource;
}

const ALLOW = (name: string, rules: AuthorizationPolicySpec['rules'], target = 'cart', namespace = 'shop') =>
  policy(name, { action: 'ALLOW', target, rules }, namespace);
const DENY = (name: string, rules: AuthorizationPolicySpec['rules'], target = 'cart', namespace = 'shop') =>
  policy(name, { action: 'DENY', target, rules }, namespace);
const AUDIT = (name: string, rules: AuthorizationPolicySpec['rules'], target = 'cart', namespace = 'shop') =>
  policy(name, { action: 'AUDIT', target, rules }, namespace);

const allowed = (p: string, audit: readonly string[] = []): Decision => ({ allowed: true, reason: 'allowed', policy: p, audit });
const deniedBy = (p: string, audit: readonly string[] = []): Decision => ({ allowed: false, reason: 'denied_by_policy', policy: p, audit });
const noAllow = (audit: readonly string[] = []): Decision => ({ allowed: false, reason: 'no_matching_allow', audit });

interface Case {
  readonly name: string;
  readonly req: AuthorizeRequest;
  readonly target?: { readonly service: string; readonly namespace: string };
  readonly want: Decision;
}

function runTable(title: string, policies: readonly AuthorizationPolicyResource[], cases: readonly Case[], trustDomain?: string): void {
  describe(title, () => {
    const authz = Authorizer.compile(policies, trustDomain === undefined ? {} : { trustDomain });
    for (const c of cases) {
      test(c.name, () => {
        const got = authz.decide(c.target ?? CART, c.req);
        assert.deepEqual({ ...got }, c.want);
        assert.ok(Object.isFrozen(got) && Object.isFrozen(got.audit), 'decisions are immutable');
      });
    }
  });
}

runTable('deny by default', [], [
  { name: 'no policy at all: HTTP denied', req: { source: WEB, method: 'GET', path: '/' }, want: noAllow() },
  { name: 'no policy at all: TCP denied', req: { source: WEB }, want: noAllow() },
]);

runTable(
  'ALLOW by identity and by namespace',
  [ALLOW('web-only', [{ from: [{ identity: WEB }] }]), ALLOW('ops-ns', [{ from: [{ namespace: 'ops' }] }])],
  [
    { name: 'named identity allowed', req: { source: WEB, method: 'GET', path: '/items' }, want: allowed('shop/web-only') },
    { name: 'named identity allowed on TCP', req: { source: WEB }, want: allowed('shop/web-only') },
    { name: 'other identity in the same namespace denied', req: { source: BATCH, method: 'GET', path: '/items' }, want: noAllow() },
    { name: 'any workload of an allowed namespace', req: { source: id('ops', 'anything'), method: 'GET', path: '/' }, want: allowed('shop/ops-ns') },
    { name: 'namespace rules compare the whole namespace', req: { source: id('ops2', 'admin') }, want: noAllow() },
    { name: 'namespace from another position in the ID does not count', req: { source: `spiffe://${TD}/sa/ops/ns/ops` }, want: noAllow() },
    { name: 'non-workload ID never matches a namespace rule', req: { source: `spiffe://${TD}/ns/ops/sa/admin/extra` }, want: noAllow() },
    { name: 'a non-SPIFFE source is denied', req: { source: 'https://example.org/ns/ops/sa/admin' }, want: noAllow() },
    { name: 'an empty source is denied', req: { source: '' }, want: noAllow() },
    { name: 'without a trust domain option any trust domain matches a namespace', req: { source: id('ops', 'admin', 'other.org') }, want: allowed('shop/ops-ns') },
    { name: 'policy for the target does not apply to another service', target: { service: 'payments', namespace: 'shop' }, req: { source: WEB }, want: noAllow() },
    { name: 'policy for the target does not apply to the same name in another namespace', target: { service: 'cart', namespace: 'ops' }, req: { source: WEB }, want: noAllow() },
  ],
);

runTable(
  'trust domain',
  [ALLOW('shop-ns', [{ from: [{ namespace: 'shop' }] }]), ALLOW('foreign', [{ from: [{ identity: id('shop', 'web', 'other.org') }] }])],
  [
    { name: 'own trust domain, allowed namespace', req: { source: WEB }, want: allowed('shop/shop-ns') },
    { name: 'foreign trust domain never matches a namespace rule', req: { source: EVIL }, want: noAllow() },
    { name: 'foreign trust domain never matches, even when named', req: { source: id('shop', 'web', 'other.org') }, want: noAllow() },
    { name: 'a trust domain that only starts like ours', req: { source: id('shop', 'web', `${TD}.evil`) }, want: noAllow() },
  ],
  TD,
);

runTable(
  'DENY beats ALLOW; AUDIT is listed but decides nothing',
  [
    ALLOW('allow-shop', [{ from: [{ namespace: 'shop' }] }]),
    DENY('deny-batch', [{ from: [{ identity: BATCH }] }]),
    AUDIT('audit-shop', [{ from: [{ namespace: 'shop' }] }]),
    AUDIT('audit-batch', [{ from: [{ identity: BATCH }] }]),
    AUDIT('audit-ops', [{ from: [{ namespace: 'ops' }] }]),
  ],
  [
    { name: 'allowed, audited', req: { source: WEB, method: 'GET', path: '/' }, want: allowed('shop/allow-shop', ['shop/audit-shop']) },
    { name: 'DENY wins over a matching ALLOW, both audits listed', req: { source: BATCH, method: 'GET', path: '/' }, want: deniedBy('shop/deny-batch', ['shop/audit-batch', 'shop/audit-shop']) },
    { name: 'AUDIT alone does not allow', req: { source: ADMIN }, want: noAllow(['shop/audit-ops']) },
  ],
);

runTable(
  'AUDIT alone does not deny',
  [ALLOW('allow-all', [{ from: [{ namespace: 'shop' }] }]), AUDIT('audit-all', [{ from: [{ namespace: 'shop' }] }])],
  [{ name: 'allowed with audit', req: { source: WEB }, want: allowed('shop/allow-all', ['shop/audit-all']) }],
);

runTable(
  'method and path narrowing',
  [
    ALLOW('read', [{ from: [{ namespace: 'shop' }], to: { methods: ['GET', 'HEAD'], paths: ['/items/*', '/health'] } }]),
    ALLOW('write', [{ from: [{ identity: WEB }], to: { methods: ['POST'] } }]),
    ALLOW('root', [{ from: [{ identity: BATCH }], to: { paths: ['/'] } }]),
  ],
  [
    { name: 'GET under the prefix', req: { source: BATCH, method: 'GET', path: '/items/42' }, want: allowed('shop/read') },
    { name: 'prefix itself', req: { source: BATCH, method: 'GET', path: '/items' }, want: allowed('shop/read') },
    { name: 'prefix with trailing slash', req: { source: BATCH, method: 'HEAD', path: '/items/' }, want: allowed('shop/read') },
    { name: 'a sibling that shares the prefix text is not under it', req: { source: BATCH, method: 'GET', path: '/itemsX' }, want: noAllow() },
    { name: 'exact path', req: { source: BATCH, method: 'GET', path: '/health' }, want: allowed('shop/read') },
    { name: 'exact path with trailing slash', req: { source: BATCH, method: 'GET', path: '/health/' }, want: allowed('shop/read') },
    { name: 'exact path does not cover what is under it', req: { source: BATCH, method: 'GET', path: '/health/deep' }, want: noAllow() },
    { name: 'method not listed', req: { source: BATCH, method: 'DELETE', path: '/items/42' }, want: noAllow() },
    { name: 'lower-case method never matches', req: { source: BATCH, method: 'get', path: '/items/42' }, want: noAllow() },
    { name: 'path not listed', req: { source: BATCH, method: 'GET', path: '/orders' }, want: noAllow() },
    { name: 'methods-only rule: any path', req: { source: WEB, method: 'POST', path: '/anything/at/all' }, want: allowed('shop/write') },
    { name: 'paths-only rule: any method', req: { source: BATCH, method: 'PATCH', path: '/' }, want: allowed('shop/root') },
    { name: 'exact "/" is not a prefix', req: { source: BATCH, method: 'PATCH', path: '/x' }, want: noAllow() },
    { name: 'a path not in normal form is unknown: ALLOW with paths does not match', req: { source: BATCH, method: 'GET', path: '/items/../admin' }, want: noAllow() },
  ],
);

runTable(
  'TCP connections (no method, no path)',
  [
    ALLOW('http-only', [{ from: [{ identity: WEB }], to: { methods: ['GET'] } }]),
    ALLOW('paths-only', [{ from: [{ identity: WEB }], to: { paths: ['/*'] } }]),
    ALLOW('batch-any', [{ from: [{ identity: BATCH }] }]),
    DENY('deny-batch-admin', [{ from: [{ identity: BATCH }], to: { paths: ['/admin'] } }]),
    AUDIT('audit-web-post', [{ from: [{ identity: WEB }], to: { methods: ['POST'] } }]),
  ],
  [
    { name: 'ALLOW with `to` does not match TCP', req: { source: WEB }, want: noAllow(['shop/audit-web-post']) },
    { name: 'the same ALLOW matches HTTP', req: { source: WEB, method: 'GET', path: '/x' }, want: allowed('shop/http-only') },
    { name: 'DENY with `to` matches TCP', req: { source: BATCH }, want: deniedBy('shop/deny-batch-admin') },
    { name: 'the same DENY on HTTP only covers its path', req: { source: BATCH, method: 'GET', path: '/x' }, want: allowed('shop/batch-any') },
    { name: 'the same DENY on HTTP covers its path', req: { source: BATCH, method: 'GET', path: '/admin' }, want: deniedBy('shop/deny-batch-admin') },
    { name: 'method known, path unknown: DENY with paths matches', req: { source: BATCH, method: 'GET' }, want: deniedBy('shop/deny-batch-admin') },
  ],
);

describe('policy order does not change the deciding policy', () => {
  const a = ALLOW('a', [{ from: [{ identity: WEB }] }]);
  const b = ALLOW('b', [{ from: [{ identity: WEB }] }]);
  const other = ALLOW('a', [{ from: [{ identity: WEB }] }], 'cart', 'alpha');
  test('sorted by namespace/name', () => {
    const first = Authorizer.compile([b, a]).decide(CART, { source: WEB });
    const second = Authorizer.compile([a, b]).decide(CART, { source: WEB });
    assert.equal(first.policy, 'shop/a');
    assert.equal(second.policy, 'shop/a');
    assert.equal(Authorizer.compile([other, b]).decide({ service: 'cart', namespace: 'alpha' }, { source: WEB }).policy, 'alpha/a');
  });
});

describe('decisions are shared objects when nothing is audited', () => {
  test('the same decision object is returned per policy', () => {
    const authz = Authorizer.compile([ALLOW('a', [{ from: [{ identity: WEB }] }])]);
    assert.equal(authz.decide(CART, { source: WEB }), authz.decide(CART, { source: WEB, method: 'GET', path: '/' }));
    assert.equal(authz.decide(CART, { source: BATCH }), Authorizer.compile([]).decide(CART, { source: BATCH }));
  });
});

describe('policy paths are normalised at compile time', () => {
  const authz = Authorizer.compile([
    DENY('odd-spelling', [{ from: [{ namespace: 'shop' }], to: { paths: ['/%61dmin/', '/x/../secret/*', '/a%2Fb'] } }]),
    ALLOW('all', [{ from: [{ namespace: 'shop' }] }]),
    ALLOW('broken', [{ from: [{ namespace: 'ops' }], to: { paths: ['/bad%zz', '/bad%00'] } }]),
  ]);
  const cases: ReadonlyArray<readonly [string, boolean]> = [
    ['/admin', false],
    ['/admin/', false],
    ['/secret', false],
    ['/secret/key', false],
    ['/x/secret', true],
    ['/a/b', false],
    ['/public', true],
  ];
  for (const [path, allow] of cases) {
    test(`${path} is ${allow ? 'allowed' : 'denied'}`, () => {
      assert.equal(authz.decide(CART, { source: WEB, method: 'GET', path }).allowed, allow);
    });
  }
  test('paths that cannot be normalised are dropped and reported', () => {
    assert.deepEqual(
      authz.issues.map((i) => i.policy),
      ['shop/broken', 'shop/broken'],
    );
    assert.match(authz.issues[0]!.message, /rules\[0\]\.to\.paths: "\/bad%zz" is dropped/);
    assert.equal(authz.decide(CART, { source: ADMIN, method: 'GET', path: '/bad%zz' }).allowed, false);
  });
});

describe('compile options', () => {
  test('a malformed trust domain is refused with a fix', () => {
    assert.throws(
      () => Authorizer.compile([], { trustDomain: 'Example.ORG' }),
      (err: unknown) => err instanceof PolicyError && err.code === 'AMIME_ERR_POLICY_OPTIONS' && /example\.org/.test(err.message),
    );
  });
  test('the spiffe:// form of the trust domain is accepted', () => {
    const authz = Authorizer.compile([ALLOW('a', [{ from: [{ namespace: 'shop' }] }])], { trustDomain: `spiffe://${TD}` });
    assert.equal(authz.decide(CART, { source: WEB }).allowed, true);
    assert.equal(authz.decide(CART, { source: EVIL }).allowed, false);
  });
  test('an identity outside the trust domain is reported', () => {
    const authz = Authorizer.compile([ALLOW('fed', [{ from: [{ identity: EVIL }] }])], { trustDomain: TD });
    assert.equal(authz.issues.length, 1);
    assert.match(authz.issues[0]!.message, /outside trust domain "example\.org"/);
  });
});

describe('a DENY on /admin holds for every spelling (normalizePath, then decide)', () => {
  const authz = Authorizer.compile(
    [DENY('no-admin', [{ from: [{ namespace: 'shop' }], to: { paths: ['/admin'] } }]), ALLOW('shop', [{ from: [{ namespace: 'shop' }] }])],
    { trustDomain: TD },
  );
  /** The agent's inbound check: refuse what does not normalise, then decide on the normalised path. */
  const inbound = (target: string, encodedSlashes: 'refuse' | 'decode' = 'refuse'): string => {
    const n = normalizePath(target, { encodedSlashes });
    if (!n.ok) return `refused:${n.reason}`;
    const d = authz.decide(CART, { source: WEB, method: 'GET', path: n.path });
    return d.allowed ? 'allowed' : `denied:${d.reason}:${d.policy}`;
  };
  const DENIED = 'denied:denied_by_policy:shop/no-admin';
  const variants: ReadonlyArray<readonly [string, string, ('refuse' | 'decode')?]> = [
    ['/admin', DENIED],
    ['/admin/', DENIED],
    ['/admin?x', DENIED],
    ['/admin?x=1#frag', DENIED],
    ['/admin#frag', DENIED],
    ['//admin', DENIED],
    ['///admin//', DENIED],
    ['/./admin', DENIED],
    ['/a/../admin', DENIED],
    ['/a/b/../../admin', DENIED],
    ['/../admin', DENIED],
    ['/%61dmin', DENIED],
    ['/%61%64%6d%69%6e', DENIED],
    ['/%2e/admin', DENIED],
    ['/a/%2e%2e/admin', DENIED],
    ['\\admin', DENIED],
    ['/x\\..\\admin', DENIED],
    ['/x%2F..%2Fadmin', 'refused:encoded_slash'],
    ['/x%2F..%2Fadmin', DENIED, 'decode'],
    ['/x%5c..%5cadmin', DENIED, 'decode'],
    ['/%2561dmin', 'allowed'], // "%61dmin" literally: not the admin resource
    ['/admin%00', 'refused:null_byte'],
    ['/admin\u0000', 'refused:null_byte'],
    ['/ad%zzmin', 'refused:invalid_escape'],
    ['/admin\t', 'refused:control_char'],
    ['/ad min', 'refused:control_char'],
    ['http://cart/admin', 'refused:not_origin_form'],
    ['/adminX', 'allowed'],
    ['/admin/users', 'allowed'],
    ['/Admin', 'allowed'],
  ];
  for (const [target, want, mode] of variants) {
    test(`${JSON.stringify(target)}${mode ? ` (${mode})` : ''} -> ${want}`, () => {
      assert.equal(inbound(target, mode), want);
    });
  }
  test('raw, unnormalised paths given straight to decide are still denied', () => {
    for (const path of ['//admin', '/a/../admin', '/%61dmin', '/./admin', '\\admin', '/admin?x']) {
      assert.equal(authz.decide(CART, { source: WEB, method: 'GET', path }).allowed, false, path);
    }
  });
});
