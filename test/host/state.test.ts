/**
 * The red team's clock and quota findings, reproduced step by step: every decision moves the
 * clock's high-water mark, and deleting or restoring one piece of the host's state is detected.
 * What remains (a consistent restore of the whole state) is asserted too, so that docs/SECURITY.md
 * stays true.
 */
import { describe, it, expect } from 'vitest';
import { cp, rm, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pack } from '../../src/bundle/pack.js';
import { activateLicense, authorizeBundle, createActivationRequest } from '../../src/host/licences.js';
import { loadLicense } from '../../src/host/handle.js';
import { issueLicense, type IssueOptions } from '../../src/license/issue.js';
import { serializeLicense, parseLicenseText } from '../../src/format/license.js';
import { buildReport, verifyReport } from '../../src/usage/report.js';
import { publicKeyFileText, type VendorKey } from '../../src/keys/vendor.js';
import { key, tmp, writeRandom, codeOf } from '../helpers.js';
import { fakeHost, type FakeHost } from '../license/hosts.js';

const D = (s: string) => new Date(s);
const ISSUED = D('2026-10-01T00:00:00Z');

interface Setup {
  vendor: VendorKey;
  host: FakeHost;
  bundle: string;
  licence: string;
}

async function setup(o: Partial<IssueOptions> = {}): Promise<Setup> {
  const vendor = key('acme');
  const dir = await tmp();
  await writeRandom(join(dir, 'w.bin'), 5000, 1);
  const bundle = join(dir, 'm.mlb');
  await pack({ input: join(dir, 'w.bin'), name: 'm', version: '1.0.0', key: vendor, out: bundle, now: ISSUED, releaseDate: ISSUED });
  const host = await fakeHost(`s${Math.random().toString(16).slice(2, 8)}`);
  await host.state.trustAdd(publicKeyFileText(vendor));
  const { request } = await createActivationRequest({ stateDir: host.stateDir, hostProbe: host.probe(), now: ISSUED });
  const licence = serializeLicense(
    issueLicense({ key: vendor, request, model: 'm', versions: { policy: 'range', range: '^1' }, now: ISSUED, notBefore: ISSUED, expires: D('2026-12-01T00:00:00Z'), meters: [{ metric: 'inferences', limit: 1000, period: 'month' }], ...o }).license,
  );
  await activateLicense(licence, { stateDir: host.stateDir, hostProbe: host.probe(), now: D('2026-11-01T00:00:00Z') });
  return { vendor, host, bundle, licence };
}

const use = (s: Setup, now: string) => codeOf(authorizeBundle(s.bundle, { stateDir: s.host.stateDir, hostProbe: s.host.probe(), now: D(now), action: 'unpack' }).then((a) => a.bundle.close()));
const open = (s: Setup, now: string, durability: 'strict' | 'batched' = 'strict') => loadLicense({ stateDir: s.host.stateDir, hostProbe: s.host.probe(), bundle: s.bundle, clock: () => D(now), durability });

