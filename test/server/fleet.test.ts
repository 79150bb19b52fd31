/**
 * Fleet-wide quotas end to end, with real processes: hosts (separate state directories, their own
 * host keys and fingerprints) activated online against a real licence server, each running
 * several processes that meter through loadLicense(). Checked against the server's database and
 * each host's ledger, not only what the processes say.
 */
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFile, writeFile } from 'node:fs/promises';
import { createActivationRequest, activateLicense } from '../../src/host/licences.js';
import { loadLicense } from '../../src/host/handle.js';
import { encodeSecretKey, publicKeyFileText } from '../../src/keys/vendor.js';
import { key, tmp } from '../helpers.js';
import { fakeHost, type FakeHost } from '../license/hosts.js';
import { startServer, stop } from './process.js';
import { dbRows } from './databases.js';

const WORKER = fileURLToPath(new URL('./fixtures/fleet-consume.mjs', import.meta.url));

interface Worker {
  ok: number;
  waits: number;
  last?: { error?: string; fleet?: { unusedElsewhere: number } };
}

function work(h: FakeHost, quantity: number, deadlineMs: number): Promise<Worker> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [WORKER, h.stateDir, JSON.stringify(h.probe()), String(quantity), String(deadlineMs)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('close', (code) => {
      if (code !== 0) return reject(new Error(`worker exited ${code}: ${err}`));
      resolve(JSON.parse(out.trim().split('\n').pop()!) as Worker);
    });
  });
}

/** A vendor key on disk, a server on SQLite, and an entitlement with one fleet meter. */
async function fleetServer(limit: number, extra: Record<string, unknown> = {}) {
  const v = await tmp('mlic-vendor-');
  const vendorKey = key('acme');
  await writeFile(join(v, 'acme.key'), await encodeSecretKey(vendorKey, undefined), { mode: 0o600 });
  await writeFile(join(v, 'acme.pub'), publicKeyFileText(vendorKey));
  const dataDir = join(await tmp(), 'd');
  const s = await startServer(['--data', dataDir, '--key', join(v, 'acme.key'), '--rate-limit-key', '0', '--rate-limit-address', '0']);
  const r = await fetch(`${s.url}/v1/entitlements`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.first.adminToken as string}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      customer: 'globex',
      model: 'resnet',
      maxHosts: 20,
      terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z', meters: [{ metric: 'inferences', limit, period: 'month', scope: 'fleet' }] },
      ...extra,
    }),
  });
  const e = (await r.json()) as { licenseKey: string; entitlement: { id: string } };
  const host = async (name: string) => {
    const h = await fakeHost(name);
    await h.state.trustAdd(await readFile(join(v, 'acme.pub'), 'utf8'));
    const request = JSON.stringify((await createActivationRequest({ stateDir: h.stateDir, hostProbe: h.probe() })).request);
    const a = await fetch(`${s.url}/v1/activations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ licenseKey: e.licenseKey, request }) });
    await activateLicense(((await a.json()) as { license: string }).license, { stateDir: h.stateDir, hostProbe: h.probe() });
    await h.state.setServerUrl(s.url);
    return h;
  };
  return { s, dataDir, host, entitlementId: e.entitlement.id };
}

describe('fleet quotas with real processes', () => {
  it('8 hosts × 4 processes against a fleet quota of 100,000: exactly 100,000 allowed in all, the server and the ledgers agree, and every further call is quota_exceeded', async () => {
    const { s, dataDir, host, entitlementId } = await fleetServer(100_000);
    try {
      const hosts: FakeHost[] = [];
      for (let i = 0; i < 8; i++) hosts.push(await host(`f${i}`));
      const results = await Promise.all(hosts.flatMap((h) => [0, 1, 2, 3].map(async () => ({ h, w: await work(h, 1, 90_000) }))));
      const total = results.reduce((n, r) => n + r.w.ok, 0);
      for (const { w } of results) expect(w.last, JSON.stringify(w)).toMatchObject({ error: 'quota_exceeded', fleet: { unusedElsewhere: 0 } });
      expect(total).toBe(100_000);
      // the server's own rows: the fleet's net units, and per host what it holds
      const [net] = await dbRows<{ net: number }>('sqlite', dataDir, undefined, 'SELECT net FROM quota_totals WHERE entitlement_id = $1', [entitlementId]);
      expect(Number(net!.net)).toBe(100_000);
      // each host's ledger: what its processes consumed is what the server granted it, less what it gave back
      const accounts = await dbRows<{ host_id: string; license_id: string; n: number }>(
        'sqlite',
        dataDir,
        undefined,
        'SELECT host_id, license_id, SUM(granted - returned) AS n FROM quota_accounts WHERE entitlement_id = $1 GROUP BY host_id, license_id',
        [entitlementId],
      );
      let ledgers = 0;
      for (const h of hosts) {
        const lic = await loadLicense({ stateDir: h.stateDir, hostProbe: h.probe(), model: 'resnet' });
        const [m] = await lic.status();
        const mine = results.filter((r) => r.h === h).reduce((n, r) => n + r.w.ok, 0);
        expect(m!.used).toBe(mine);
        expect(Number(accounts.find((a) => a.license_id === lic.license.licenseId)?.n ?? 0)).toBe(mine);
        ledgers += m!.used;
        // one more call, anywhere: quota_exceeded, nothing left unused on other hosts
        expect(await lic.validate({ meter: { metric: 'inferences', quantity: 1 } })).toMatchObject({ valid: false, error: 'quota_exceeded', fleet: { unusedElsewhere: 0, consumed: expect.any(Number) } });
        await lic.close();
      }
      expect(ledgers).toBe(100_000);
      // the server was asked for blocks, not for every unit
      const [reqs] = await dbRows<{ n: number }>('sqlite', dataDir, undefined, "SELECT COUNT(*) AS n FROM quota_requests WHERE action = 'reserve'", []);
      expect(Number(reqs!.n)).toBeLessThan(2_000);
    } finally {
      expect(await stop(s)).toBe(0);
    }
  }, 240_000);
});
