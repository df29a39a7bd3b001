// meshctl agent install, run in-process (cli.ts `run`) into temp paths: every
// bad flag is a 64 naming the flag, --dry-run prints every file and writes
// nothing, a real install writes the files with their modes and a unit whose
// ExecStart runs the agent bundle with the agent's node flags, the workloads
// file is validated by the agent's own schema (78, the field named), and the
// bundle is never trusted on first use (fetched only with a pinned root).
// The unit's command line run for real: test/meshctl/agent-install.spec.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
// eslint-disable-next-line @nx/enforce-module-boundaries
import { AGENT_NODE_FLAGS, parseAgentConfig } from '@amime/agent';
import { createIntermediate, createLeaf, createRoot, toPemChain, type TestCert } from '@amime/identity/testing';
import { run } from '../cli.js';
import { execStartArgs, parseFingerprint, parsePushUrl, systemdQuote } from './agent-install.js';

const TD = 'install.test';
/** The unit's User=: whoever runs the test (as root, install chowns to it, so it must exist). */
const ME = userInfo().username;

/** A CA's PKI: the root names the trust domain in a URI SAN, as `ca init` makes it. */
let pki: { root: TestCert; intermediate: TestCert; leaf(path: string): Promise<TestCert> };
// Made now, not in before(): the table of flag cases below names files under it.
const root = mkdtempSync(join(tmpdir(), 'amime-agent-install-'));
const fakeAgent = join(root, 'main.mjs');
let n = 0;

interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

async function meshctl(args: string[]): Promise<Out> {
  let stdout = '';
  let stderr = '';
  // --credentials at a directory that does not exist: no admin credential to fetch the bundle with.
  const code = await run(['--credentials', join(root, 'no-admin'), ...args], {
    env: {},
    cwd: root,
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
  });
  return { code, stdout, stderr };
}

/** Fresh target paths under the temp root. */
function paths(): { dir: string; prefix: string; data: string; opt: string; unit: string; flags: string[] } {
  const dir = join(root, `t${n++}`);
  const p = { dir, prefix: join(dir, 'etc'), data: join(dir, 'data'), opt: join(dir, 'opt'), unit: join(dir, 'systemd', 'amime-agent.service') };
  return { ...p, flags: ['--prefix', p.prefix, '--data-dir', p.data, '--install-dir', p.opt, '--unit-path', p.unit] };
}

const required = (): string[] => ['--node', 'vm-a', '--ca', 'https://127.0.0.1:8443', '--control-plane', 'wss://127.0.0.1:8444/v1/push', '--token', 'tok-123', '--advertise', '10.0.0.5', '--agent-bundle', fakeAgent, '--user', ME];

/** `required()` with flag `name` set to `value` (undefined drops it). */
function withFlag(name: string, value: string | undefined): string[] {
  const out = required();
  const i = out.indexOf(name);
  if (i >= 0) out.splice(i, 2);
  return value === undefined ? out : [...out, name, value];
}

before(async () => {
  const caRoot = await createRoot({ uris: [`spiffe://${TD}`] });
  const intermediate = await createIntermediate(caRoot);
  pki = { root: caRoot, intermediate, leaf: (path) => createLeaf(intermediate, `spiffe://${TD}${path}`) };
  writeFileSync(join(root, 'bundle.pem'), pki.root.pem);
  writeFileSync(fakeAgent, '// the agent bundle\n');
  writeFileSync(join(root, 'token'), 'tok-from-file\n');
  writeFileSync(join(root, 'a-file'), 'x');
});

after(() => rmSync(root, { recursive: true, force: true }));