describe('the clock: every decision moves the mark, and it is bound to the host state', () => {
  it('a refused attempt at +45 days moves the mark: going back to just after the last good day is CLOCK_TAMPERED', async () => {
    const s = await setup();
    expect(await use(s, '2026-11-20T00:00:00Z')).toBe('OK');
    expect(await use(s, '2027-01-04T00:00:00Z')).toBe('LICENSE_EXPIRED'); // +45 days, refused
    expect(await use(s, '2026-11-20T00:30:00Z')).toBe('CLOCK_TAMPERED');
    expect(await use(s, '2026-11-28T00:00:00Z')).toBe('CLOCK_TAMPERED');
  });

  it('the same through loadLicense / meter consume: a refused load and a refused validate() both move it', async () => {
    const s = await setup();
    expect(await codeOf(open(s, '2027-01-04T00:00:00Z'))).toBe('LICENSE_EXPIRED');
    expect(await codeOf(open(s, '2026-11-20T00:00:00Z'))).toBe('CLOCK_TAMPERED');
    const t = await setup();
    let now = D('2026-11-20T00:00:00Z');
    const lic = await loadLicense({ stateDir: t.host.stateDir, hostProbe: t.host.probe(), bundle: t.bundle, clock: () => now });
    expect((await lic.validate({ meter: { metric: 'inferences', quantity: 1 } })).valid).toBe(true);
    now = D('2027-01-04T00:00:00Z');
    expect((await lic.validate({ meter: { metric: 'inferences', quantity: 1 } })).error).toBe('license_expired');
    await lic.close();
    expect(await codeOf(loadLicense({ stateDir: t.host.stateDir, hostProbe: t.host.probe(), bundle: t.bundle, clock: () => D('2026-11-21T00:00:00Z') }))).toBe('CLOCK_TAMPERED');
  });

  it('deleting clock.json alone is STATE_TAMPERED, not a fresh start', async () => {
    const s = await setup();
    expect(await use(s, '2026-11-20T00:00:00Z')).toBe('OK');
    await rm(s.host.state.path('clock.json'));
    expect(await use(s, '2026-11-20T00:00:00Z')).toBe('STATE_TAMPERED');
  });

  it('restoring an older clock.json is STATE_TAMPERED (the audit log is past it); and the mark also lives in the audit log', async () => {
    const s = await setup();
    const saved = join(await tmp(), 'clock.json');
    await cp(s.host.state.path('clock.json'), saved);
    expect(await use(s, '2027-01-04T00:00:00Z')).toBe('LICENSE_EXPIRED');
    await cp(saved, s.host.state.path('clock.json'));
    expect(await use(s, '2026-11-02T00:00:00Z')).toBe('STATE_TAMPERED');
  });

  it('what remains: clock.json and the audit log restored together from one copy move the mark back to the copy (docs/SECURITY.md)', async () => {
    const s = await setup();
    const saved = await tmp();
    await cp(s.host.state.path('clock.json'), join(saved, 'clock.json'));
    await cp(s.host.state.path('audit'), join(saved, 'audit'), { recursive: true });
    expect(await use(s, '2027-01-04T00:00:00Z')).toBe('LICENSE_EXPIRED');
    await rm(s.host.state.path('audit'), { recursive: true });
    await cp(join(saved, 'audit'), s.host.state.path('audit'), { recursive: true });
    await cp(join(saved, 'clock.json'), s.host.state.path('clock.json'));
    expect(await use(s, '2026-11-02T00:00:00Z')).toBe('OK');
  });

  it('deleting or restoring the audit log alone is STATE_TAMPERED; so is deleting both with licences installed', async () => {
    const s = await setup();
    const saved = join(await tmp(), 'audit');
    await cp(s.host.state.path('audit'), saved, { recursive: true });
    expect(await use(s, '2027-01-04T00:00:00Z')).toBe('LICENSE_EXPIRED');
    await rm(s.host.state.path('audit'), { recursive: true });
    await cp(saved, s.host.state.path('audit'), { recursive: true });
    expect(await use(s, '2026-11-02T00:00:00Z')).toBe('STATE_TAMPERED');
    await rm(s.host.state.path('audit'), { recursive: true });
    expect(await use(s, '2026-11-02T00:00:00Z')).toBe('STATE_TAMPERED');
    await rm(s.host.state.path('clock.json'));
    expect(await use(s, '2026-11-02T00:00:00Z')).toBe('STATE_TAMPERED');
  });

  it("what remains, as docs/SECURITY.md says: a consistent restore of the whole state moves the mark back, but never before the licence's signed issue time", async () => {
    const s = await setup();
    const saved = join(await tmp(), 'state');
    await cp(s.host.stateDir, saved, { recursive: true });
    expect(await use(s, '2027-01-04T00:00:00Z')).toBe('LICENSE_EXPIRED');
    await rm(s.host.stateDir, { recursive: true });
    await cp(saved, s.host.stateDir, { recursive: true });
    expect(await use(s, '2026-11-02T00:00:00Z')).toBe('OK');
    // Wiped entirely and re-activated with a kept copy of the licence: the issue time is the floor.
    await rm(join(s.host.stateDir, 'audit'), { recursive: true });
    await rm(join(s.host.stateDir, 'clock.json'));
    await rm(join(s.host.stateDir, 'licenses'), { recursive: true });
    expect(await codeOf(activateLicense(s.licence, { stateDir: s.host.stateDir, hostProbe: s.host.probe(), now: D('2026-09-01T00:00:00Z') }))).toBe('CLOCK_TAMPERED');
  });
});

