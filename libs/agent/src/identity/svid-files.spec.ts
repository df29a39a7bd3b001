// The agent SVID on disk: modes, crash-safe replacement, and the stored
// pairs that must not be used.
import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestPki, toPemChain, type TestCert, type TestPki } from '@amime/identity/testing';
import { ensurePrivateDir, identityPaths, readStoredAgent, writeStoredAgent, type IdentityPaths } from './svid-files.js';
import { writeFileAtomicSync } from '../atomic-file.js';

const TD = 'files.test';
const AGENT = `spiffe://${TD}/agent/vm-a`;

let base: string;
let paths: IdentityPaths;
let pki: TestPki;
let leaf: TestCert;

beforeEach(async () => {
  base = mkdtempSync(join(tmpdir(), 'amime-svid-files-'));
  paths = identityPaths(join(base, 'agent'));
  pki ??= await createTestPki(TD);
  leaf ??= await pki.leaf('/agent/vm-a');
});

afterEach(() => rmSync(base, { recursive: true, force: true }));

const mode = (p: string) => statSync(p).mode & 0o777;

describe('writing', () => {
  test('the directory is 0700, the key 0600, the certificate 0644, no temporary file remains', () => {
    writeStoredAgent(paths, toPemChain([leaf, pki.intermediate]), leaf.key.privateKeyPem);
    assert.equal(mode(paths.dir), 0o700);
    assert.equal(mode(paths.key), 0o600);
    assert.equal(mode(paths.cert), 0o644);
    assert.deepEqual(readdirSync(paths.dir).sort(), ['agent.crt', 'agent.key']);
  });

  test('an existing directory open to others is narrowed to 0700', () => {
    mkdirSync(paths.dir, { recursive: true, mode: 0o755 });
    chmodSync(paths.dir, 0o755);
    ensurePrivateDir(paths.dir);
    assert.equal(mode(paths.dir), 0o700);
  });

  test('a replaced file keeps the requested mode whatever the old one was', () => {
    ensurePrivateDir(paths.dir);
    writeFileSync(paths.key, 'old', { mode: 0o644 });
    writeFileAtomicSync(paths.key, 'new', 0o600);
    assert.equal(readFileSync(paths.key, 'utf8'), 'new');
    assert.equal(mode(paths.key), 0o600);
  });

  test('a failed write leaves the old content and no temporary file', () => {
    ensurePrivateDir(paths.dir);
    writeFileSync(paths.cert, 'old');
    mkdirSync(join(paths.dir, 'blocker'));
    assert.throws(() => writeFileAtomicSync(join(paths.dir, 'blocker'), 'x', 0o600));
    assert.equal(readFileSync(paths.cert, 'utf8'), 'old');
    assert.deepEqual(readdirSync(paths.dir).sort(), ['agent.crt', 'blocker']);
  });
});

describe('reading', () => {
  test('nothing stored is undefined', () => {
    assert.equal(readStoredAgent(paths, AGENT), undefined);
  });

  test('a stored pair comes back with its leaf', () => {
    writeStoredAgent(paths, toPemChain([leaf, pki.intermediate]), leaf.key.privateKeyPem);
    const got = readStoredAgent(paths, AGENT)!;
    assert.equal(got.leaf.serialHex, leaf.serialHex);
    assert.equal(got.keyModeFixed, false);
  });

  test('a key file open to others is narrowed to 0600 and reported', () => {
    writeStoredAgent(paths, leaf.pem, leaf.key.privateKeyPem);
    chmodSync(paths.key, 0o644);
    assert.equal(readStoredAgent(paths, AGENT)!.keyModeFixed, true);
    assert.equal(mode(paths.key), 0o600);
  });

  const broken: [string, () => Promise<void>, RegExp][] = [
    ['only the key (a crash before the first certificate)', async () => {
      ensurePrivateDir(paths.dir);
      writeFileAtomicSync(paths.key, leaf.key.privateKeyPem, 0o600);
    }, /incomplete: agent\.crt is missing/],
    ['the key of another certificate (a crash between the two renames)', async () => {
      const other = await pki.leaf('/agent/vm-a');
      writeStoredAgent(paths, leaf.pem, other.key.privateKeyPem);
    }, /agent\.key does not hold the key of agent\.crt/],
    ['another identity', async () => {
      const other = await pki.leaf('/agent/vm-b');
      writeStoredAgent(paths, other.pem, other.key.privateKeyPem);
    }, /is the SVID of spiffe:\/\/files\.test\/agent\/vm-b, not spiffe:\/\/files\.test\/agent\/vm-a/],
    ['a certificate file that is not PEM', async () => {
      writeStoredAgent(paths, 'garbage', leaf.key.privateKeyPem);
    }, /agent\.crt: line 1/],
    ['a key file that is not PKCS#8', async () => {
      writeStoredAgent(paths, leaf.pem, 'garbage');
    }, /agent\.key: private key: /],
  ];
  for (const [name, setup, message] of broken) {
    test(`refuses ${name}`, async () => {
      await setup();
      assert.throws(() => readStoredAgent(paths, AGENT), message);
    });
  }
});
