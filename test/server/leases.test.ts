/**
 * Floating seats on the licence server (the server's side of issue 10), on both databases, through
 * the full HTTP pipeline with a clock the test moves: never more seats held than the entitlement
 * has, whatever the concurrency (checked in the database); leases expire by themselves; every
 * refusal has its code; the lease token is the vendor's signature over what it grants.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { mkdir } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/server/app.js';
import { type Database } from '../../src/server/db/index.js';
import { createActivationRequest } from '../../src/host/licences.js';
import { parseLease, signLeaseRequest, verifyLease, type LeaseRequestPayload } from '../../src/format/lease.js';
import type { VendorKey } from '../../src/keys/vendor.js';
import { key } from '../helpers.js';
import { fakeHost, type FakeHost } from '../license/hosts.js';
import { KINDS, freshDatabase } from './databases.js';

interface Host {
  fake: FakeHost;
  gpus: number;
  licenseId: string;
  signSeed: Uint8Array;
}

describe.each(KINDS)('floating seats on %s', (kind) => {
  let db: Database;
  let app: FastifyInstance;
  let token: string;
  let vendor: VendorKey;
  let now = new Date('2027-03-01T12:00:00Z');
  beforeAll(async () => {
    ({ db, token } = await freshDatabase(kind));
    vendor = key('acme');
    app = await buildApp({ db, issuer: vendor, log: () => undefined, clock: () => now, rateLimits: { perKey: 0, perAddress: 0 } });
  });
  afterAll(async () => {
    await app?.close();
    await db?.close();
  });

  const post = (url: string, body: unknown, auth = false) =>
    app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${token}` } : {}) }, payload: JSON.stringify(body) });

  async function entitle(seats?: { count: number; unit: string; leaseSeconds?: number }, terms: Record<string, unknown> = {}): Promise<{ id: string; licenseKey: string }> {
    const r = await post('/v1/entitlements', { customer: 'globex', model: 'resnet', maxHosts: 50, terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z', ...terms }, ...(seats ? { seats } : {}) }, true);
    expect(r.statusCode, r.body).toBe(201);
    return { id: r.json().entitlement.id, licenseKey: r.json().licenseKey };
  }

  async function activateHost(licenseKey: string, name: string, gpus: number): Promise<Host> {
    const fake = await fakeHost(name, { gpus });
    const request = JSON.stringify((await createActivationRequest({ stateDir: fake.stateDir, hostProbe: fake.probe() })).request);
    const r = await post('/v1/activations', { licenseKey, request });
    expect(r.statusCode, r.body).toBe(201);
    return { fake, gpus, licenseId: r.json().licenseId, signSeed: (await fake.state.loadHost())!.signSeed };
  }

  const ask = (h: Host, p: Partial<LeaseRequestPayload> = {}, seed = h.signSeed) =>
    post('/v1/leases', {
      request: JSON.stringify(
        signLeaseRequest({ v: 1, kind: 'mlic-lease-request', action: 'checkout', licenseId: h.licenseId, clientId: 'p1', createdAt: now.toISOString().replace(/\.\d+Z$/, 'Z'), ...p }, seed),
      ),
    });

  const held = async (entitlementId: string) => {
    const t = Math.floor(now.getTime() / 1000);
    const r = await db.get<{ n: number | null }>('SELECT SUM(seats) AS n FROM leases WHERE entitlement_id = ? AND released_at IS NULL AND expires_at > ?', [entitlementId, t]);
    return Number(r?.n ?? 0);
  };

  it('8 GPU seats, 10 hosts with 1-4 GPUs, 40 clients at once: never more than 8 GPUs hold leases, and every host gets one as others release', async () => {
    const e = await entitle({ count: 8, unit: 'gpu' });
    const hosts: Host[] = [];
    for (let i = 0; i < 10; i++) hosts.push(await activateHost(e.licenseKey, `g${i}`, 1 + (i % 4)));
    // 4 clients per host, all at once
    const answers = await Promise.all(hosts.flatMap((h) => [1, 2, 3, 4].map(async (c) => ({ h, r: await ask(h, { clientId: `p${c}` }) }))));
    for (const { r } of answers) expect([200, 201, 403], r.body).toContain(r.statusCode);
    const refused = answers.filter((a) => a.r.statusCode === 403);
    for (const { r } of refused) expect(r.json().error).toMatchObject({ code: 'SEAT_UNAVAILABLE', details: { seats: 8, unit: 'gpu' } });
    // one lease per host (clients of a host share it), and the sum within the seats
    const holders = new Map<Host, string>();
    for (const { h, r } of answers) if (r.statusCode !== 403) holders.set(h, parseLease(r.json().lease).payload.leaseId);
    expect([...holders.keys()].reduce((n, h) => n + h.gpus, 0)).toBe(await held(e.id));
    expect(await held(e.id)).toBeLessThanOrEqual(8);
    expect(await held(e.id)).toBeGreaterThanOrEqual(5); // the largest demand is 4: a full 8 minus at most 3 left idle
    // release the longest holder at a time; the waiting hosts retry in the order they have waited,
    // first come first served (the one just released queues last): all get a turn
    const served = new Set(holders.keys());
    const waiting = hosts.filter((x) => !holders.has(x));
    let guard = 0;
    while (served.size < hosts.length && guard++ < 50) {
      const [h, leaseId] = [...holders][0]!;
      const rel = await ask(h, { action: 'release', leaseId });
      expect(rel.json()).toEqual({ released: true, leaseId });
      holders.delete(h);
      waiting.push(h);
      for (const w of [...waiting]) {
        const r = await ask(w);
        if (r.statusCode === 201) {
          holders.set(w, parseLease(r.json().lease).payload.leaseId);
          served.add(w);
          waiting.splice(waiting.indexOf(w), 1);
        } else {
          expect(r.json().error.code).toBe('SEAT_UNAVAILABLE');
          break; // first come, first served: the head of the queue waits for enough seats
        }
        expect(await held(e.id)).toBeLessThanOrEqual(8);
      }
    }
    expect(served.size).toBe(hosts.length);
  }, 120_000);

  it('leases expire by themselves (a killed host frees its seats within one lease); renewal keeps them; an expired one is LEASE_EXPIRED', async () => {
    const e = await entitle({ count: 1, unit: 'host', leaseSeconds: 600 });
    const a = await activateHost(e.licenseKey, 'ea', 1);
    const b = await activateHost(e.licenseKey, 'eb', 1);
    const first = await ask(a);
    expect(first.statusCode).toBe(201);
    const leaseId = parseLease(first.json().lease).payload.leaseId;
    const busy = await ask(b);
    expect(busy.json().error).toMatchObject({ code: 'SEAT_UNAVAILABLE', details: { inUse: 1, seats: 1, nextFreeAt: '2027-03-01T12:10:00Z' } });
    now = new Date(now.getTime() + 400_000);
    const renewed = await ask(a, { action: 'renew', leaseId });
    expect(renewed.statusCode).toBe(200);
    expect(parseLease(renewed.json().lease).payload).toMatchObject({ leaseId, expiresAt: new Date(now.getTime() + 600_000).toISOString().replace(/\.\d+Z$/, 'Z') });
    now = new Date(now.getTime() + 400_000); // within the renewed lease
    expect((await ask(b)).statusCode).toBe(403);
    now = new Date(now.getTime() + 201_000); // A died: its lease ran out
    const taken = await ask(b);
    expect(taken.statusCode).toBe(201);
    const late = await ask(a, { action: 'renew', leaseId });
    expect([late.statusCode, late.json().error.code]).toEqual([403, 'LEASE_EXPIRED']);
    expect((await ask(a)).json().error.code).toBe('SEAT_UNAVAILABLE');
  });

  it("clock skew: a request signed within the licence's clock tolerance of the server's time is taken, either way; a second past it is CLOCK_TAMPERED (checkout and renewal)", async () => {
    // a tolerance of 5 minutes, and one of 0 (the server allows at least a minute)
    for (const [tolerance, skew] of [
      [300, 300],
      [0, 60],
    ] as const) {
      const e = await entitle({ count: 10, unit: 'process', leaseSeconds: 600 }, { clockToleranceSeconds: tolerance });
      const h = await activateHost(e.licenseKey, `skew${tolerance}`, 1);
      const at = (s: number) => new Date(now.getTime() + s * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
      const ids: string[] = [];
      for (const s of [skew, -skew]) {
        const r = await ask(h, { clientId: `in${s}`, createdAt: at(s) });
        expect(r.statusCode, r.body).toBe(201);
        ids.push(parseLease(r.json().lease).payload.leaseId);
      }
      for (const s of [skew + 1, -(skew + 1)]) {
        const r = await ask(h, { clientId: `out${s}`, createdAt: at(s) });
        expect([r.statusCode, r.json().error.code], r.body).toEqual([403, 'CLOCK_TAMPERED']);
        expect(r.json().error.message).toContain(`more than ${skew} s`);
        // a renewal of a held lease, signed as far off: refused the same way, and the lease stays as it was
        const renew = await ask(h, { clientId: `in${skew}`, action: 'renew', leaseId: ids[0]!, createdAt: at(s) });
        expect([renew.statusCode, renew.json().error.code]).toEqual([403, 'CLOCK_TAMPERED']);
      }
      expect((await ask(h, { clientId: `in${skew}`, action: 'renew', leaseId: ids[0]!, createdAt: at(-skew) })).statusCode).toBe(200);
      // the server's rows: the two leases taken, none for the refused requests
      const rows = await db.all<{ client_id: string }>('SELECT client_id FROM leases WHERE entitlement_id = ? ORDER BY client_id', [e.id]);
      expect(rows.map((r) => r.client_id)).toEqual([`in${-skew}`, `in${skew}`].sort());
      expect(await held(e.id)).toBe(2);
    }
  });

  it('the lease is signed by the vendor key over what it grants; refusals carry their codes', async () => {
    const e = await entitle({ count: 4, unit: 'process' });
    const a = await activateHost(e.licenseKey, 'sa', 2);
    const b = await activateHost(e.licenseKey, 'sb', 2);
    const r = await ask(a, { clientId: 'worker-1' });
    const l = parseLease(r.json().lease);
    verifyLease(l, vendor.publicKey);
    expect(l.payload).toMatchObject({ entitlementId: e.id, licenseId: a.licenseId, clientId: 'worker-1', unit: 'process', seats: 1 });
    const edited = { ...l, payload: { ...l.payload, seats: 4 } };
    expect(() => verifyLease(edited, vendor.publicKey)).toThrow(expect.objectContaining({ code: 'SIGNATURE_INVALID' }));
    expect(() => verifyLease(l, key('other').publicKey)).toThrow(expect.objectContaining({ code: 'SIGNATURE_INVALID' }));
    // process seats: each process its own
    expect((await ask(a, { clientId: 'worker-2' })).statusCode).toBe(201);
    expect((await ask(a, { clientId: 'worker-1' })).statusCode).toBe(200);
    // B's key asking for A's licence; a clock far off; an unknown licence; a malformed request; no seats
    expect((await ask(a, {}, b.signSeed)).json().error.code).toBe('SIGNATURE_INVALID');
    expect((await ask(a, { createdAt: '2027-03-02T00:00:00Z' })).json().error.code).toBe('CLOCK_TAMPERED');
    expect((await ask({ ...a, licenseId: '0'.repeat(32) })).statusCode).toBe(404);
    expect((await post('/v1/leases', { request: '{"payload":{}}' })).statusCode).toBe(400);
    const plain = await entitle();
    const p = await activateHost(plain.licenseKey, 'plain', 1);
    expect((await ask(p)).json().error.code).toBe('USAGE');
    // a revoked licence gets no lease
    expect((await post('/v1/revocations', { licenseId: b.licenseId }, true)).statusCode).toBe(200);
    expect((await ask(b)).json().error.code).toBe('LICENSE_REVOKED');
  });
});

describe('floating seats on the host, against a real server', () => {
  it('the first use checks out a lease (one host seat: the second host gets SEAT_UNAVAILABLE); the lease carries the host through a server outage', async () => {
    const { mlic } = await import('../cli/run.js');
    const { startServer, stop } = await import('./process.js');
    const { tmp, writeRandom } = await import('../helpers.js');
    const { join } = await import('node:path');
    const v = await tmp('mlic-vendor-');
    expect((await mlic(['keygen', '-o', v, '--name', 'acme', '--unencrypted'])).code).toBe(0);
    await mkdir(join(v, 'model'));
    await writeRandom(join(v, 'model', 'weights.bin'), 50_000, 9);
    expect((await mlic(['pack', join(v, 'model'), '--name', 'resnet', '--version', '2.1.0', '--release-date', '2026-03-01', '--key', join(v, 'acme.key'), '-o', join(v, 'm.mlb')])).code).toBe(0);
    const s = await startServer(['--data', join(await tmp(), 'd'), '--key', join(v, 'acme.key')]);
    let stopped = false;
    try {
      const admin = { MLIC_SERVER: s.url, MLIC_ADMIN_TOKEN: s.first.adminToken as string };
      const ent = await mlic(['admin', 'entitlement', 'create', '--customer', 'globex', '--model', 'resnet', '--versions', '^2', '--days', '30', '--max-hosts', '5', '--floating-seats', '1', '--seat-unit', 'host', '--lease', '10m', '--json'], { env: admin });
      expect(ent.code, ent.stderr).toBe(0);
      expect(ent.json.result.entitlement.seats).toEqual({ count: 1, unit: 'host', leaseSeconds: 600 });
      const hostEnv = async (n: string) => {
        const env = { MLIC_HOME: join(await tmp(`mlic-${n}-`), 'home') };
        expect((await mlic(['trust', 'add', join(v, 'acme.pub')], { env })).code).toBe(0);
        const a = await mlic(['activate', '--online', s.url, '--license-key', ent.json.result.licenseKey, '--json'], { env });
        expect(a.code, a.stderr).toBe(0);
        return env;
      };
      const a = await hostEnv('sa');
      const b = await hostEnv('sb');
      const unpack = async (env: Record<string, string>) => mlic(['unpack', join(v, 'm.mlb'), '-o', join(await tmp(), 'out'), '--json'], { env });
      expect((await unpack(a)).code).toBe(0);
      const ls = await mlic(['leases', '--json'], { env: a });
      expect(ls.json.result.leases).toHaveLength(1);
      expect(ls.json.result.leases[0]).toMatchObject({ unit: 'host', seats: 1, live: true });
      const refused = await unpack(b);
      expect([refused.code, refused.json.error.code]).toEqual([1, 'SEAT_UNAVAILABLE']);
      expect((await unpack(a)).code).toBe(0); // the same host reuses its lease
      // mlic run holds (and renews) the lease while its command runs
      const ran = await mlic(['run', join(v, 'm.mlb'), '--', 'sh', '-c', 'test -f "$MLIC_MODEL_DIR/weights.bin" && exit 7'], { env: a });
      expect(ran.code, ran.stderr).toBe(7);
      // the run was the host's last holder of its lease: it gave the seat back as it ended, so B gets it at once (not at the lease's end)
      const runB = await mlic(['run', join(v, 'm.mlb'), '--', 'true'], { env: b });
      expect(runB.code, runB.stderr).toBe(0);
      expect((await mlic(['leases', '--json'], { env: b })).json.result.leases).toEqual([]); // given back in turn
      expect((await unpack(a)).code).toBe(0); // A checks out anew; an unpack keeps it for the lease's time
      expect((await unpack(b)).json.error.code).toBe('SEAT_UNAVAILABLE');
      expect(await stop(s)).toBe(0);
      stopped = true;
      // the server is down: A works on its lease, B cannot get one
      expect((await unpack(a)).code).toBe(0);
      const down = await unpack(b);
      expect([down.code, down.json.error.code]).toEqual([1, 'SEAT_UNAVAILABLE']);
      expect(down.json.error.message).toMatch(/cannot be reached/);
    } finally {
      if (!stopped) await stop(s);
    }
  }, 90_000);
});

describe('floating seats in the library (loadLicense), against a real server', () => {
  it('a handle holds a process seat, gives it back on close(), and answers lease_expired once its lease has run out without renewal', async () => {
    const { stop } = await import('./process.js');
    const { tmp } = await import('../helpers.js');
    const { join } = await import('node:path');
    const { loadLicense } = await import('../../src/host/handle.js');
    const { vendorServer } = await import('./online.js');
    const vs = await vendorServer();
    const { s, vendor: vendorKey } = vs;
    try {
      const { licenseKey } = await vs.entitle({ maxHosts: 5, seats: { count: 1, unit: 'process', leaseSeconds: 600 }, terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z' } });
      const host = (name: string) => vs.host(licenseKey, name);
      const a = await host('la');
      const b = await host('lb');
      let t = new Date();
      const ha = await loadLicense({ stateDir: a.stateDir, hostProbe: a.probe(), model: 'resnet', clock: () => t });
      expect((await ha.validate()).valid).toBe(true);
      await expect(loadLicense({ stateDir: b.stateDir, hostProbe: b.probe(), model: 'resnet' })).rejects.toMatchObject({ code: 'SEAT_UNAVAILABLE', details: { seats: 1, inUse: 1 } });
      // no renewal reached the server (its timer runs every 200 s): past the lease's end, validate says so
      t = new Date(Date.now() + 601_000);
      expect(await ha.validate()).toMatchObject({ valid: false, error: 'lease_expired' });
      t = new Date();
      await ha.close(); // gives the process seat back
      const hb = await loadLicense({ stateDir: b.stateDir, hostProbe: b.probe(), model: 'resnet' });
      expect((await hb.validate()).valid).toBe(true);
      await hb.close();

      // openBundle holds the process seat while the bundle is open, renews it, and gives it back on close
      const { pack } = await import('../../src/bundle/pack.js');
      const { openBundle } = await import('../../src/host/open.js');
      const { writeRandom } = await import('../helpers.js');
      const dir = await tmp();
      await writeRandom(join(dir, 'w.bin'), 5000, 1);
      const bundle = join(dir, 'resnet.mlb');
      await pack({ input: join(dir, 'w.bin'), name: 'resnet', version: '2.0.0', key: vendorKey, out: bundle });
      const ob = await openBundle(bundle, { stateDir: a.stateDir, hostProbe: a.probe() });
      expect(ob.leaseEndsAt()).toBeGreaterThan(Date.now() + 500_000); // 600 s from its receipt
      expect(ob.file('w.bin')).toHaveLength(5000);
      await expect(openBundle(bundle, { stateDir: b.stateDir, hostProbe: b.probe() })).rejects.toMatchObject({ code: 'SEAT_UNAVAILABLE' });
      await ob.close();
      const ob2 = await openBundle(bundle, { stateDir: b.stateDir, hostProbe: b.probe() });
      expect(ob2.file('w.bin')).toHaveLength(5000);
      await ob2.close();
    } finally {
      expect(await stop(s)).toBe(0);
    }
  }, 60_000);
});

describe('floating seats through a server outage (loadLicense), against a real server', () => {
  it('a handle runs on its lease while the server is down, answers lease_expired once it ends, and resumes by itself at the next renewal once the server is back', async () => {
    const { startServer, stop } = await import('./process.js');
    const { loadLicense } = await import('../../src/host/handle.js');
    const { vendorServer } = await import('./online.js');
    const vs = await vendorServer();
    let s = vs.s;
    const port = new URL(s.url).port;
    // the renewal timer is driven by the test (a minute's lease renews every 20 s); everything else runs on real time
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const { licenseKey } = await vs.entitle({ maxHosts: 5, seats: { count: 1, unit: 'host', leaseSeconds: 60 }, terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z' } });
      const h = await vs.host(licenseKey, 'outage');
      let t = new Date();
      const lic = await loadLicense({ stateDir: h.stateDir, hostProbe: h.probe(), model: 'resnet', clock: () => t });
      expect((await lic.validate()).valid).toBe(true);
      const renewal = async () => {
        await vi.advanceTimersByTimeAsync(20_000);
        await new Promise((res) => setTimeout(res, 300)); // the renewal's request and file write
      };
      // the server goes down: the host runs on its lease
      expect(await stop(s)).toBe(0);
      t = new Date(Date.now() + 30_000);
      await renewal(); // fails: nothing changes
      expect((await lic.validate()).valid).toBe(true);
      // past the lease's end, without a renewal: lease_expired, cleanly (no throw)
      t = new Date(Date.now() + 61_000);
      await renewal();
      expect(await lic.validate()).toMatchObject({ valid: false, error: 'lease_expired' });
      // the server is back on the same address: the next renewal takes the seat again, no admin action
      s = await startServer(vs.args, {}, `127.0.0.1:${port}`);
      await renewal();
      let back = await lic.validate();
      for (let i = 0; i < 50 && !back.valid; i++) {
        await new Promise((res) => setTimeout(res, 100)); // the renewal's answer may take a moment on a busy machine
        back = await lic.validate();
      }
      expect(back.valid).toBe(true);
      await lic.close();
    } finally {
      vi.useRealTimers();
      if (s.child.exitCode === null) await stop(s);
    }
  }, 60_000);
});

describe('floating seats and a host clock turned back (loadLicense), against a real server', () => {
  it("a clock turned back during a lease is caught by the host's high-water mark: validate() answers clock_tampered, a new handle is refused CLOCK_TAMPERED; within the tolerance it runs on", async () => {
    const { stop } = await import('./process.js');
    const { loadLicense } = await import('../../src/host/handle.js');
    const { vendorServer } = await import('./online.js');
    const { dbRows } = await import('./databases.js');
    const vs = await vendorServer();
    try {
      // a clock tolerance of a minute, and an hour's lease (no renewal asked during the test)
      const { licenseKey, id } = await vs.entitle({
        maxHosts: 5,
        seats: { count: 1, unit: 'host', leaseSeconds: 3600 },
        terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z', clockToleranceSeconds: 60 },
      });
      const h = await vs.host(licenseKey, 'rollback');
      const real = Date.now();
      let t = new Date(real);
      const lic = await loadLicense({ stateDir: h.stateDir, hostProbe: h.probe(), model: 'resnet', clock: () => t });
      expect((await lic.validate()).valid).toBe(true);
      // ten minutes on, under the lease: the decision moves the host's high-water mark
      t = new Date(real + 10 * 60_000);
      expect((await lic.validate()).valid).toBe(true);
      await lic.flush();
      // back 30 s: within the tolerance
      t = new Date(real + 10 * 60_000 - 30_000);
      expect((await lic.validate()).valid).toBe(true);
      // back 5 minutes, during the lease (still after the licence's issue): the high-water mark catches it
      t = new Date(real + 5 * 60_000);
      const r = await lic.validate();
      expect(r).toMatchObject({ valid: false, error: 'clock_tampered' });
      expect(r.message).toMatch(/behind the latest time this host has seen/);
      await expect(loadLicense({ stateDir: h.stateDir, hostProbe: h.probe(), model: 'resnet', clock: () => t })).rejects.toMatchObject({ code: 'CLOCK_TAMPERED' });
      // the server still counts the one lease this host checked out; with the clock put right the handle runs on it
      const rows = async () => dbRows<{ released_at: number | null }>('sqlite', vs.dataDir, undefined, 'SELECT released_at FROM leases WHERE entitlement_id = $1', [id]);
      expect(await rows()).toEqual([{ released_at: null }]);
      t = new Date(real + 10 * 60_000);
      expect((await lic.validate()).valid).toBe(true);
      // closing gives it back (signed at the server's own time: a request 10 minutes off would be CLOCK_TAMPERED there)
      t = new Date();
      await lic.close();
      expect((await rows())[0]!.released_at).not.toBeNull();
    } finally {
      expect(await stop(vs.s)).toBe(0);
    }
  }, 60_000);
});

describe('floating seats when a process ends without close(), against a real server', () => {
  it("the library installs no signal handlers: a loadLicense handle gives its lease back when the event loop empties, not on process.exit() or a signal (the signal's default stands); an openBundle handle only on close()", async () => {
    const { spawn } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const { join } = await import('node:path');
    const { stop } = await import('./process.js');
    const { vendorServer } = await import('./online.js');
    const { dbRows } = await import('./databases.js');
    const { tmp, writeRandom } = await import('../helpers.js');
    const { pack } = await import('../../src/bundle/pack.js');
    const EXIT = fileURLToPath(new URL('./fixtures/seat-exit.mjs', import.meta.url));
    const vs = await vendorServer();
    try {
      const { licenseKey, id } = await vs.entitle({ maxHosts: 10, seats: { count: 10, unit: 'host', leaseSeconds: 600 }, terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z' } });
      const dir = await tmp();
      await writeRandom(join(dir, 'w.bin'), 2000, 3);
      const bundle = join(dir, 'resnet.mlb');
      await pack({ input: join(dir, 'w.bin'), name: 'resnet', version: '2.0.0', key: vs.vendor, out: bundle });
      const cases: { how: string; signal?: NodeJS.Signals; bundle?: boolean; released: boolean }[] = [
        { how: 'end', released: true },
        { how: 'exit', released: false },
        { how: 'wait', signal: 'SIGTERM', released: false },
        { how: 'wait', signal: 'SIGINT', released: false },
        { how: 'end', bundle: true, released: false },
      ];
      for (const [i, c] of cases.entries()) {
        const h = await vs.host(licenseKey, `exit${i}`);
        const child = spawn(process.execPath, [EXIT, h.stateDir, JSON.stringify(h.probe()), c.how, ...(c.bundle ? [bundle] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
        const exited = new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on('exit', (code, signal) => r([code, signal])));
        const first = await new Promise<string>((resolve) => {
          let out = '';
          child.stdout.on('data', (d) => {
            out += d;
            if (out.includes('\n')) resolve(out);
          });
        });
        expect(JSON.parse(first)).toEqual({ held: true });
        if (c.signal) child.kill(c.signal);
        // a signal ends the process as it would without the library (no handler keeps it alive)
        expect(await exited, JSON.stringify(c)).toEqual(c.signal ? [null, c.signal] : [0, null]);
        const [row] = await dbRows<{ released_at: number | null; issued_at: number; expires_at: number }>(
          'sqlite',
          vs.dataDir,
          undefined,
          'SELECT l.released_at, l.issued_at, l.expires_at FROM leases l JOIN hosts h ON h.id = l.host_id WHERE l.entitlement_id = $1 AND h.hostname = $2',
          [id, h.name],
        );
        expect(row, JSON.stringify(c)).toBeDefined();
        // not given back: the seat frees when the lease expires, one lease duration after its last renewal
        if (c.released) expect(row!.released_at, JSON.stringify(c)).not.toBeNull();
        else expect([row!.released_at, Number(row!.expires_at) - Number(row!.issued_at)], JSON.stringify(c)).toEqual([null, 600]);
      }
    } finally {
      expect(await stop(vs.s)).toBe(0);
    }
  }, 60_000);
});