describe('quotas: a restored usage ledger is detected', () => {
  it('copy usage/ after a report, use the quota, restore: STATE_TAMPERED (the clock record names later records)', async () => {
    const s = await setup();
    const lic = await open(s, '2026-11-10T00:00:00Z');
    expect((await lic.validate({ meter: { metric: 'inferences', quantity: 10 } })).valid).toBe(true);
    await lic.close();
    const saved = join(await tmp(), 'usage');
    await cp(s.host.state.path('usage'), saved, { recursive: true });
    const again = await open(s, '2026-11-11T00:00:00Z', 'batched');
    expect((await again.validate({ meter: { metric: 'inferences', quantity: 990 } })).valid).toBe(true);
    expect((await again.validate({ meter: { metric: 'inferences', quantity: 1 } })).error).toBe('quota_exceeded');
    await again.close();
    await rm(s.host.state.path('usage'), { recursive: true });
    await cp(saved, s.host.state.path('usage'), { recursive: true });
    expect(await codeOf(open(s, '2026-11-12T00:00:00Z'))).toBe('STATE_TAMPERED');
    // Deleting usage/ is the same.
    await rm(s.host.state.path('usage'), { recursive: true });
    expect(await codeOf(open(s, '2026-11-12T00:00:00Z'))).toBe('STATE_TAMPERED');
  });

  it('restoring usage/ together with clock.json from the same copy is detected too (the audit log moved on)', async () => {
    const s = await setup();
    const lic = await open(s, '2026-11-10T00:00:00Z');
    await lic.validate({ meter: { metric: 'inferences', quantity: 10 } });
    await lic.close();
    const saved = await tmp();
    await cp(s.host.state.path('usage'), join(saved, 'usage'), { recursive: true });
    await cp(s.host.state.path('clock.json'), join(saved, 'clock.json'));
    const again = await open(s, '2026-11-11T00:00:00Z');
    expect((await again.validate({ meter: { metric: 'inferences', quantity: 990 } })).valid).toBe(true);
    await again.close();
    await rm(s.host.state.path('usage'), { recursive: true });
    await cp(join(saved, 'usage'), s.host.state.path('usage'), { recursive: true });
    await cp(join(saved, 'clock.json'), s.host.state.path('clock.json'));
    expect(await codeOf(open(s, '2026-11-12T00:00:00Z'))).toBe('STATE_TAMPERED');
  });

  it('a second state directory with a copy of host.json has its own ledger; the vendor sees its report come from another ledger', async () => {
    const s = await setup({ expires: D('2027-06-01T00:00:00Z') });
    const second = join(await tmp(), 'second');
    await mkdir(second, { recursive: true });
    await cp(s.host.state.path('host.json'), join(second, 'host.json'));
    await cp(s.host.state.path('trust'), join(second, 'trust'), { recursive: true });
    await activateLicense(s.licence, { stateDir: second, hostProbe: s.host.probe(), now: D('2026-11-01T00:00:00Z') });
    const report = async (stateDir: string, period: string, now: string, q: number) => {
      const lic = await loadLicense({ stateDir, hostProbe: s.host.probe(), bundle: s.bundle, clock: () => D(now), durability: 'strict' });
      await lic.validate({ meter: { metric: 'inferences', quantity: q } });
      await lic.note({ action: 'report' });
      await lic.flush();
      const host = (await s.host.state.loadHost())!;
      const r = buildReport({ records: await lic.usageRecords(), period, license: lic.license, hostSignSeed: host.signSeed, hostSignPublic: host.signPublic, hostBoxPublic: host.boxPublic, auditSeq: lic.auditSeq });
      await lic.close();
      return JSON.stringify(r);
    };
    const nov = await report(s.host.stateDir, '2026-11', '2026-11-10T00:00:00Z', 600);
    // Locally, the copy gets a fresh quota (nothing on the host can tell the two directories apart)...
    const novCopy = await report(second, '2026-11', '2026-11-10T00:00:00Z', 600);
    const license = parseLicenseText(s.licence).payload;
    expect(verifyReport(novCopy, license).continuity).toBe('first-report');
    // ...but the next report of either, checked against the other's, is refused.
    const dec = await report(second, '2026-12', '2026-12-02T00:00:00Z', 1);
    expect(() => verifyReport(dec, license, nov)).toThrow(/another ledger/);
  });
});
