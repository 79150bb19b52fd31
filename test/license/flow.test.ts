import { describe, it, expect, beforeAll } from 'vitest';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { pack } from '../../src/bundle/pack.js';
import { openBundle } from '../../src/host/open.js';
import { unpack } from '../../src/host/unpack.js';
import { inspectBundle } from '../../src/bundle/inspect.js';
import { checkBundleKey } from '../../src/bundle/decrypt.js';
import { issueLicense, type IssueOptions } from '../../src/license/issue.js';
import { activateLicense, authorizeBundle, createActivationRequest } from '../../src/host/licences.js';
import { listLicenses } from '../../src/host/list.js';
import { bundleKeyFromLicense } from '../../src/license/keys.js';
import { verifyLicenseText } from '../../src/license/sign.js';
import { serializeLicense, type ActivationRequest } from '../../src/format/license.js';
import { publicKeyFileText, type VendorKey } from '../../src/keys/vendor.js';
import { MlicError } from '../../src/errors.js';
import type { Manifest } from '../../src/format/manifest.js';
import { key, tmp, writeRandom, codeOf } from '../helpers.js';
import { fakeHost, type FakeHost } from './hosts.js';

const code = codeOf;

const D = (s: string) => new Date(s);
const NOW = D('2026-11-01T00:00:00Z');

