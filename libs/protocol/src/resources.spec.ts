import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  endpointName,
  MESH_CONFIG_DEFAULTS,
  MONITOR_DEFAULTS,
  RESOURCE_SCHEMAS,
  durationMs,
  parseResources,
  resourceKey,
  type ConfigResource,
} from './resources.js';
import { ValidationError, safeValidate, type Issue, type Schema } from './validate.js';

const service = {
  apiVersion: 'amime.dev/v1',
  kind: 'Service',
  metadata: { name: 'payments', namespace: 'shop', labels: { tier: 'backend', 'amime.dev/team': 'pay' } },
  spec: {
    identity: 'spiffe://example.org/ns/shop/sa/payments',
    ports: [
      { name: 'http', port: 8080, protocol: 'http' },
      { name: 'grpc-raw', port: 9090, protocol: 'tcp' },
    ],
  },
};

const route = {
  apiVersion: 'amime.dev/v1',
  kind: 'Route',
  metadata: { name: 'payments-canary', namespace: 'shop' },
  spec: {
    service: 'payments',
    rules: [
      {
        match: { path: { prefix: '/api/' }, headers: [{ name: 'x-canary', exact: '1' }, { name: 'user-agent', regex: '^curl/.*' }], method: 'POST' },
        backends: [
          { service: 'payments', weight: 90 },
          { service: 'payments-v2', subset: 'canary', weight: 10 },
        ],
        timeout: '2s',
        retries: { attempts: 3, perTryTimeout: '250ms', on: ['5xx', 'reset', 'connect-failure', 'gateway-error'] },
        mirror: { service: 'payments-shadow', percent: 5 },
      },
      { backends: [{ service: 'payments', weight: 100 }] },
    ],
  },
};

const policy = {
  apiVersion: 'amime.dev/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'payments-allow' },
  spec: {
    action: 'ALLOW',
    target: 'payments',
    rules: [
      { from: [{ identity: 'spiffe://example.org/ns/shop/sa/checkout' }, { namespace: 'ops' }], to: { methods: ['GET', 'POST'], paths: ['/api/*', '/healthz', '/*'] } },
      { from: [{ namespace: 'billing' }] },
    ],
  },
};

const mesh = {
  apiVersion: 'amime.dev/v1',
  kind: 'MeshConfig',
  metadata: { name: 'default' },
  spec: {
    mtls: 'STRICT',
    loadBalancing: 'p2c-ewma',
    outlier: { consecutiveFailures: 5, baseEjectionTime: '30s', maxEjectionPercent: 50 },
    certTtls: { workload: '1h', agent: '24h' },
  },
};

const endpoint = {
  apiVersion: 'amime.dev/v1',
  kind: 'Endpoint',
  metadata: { name: 'payments-vm1-8080', namespace: 'shop', version: '17' },
  spec: { service: 'payments', node: 'vm1', address: '10.0.0.7', port: 4143, identity: 'spiffe://example.org/ns/shop/sa/payments' },
};

const trustBundle = {
  apiVersion: 'amime.dev/v1',
  kind: 'TrustBundle',
  metadata: { name: 'example-org' },
  spec: { trustDomain: 'example.org', roots: ['-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n'] },
};

const revocations = {
  apiVersion: 'amime.dev/v1',
  kind: 'RevocationList',
  metadata: { name: 'example-org' },
  spec: { serials: ['0a1b2c'], identities: ['spiffe://example.org/ns/shop/sa/old'] },
};

const clone = <T>(v: T): T => structuredClone(v);

function refusedIssues(doc: unknown): Issue[] {
  try {
    parseResources(JSON.stringify(doc), 'json');
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    return [...err.issues];
  }
  assert.fail('expected the resource to be refused');
}

