// hasUsableSvid decides whether a demo node rejoins with its stored SVID or
// gets a join token: an expired SVID must get a token (the agent then joins
// with it), an SVID from a CA that no longer exists is wiped.
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestPki, toPemChain, type TestPki } from '@amime/identity/testing';
import { hasUsableSvid } from './mesh-admin.js';
import { dataDir } from './topology.js';

describe('hasUsableSvid', () => {
  let pki: TestPki;
  let state: string;
  before(async () => {
    pki = await createTestPki('amime.local');
    state = mkdtempSync(join(tmpdir(), 'amime-demo-svid-'));
  });
  after(() => rmSync(state, { recursive: true, force: true }));

  async function store(notAfter: Date, roots = pki.root.pem): Promise<string> {
    const dir = join(dataDir(state, 'vm1'), 'identity');
    mkdirSync(dir, { recursive: true });
    const leaf = await pki.leaf('/agent/vm1', { notBefore: new Date(Date.now() - 3600_000), notAfter });
    writeFileSync(join(dir, 'agent.crt'), toPemChain([leaf, pki.intermediate]));
    writeFileSync(join(dir, 'bundle.crt'), roots);
    return dir;
  }

  test('a valid SVID from this CA is used', async () => {
    await store(new Date(Date.now() + 3600_000));
    assert.equal(hasUsableSvid(state, 'vm1', pki.root.pem), true);
  });

  test('an expired SVID, or one expiring within a minute, is not: the node gets a token, the data dir stays', async () => {
    const dir = await store(new Date(Date.now() - 1000));
    assert.equal(hasUsableSvid(state, 'vm1', pki.root.pem), false);
    assert.ok(existsSync(dir));
    await store(new Date(Date.now() + 30_000));
    assert.equal(hasUsableSvid(state, 'vm1', pki.root.pem), false);
  });

  test('an SVID from another CA is wiped', async () => {
    const other = await createTestPki('amime.local');
    const dir = await store(new Date(Date.now() + 3600_000), other.root.pem);
    assert.equal(hasUsableSvid(state, 'vm1', pki.root.pem), false);
    assert.equal(existsSync(dir), false);
  });
});