describe('licences bound to hardware and versions', () => {
  let vendor: VendorKey;
  let dir: string;
  const bundles: Record<string, string> = {};
  const manifests: Record<string, Manifest> = {};
  let weights: Buffer;
  let A: FakeHost;
  let B: FakeHost;
  let reqA: ActivationRequest;

  beforeAll(async () => {
    vendor = key('acme');
    dir = await tmp();
    const src = join(dir, 'model');
    await mkdir(src);
    weights = await writeRandom(join(src, 'weights.bin'), (1 << 20) + 123, 5);
    await writeFile(join(src, 'config.json'), '{"layers":2}');
    const releases: [string, string][] = [
      ['2.0.0', '2026-01-15T00:00:00Z'],
      ['2.1.0', '2026-03-01T00:00:00Z'],
      ['2.5.0', '2026-09-01T00:00:00Z'], // after the maintenance date below
      ['3.0.0', '2026-10-01T00:00:00Z'],
    ];
    for (const [v, date] of releases) {
      const out = join(dir, `m-${v}.mlb`);
      await pack({ input: src, name: 'm', version: v, key: vendor, out, releaseDate: D(date), now: D(date) });
      bundles[v] = out;
      manifests[v] = (await inspectBundle(out)).manifest;
    }
    A = await fakeHost('hosta', { gpus: 2 });
    B = await fakeHost('hostb', { gpus: 2 });
    for (const h of [A, B]) await h.state.trustAdd(publicKeyFileText(vendor));
    reqA = (await createActivationRequest({ stateDir: A.stateDir, hostProbe: A.probe(), region: 'DE', now: NOW })).request;
  });

  const issueFor = (req: ActivationRequest | undefined, o: Partial<IssueOptions>) =>
    serializeLicense(issueLicense({ key: vendor, ...(req ? { request: req } : {}), model: 'm', versions: { policy: 'range', range: '^2' }, now: D('2026-01-01T00:00:00Z'), notBefore: D('2026-01-01T00:00:00Z'), ...(o.expires ? {} : { perpetual: true }), ...o }).license);

  /** Host A's state with only this licence installed, and a fresh clock (its licences, clock record and audit log removed together). */
  async function onA(text: string, h: FakeHost = A, now: Date = NOW) {
    const { rm } = await import('node:fs/promises');
    for (const p of ['licenses', 'clock.json', 'audit', 'usage']) await rm(h.state.path(p), { recursive: true, force: true });
    return activateLicense(text, { stateDir: h.stateDir, hostProbe: h.probe(), now });
  }
  const allow = (v: string, o: { now?: Date; h?: FakeHost; feature?: string; components?: string[] } = {}) =>
    code(
      authorizeBundle(bundles[v]!, { stateDir: (o.h ?? A).stateDir, hostProbe: (o.h ?? A).probe(), now: o.now ?? NOW, ...(o.feature ? { feature: o.feature } : {}), ...(o.components ? { components: o.components } : {}) }).then((a) => a.bundle.close()),
    );

  it('a request reuses the host key; a licence round-trips and activates', async () => {
    const again = await createActivationRequest({ stateDir: A.stateDir, hostProbe: A.probe(), now: NOW });
    expect(again.reused).toBe(true);
    expect(again.request.payload.hostPublicKey).toBe(reqA.payload.hostPublicKey);
    expect((await stat(A.state.path('host.json'))).mode & 0o777).toBe(0o600);
    // Components leave the host only as salted hashes.
    expect(JSON.stringify(reqA)).not.toContain('hostamachineid');
    expect(JSON.stringify(reqA)).not.toContain('GPU-hosta');
    const r = await onA(issueFor(reqA, {}));
    expect(r.license.model).toBe('m');
    expect((await listLicenses({ stateDir: A.stateDir, now: NOW }))[0]!.status).toBe('ok');
  });

  it('major-version lock ^2: 2.0, 2.1, 2.5 yes; 3.0 VERSION_NOT_LICENSED', async () => {
    await onA(issueFor(reqA, { versions: { policy: 'range', range: '^2' } }));
    expect([await allow('2.0.0'), await allow('2.1.0'), await allow('2.5.0'), await allow('3.0.0')]).toEqual(['OK', 'OK', 'OK', 'VERSION_NOT_LICENSED']);
  });

  it('range >=2.1 <3: 2.0 refused by policy', async () => {
    await onA(issueFor(reqA, { versions: { policy: 'range', range: '>=2.1 <3' } }));
    expect([await allow('2.0.0'), await allow('2.1.0'), await allow('2.5.0'), await allow('3.0.0')]).toEqual(['VERSION_NOT_LICENSED', 'OK', 'OK', 'VERSION_NOT_LICENSED']);
  });

  it('pin =2.1.0: only that bundle, and no other version can be decrypted even with the policy check bypassed', async () => {
    const text = issueFor(reqA, { versions: { policy: 'pin', version: '2.1.0' }, pinnedBundle: manifests['2.1.0']! });
    const { license } = await onA(text);
    expect([await allow('2.0.0'), await allow('2.1.0'), await allow('2.5.0'), await allow('3.0.0')]).toEqual(['VERSION_NOT_LICENSED', 'OK', 'VERSION_NOT_LICENSED', 'VERSION_NOT_LICENSED']);
    const host = (await A.state.loadHost())!;
    // Bypass: ask the key layer directly for 2.0.0 — there is no grant, and the pinned key does not open it.
    expect(() => bundleKeyFromLicense(license, manifests['2.0.0']!, host.boxSecret)).toThrow(/carries no key/);
    const pinned = bundleKeyFromLicense(license, manifests['2.1.0']!, host.boxSecret);
    expect(() => checkBundleKey(manifests['2.0.0']!, pinned)).toThrow(MlicError);
    expect(() => checkBundleKey(manifests['2.1.0']!, pinned)).not.toThrow();
  });

  it('rolling: every version released while valid', async () => {
    const inWindow = D('2026-09-10T00:00:00Z');
    await onA(issueFor(reqA, { versions: { policy: 'rolling' }, expires: D('2026-09-15T00:00:00Z'), graceSeconds: 0 }), A, inWindow);
    expect([await allow('2.0.0', { now: inWindow }), await allow('2.5.0', { now: inWindow })]).toEqual(['OK', 'OK']);
    // 3.0.0 was released (2026-10-01) after the licence ended; by then the licence itself has expired too.
    expect(await allow('3.0.0', { now: inWindow })).toBe('VERSION_NOT_LICENSED');
    expect(await allow('2.0.0', { now: D('2026-10-02T00:00:00Z') })).toBe('LICENSE_EXPIRED');
    // A rolling licence that runs on: 3.0.0 is covered.
    await onA(issueFor(reqA, { versions: { policy: 'rolling' }, expires: D('2027-01-01T00:00:00Z') }));
    expect(await allow('3.0.0')).toBe('OK');
  });

  it('maintenance window: versions released before the date work, later ones do not', async () => {
    await onA(issueFor(reqA, { versions: { policy: 'maintenance', until: '2026-06-30T00:00:00Z' } }));
    expect([await allow('2.0.0'), await allow('2.1.0'), await allow('2.5.0'), await allow('3.0.0')]).toEqual(['OK', 'OK', 'VERSION_NOT_LICENSED', 'VERSION_NOT_LICENSED']);
  });

  it('the time window with an injected clock, and the grace period', async () => {
    const text = issueFor(reqA, { notBefore: D('2026-10-01T00:00:00Z'), expires: D('2026-12-01T00:00:00Z'), graceSeconds: 3 * 86400 });
    await onA(text);
    expect(await allow('2.1.0', { now: D('2026-11-15T00:00:00Z') })).toBe('OK');
    expect(await allow('2.1.0', { now: D('2026-12-02T00:00:00Z') })).toBe('OK'); // in grace
    expect(await allow('2.1.0', { now: D('2026-12-05T00:00:00Z') })).toBe('LICENSE_EXPIRED');
    const future = issueFor(reqA, { notBefore: D('2027-01-01T00:00:00Z') });
    expect(await code(onA(future))).toBe('LICENSE_NOT_YET_VALID');
    const expired = issueFor(reqA, { notBefore: D('2026-01-01T00:00:00Z'), expires: D('2026-02-01T00:00:00Z') });
    expect(await code(onA(expired))).toBe('LICENSE_EXPIRED');
  });

  it('k of n: one changed component passes 3-of-4, two fail with HW_MISMATCH naming them', async () => {
    const text = issueFor(reqA, { match: { policy: 'k', k: 3 } });
    await onA(text);
    const saved = A.components.map((c) => ({ ...c }));
    const restore = () => A.components.splice(0, A.components.length, ...saved.map((c) => ({ ...c })));
    try {
      A.swap('mac', '02:aa:bb:cc:dd:ee');
      expect(await allow('2.1.0')).toBe('OK');
      A.components.find((c) => c.kind === 'gpu')!.value = 'GPU-replacement';
      const err = await authorizeBundle(bundles['2.1.0']!, { stateDir: A.stateDir, hostProbe: A.probe(), now: NOW }).catch((e) => e as MlicError);
      expect((err as MlicError).code).toBe('HW_MISMATCH');
      expect((err as MlicError).message).toContain('NIC eth0');
      expect((err as MlicError).message).toContain('GPU 0');
    } finally {
      restore();
    }
    // Under 'all', a single change is refused.
    await onA(issueFor(reqA, { match: { policy: 'all' } }));
    A.swap('mac', '02:aa:bb:cc:dd:ee');
    try {
      expect(await allow('2.1.0')).toBe('HW_MISMATCH');
    } finally {
      restore();
    }
  });

  it("host B refuses A's licence (HOST_KEY_MISMATCH), and cannot unwrap its keys even with the policy check bypassed", async () => {
    const text = issueFor(reqA, {});
    expect(await code(activateLicense(text, { stateDir: B.stateDir, hostProbe: B.probe(), now: NOW }))).toBe('HOST_KEY_MISMATCH');
    // Copy A's licence file into B's store by hand, as an attacker would.
    await createActivationRequest({ stateDir: B.stateDir, hostProbe: B.probe(), now: NOW });
    await B.state.licenseInstall('ab'.repeat(16), text);
    expect(await allow('2.1.0', { h: B })).toBe('HOST_KEY_MISMATCH');
    // Even B presenting A's exact fingerprint (a cloned probe) cannot unwrap: the keys are sealed to A's host key.
    expect(await code(authorizeBundle(bundles['2.1.0']!, { stateDir: B.stateDir, hostProbe: A.probe(), now: NOW }))).toBe('HOST_KEY_MISMATCH');
    const { parseLicenseText } = await import('../../src/format/license.js');
    const l = parseLicenseText(text).payload;
    const hostB = (await B.state.loadHost())!;
    expect(() => bundleKeyFromLicense(l, manifests['2.1.0']!, hostB.boxSecret)).toThrow(/sealed to another host/);
  });

  it('every byte of a licence changed in turn is rejected (by the verification every activation and decision starts with)', async () => {
    const text = issueFor(reqA, {});
    const bytes = Buffer.from(text);
    let accepted = 0;
    const codes = new Set<string>();
    const trusted = (id: string) => A.state.trusted(id);
    for (let i = 0; i < bytes.length; i++) {
      const b = Buffer.from(bytes);
      b[i] = b[i] === 0x41 ? 0x42 : 0x41;
      const c = await code(verifyLicenseText(b.toString('latin1'), trusted));
      if (c === 'OK') accepted++;
      codes.add(c);
    }
    expect(accepted).toBe(0);
    expect([...codes].every((c) => ['SIGNATURE_INVALID', 'FORMAT_INVALID', 'UNTRUSTED_VENDOR'].includes(c))).toBe(true);
    // A few of them through the whole activation too.
    for (const i of [40, Math.floor(bytes.length / 2), bytes.length - 40]) {
      const b = Buffer.from(bytes);
      b[i] = b[i] === 0x41 ? 0x42 : 0x41;
      expect(await code(activateLicense(b.toString('latin1'), { stateDir: A.stateDir, hostProbe: A.probe(), now: NOW }))).not.toBe('OK');
    }
  });

  it('a licence signed by an untrusted key is UNTRUSTED_VENDOR; a bundle from an untrusted vendor too', async () => {
    const other = key('mallory');
    const text = serializeLicense(issueLicense({ key: other, request: reqA, model: 'm', versions: { policy: 'rolling' }, perpetual: true, now: NOW }).license);
    expect(await code(activateLicense(text, { stateDir: A.stateDir, hostProbe: A.probe(), now: NOW }))).toBe('UNTRUSTED_VENDOR');
    const src = join(dir, 'other.bin');
    await writeRandom(src, 100);
    const ob = join(dir, 'other.mlb');
    await pack({ input: src, name: 'm', version: '2.0.0', key: other, out: ob });
    expect(await code(authorizeBundle(ob, { stateDir: A.stateDir, hostProbe: A.probe(), now: NOW }))).toBe('UNTRUSTED_VENDOR');
  });

  it('the clock turned back beyond the tolerance is CLOCK_TAMPERED; an edited clock record too', async () => {
    await onA(issueFor(reqA, { clockToleranceSeconds: 3600 }));
    expect(await allow('2.1.0', { now: D('2026-11-10T00:00:00Z') })).toBe('OK');
    expect(await allow('2.1.0', { now: D('2026-11-09T23:30:00Z') })).toBe('OK'); // within 1 h
    expect(await allow('2.1.0', { now: D('2026-11-09T12:00:00Z') })).toBe('CLOCK_TAMPERED');
    expect(await allow('2.1.0', { now: D('2026-11-10T01:00:00Z') })).toBe('OK');
    const clock = JSON.parse(await readFile(A.state.path('clock.json'), 'utf8'));
    await writeFile(A.state.path('clock.json'), JSON.stringify({ ...clock, t: '2026-01-01T00:00:00.000Z' }));
    expect(await allow('2.1.0', { now: D('2026-11-10T02:00:00Z') })).toBe('STATE_TAMPERED');
  });

  it('features and regions', async () => {
    await onA(issueFor(reqA, { tier: 'pro', features: ['sentiment-analysis', 'batch'], regions: ['EU'] }));
    expect(await allow('2.1.0', { feature: 'batch' })).toBe('OK');
    expect(await allow('2.1.0', { feature: 'translation' })).toBe('FEATURE_NOT_LICENSED');
    await onA(issueFor(reqA, { regions: ['US'] })).catch(() => undefined);
    expect(await code(onA(issueFor(reqA, { regions: ['US'] })))).toBe('REGION_NOT_ALLOWED');
  });

  it('openBundle decrypts in memory; unpack writes 0600 files; a refused unpack leaves nothing', async () => {
    await onA(issueFor(reqA, {}));
    const m = await openBundle(bundles['2.1.0']!, { stateDir: A.stateDir, hostProbe: A.probe(), now: NOW });
    expect(m.file('weights.bin').equals(weights)).toBe(true);
    const streamed: Buffer[] = [];
    for await (const c of m.createReadStream('weights.bin')) streamed.push(c as Buffer);
    expect(createHash('sha256').update(Buffer.concat(streamed)).digest('hex')).toBe(manifests['2.1.0']!.files.find((f) => f.path === 'weights.bin')!.sha256);
    await m.close();
    const out = join(dir, 'unpacked');
    await unpack(bundles['2.1.0']!, out, { stateDir: A.stateDir, hostProbe: A.probe(), now: NOW });
    expect((await readFile(join(out, 'weights.bin'))).equals(weights)).toBe(true);
    expect((await stat(join(out, 'weights.bin'))).mode & 0o777).toBe(0o600);
    const refused = join(dir, 'refused');
    expect(await code(unpack(bundles['3.0.0']!, refused, { stateDir: A.stateDir, hostProbe: A.probe(), now: NOW }))).toBe('VERSION_NOT_LICENSED');
    expect(await readdir(dir)).not.toContain('refused');
  });

  it('components: granted ones are released, others refused', async () => {
    const d = join(dir, 'pipeline');
    await mkdir(join(d, 'det'), { recursive: true });
    await mkdir(join(d, 'ocr'), { recursive: true });
    await writeRandom(join(d, 'det', 'det.bin'), 1000, 1);
    await writeRandom(join(d, 'ocr', 'ocr.bin'), 2000, 2);
    await writeRandom(join(d, 'cls.bin'), 3000, 3);
    const pb = join(dir, 'pipe.mlb');
    await pack({ components: [{ name: 'detector', path: join(d, 'det') }, { name: 'recognizer', path: join(d, 'ocr') }, { name: 'classifier', path: join(d, 'cls.bin') }], name: 'pipe', version: '1.0.0', key: vendor, out: pb, now: NOW });
    const text = serializeLicense(issueLicense({ key: vendor, request: reqA, model: 'pipe', versions: { policy: 'range', range: '^1' }, components: ['detector', 'classifier'], perpetual: true, now: NOW }).license);
    await onA(text);
    const opts = { stateDir: A.stateDir, hostProbe: A.probe(), now: NOW };
    const m = await openBundle(pb, opts);
    expect(m.files.map((f) => f.path).sort()).toEqual(['classifier/cls.bin', 'detector/det.bin']);
    expect(() => m.file('recognizer/ocr.bin')).toThrow(/component/);
    await m.close();
    expect(await code(openBundle(pb, { ...opts, components: ['recognizer'] }))).toBe('COMPONENT_NOT_LICENSED');
    expect(await code(openBundle(pb, { ...opts, components: ['detector'] }).then((x) => x.close()))).toBe('OK');
  });

  it('an unbound licence works on any host that trusts the vendor', async () => {
    const text = issueFor(undefined, { versions: { policy: 'range', range: '^2' } });
    await onA(text, B);
    expect(await allow('2.1.0', { h: B })).toBe('OK');
  });

  it('no licence at all is NO_LICENSE', async () => {
    const C = await fakeHost('hostc');
    await C.state.trustAdd(publicKeyFileText(vendor));
    expect(await allow('2.1.0', { h: C })).toBe('NO_LICENSE');
  });
});