describe('parseResources accepts each kind', () => {
  for (const doc of [service, route, policy, mesh]) {
    test(`${doc.kind} (json)`, () => {
      const [r] = parseResources(JSON.stringify(doc), 'json');
      assert.equal(r!.kind, doc.kind);
      assert.equal(r!.metadata.name, doc.metadata.name);
    });
  }

  test('all four in one multi-document YAML stream, with namespace defaulted', () => {
    const yaml = `
apiVersion: amime.dev/v1
kind: Service
metadata: {name: payments, namespace: shop}
spec:
  identity: spiffe://example.org/ns/shop/sa/payments
  ports:
    - {name: http, port: 8080, protocol: http}
---
apiVersion: amime.dev/v1
kind: Route
metadata:
  name: payments
spec:
  service: payments
  rules:
    - match: {path: {exact: /healthz}}
      backends: [{service: payments, weight: 1}]
      timeout: 250ms
---
apiVersion: amime.dev/v1
kind: AuthorizationPolicy
metadata: {name: deny-ops}
spec: {action: DENY, target: payments, rules: [{from: [{namespace: ops}]}]}
---
apiVersion: amime.dev/v1
kind: MeshConfig
metadata: {name: default}
spec: {mtls: PERMISSIVE}
---
`;
    const rs = parseResources(yaml, 'yaml');
    assert.deepEqual(rs.map(resourceKey), [
      '/resources/Service/shop/payments',
      '/resources/Route/default/payments',
      '/resources/AuthorizationPolicy/default/deny-ops',
      '/resources/MeshConfig/default/default',
    ]);
    const meshConfig = rs[3] as Extract<ConfigResource, { kind: 'MeshConfig' }>;
    assert.equal(meshConfig.spec.mtls, 'PERMISSIVE');
    assert.deepEqual(meshConfig.spec.outlier, MESH_CONFIG_DEFAULTS.outlier);
    assert.equal(meshConfig.spec.loadBalancing, 'p2c-ewma');
  });

  test('a JSON array of resources', () => {
    assert.equal(parseResources(JSON.stringify([service, route]), 'json').length, 2);
  });

  test('metadata.version from a client is accepted and dropped', () => {
    const doc = clone(service);
    (doc.metadata as Record<string, unknown>)['version'] = '42';
    const [r] = parseResources(JSON.stringify(doc), 'json');
    assert.equal('version' in r!.metadata, false);
  });
});

