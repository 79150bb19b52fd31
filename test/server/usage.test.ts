/**
 * Usage reports on the licence server, on both databases: a host meters usage under an online
 * licence, makes its signed monthly reports and posts them; the server checks each against the
 * licence it issued and the previous report, stores it, flags a gap, refuses a modified one, and
 * answers the totals per entitlement and month that the reports hold.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mlic } from '../cli/run.js';
import { tmp } from '../helpers.js';
import { KINDS, freshServerPlace } from './databases.js';
import { startServer, stop, type Running } from './process.js';

const month = (offset: number) => {
  const d = new Date();
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + offset, 1)).toISOString().slice(0, 7);
};

describe.each(KINDS)('usage reports on %s', (kind) => {
  let v: string;
  let server: Running;
  let adminEnv: Record<string, string>;

  beforeAll(async () => {
    v = await tmp('mlic-vendor-');
    expect((await mlic(['keygen', '-o', v, '--name', 'acme', '--unencrypted'])).code).toBe(0);
    const place = await freshServerPlace(kind);
    server = await startServer(['--data', place.dataDir, ...(place.url ? ['--database', place.url] : []), '--key', join(v, 'acme.key')]);
    adminEnv = { MLIC_SERVER: server.url, MLIC_ADMIN_TOKEN: server.first.adminToken as string };
  });
  afterAll(async () => {
    expect(await stop(server)).toBe(0);
  });

  it('stores verified reports, flags a gap, refuses a modified one, and sums the months for billing', async () => {
    const ent = await mlic(
      ['admin', 'entitlement', 'create', '--customer', 'globex', '--model', 'resnet', '--versions', '^2', '--days', '400', '--meter', 'inferences=1000/month,scope=host', '--max-hosts', '2', '--json'],
      { env: adminEnv },
    );
    expect(ent.code, ent.stderr).toBe(0);
    const host = { MLIC_HOME: join(await tmp('mlic-usage-host-'), 'home') };
    expect((await mlic(['trust', 'add', join(v, 'acme.pub')], { env: host })).code).toBe(0);
    const act = await mlic(['activate', '--online', server.url, '--license-key', ent.json.result.licenseKey, '--json'], { env: host });
    expect(act.code, act.stderr).toBe(0);
    for (const n of [5, 7, 11]) {
      const c = await mlic(['meter', 'consume', '--model', 'resnet', '--metric', 'inferences', '--quantity', String(n)], { env: host });
      expect(c.code, c.stderr).toBe(0);
    }
    const dir = await tmp();
    const report = async (period: string) => {
      const out = join(dir, `${period}.json`);
      const r = await mlic(['usage', 'report', '--model', 'resnet', '--period', period, '-o', out], { env: host });
      expect(r.code, r.stderr).toBe(0);
      return out;
    };
    // last month (nothing in it), then next month before this one: this month's records are missing
    const last = await report(month(-1));
    const next = await report(month(1));
    const posted = await mlic(['usage', 'post', last, next, '--json'], { env: host });
    expect(posted.code, posted.stderr).toBe(0);
    expect(posted.json.result.posted[0].continuity).toBe('first-report');
    expect(posted.json.result.posted[1].problem).toMatch(/^gap: records 0 to \d+ are in no report/);
    // this month's report arrives late: it continues last month's, and is billed
    const now = await report(month(0));
    const up = await mlic(['admin', 'usage', '--upload', now, '--json'], { env: adminEnv });
    expect(up.code, up.stderr).toBe(0);
    expect(up.json.result.uploaded[0]).toMatchObject({ continuity: 'checked', period: month(0) });
    expect(up.json.result.uploaded[0].problem).toBeUndefined();
    const again = await mlic(['usage', 'post', now, '--json'], { env: host });
    expect(again.json.result.posted[0].already).toBe(true);
    // a later report of the month that goes further replaces it; the earlier one cannot come back
    expect((await mlic(['meter', 'consume', '--model', 'resnet', '--metric', 'inferences', '--quantity', '2'], { env: host })).code).toBe(0);
    const later = join(dir, 'later.json');
    expect((await mlic(['usage', 'report', '--model', 'resnet', '--period', month(0), '-o', later], { env: host })).code).toBe(0);
    const replaced = await mlic(['usage', 'post', later, '--json'], { env: host });
    expect(replaced.json.result.posted[0]).toMatchObject({ continuity: 'checked', totals: [{ metric: 'inferences', quantity: 25 }] });
    const back = await mlic(['usage', 'post', now, '--json'], { env: host });
    expect([back.code, back.json.error.code]).toEqual([2, 'IO_EXISTS']);

    const sum = await mlic(['admin', 'usage', '--entitlement', ent.json.result.entitlement.id, '--json'], { env: adminEnv });
    expect(sum.code, sum.stderr).toBe(0);
    const thisMonth = sum.json.result.totals.find((t: { period: string }) => t.period === month(0));
    expect(thisMonth).toMatchObject({ metric: 'inferences', quantity: 25, reports: 1 });
    expect(sum.json.result.reports.filter((r: { problem?: string }) => r.problem)).toHaveLength(1);
    expect((await mlic(['admin', 'usage', '--period', month(0), '--json'], { env: adminEnv })).json.result.totals).toHaveLength(1);

    // a modified report (fewer inferences) is refused and not stored
    const text = JSON.parse(await readFile(now, 'utf8'));
    text.payload.totals[0].quantity = 1;
    // (the modified report is the earlier one of this month, moved to another month)
    text.payload.period = month(2);
    const forged = join(dir, 'forged.json');
    await writeFile(forged, JSON.stringify(text));
    const f = await mlic(['usage', 'post', forged, '--json'], { env: host });
    expect([f.code, f.json.error.code]).toEqual([1, 'SIGNATURE_INVALID']);
    const res = await fetch(`${server.url}/v1/usage-reports`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ report: '{"payload":1}' }) });
    expect(res.status).toBe(400);
    expect((await mlic(['admin', 'usage', '--period', month(2), '--json'], { env: adminEnv })).json.result.totals).toEqual([]);
  }, 90_000);
});