describe('meshctl agent install', () => {
  describe('flag validation: exit 64 naming the flag', () => {
    const cases: [string, string[], RegExp][] = [
      ['missing --node', withFlag('--node', undefined), /--node is required/],
      ['--node not DNS-1123', withFlag('--node', 'VM_A'), /--node must be a DNS-1123 label/],
      ['missing --ca', withFlag('--ca', undefined), /--ca is required/],
      ['--ca not https', withFlag('--ca', 'http://ca:8443'), /--ca must be https:\/\/HOST:PORT/],
      ['--ca with a path', withFlag('--ca', 'https://ca:8443/v1'), /--ca must be https:\/\/HOST:PORT/],
      ['missing --control-plane', withFlag('--control-plane', undefined), /--control-plane is required/],
      ['--control-plane other path', withFlag('--control-plane', 'wss://cp:8444/v2/x'), /--control-plane must be wss:/],
      ['--control-plane http', withFlag('--control-plane', 'http://cp:8444'), /--control-plane must be wss:/],
      ['no token', withFlag('--token', undefined), /--token \(or --token-file\) is required/],
      ['--token and --token-file', [...required(), '--token-file', 'x'], /give --token or --token-file, not both/],
      ['--token-file unreadable', [...withFlag('--token', undefined), '--token-file', '/nonexistent/token'], /--token-file: cannot read/],
      ['--token with a space', withFlag('--token', 'a b'), /--token: the join token must be/],
      ['missing --advertise', withFlag('--advertise', undefined), /--advertise is required/],
      ['--advertise not an IP', withFlag('--advertise', 'vm-a.local'), /--advertise must be an IP address/],
      ['--advertise unspecified', withFlag('--advertise', '0.0.0.0'), /--advertise must be an address peers can reach/],
      ['--inbound-port too big', [...required(), '--inbound-port', '70000'], /--inbound-port must be a port/],
      ['--admin-port not a number', [...required(), '--admin-port', 'x'], /--admin-port must be a port/],
      ['--admin-address not an IP', [...required(), '--admin-address', 'localhost'], /--admin-address must be an IP address/],
      ['--prefix relative', [...required(), '--prefix', 'etc/amime'], /--prefix must be an absolute path/],
      ['--data-dir relative', [...required(), '--data-dir', 'data'], /--data-dir must be an absolute path/],
      ['--install-dir relative', [...required(), '--install-dir', 'opt'], /--install-dir must be an absolute path/],
      ['--unit-path relative', [...required(), '--unit-path', 'a.service'], /--unit-path must be an absolute path/],
      ['--agent-bundle missing', withFlag('--agent-bundle', '/nonexistent/main.mjs'), /--agent-bundle: \/nonexistent\/main.mjs does not exist[\s\S]*npx nx run agent:build/],
      ['--node-binary missing', [...required(), '--node-binary', '/nonexistent/node'], /--node-binary: \/nonexistent\/node does not exist/],
      ['--user not a user name', [...required(), '--user', 'Am Ime'], /--user must be a system user name/],
      ['--ca-fingerprint not hex', [...required(), '--ca-fingerprint', 'zz'], /--ca-fingerprint must be a SHA-256 fingerprint/],
      ['--bundle unreadable', [...required(), '--bundle', '/nonexistent/bundle.pem'], /--bundle: cannot read/],
      ['-o unknown', [...required(), '--bundle', 'bundle.pem', '-o', 'xml'], /-o\/--output must be one of/],
      ['an unknown flag', [...required(), '--bogus', 'x'], /unknown option --bogus/],
    ];
    for (const [name, args, message] of cases) {
      test(name, async () => {
        const p = paths();
        const r = await meshctl(['agent', 'install', ...p.flags, ...args, '--dry-run']);
        assert.equal(r.code, 64, `${r.code}: ${r.stderr}`);
        assert.match(r.stderr, message);
        assert.equal(existsSync(p.dir), false);
      });
    }
  });

  test('the pure helpers: push URL, fingerprint, systemd quoting', () => {
    assert.equal(parsePushUrl('https://cp:8444'), 'wss://cp:8444/v1/push');
    assert.equal(parsePushUrl('https://cp:8444/'), 'wss://cp:8444/v1/push');
    assert.equal(parsePushUrl('wss://cp:8444/v1/push'), 'wss://cp:8444/v1/push');
    assert.equal(parsePushUrl('wss://[fd00::1]:8444'), 'wss://[fd00::1]:8444/v1/push');
    const hex = 'ab'.repeat(32);
    assert.equal(parseFingerprint(hex.toUpperCase().match(/../g)!.join(':')), hex);
    assert.equal(parseFingerprint(`sha256:${hex}`), hex);
    assert.equal(systemdQuote('/opt/amime/agent.mjs'), '/opt/amime/agent.mjs');
    assert.equal(systemdQuote('/opt/my amime/100%$'), '"/opt/my amime/100%%$$"');
  });

  test('--dry-run prints every file (the token redacted) and writes nothing', async () => {
    const p = paths();
    const r = await meshctl(['agent', 'install', ...required(), '--bundle', 'bundle.pem', ...p.flags, '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(p.dir), false, 'a dry run wrote something');
    for (const f of [join(p.prefix, 'agent.yaml'), join(p.prefix, 'bundle.pem'), join(p.prefix, 'token'), join(p.opt, 'agent.mjs'), p.unit]) assert.match(r.stdout, new RegExp(`==> ${f} \\(mode 0[0-7]{3}`));
    assert.ok(r.stdout.includes(pki.root.pem.trim()), 'the bundle is printed');
    assert.match(r.stdout, /node: vm-a\n/);
    assert.match(r.stdout, /url: wss:\/\/127.0.0.1:8444\/v1\/push/);
    assert.match(r.stdout, /ExecStart=/);
    assert.doesNotMatch(r.stdout, /tok-123/);
    const j = await meshctl(['agent', 'install', ...required(), '--bundle', 'bundle.pem', ...p.flags, '--dry-run', '-o', 'json']);
    assert.equal(j.code, 0, j.stderr);
    const doc = JSON.parse(j.stdout) as { dryRun: boolean; files: { path: string; mode: string; content: string }[]; execStart: string[] };
    assert.equal(doc.dryRun, true);
    assert.deepEqual(
      doc.files.map((f) => [f.path, f.mode]),
      [
        [join(p.prefix, 'agent.yaml'), '0644'],
        [join(p.prefix, 'bundle.pem'), '0644'],
        [join(p.prefix, 'token'), '0600'],
        [join(p.opt, 'agent.mjs'), '0644'],
        [p.unit, '0644'],
      ],
    );
    assert.equal(existsSync(p.dir), false);
  });

  test('a real install writes the files atomically with their modes and a unit that runs the bundle', async () => {
    const p = paths();
    const r = await meshctl(['agent', 'install', ...withFlag('--token', undefined), '--token-file', 'token', '--bundle', 'bundle.pem', ...p.flags]);
    assert.equal(r.code, 0, r.stderr);
    const mode = (f: string) => (statSync(f).mode & 0o777).toString(8);
    assert.equal(mode(p.prefix), '700');
    assert.equal(mode(p.data), '700');
    assert.equal(mode(p.opt), '755');
    assert.equal(mode(join(p.prefix, 'token')), '600');
    for (const f of [join(p.prefix, 'agent.yaml'), join(p.prefix, 'bundle.pem'), join(p.opt, 'agent.mjs'), p.unit]) assert.equal(mode(f), '644', f);
    assert.equal(readFileSync(join(p.prefix, 'token'), 'utf8'), 'tok-from-file\n');
    assert.equal(readFileSync(join(p.prefix, 'bundle.pem'), 'utf8'), pki.root.pem);
    assert.equal(readFileSync(join(p.opt, 'agent.mjs'), 'utf8'), readFileSync(fakeAgent, 'utf8'));
    // agent.yaml is what the agent reads
    const cfg = await parseAgentConfig(readFileSync(join(p.prefix, 'agent.yaml'), 'utf8'), p.prefix);
    assert.equal(cfg.node, 'vm-a');
    assert.equal(cfg.dataDir, p.data);
    assert.equal(cfg.ca.bundle, join(p.prefix, 'bundle.pem'));
    assert.equal(cfg.inbound.advertise, '10.0.0.5');
    assert.equal(cfg.inbound.port, 15443);
    assert.deepEqual(cfg.admin, { address: '127.0.0.1', port: 15000 });
    // the unit
    const unit = readFileSync(p.unit, 'utf8');
    const exec = /^ExecStart=(.*)$/m.exec(unit)![1]!;
    const args = execStartArgs({ nodeBinary: process.execPath, installDir: p.opt, prefix: p.prefix }, AGENT_NODE_FLAGS);
    assert.equal(exec, args.join(' '));
    assert.ok(AGENT_NODE_FLAGS.every((f) => exec.includes(` ${f} `)), 'the agent node flags');
    assert.match(exec, / run --config \S+\/etc\/agent.yaml --token-file \S+\/etc\/token$/);
    for (const line of [`User=${ME}`, 'Restart=always', 'RestartSec=2', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', `ReadWritePaths=${p.data}`, 'CapabilityBoundingSet=', 'LimitNOFILE=65536', 'WantedBy=multi-user.target']) {
      assert.ok(unit.split('\n').includes(line), `unit lacks ${line}`);
    }
    // progress and the next steps
    assert.match(r.stderr, new RegExp(`writing ${p.unit} \\(systemd unit, 0644\\) \\.\\.\\. ok`));
    assert.match(r.stdout, /systemctl daemon-reload && systemctl enable --now amime-agent.service/);
    assert.match(r.stdout, /curl -fsS http:\/\/127.0.0.1:15000\/ready/);
    assert.match(r.stdout, /journalctl -u amime-agent/);
    // no temp files left behind
    assert.deepEqual(readdirSync(p.prefix).sort(), ['agent.yaml', 'bundle.pem', 'token']);
    // run again (e.g. a new token after the SVID expired): replaces the files
    const again = await meshctl(['agent', 'install', ...withFlag('--token', 'tok-2'), '--bundle', 'bundle.pem', ...p.flags, '-o', 'json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(readFileSync(join(p.prefix, 'token'), 'utf8'), 'tok-2\n');
    assert.deepEqual((JSON.parse(again.stdout) as { execStart: string[] }).execStart, args);
  });

  test('an inbound port below 1024 gets CAP_NET_BIND_SERVICE, and only then', async () => {
    const p = paths();
    const r = await meshctl(['agent', 'install', ...required(), '--bundle', 'bundle.pem', ...p.flags, '--inbound-port', '443', '--dry-run', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const unit = (JSON.parse(r.stdout) as { files: { path: string; content: string }[] }).files.find((f) => f.path === p.unit)!.content;
    assert.match(unit, /^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$/m);
    assert.match(unit, /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m);
  });

  test('as root, an unknown --user: 64 saying how to create it, nothing written', { skip: process.getuid?.() !== 0 && 'not root' }, async () => {
    const p = paths();
    const r = await meshctl(['agent', 'install', ...p.flags, ...required(), '--bundle', 'bundle.pem', '--user', 'no-such-user-x']);
    assert.equal(r.code, 64, r.stderr);
    assert.match(r.stderr, /--user: there is no user "no-such-user-x"[\s\S]*useradd --system/);
    assert.equal(existsSync(p.dir), false);
  });

  test('a path that cannot be written: 73 naming it', async () => {
    const p = paths();
    const prefix = join(root, 'a-file', 'etc');
    const r = await meshctl(['agent', 'install', ...required(), '--bundle', 'bundle.pem', ...p.flags, '--prefix', prefix]);
    assert.equal(r.code, 73, r.stderr);
    assert.match(r.stderr, new RegExp(`cannot write ${prefix}`));
  });

  describe('the workloads file is validated by the agent schema', () => {
    const write = (name: string, text: string) => {
      writeFileSync(join(root, name), text);
      return name;
    };
    test('a valid YAML list lands in agent.yaml', async () => {
      const file = write('ok.yaml', `- service: web\n  namespace: shop\n  identity: spiffe://${TD}/ns/shop/sa/web\n  port: 8080\n  protocol: http\n  upstreams: [{ service: catalog, namespace: shop, port: 18080 }]\n`);
      const p = paths();
      const r = await meshctl(['agent', 'install', ...required(), '--bundle', 'bundle.pem', ...p.flags, '--workloads', file]);
      assert.equal(r.code, 0, r.stderr);
      const cfg = await parseAgentConfig(readFileSync(join(p.prefix, 'agent.yaml'), 'utf8'), p.prefix);
      assert.equal(cfg.workloads[0]!.identity, `spiffe://${TD}/ns/shop/sa/web`);
      assert.equal(cfg.workloads[0]!.upstreams[0]!.port, 18080);
    });
    const bad: [string, string, RegExp][] = [
      ['a bad port', `[{ "service": "web", "identity": "spiffe://${TD}/ns/shop/sa/web", "port": 70000, "protocol": "http" }]`, /workloads\[0\]\.port/],
      ['a missing identity', '- { service: web, port: 8080, protocol: http }\n', /workloads\[0\]\.identity/],
      ['an unknown field', `- { service: web, identity: "spiffe://${TD}/ns/shop/sa/web", port: 8080, protocol: http, colour: red }\n`, /workloads\[0\].*colour/],
      ['not a list', 'service: web\n', /must hold a list of workloads/],
      ['not YAML', '- [unclosed\n', /not valid YAML or JSON/],
    ];
    for (const [name, text, message] of bad) {
      test(`${name}: 78 naming the field, nothing written`, async () => {
        const p = paths();
        const r = await meshctl(['agent', 'install', ...required(), '--bundle', 'bundle.pem', ...p.flags, '--workloads', write(`bad-${n}.yaml`, text)]);
        assert.equal(r.code, 78, r.stderr);
        assert.match(r.stderr, message);
        assert.equal(existsSync(p.dir), false);
      });
    }
  });

  describe('the trust bundle is never trusted on first use', () => {
    let server: https.Server;
    let url: string;
    let answer: { status: number; body: string } = { status: 200, body: '' };
    const fingerprint = () => new X509Certificate(pki.root.der).fingerprint256;

    before(async () => {
      const leaf = await pki.leaf('/control-plane/ca');
      answer = { status: 200, body: pki.root.pem };
      // A stand-in CA serving its bundle to anyone (the real CA serves it to peers only: see the process test).
      server = https.createServer({ cert: toPemChain([leaf, pki.intermediate]), key: leaf.key.privateKeyPem, minVersion: 'TLSv1.3' }, (req, res) => {
        assert.equal(req.url, '/v1/bundle?format=pem');
        res.writeHead(answer.status, { 'content-type': 'application/x-pem-file' });
        res.end(answer.body);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(() => {
      server.closeAllConnections();
      server.close();
    });

    test('no --bundle, no --ca-fingerprint, no admin credential: 64 saying how to get either', async () => {
      const p = paths();
      const r = await meshctl(['agent', 'install', ...required(), ...p.flags]);
      assert.equal(r.code, 64, r.stderr);
      assert.match(r.stderr, /--bundle is required \(or --ca-fingerprint/);
      assert.match(r.stderr, /meshctl bundle show --format pem > bundle.pem/);
      assert.equal(existsSync(p.dir), false);
    });

    test('fetched with the pinned root: installs the CA\'s bundle', async () => {
      const p = paths();
      const r = await meshctl(['agent', 'install', ...withFlag('--ca', url), '--ca-fingerprint', fingerprint(), ...p.flags]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(readFileSync(join(p.prefix, 'bundle.pem'), 'utf8'), pki.root.pem);
      assert.match(r.stdout, /root pinned by --ca-fingerprint/);
    });

    test('a pin no root matches: 78, nothing written', async () => {
      const p = paths();
      const other = createHash('sha256').update('another root').digest('hex');
      const r = await meshctl(['agent', 'install', ...withFlag('--ca', url), '--ca-fingerprint', other, ...p.flags]);
      assert.equal(r.code, 78, r.stderr);
      assert.match(r.stderr, /no root matches --ca-fingerprint/);
      assert.equal(existsSync(p.dir), false);
    });

    test('a --bundle file the pin does not match: 78', async () => {
      const r = await meshctl(['agent', 'install', ...required(), '--bundle', 'bundle.pem', '--ca-fingerprint', 'ab'.repeat(32), ...paths().flags, '--dry-run']);
      assert.equal(r.code, 78, r.stderr);
    });

    test('a CA that serves the bundle to peers only: 1, saying how to get the bundle', async () => {
      answer = { status: 401, body: '{"error":{}}' };
      try {
        const r = await meshctl(['agent', 'install', ...withFlag('--ca', url), '--ca-fingerprint', fingerprint(), ...paths().flags]);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /serves its bundle only to mesh members/);
        assert.match(r.stderr, /--bundle bundle.pem/);
      } finally {
        answer = { status: 200, body: pki.root.pem };
      }
    });

    test('a --bundle that is no SPIFFE bundle: 78', async () => {
      writeFileSync(join(root, 'junk.pem'), 'not a certificate\n');
      const r = await meshctl(['agent', 'install', ...required(), '--bundle', 'junk.pem', ...paths().flags, '--dry-run']);
      assert.equal(r.code, 78, r.stderr);
      assert.match(r.stderr, /junk.pem is not a trust bundle/);
    });
  });
});