describe('the derived kinds validate for the push channel', () => {
  for (const doc of [endpoint, trustBundle, revocations]) {
    test(doc.kind, () => {
      const schema: Schema<unknown> = RESOURCE_SCHEMAS[doc.kind as keyof typeof RESOURCE_SCHEMAS];
      const r = safeValidate(schema, doc);
      assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
    });
  }

  test('operators cannot apply them', () => {
    const [issue] = refusedIssues(endpoint);
    assert.equal(issue!.path, 'kind');
    assert.match(issue!.message, /one of Service, Route, AuthorizationPolicy, MeshConfig/);
  });
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- mutations poke at arbitrary fields of plain test documents
type Mutation = { name: string; base: object; mutate: (d: any) => void; path: string; message?: RegExp; fix?: RegExp };

const invalid: Mutation[] = [
  // envelope
  { name: 'apiVersion', base: service, mutate: (d) => (d.apiVersion = 'amime.dev/v2'), path: 'apiVersion', message: /must be "amime.dev\/v1"/ },
  { name: 'unknown kind', base: service, mutate: (d) => (d.kind = 'Gateway'), path: 'kind' },
  { name: 'name not DNS-1123', base: service, mutate: (d) => (d.metadata.name = 'Payments_1'), path: 'metadata.name', message: /DNS-1123/ },
  { name: 'name too long', base: service, mutate: (d) => (d.metadata.name = 'a'.repeat(64)), path: 'metadata.name', message: /at most 63/ },
  { name: 'namespace', base: route, mutate: (d) => (d.metadata.namespace = '-shop'), path: 'metadata.namespace' },
  { name: 'label value', base: service, mutate: (d) => (d.metadata.labels = { tier: 'bad value' }), path: 'metadata.labels.tier' },
  { name: 'unknown metadata field', base: service, mutate: (d) => (d.metadata.uid = 'x'), path: 'metadata.uid', message: /not a known field/ },
  { name: 'unknown top-level field', base: service, mutate: (d) => (d.status = {}), path: 'status' },
  { name: 'missing spec', base: service, mutate: (d) => delete d.spec, path: 'spec', message: /is required/ },
  // Service
  { name: 'identity not SPIFFE', base: service, mutate: (d) => (d.spec.identity = 'https://example.org/ns/shop/sa/x'), path: 'spec.identity', message: /SPIFFE ID/ },
  { name: 'identity not a workload ID', base: service, mutate: (d) => (d.spec.identity = 'spiffe://example.org/agent/vm1'), path: 'spec.identity', message: /workload SPIFFE ID/ },
  { name: 'identity in another namespace', base: service, mutate: (d) => (d.spec.identity = 'spiffe://example.org/ns/other/sa/payments'), path: 'spec.identity', message: /namespace "other"/ },
  { name: 'no ports', base: service, mutate: (d) => (d.spec.ports = []), path: 'spec.ports', message: /must not be empty/ },
  { name: 'port 0', base: service, mutate: (d) => (d.spec.ports[1].port = 0), path: 'spec.ports[1].port', message: /from 1 to 65535/ },
  { name: 'port 65536', base: service, mutate: (d) => (d.spec.ports[0].port = 65536), path: 'spec.ports[0].port' },
  { name: 'protocol', base: service, mutate: (d) => (d.spec.ports[0].protocol = 'udp'), path: 'spec.ports[0].protocol', message: /one of tcp, http/ },
  { name: 'duplicate port name', base: service, mutate: (d) => (d.spec.ports[1].name = 'http'), path: 'spec.ports[1].name', message: /duplicates spec.ports\[0\].name/ },
  { name: 'duplicate port', base: service, mutate: (d) => (d.spec.ports[1].port = 8080), path: 'spec.ports[1].port' },
  { name: 'unknown port field', base: service, mutate: (d) => (d.spec.ports[0].targetPort = 1), path: 'spec.ports[0].targetPort' },
  // Service trafficPolicy
  { name: 'lb algorithm', base: service, mutate: (d) => (d.spec.trafficPolicy = { loadBalancing: { algorithm: 'random' } }), path: 'spec.trafficPolicy.loadBalancing.algorithm' },
  { name: 'hash on both', base: service, mutate: (d) => (d.spec.trafficPolicy = { loadBalancing: { algorithm: 'ring-hash', hash: { header: 'x-user', cookie: 'sid' } } }), path: 'spec.trafficPolicy.loadBalancing.hash', message: /only one of header, cookie/ },
  { name: 'hash header name', base: service, mutate: (d) => (d.spec.trafficPolicy = { loadBalancing: { algorithm: 'ring-hash', hash: { header: 'x user' } } }), path: 'spec.trafficPolicy.loadBalancing.hash.header' },
  { name: 'maxConnections 0', base: service, mutate: (d) => (d.spec.trafficPolicy = { connectionPool: { maxConnections: 0 } }), path: 'spec.trafficPolicy.connectionPool.maxConnections' },
  { name: 'subset names repeat', base: service, mutate: (d) => (d.spec.trafficPolicy = { subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v1', labels: { version: 'v2' } }] }), path: 'spec.trafficPolicy.subsets[1].name' },
  { name: 'rate limit 0', base: service, mutate: (d) => (d.spec.trafficPolicy = { rateLimit: { requestsPerSecond: 0 } }), path: 'spec.trafficPolicy.rateLimit.requestsPerSecond' },
  { name: 'zoneFailover not boolean', base: service, mutate: (d) => (d.spec.trafficPolicy = { zoneFailover: 'yes' }), path: 'spec.trafficPolicy.zoneFailover' },
  // Route fault injection
  { name: 'fault abort status', base: route, mutate: (d) => (d.spec.rules[0].fault = { abort: { status: 600, percent: 10 } }), path: 'spec.rules[0].fault.abort.status' },
  { name: 'fault delay duration', base: route, mutate: (d) => (d.spec.rules[0].fault = { delay: { fixed: 'soon', percent: 10 } }), path: 'spec.rules[0].fault.delay.fixed' },
  // MeshConfig retry budget
  { name: 'retry budget percent', base: mesh, mutate: (d) => (d.spec.retryBudget = { percent: 120, minRetriesPerSecond: 10 }), path: 'spec.retryBudget.percent' },
  // MeshConfig monitor
  { name: 'monitor learningWindow', base: mesh, mutate: (d) => (d.spec.monitor = { learningWindow: '10 minutes' }), path: 'spec.monitor.learningWindow', message: /duration like/ },
  { name: 'monitor learningWindow above 7 days', base: mesh, mutate: (d) => (d.spec.monitor = { learningWindow: '200h' }), path: 'spec.monitor.learningWindow', message: /to 168h/ },
  { name: 'monitor sensitivity word', base: mesh, mutate: (d) => (d.spec.monitor = { sensitivity: 'paranoid' }), path: 'spec.monitor.sensitivity', message: /low, medium, high or a number from 1 to 20/ },
  { name: 'monitor sensitivity number', base: mesh, mutate: (d) => (d.spec.monitor = { sensitivity: 0.5 }), path: 'spec.monitor.sensitivity' },
  { name: 'monitor reportInterval under 1s', base: mesh, mutate: (d) => (d.spec.monitor = { reportInterval: '500ms' }), path: 'spec.monitor.reportInterval', message: /from 1s to 10m/ },
  { name: 'monitor unknown field', base: mesh, mutate: (d) => (d.spec.monitor = { window: '5m' }), path: 'spec.monitor.window', message: /not a known field/ },
  // Route
  { name: 'no rules', base: route, mutate: (d) => (d.spec.rules = []), path: 'spec.rules' },
  { name: 'weight above 100', base: route, mutate: (d) => (d.spec.rules[0].backends[1].weight = 101), path: 'spec.rules[0].backends[1].weight', message: /^must be an integer from 0 to 100/ },
  { name: 'weights sum to 0', base: route, mutate: (d) => (d.spec.rules[1].backends[0].weight = 0), path: 'spec.rules[1].backends', message: /sum to more than 0/ },
  { name: 'two path matchers', base: route, mutate: (d) => (d.spec.rules[0].match.path = { exact: '/a', prefix: '/b' }), path: 'spec.rules[0].match.path', message: /only one of exact, prefix, regex/ },
  { name: 'no path matcher', base: route, mutate: (d) => (d.spec.rules[0].match.path = {}), path: 'spec.rules[0].match.path' },
  { name: 'path without slash', base: route, mutate: (d) => (d.spec.rules[0].match.path = { prefix: 'api' }), path: 'spec.rules[0].match.path.prefix' },
  { name: 'regex does not compile', base: route, mutate: (d) => (d.spec.rules[0].match.path = { regex: '(' }), path: 'spec.rules[0].match.path.regex', message: /valid regular expression/ },
  { name: 'regex with nested quantifier', base: route, mutate: (d) => (d.spec.rules[0].match.path = { regex: '^/(a+)+$' }), path: 'spec.rules[0].match.path.regex', message: /group that itself repeats/ },
  { name: 'regex with nested star', base: route, mutate: (d) => (d.spec.rules[0].match.headers[1].regex = '(.*a)*'), path: 'spec.rules[0].match.headers[1].regex' },
  { name: 'regex with nested bounded repeat', base: route, mutate: (d) => (d.spec.rules[0].match.headers[1].regex = '(x{2,})+'), path: 'spec.rules[0].match.headers[1].regex' },
  { name: 'regex too long', base: route, mutate: (d) => (d.spec.rules[0].match.path = { regex: 'a'.repeat(257) }), path: 'spec.rules[0].match.path.regex', message: /at most 256/ },
  { name: 'header name', base: route, mutate: (d) => (d.spec.rules[0].match.headers[0].name = 'x canary'), path: 'spec.rules[0].match.headers[0].name' },
  { name: 'header regex', base: route, mutate: (d) => (d.spec.rules[0].match.headers[1].regex = '[z-a]'), path: 'spec.rules[0].match.headers[1].regex' },
  { name: 'method', base: route, mutate: (d) => (d.spec.rules[0].match.method = 'get'), path: 'spec.rules[0].match.method', fix: /did you mean "GET"/ },
  { name: 'timeout malformed', base: route, mutate: (d) => (d.spec.rules[0].timeout = '2 seconds'), path: 'spec.rules[0].timeout', message: /duration like/ },
  { name: 'timeout above 1h', base: route, mutate: (d) => (d.spec.rules[0].timeout = '61m'), path: 'spec.rules[0].timeout', message: /from 1ms to 1h/ },
  { name: 'timeout zero', base: route, mutate: (d) => (d.spec.rules[0].timeout = '0s'), path: 'spec.rules[0].timeout' },
  { name: 'retry attempts', base: route, mutate: (d) => (d.spec.rules[0].retries.attempts = 11), path: 'spec.rules[0].retries.attempts', message: /from 0 to 10/ },
  { name: 'retry perTryTimeout', base: route, mutate: (d) => (d.spec.rules[0].retries.perTryTimeout = '5d'), path: 'spec.rules[0].retries.perTryTimeout' },
  { name: 'retry on', base: route, mutate: (d) => (d.spec.rules[0].retries.on = ['5xx', 'timeout']), path: 'spec.rules[0].retries.on[1]' },
  { name: 'retry on repeated', base: route, mutate: (d) => (d.spec.rules[0].retries.on = ['5xx', '5xx']), path: 'spec.rules[0].retries.on[1]', message: /repeats/ },
  { name: 'mirror percent', base: route, mutate: (d) => (d.spec.rules[0].mirror.percent = 150), path: 'spec.rules[0].mirror.percent' },
  { name: 'backend service', base: route, mutate: (d) => (d.spec.rules[0].backends[0].service = 'Pay'), path: 'spec.rules[0].backends[0].service' },
  { name: 'unknown rule field', base: route, mutate: (d) => (d.spec.rules[0].rewrite = '/x'), path: 'spec.rules[0].rewrite' },
  // AuthorizationPolicy
  { name: 'action', base: policy, mutate: (d) => (d.spec.action = 'allow'), path: 'spec.action', fix: /did you mean "ALLOW"/ },
  { name: 'target', base: policy, mutate: (d) => (d.spec.target = ''), path: 'spec.target' },
  { name: 'from empty', base: policy, mutate: (d) => (d.spec.rules[0].from = []), path: 'spec.rules[0].from' },
  { name: 'from with both', base: policy, mutate: (d) => (d.spec.rules[0].from[1] = { namespace: 'ops', identity: 'spiffe://example.org/ns/ops/sa/x' }), path: 'spec.rules[0].from[1]' },
  { name: 'from identity', base: policy, mutate: (d) => (d.spec.rules[0].from[0].identity = 'spiffe://Example.org/x'), path: 'spec.rules[0].from[0].identity' },
  { name: 'to method', base: policy, mutate: (d) => (d.spec.rules[0].to.methods = ['FETCH']), path: 'spec.rules[0].to.methods[0]' },
  { name: 'to path glob inside', base: policy, mutate: (d) => (d.spec.rules[0].to.paths = ['/api/*/x']), path: 'spec.rules[0].to.paths[0]' },
  { name: 'to path partial glob', base: policy, mutate: (d) => (d.spec.rules[0].to.paths = ['/api*']), path: 'spec.rules[0].to.paths[0]' },
  { name: 'to path relative', base: policy, mutate: (d) => (d.spec.rules[0].to.paths = ['api']), path: 'spec.rules[0].to.paths[0]' },
  // MeshConfig
  { name: 'mtls', base: mesh, mutate: (d) => (d.spec.mtls = 'OFF'), path: 'spec.mtls' },
  { name: 'loadBalancing', base: mesh, mutate: (d) => (d.spec.loadBalancing = 'random'), path: 'spec.loadBalancing' },
  { name: 'outlier consecutiveFailures', base: mesh, mutate: (d) => (d.spec.outlier.consecutiveFailures = 0), path: 'spec.outlier.consecutiveFailures' },
  { name: 'outlier baseEjectionTime', base: mesh, mutate: (d) => (d.spec.outlier.baseEjectionTime = 30), path: 'spec.outlier.baseEjectionTime' },
  { name: 'outlier maxEjectionPercent', base: mesh, mutate: (d) => (d.spec.outlier.maxEjectionPercent = 101), path: 'spec.outlier.maxEjectionPercent' },
  { name: 'outlier missing field', base: mesh, mutate: (d) => delete d.spec.outlier.maxEjectionPercent, path: 'spec.outlier.maxEjectionPercent', message: /is required/ },
  { name: 'certTtls too short', base: mesh, mutate: (d) => (d.spec.certTtls.workload = '1m'), path: 'spec.certTtls.workload' },
  { name: 'certTtls unknown', base: mesh, mutate: (d) => (d.spec.certTtls.root = '1h'), path: 'spec.certTtls.root' },
];

describe('traffic policy, fault injection and retry budget', () => {
  test('a Service with a full trafficPolicy and a Route with faults parse; MeshConfig gets the retry budget default', () => {
    const svc = clone(service) as { spec: Record<string, unknown> };
    svc.spec['trafficPolicy'] = {
      loadBalancing: { algorithm: 'ring-hash', hash: { cookie: 'session' } },
      connectionPool: { maxConnections: 100, maxPendingRequests: 10, maxRequests: 200 },
      outlier: { consecutiveFailures: 3, baseEjectionTime: '10s', maxEjectionPercent: 50 },
      zoneFailover: false,
      subsets: [{ name: 'v1', labels: { version: 'v1' } }],
      rateLimit: { requestsPerSecond: 100, burst: 200 },
    };
    const r = clone(route) as { spec: { rules: Record<string, unknown>[] } };
    r.spec.rules[0]!['fault'] = { delay: { fixed: '50ms', percent: 10 }, abort: { status: 503, percent: 5 } };
    const [s, rt, m] = parseResources(JSON.stringify([svc, r, { apiVersion: 'amime.dev/v1', kind: 'MeshConfig', metadata: { name: 'mesh' }, spec: {} }]), 'json');
    assert.equal((s as { spec: { trafficPolicy?: { loadBalancing?: { hash?: { cookie?: string } } } } }).spec.trafficPolicy?.loadBalancing?.hash?.cookie, 'session');
    assert.equal((rt as { spec: { rules: { fault?: { abort?: { status: number } } }[] } }).spec.rules[0]!.fault?.abort?.status, 503);
    assert.deepEqual((m as { spec: { retryBudget: unknown } }).spec.retryBudget, MESH_CONFIG_DEFAULTS.retryBudget);
  });
});

describe('MeshConfig monitor settings', () => {
  const meshWith = (monitor: unknown) => JSON.stringify({ apiVersion: 'amime.dev/v1', kind: 'MeshConfig', metadata: { name: 'mesh' }, spec: monitor === undefined ? {} : { monitor } });
  test('absent stays absent; an empty block takes the defaults; levels and numbers are sensitivities', () => {
    const spec = (monitor: unknown) => (parseResources(meshWith(monitor), 'json')[0] as { spec: { monitor?: unknown } }).spec.monitor;
    assert.equal(spec(undefined), undefined);
    assert.deepEqual(spec({}), { ...MONITOR_DEFAULTS });
    assert.deepEqual(spec({ learningWindow: '1h', sensitivity: 'high', reportInterval: '5s' }), { learningWindow: '1h', sensitivity: 'high', reportInterval: '5s' });
    assert.deepEqual(spec({ sensitivity: 3.5, learningWindow: '0s' }), { learningWindow: '0s', sensitivity: 3.5, reportInterval: '10s' });
  });
});

describe('parseResources refuses each invalid field at its exact path', () => {
  for (const c of invalid) {
    test(`${(c.base as { kind: string }).kind}: ${c.name} → ${c.path}`, () => {
      const doc = clone(c.base);
      c.mutate(doc);
      const issues = refusedIssues(doc);
      assert.deepEqual(
        issues.map((i) => i.path),
        [c.path],
        `issues: ${JSON.stringify(issues)}`,
      );
      assert.equal(issues[0]!.document, 0);
      if (c.message) assert.match(issues[0]!.message, c.message);
      if (c.fix) assert.match(issues[0]!.fix ?? '', c.fix);
    });
  }
});

describe('parseResources input handling', () => {
  test('errors name the document index and the field, and collect across documents', () => {
    const bad = clone(route);
    bad.spec.rules[0]!.backends[1]!.weight = 101;
    const yaml = [service, bad, { ...mesh, extra: true }].map((d) => JSON.stringify(d)).join('\n---\n');
    assert.throws(
      () => parseResources(yaml, 'yaml'),
      (err: unknown) => {
        assert.ok(err instanceof ValidationError);
        assert.equal(err.code, 'AMIME_ERR_PROTOCOL_INVALID');
        assert.deepEqual(
          err.issues.map((i) => [i.document, i.path]),
          [
            [1, 'spec.rules[0].backends[1].weight'],
            [2, 'extra'],
          ],
        );
        assert.match(err.message, /^invalid resources: document 1: spec.rules\[0\].backends\[1\].weight must be an integer from 0 to 100, got 101 \(and 1 more problem\)$/);
        return true;
      },
    );
  });

  test('the same resource twice is refused', () => {
    assert.throws(() => parseResources(JSON.stringify([service, service]), 'json'), /document 1: metadata.name repeats \/resources\/Service\/shop\/payments from document 0/);
  });

  test('YAML aliases are refused (billion laughs)', () => {
    const bomb = [
      'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
      'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]',
      'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]',
      'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]',
      'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]',
      'f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]',
      'g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]',
    ].join('\n');
    assert.throws(() => parseResources(bomb, 'yaml'), (err: unknown) => err instanceof ValidationError && /alias/i.test(err.message) && err.issues[0]!.document === 0);
  });

  test('even a single harmless alias is refused', () => {
    const yaml = `apiVersion: amime.dev/v1\nkind: MeshConfig\nmetadata: &m {name: default}\nspec: {mtls: STRICT}\nx: *m\n`;
    assert.throws(() => parseResources(yaml, 'yaml'), /anchors and aliases/);
  });

  test('oversized input is refused before parsing', () => {
    assert.throws(() => parseResources('x'.repeat(2048), 'yaml', { maxBytes: 1024 }), /larger than 1024 bytes/);
    assert.throws(() => parseResources(`"${'é'.repeat(600)}"`, 'json', { maxBytes: 1024 }), /larger than 1024 bytes/);
  });

  test('too many documents are refused', () => {
    assert.throws(() => parseResources(Array(5).fill('a: 1').join('\n---\n'), 'yaml', { maxDocuments: 3 }), /5 documents, more than 3/);
    assert.throws(() => parseResources(JSON.stringify(Array(5).fill(service)), 'json', { maxDocuments: 3 }), /5 documents/);
  });

  test('malformed YAML and JSON are refused with the document named', () => {
    assert.throws(() => parseResources('kind: Service\n---\nkind: [unclosed\n', 'yaml'), /document 1: \(root\) is not valid YAML/);
    assert.throws(() => parseResources('{"kind":', 'json'), /is not valid JSON/);
    assert.throws(() => parseResources('a: 1\na: 2\n', 'yaml'), /not valid YAML/);
  });

  test('empty documents are skipped and keep the others\' indices', () => {
    // The first "---" opens document 0 (empty), the second opens document 1.
    const yaml = `---\n---\n${JSON.stringify({ ...service, bogus: 1 })}\n`;
    assert.throws(() => parseResources(yaml, 'yaml'), /document 1: bogus is not a known field/);
    assert.deepEqual(parseResources('', 'yaml'), []);
  });
});

describe('helpers', () => {
  test('regexes with groups but no nested repetition are accepted', () => {
    for (const regex of ['^/api/(v1|v2)/.*$', '^/(?:users|orders)/[0-9]+$', '(ab)+', '^curl/.*', '(a)?b+']) {
      const doc = clone(route);
      (doc.spec.rules[0] as { match: { path: unknown } }).match.path = { regex };
      assert.doesNotThrow(() => parseResources(JSON.stringify(doc), 'json'), regex);
    }
  });

  test('resourceKey', () => {
    assert.equal(resourceKey({ kind: 'Route', metadata: { name: 'web', namespace: 'shop' } }), '/resources/Route/shop/web');
    assert.equal(resourceKey({ kind: 'MeshConfig', metadata: { name: 'default' } }), '/resources/MeshConfig/default/default');
  });

  test('durationMs', () => {
    assert.equal(durationMs('250ms'), 250);
    assert.equal(durationMs('2s'), 2000);
    assert.equal(durationMs('5m'), 300_000);
    assert.equal(durationMs('1h'), 3_600_000);
    assert.ok(Number.isNaN(durationMs('1.5s')));
    assert.ok(Number.isNaN(durationMs('-1s')));
  });
});

describe('endpointName', () => {
  test('is stable, distinct per node/address/port, a DNS-1123 label within 63 characters', () => {
    const a = endpointName('web', 'vm1', '10.0.0.1', 8080);
    assert.equal(a, endpointName('web', 'vm1', '10.0.0.1', 8080));
    assert.notEqual(a, endpointName('web', 'vm2', '10.0.0.1', 8080));
    assert.notEqual(a, endpointName('web', 'vm1', '10.0.0.1', 8081));
    assert.match(a, /^web-[0-9a-f]{10}$/);
    const long = endpointName('a'.repeat(51) + '-' + 'b'.repeat(11), 'vm1', '::1', 1);
    assert.ok(long.length <= 63, long);
    assert.match(long, /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
    assert.doesNotMatch(long, /--/);
  });
});
