// Key slots (as SPIRE's A/B slots): each holds a root and the online
// intermediate it signed. Rotation adds a slot, activates it, then retires
// the old one. Keys are written to fresh 0600 files before state.json names
// them (see ca-state.ts).
import { X509Certificate, createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPair, parseCertificate, toPem, type KeyPair } from '@amime/identity';
import { CertificateAuthority, createIntermediateCa, createRootCa } from '@amime/signing';
import { writeFileAtomicSync } from '@amime/store';
import type { KeyAlgorithmName, SlotRecord, Ttls } from './ca-state.js';
import { CaError } from './errors.js';

export interface Signer {
  slotId: string;
  authority: CertificateAuthority;
  rootCert: X509Certificate;
  intermediateCert: X509Certificate;
}

const certCache = new Map<string, X509Certificate>();
export function certFromPem(pem: string): X509Certificate {
  let c = certCache.get(pem);
  if (!c) {
    c = new X509Certificate(pem);
    certCache.set(pem, c);
  }
  return c;
}

export function writeKeyFile(dir: string, key: KeyObject): string {
  const rel = `slots/${randomBytes(8).toString('hex')}.key`;
  writeFileAtomicSync(join(dir, rel), key.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  return rel;
}

function readKey(dir: string, rel: string): KeyObject {
  return createPrivateKey(readFileSync(join(dir, rel)));
}

interface SlotOptions {
  trustDomain: string;
  keyAlgorithm: KeyAlgorithmName;
  ttl: Ttls;
  now: number;
  plugIn?: { rootCertPem: string; rootKeyPem?: string; intermediateCertPem?: string; intermediateKeyPem?: string };
}

function issuerOf(certPem: string, privateKey: KeyObject) {
  const certDer = certFromPem(certPem).raw;
  return { certDer, cert: parseCertificate(certDer), privateKey };
}

function newIntermediate(o: SlotOptions, rootCertPem: string, rootKey: KeyObject): { pem: string; key: KeyPair } {
  const key = generateKeyPair(o.keyAlgorithm);
  const der = createIntermediateCa({
    trustDomain: o.trustDomain,
    keyPair: key,
    parent: issuerOf(rootCertPem, rootKey),
    ttlSeconds: o.ttl.intermediateSeconds,
    pathLen: 0,
    now: new Date(o.now),
  });
  return { pem: toPem('CERTIFICATE', der), key };
}

export function createSlot(dir: string, o: SlotOptions): SlotRecord {
  const id = `${new Date(o.now).toISOString().slice(0, 10)}-${randomBytes(4).toString('hex')}`;
  if (o.plugIn) return plugInSlot(dir, id, o);
  const rootKey = generateKeyPair(o.keyAlgorithm);
  const rootDer = createRootCa({
    trustDomain: o.trustDomain,
    keyPair: rootKey,
    ttlSeconds: o.ttl.rootSeconds,
    now: new Date(o.now),
    commonName: `amime root ${id}`,
  });
  const rootCertPem = toPem('CERTIFICATE', rootDer);
  const inter = newIntermediate(o, rootCertPem, rootKey.privateKey);
  return {
    id,
    createdAt: new Date(o.now).toISOString(),
    rootCertPem,
    rootKeyFile: writeKeyFile(dir, rootKey.privateKey),
    intermediateCertPem: inter.pem,
    intermediateKeyFile: writeKeyFile(dir, inter.key.privateKey),
  };
}

/** The plug-in CA: check the operator's material fits together before using it. */
function plugInSlot(dir: string, id: string, o: SlotOptions): SlotRecord {
  const p = o.plugIn!;
  let root: X509Certificate;
  try {
    root = new X509Certificate(p.rootCertPem);
  } catch (err) {
    throw new CaError('AMIME_ERR_CA_BAD_REQUEST', `root certificate: ${(err as Error).message}`);
  }
  if (!root.ca) throw new CaError('AMIME_ERR_CA_BAD_REQUEST', 'root certificate: basicConstraints CA must be true');
  let rootKey: KeyObject | undefined;
  if (p.rootKeyPem) {
    rootKey = createPrivateKey(p.rootKeyPem);
    if (!root.checkPrivateKey(rootKey)) throw new CaError('AMIME_ERR_CA_BAD_REQUEST', 'root key does not match the root certificate');
  }
  let interPem: string;
  let interKey: KeyObject;
  if (p.intermediateCertPem) {
    if (!p.intermediateKeyPem) throw new CaError('AMIME_ERR_CA_BAD_REQUEST', 'intermediate key: required with an intermediate certificate');
    const inter = new X509Certificate(p.intermediateCertPem);
    interKey = createPrivateKey(p.intermediateKeyPem);
    if (!inter.ca) throw new CaError('AMIME_ERR_CA_BAD_REQUEST', 'intermediate certificate: basicConstraints CA must be true');
    if (!inter.checkPrivateKey(interKey)) throw new CaError('AMIME_ERR_CA_BAD_REQUEST', 'intermediate key does not match the intermediate certificate');
    if (!inter.checkIssued(root) || !inter.verify(root.publicKey)) {
      throw new CaError('AMIME_ERR_CA_BAD_REQUEST', 'intermediate certificate is not signed by the root certificate');
    }
    interPem = inter.toString();
  } else {
    if (!rootKey) throw new CaError('AMIME_ERR_CA_BAD_REQUEST', 'root key: required when no intermediate is supplied');
    const made = newIntermediate(o, root.toString(), rootKey);
    interPem = made.pem;
    interKey = made.key.privateKey;
  }
  return {
    id,
    createdAt: new Date(o.now).toISOString(),
    rootCertPem: root.toString(),
    ...(rootKey ? { rootKeyFile: writeKeyFile(dir, rootKey) } : {}),
    intermediateCertPem: interPem,
    intermediateKeyFile: writeKeyFile(dir, interKey),
  };
}

export function renewIntermediate(dir: string, slot: SlotRecord, o: SlotOptions): SlotRecord {
  const inter = newIntermediate(o, slot.rootCertPem, readKey(dir, slot.rootKeyFile!));
  return { ...slot, intermediateCertPem: inter.pem, intermediateKeyFile: writeKeyFile(dir, inter.key.privateKey) };
}

export function loadSigner(dir: string, slot: SlotRecord, trustDomain: string, clock: () => number): Signer {
  const rootCert = certFromPem(slot.rootCertPem);
  const intermediateCert = certFromPem(slot.intermediateCertPem);
  const authority = new CertificateAuthority({
    trustDomain,
    signer: { certDer: intermediateCert.raw, privateKey: readKey(dir, slot.intermediateKeyFile), chainDer: [intermediateCert.raw] },
    clock: () => new Date(clock()),
  });
  return { slotId: slot.id, authority, rootCert, intermediateCert };
}
