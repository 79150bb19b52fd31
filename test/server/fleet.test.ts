/**
 * Fleet-wide quotas end to end, with real processes: hosts (separate state directories, their own
 * host keys and fingerprints) activated online against a real licence server, each running
 * several processes that meter through loadLicense(). Checked against the server's database and
 * each host's ledger, not only what the processes say.
 */
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createActivationRequest, activateLicense } from '../../src/host/licences.js';
import { loadLicense } from '../../src/host/handle.js';
import { publicKeyFileText } from '../../src/keys/vendor.js';
import { key } from '../helpers.js';
import { fakeHost, type FakeHost } from '../license/hosts.js';
import { startServer, stop } from './process.js';
import { vendorServer } from './online.js';
import { KINDS, dbRows, freshDatabase, freshPostgres, type Kind } from './databases.js';
import type { AddressInfo } from 'node:net';
import { buildApp } from '../../src/server/app.js';
import { fleetUsage } from '../../src/server/quotas.js';

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

/**
 * A vendor key on disk, a server (no rate limits), and an entitlement with one fleet meter. On
 * PostgreSQL, a second server process on the same database: hosts alternate between the two.
 */
async function fleetServer(limit: number, kind: Kind = 'sqlite') {
  const url = kind === 'postgres' ? await freshPostgres() : undefined;
  const vs = await vendorServer([...(url ? ['--database', url] : []), '--rate-limit-key', '0', '--rate-limit-address', '0']);
  const servers = [vs.s];
  if (kind === 'postgres') servers.push(await startServer(vs.args));
  const e = await vs.entitle({ terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z', meters: [{ metric: 'inferences', limit, period: 'month', scope: 'fleet' }] } });
  let n = 0;
  return {
    s: vs.s,
    servers,
    dataDir: vs.dataDir,
    url,
    args: vs.args,
    host: (name: string) => vs.host(e.licenseKey, name, { url: servers[n++ % servers.length]!.url }),
    entitlementId: e.id,
  };
}

describe.each(KINDS)('fleet quotas with real processes on %s', (kind) => {
  it(`8 hosts × 4 processes against a fleet quota of 100,000${kind === 'postgres' ? ' (two server processes)' : ''}: exactly 100,000 allowed in all, the server and the ledgers agree, and every further call is quota_exceeded`, async () => {
    const { s, servers, dataDir, url, host, entitlementId } = await fleetServer(100_000, kind);
    try {
      const hosts: FakeHost[] = [];
      for (let i = 0; i < 8; i++) hosts.push(await host(`f${i}`));
      const results = await Promise.all(hosts.flatMap((h) => [0, 1, 2, 3].map(async () => ({ h, w: await work(h, 1, 90_000) }))));
      const total = results.reduce((n, r) => n + r.w.ok, 0);
      for (const { w } of results) expect(w.last, JSON.stringify(w)).toMatchObject({ error: 'quota_exceeded', fleet: { unusedElsewhere: 0 } });
      expect(total).toBe(100_000);
      // the server's own rows: the fleet's net units, and per host what it holds
      const [net] = await dbRows<{ net: number }>(kind, dataDir, url, 'SELECT net FROM quota_totals WHERE entitlement_id = $1', [entitlementId]);
      expect(Number(net!.net)).toBe(100_000);
      // each host's ledger: what its processes consumed is what the server granted it, less what it gave back
      const accounts = await dbRows<{ host_id: string; license_id: string; n: number }>(
        kind,
        dataDir,
        url,
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
      // the hosts posted their usage reports as they closed: the admin's view shows no difference between the server's count and the ledgers
      const u = await fetch(`${s.url}/v1/usage?entitlement=${entitlementId}`, { headers: { authorization: `Bearer ${s.first.adminToken as string}` } });
      const summary = (await u.json()) as { totals: { metric: string; quantity: number; reports: number }[]; fleet: unknown[] };
      expect(summary.totals).toMatchObject([{ metric: 'inferences', quantity: 100_000, reports: 8 }]);
      expect(summary.fleet).toMatchObject([{ metric: 'inferences', net: 100_000, limit: 100_000, reported: 100_000, difference: 0 }]);
      // the server was asked for blocks, not for every unit
      const [reqs] = await dbRows<{ n: number }>(kind, dataDir, url, "SELECT COUNT(*) AS n FROM quota_requests WHERE action = 'reserve'", []);
      expect(Number(reqs!.n)).toBeLessThan(2_000);
      // the requests the server logged add up to the net: no grant or give-back unaccounted for
      const [logged] = await dbRows<{ n: number }>(
        kind,
        dataDir,
        url,
        "SELECT SUM(CASE WHEN q.action = 'reserve' THEN q.amount ELSE -q.amount END) AS n FROM quota_requests q JOIN quota_accounts a ON a.id = q.account_id WHERE a.entitlement_id = $1",
        [entitlementId],
      );
      expect(Number(logged!.n)).toBe(100_000);
      // every server process granted reservations (their access logs)
      for (const x of servers) expect(x.stdout().match(/"path":"\/v1\/reservations","status":201/g)?.length ?? 0).toBeGreaterThan(0);
    } finally {
      for (const x of servers) expect(await stop(x)).toBe(0);
    }
  }, 240_000);
});

describe('fleet quotas with real processes (host side)', () => {

  it('a host process killed with units reserved: the server counts its block as consumed once the account expires; the host keeps what it was granted and is never billed less than it used', async () => {
    const { db, token } = await freshDatabase('sqlite');
    let offset = 0;
    const vendor = key('acme');
    const app = await buildApp({ db, issuer: vendor, log: () => undefined, clock: () => new Date(Date.now() + offset), rateLimits: { perKey: 0, perAddress: 0 } });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    try {
      const e = await app.inject({
        method: 'POST',
        url: '/v1/entitlements',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        payload: { customer: 'g', model: 'resnet', maxHosts: 5, terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z', meters: [{ metric: 'inferences', limit: 100_000, period: 'month', scope: 'fleet' }] } },
      });
      const entitlementId = e.json().entitlement.id as string;
      const h = await fakeHost('killed');
      await h.state.trustAdd(publicKeyFileText(vendor));
      const request = JSON.stringify((await createActivationRequest({ stateDir: h.stateDir, hostProbe: h.probe() })).request);
      const a = await app.inject({ method: 'POST', url: '/v1/activations', payload: { licenseKey: e.json().licenseKey, request } });
      await activateLicense(a.json().license, { stateDir: h.stateDir, hostProbe: h.probe() });
      await h.state.setServerUrl(url);
      // a process consumes until it has used 500 units, then is killed with the rest of its block
      const c = spawn(process.execPath, [WORKER, h.stateDir, JSON.stringify(h.probe()), '1', '60000', 'forever'], { stdio: ['ignore', 'pipe', 'inherit'] });
      const used = await new Promise<number>((resolve) => {
        let out = '';
        c.stdout.on('data', (d) => {
          out += d;
          const n = Number(out.trim().split('\n').pop());
          if (n >= 500) {
            c.kill('SIGKILL');
            resolve(n);
          }
        });
      });
      await new Promise((r) => c.on('close', r));
      const [acct] = await db.all<{ granted: number; returned: number }>('SELECT granted, returned FROM quota_accounts WHERE entitlement_id = ?', [entitlementId]);
      const granted = Number(acct!.granted);
      expect(granted).toBeGreaterThanOrEqual(used);
      expect(Number(acct!.returned)).toBe(0);
      // live, the block is held; once the account expires (15 minutes, the default), all of it counts as consumed
      expect(await fleetUsage(db, { entitlementId }, new Date())).toMatchObject([{ net: granted, outstanding: granted }]);
      offset = 901_000;
      expect(await fleetUsage(db, { entitlementId }, new Date(Date.now() + offset))).toMatchObject([{ net: granted, outstanding: 0 }]);
      // the host, restarted 70 s later: the dead process's block is forfeited to its ledger; what the server granted stays the host's
      const later = new Date(Date.now() + 70_000);
      const lic = await loadLicense({ stateDir: h.stateDir, hostProbe: h.probe(), model: 'resnet', clock: () => later });
      const [m] = await lic.status();
      expect(m!.used).toBeGreaterThanOrEqual(used); // at least what it used: what it lost counts too (forfeited)
      expect(m!.used).toBeLessThanOrEqual(granted); // never more than the server billed
      const records = await lic.usageRecords();
      const forfeited = records.reduce((n, r) => n + (r.data.kind === 'consume' && r.data.forfeited ? r.data.quantity : 0), 0);
      expect(forfeited).toBeGreaterThan(0);
      expect(forfeited).toBeLessThanOrEqual(granted); // at most one block lost
      const before = (await db.all('SELECT request_id FROM quota_requests')).length;
      // the units the host still holds are used without asking the server
      const left = granted - m!.used;
      if (left > 0) expect(await lic.validate({ meter: { metric: 'inferences', quantity: left } })).toMatchObject({ valid: true });
      expect((await db.all('SELECT request_id FROM quota_requests')).length).toBe(before);
      await lic.close();
      // closing gives nothing back (the account expired): the server's figure stands
      expect(await fleetUsage(db, { entitlementId }, new Date(Date.now() + offset))).toMatchObject([{ net: granted, outstanding: 0 }]);
    } finally {
      await app.close();
      await db.close();
    }
  }, 60_000);

  it('a partition: a host runs on the units it holds, then answers quota_unavailable; when the server is back it resumes by itself', async () => {
    const { s, args, host } = await fleetServer(1_000_000);
    const port = new URL(s.url).port;
    const h = await host('part');
    const lic = await loadLicense({ stateDir: h.stateDir, hostProbe: h.probe(), model: 'resnet' });
    let again: Awaited<ReturnType<typeof startServer>> | undefined;
    try {
      expect((await lic.validate({ meter: { metric: 'inferences', quantity: 1 } })).valid).toBe(true);
      const [held] = await lic.status();
      const pool = held!.used + held!.reserved + held!.remaining; // the block the server granted
      expect(await stop(s)).toBe(0);
      // the server is down: the host uses what it holds, then stops cleanly
      let ok = 1;
      let last;
      for (let i = 0; i < pool + 10; i++) {
        last = await lic.validate({ meter: { metric: 'inferences', quantity: 1 } });
        if (!last.valid) break;
        ok++;
      }
      expect(ok).toBe(pool);
      expect(last).toMatchObject({ valid: false, error: 'quota_unavailable' });
      expect(last!.message).toMatch(/cannot reach the licence server/);
      // back on the same address: the next call reserves again, no admin action
      again = await startServer(args, {}, `127.0.0.1:${port}`);
      expect(await lic.validate({ meter: { metric: 'inferences', quantity: 1 } })).toMatchObject({ valid: true });
    } finally {
      await lic.close();
      if (again) await stop(again);
    }
  }, 60_000);

  it("the server's other refusals keep their answer: a licence revoked on the server is license_revoked at the next block, before any list reaches the host", async () => {
    const { s, host } = await fleetServer(100); // blocks of 1: every call asks the server
    try {
      const h = await host('rev');
      const lic = await loadLicense({ stateDir: h.stateDir, hostProbe: h.probe(), model: 'resnet' });
      expect((await lic.validate({ meter: { metric: 'inferences', quantity: 1 } })).valid).toBe(true);
      const r = await fetch(`${s.url}/v1/revocations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${s.first.adminToken as string}`, 'content-type': 'application/json' },
        body: JSON.stringify({ licenseId: lic.license.licenseId }),
      });
      expect(r.status).toBeLessThan(300);
      expect(await lic.validate({ meter: { metric: 'inferences', quantity: 1 } })).toMatchObject({ valid: false, error: 'license_revoked' });
      await lic.close();
    } finally {
      expect(await stop(s)).toBe(0);
    }
  }, 60_000);
});
