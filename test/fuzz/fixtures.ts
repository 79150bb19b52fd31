/** Valid inputs for the fuzzers: the test-vector vendor key, two fake hosts, their requests, licences and reports. */
import { readFileSync } from 'node:fs';
import { access, constants, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { StateDir } from '../../src/state/home.js';
import { createHash, randomFillSync } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import nacl from 'tweetnacl';
import { fileURLToPath } from 'node:url';
import { decodeSecretKey, publicKeyFileText, vendorPublicKey, type VendorKey } from '../../src/keys/vendor.js';
import { createActivationRequest } from '../../src/host/licences.js';
import { issueLicense, type IssueOptions } from '../../src/license/issue.js';
import { signLicense, signRequest } from '../../src/license/sign.js';
import { serializeLicense, type ActivationRequest, type LicensePayload } from '../../src/format/license.js';
import { canonicalJson } from '../../src/format/canonical.js';
import { createPrivateKey, sign as nodeSign, type KeyObject } from 'node:crypto';
import { fakeHost, type FakeHost } from '../license/hosts.js';
import type { HostIdentity } from '../../src/state/home.js';
import { serialize, type Ast } from './lib.js';

export const VECTORS = fileURLToPath(new URL('../../fixtures/vectors/', import.meta.url));
export const NOW = new Date('2026-11-15T00:00:00Z');

/** The published test-vector vendor key (fixtures/vectors/bundles/test-vendor.key), unencrypted. */
export async function vectorKey(): Promise<VendorKey> {
  return decodeSecretKey(readFileSync(`${VECTORS}bundles/test-vendor.key`, 'utf8'), () => '');
}

export interface Host {
  fake: FakeHost;
  id: HostIdentity;
  request: ActivationRequest;
  requestText: string;
}

const fastDirs: string[] = [];
afterAll(async () => {
  // rm -rf where fs.rm fails: unpack tests leave trees deeper than PATH_MAX
  for (const d of fastDirs) await rm(d, { recursive: true, force: true }).catch(() => execFileSync('rm', ['-rf', '--', d]));
});

/** A temporary directory, in /dev/shm when it is writable (the fuzzers write many small files). */
export async function fastTmp(prefix = 'mlic-fuzz-'): Promise<string> {
  let base = tmpdir();
  try {
    await access('/dev/shm', constants.W_OK);
    base = '/dev/shm';
  } catch {
    // not Linux, or no tmpfs: the OS temp dir
  }
  const d = await mkdtemp(join(base, prefix));
  fastDirs.push(d);
  return d;
}

/** Deterministic bytes for fixtures (so that every run mutates the same inputs). */
export function det(label: string, n = 32): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0, off = 0; off < n; i++, off += 32) createHash('sha256').update(`${label}#${i}`).digest().copy(out, off, 0, Math.min(32, n - off));
  return out;
}

/** Runs `fn` with tweetnacl's randomness made deterministic (sealed licence keys), then restores it. */
export async function deterministicNacl<T>(label: string, fn: () => Promise<T> | T): Promise<T> {
  let counter = 0;
  nacl.setPRNG((x, n) => det(`${label}/nacl/${counter++}`, n).copy(Buffer.from(x.buffer, x.byteOffset, x.length)));
  try {
    return await fn();
  } finally {
    nacl.setPRNG((x, n) => randomFillSync(x, 0, n));
  }
}

/** A fake host with a fixed host key and salt, trusting `vendor`, and its activation request (fixed id). */
export async function host(name: string, vendor: VendorKey, o: { region?: string; customer?: string } = {}): Promise<Host> {
  const fake = await fakeHost(name, { gpus: 2 });
  // Memory-backed state where there is one: thousands of decisions are journalled (fsync).
  fake.stateDir = join(await fastTmp(`mlic-fuzz-${name}-`), 'state');
  fake.state = new StateDir(fake.stateDir);
  await fake.state.ensure();
  const hostFile = { v: 1, boxSecret: det(`${name}/box`).toString('base64'), signSeed: det(`${name}/sign`).toString('base64'), salt: det(`${name}/salt`).toString('hex'), createdAt: '2026-11-01T00:00:00.000Z', ...(o.region ? { region: o.region } : {}) };
  await writeFile(fake.state.path('host.json'), JSON.stringify(hostFile, null, 2) + '\n', { mode: 0o600 });
  await fake.state.trustAdd(publicKeyFileText(vendor));
  const made = (await createActivationRequest({ stateDir: fake.stateDir, hostProbe: fake.probe(), now: new Date('2026-11-01T00:00:00Z'), ...o })).request;
  const id = (await fake.state.loadHost())!;
  const request = signRequest({ ...made.payload, requestId: det(`${name}/request`, 16).toString('hex') }, id.signSeed);
  return { fake, id, request, requestText: JSON.stringify(request, null, 2) + '\n' };
}

/** A fresh host state (licences, clock record, audit log, usage removed), as the flow tests do. */
export async function resetHost(h: Host): Promise<void> {
  for (const p of ['licenses', 'clock.json', 'audit', 'usage']) await rm(h.fake.state.path(p), { recursive: true, force: true });
}

/** A licence from `vendor` (fixed licence id and, with deterministicNacl, fixed seals). */
export function licence(vendor: VendorKey, o: Partial<IssueOptions> = {}, label = 'licence'): { text: string; payload: LicensePayload } {
  const { payload } = issueLicense({
    key: vendor,
    model: 'vector-model',
    versions: { policy: 'range', range: '^2' },
    now: new Date('2026-10-01T00:00:00Z'),
    notBefore: new Date('2026-10-01T00:00:00Z'),
    ...(o.expires ? {} : { perpetual: true }),
    ...o,
  });
  payload.licenseId = det(`${label}/id`, 16).toString('hex');
  return { text: serializeLicense(signLicense(payload, vendor.seed, vendor.keyId)), payload };
}

/**
 * The canonical bytes of a (possibly hostile) JSON value for signing: canonicalJson of what a
 * reader will parse when it can be computed, else the AST's own canonical spelling.
 */
export function canonicalOf(ast: Ast): string {
  const text = serialize(ast, { canonical: true });
  try {
    return canonicalJson(JSON.parse(text));
  } catch {
    return text;
  }
}

const keyObjects = new Map<string, KeyObject>();
/** Ed25519 signature with a cached key object (the fuzzers sign thousands of payloads). */
export function sign(seed: Uint8Array, message: Uint8Array): Buffer {
  const id = Buffer.from(seed).toString('hex');
  let k = keyObjects.get(id);
  if (!k) keyObjects.set(id, (k = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' })));
  return nodeSign(null, message, k);
}

/** Signs `domain || canonical(payload)` with an Ed25519 seed; base64. */
export function signOver(seed: Uint8Array, domain: string, payload: Ast): string {
  return sign(seed, Buffer.from(domain + canonicalOf(payload), 'utf8')).toString('base64');
}

export function armor(begin: string, end: string, body: string): string {
  const b64 = Buffer.from(body, 'utf8').toString('base64');
  return `${begin}\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n${end}\n`;
}

export { vendorPublicKey };
