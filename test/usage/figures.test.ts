/**
 * A new user's metering, as the review found it: usage must survive a process that never calls
 * close(), a killed process's reservation becomes consumed usage (never lost), and every figure
 * (validate(), meter status, meter consume) agrees.
 */
import { describe, it, expect } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadLicense } from '../../src/host/handle.js';
import { FORFEIT_AFTER_MS, LEASE_MS } from '../../src/usage/ledger.js';
import { meteredHost } from './fixtures.js';
import { mlic } from '../cli/run.js';
import { issueLicense } from '../../src/license/issue.js';
import { serializeLicense } from '../../src/format/license.js';
import { publicKeyFileText } from '../../src/keys/vendor.js';
import { tmp } from '../helpers.js';

const DIST = fileURLToPath(new URL('../../dist/host/handle.js', import.meta.url));

async function unboundSetup(limit = 100) {
  const s = await meteredHost();
  const text = serializeLicense(issueLicense({ key: s.vendor, model: 'm', versions: { policy: 'range', range: '^1' }, meters: [{ metric: 'inferences', limit, period: 'term' }], perpetual: true }).license);
  const lf = join(s.dir, 'u.lic');
  await writeFile(lf, text);
  const home = join(await tmp(), 'home');
  await writeFile(join(s.dir, 'v.pub'), publicKeyFileText(s.vendor));
  expect((await mlic(['trust', 'add', join(s.dir, 'v.pub'), '--home', home])).code).toBe(0);
  return { lf, home };
}

describe('metering figures a new user sees', () => {
  it('a script that never calls close() still has its usage recorded (the README example as written)', async () => {
    const { lf, home } = await unboundSetup(100);
    const script = `import { loadLicense } from ${JSON.stringify(DIST)};
const lic = await loadLicense({ stateDir: ${JSON.stringify(home)}, licenseFile: ${JSON.stringify(lf)} });
for (let i = 0; i < 30; i++) { const r = await lic.validate({ meter: { metric: 'inferences', quantity: 1 } }); if (!r.valid) throw new Error(r.error); }`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const st = await mlic(['meter', 'status', '--license', lf, '--home', home, '--json']);
    expect(st.json.result.meters[0]).toMatchObject({ used: 30, reserved: 0, remaining: 70 });
  });

  it('a refusal reports what was used ("30 of 100"), and meter status and meter consume agree while another process holds a reservation', async () => {
    const { lf, home } = await unboundSetup(100);
    const lic = await loadLicense({ stateDir: home, licenseFile: lf, durability: 'batched' });
    for (let i = 0; i < 30; i++) expect((await lic.validate({ meter: { metric: 'inferences', quantity: 1 } })).valid).toBe(true);
    const over = await lic.validate({ meter: { metric: 'inferences', quantity: 71 } });
    expect(over).toMatchObject({ valid: false, error: 'quota_exceeded', used: 30, reserved: 0, remaining: 70 });
    // This process now holds a fresh reservation; another process sees it as reserved.
    expect((await lic.validate({ meter: { metric: 'inferences', quantity: 1 } })).valid).toBe(true);
    await lic.flush();
    const st = (await mlic(['meter', 'status', '--license', lf, '--home', home, '--json'])).json.result.meters[0];
    const c = (await mlic(['meter', 'consume', '--license', lf, '--home', home, '--metric', 'inferences', '--quantity', '1', '--json'])).json.result;
    expect(st.used + st.reserved + st.remaining).toBe(100);
    expect(c.used).toBe(st.used + 1);
    expect(c.reserved).toBe(st.reserved);
    expect(c.remaining).toBe(st.remaining - 1);
    await lic.close();
    const end = (await mlic(['meter', 'status', '--license', lf, '--home', home, '--json'])).json.result.meters[0];
    expect(end).toMatchObject({ used: 32, reserved: 0, remaining: 68 });
  });

  it('a process killed with a reservation: its unused reservation becomes consumed (forfeited) usage when it expires, never lost usage', async () => {
    const { lf, home } = await unboundSetup(10_000);
    const script = `import { loadLicense } from ${JSON.stringify(DIST)};
const lic = await loadLicense({ stateDir: ${JSON.stringify(home)}, licenseFile: ${JSON.stringify(lf)}, flushMs: 10 });
await lic.validate({ meter: { metric: 'inferences', quantity: 5 } });
await new Promise((r) => setTimeout(r, 200));
process.stdout.write('ready\\n');
setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    child.kill('SIGKILL');
    await new Promise((r) => child.on('close', r));
    // While the reservation lives, it counts as reserved.
    const live = (await mlic(['meter', 'status', '--license', lf, '--home', home, '--json'])).json.result.meters[0];
    expect(live.used).toBe(5);
    expect(live.reserved).toBe(95); // block 100 (1% of the limit), 5 used
    // After it expired (a clock past expiry), the rest is consumed usage.
    const later = new Date(Date.now() + LEASE_MS + FORFEIT_AFTER_MS + 1000);
    const after = await loadLicense({ stateDir: home, licenseFile: lf, clock: () => later });
    expect((await after.status())[0]).toMatchObject({ used: 100, reserved: 0, remaining: 9900 });
    const forfeit = (await after.usageRecords()).filter((r) => r.data.kind === 'consume' && r.data.forfeited);
    expect(forfeit.map((r) => (r.data as { quantity: number }).quantity)).toEqual([95]);
    await after.close();
  });
});
