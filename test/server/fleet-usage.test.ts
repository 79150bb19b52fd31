/**
 * What the admin sees of fleet meters (issue 10), on both databases, with the server in this
 * process on loopback (its clock moved by the test) and the admin's view read through
 * GET /v1/usage and through the built `mlic admin usage`:
 *
 * - usage past the quota, per period: a meter with overage "allow 10%" and one with "record",
 *   over two months;
 * - a difference between the server's count and the hosts' signed reports: a host process killed
 *   with units reserved (its host never reports them);
 * - a host process killed with a reservation in flight (the server granted a block, the host never
 *   recorded it): the server's rows never pass the quota, the block counts as consumed once the
 *   account expires, and the host loses no more than that one block.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/server/app.js';
import type { Database } from '../../src/server/db/index.js';
import { fleetUsage, type FleetUsage } from '../../src/server/quotas.js';
import { activateLicense, createActivationRequest } from '../../src/host/licences.js';
import { loadLicense, type LoadedLicense } from '../../src/host/handle.js';
import { publicKeyFileText, type VendorKey } from '../../src/keys/vendor.js';
import { key } from '../helpers.js';
import { mlic } from '../cli/run.js';
import { fakeHost, type FakeHost } from '../license/hosts.js';
import { KINDS, freshDatabase } from './databases.js';

const WORKER = fileURLToPath(new URL('./fixtures/fleet-consume.mjs', import.meta.url));

/** Consumes `quantity` units one call at a time; the number allowed, and the last answer. */
async function consume(lic: LoadedLicense, metric: string, quantity: number, step = 1) {
  let ok = 0;
  let last;
  for (let i = 0; i < quantity; i += step) {
    last = await lic.validate({ meter: { metric, quantity: step } });
    if (!last.valid) break;
    ok += step;
  }
  return { ok, last };
}

describe.each(KINDS)('fleet usage as the admin sees it, on %s', (kind) => {
  let db: Database;
  let token: string;
  let app: FastifyInstance;
  let url: string;
  let vendor: VendorKey;
  /** the server's clock: each test sets it */
  let clock: () => Date = () => new Date();
  beforeAll(async () => {
    ({ db, token } = await freshDatabase(kind));
    vendor = key('acme');
    app = await buildApp({ db, issuer: vendor, log: () => undefined, clock: () => clock(), rateLimits: { perKey: 0, perAddress: 0 } });
    await app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await app?.close();
    await db?.close();
  });

  const admin = () => ({ MLIC_SERVER: url, MLIC_ADMIN_TOKEN: token });
  const auth = () => ({ authorization: `Bearer ${token}` });

  async function entitle(meters: unknown[]): Promise<{ id: string; licenseKey: string }> {
    const r = await app.inject({
      method: 'POST',
      url: '/v1/entitlements',
      headers: { ...auth(), 'content-type': 'application/json' },
      payload: { customer: 'globex', model: 'resnet', maxHosts: 10, terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z', meters } },
    });
    expect(r.statusCode, r.body).toBe(201);
    return { id: r.json().entitlement.id, licenseKey: r.json().licenseKey };
  }

  /** A fake host activated online on this server, at the server's time; it asks `server` (default: this one) for units. */
  async function activate(licenseKey: string, name: string, server = url): Promise<FakeHost> {
    const h = await fakeHost(name);
    await h.state.trustAdd(publicKeyFileText(vendor));
    const request = JSON.stringify((await createActivationRequest({ stateDir: h.stateDir, hostProbe: h.probe(), now: clock() })).request);
    const a = await app.inject({ method: 'POST', url: '/v1/activations', payload: { licenseKey, request } });
    expect(a.statusCode, a.body).toBe(201);
    await activateLicense(a.json().license, { stateDir: h.stateDir, hostProbe: h.probe(), now: clock() });
    await h.state.setServerUrl(server);
    return h;
  }

  const open = (h: FakeHost, c: () => Date) => loadLicense({ stateDir: h.stateDir, hostProbe: h.probe(), model: 'resnet', clock: c });

  async function usage(q: string): Promise<{ totals: { period: string; metric: string; quantity: number; overageQuantity: number; reports: number }[]; fleet: FleetUsage[] }> {
    const r = await fetch(`${url}/v1/usage?${q}`, { headers: auth() });
    expect(r.status).toBe(200);
    return (await r.json()) as never;
  }

  /** the server's own rows for an entitlement's meter and period: net, granted less returned over the accounts, and the logged requests */
  async function rows(entitlementId: string, metric: string, period: string) {
    const net = await db.get<{ net: number }>('SELECT net FROM quota_totals WHERE entitlement_id = ? AND metric = ? AND period = ?', [entitlementId, metric, period]);
    const acc = await db.get<{ n: number | null }>('SELECT SUM(granted - returned) AS n FROM quota_accounts WHERE entitlement_id = ? AND metric = ? AND period = ?', [entitlementId, metric, period]);
    const req = await db.get<{ n: number | null }>(
      "SELECT SUM(CASE WHEN q.action = 'reserve' THEN q.amount ELSE -q.amount END) AS n FROM quota_requests q JOIN quota_accounts a ON a.id = q.account_id WHERE a.entitlement_id = ? AND a.metric = ? AND a.period = ?",
      [entitlementId, metric, period],
    );
    return { net: Number(net?.net ?? 0), accounts: Number(acc?.n ?? 0), requests: Number(req?.n ?? 0) };
  }

  it('usage past the quota is reported per period: overage 10% and record, over two months, through GET /v1/usage and `mlic admin usage`', async () => {
    // this month, then next month (the 10th, at noon). (The licence is issued at the wall clock's
    // time; a handle's close() gives unused units back at the handle's clock: next month's 20
    // images are a block of more, given back then.)
    const real = new Date();
    const next = Date.UTC(real.getUTCFullYear(), real.getUTCMonth() + 1, 10, 12);
    const [M1, M2] = [real.toISOString().slice(0, 7), new Date(next).toISOString().slice(0, 7)];
    let offset = 0;
    clock = () => new Date(Date.now() + offset);
    const e = await entitle([
      { metric: 'inferences', limit: 1000, period: 'month', scope: 'fleet', overage: { mode: 'allow', percent: 10 } },
      { metric: 'tokens', limit: 100, period: 'month', scope: 'fleet', overage: { mode: 'record' } },
      { metric: 'images', limit: 50, period: 'month', scope: 'fleet' }, // refuse (the default): the control
    ]);
    const h = await activate(e.licenseKey, 'over');
    // this month: 1,030 inferences (30 past the limit), 250 tokens (any amount is recorded), 50 images (then refused)
    let lic = await open(h, clock);
    expect((await consume(lic, 'inferences', 1030)).ok).toBe(1030);
    expect((await consume(lic, 'tokens', 250, 50)).ok).toBe(250);
    const images = await consume(lic, 'images', 60);
    expect(images.ok).toBe(50);
    expect(images.last).toMatchObject({ valid: false, error: 'quota_exceeded' });
    await lic.close(); // gives back the units it did not use; posts this month's report
    // next month: 1,100 inferences (the limit and 10% more, then refused) and 100 tokens (exactly the limit: no overage)
    offset = next - Date.now();
    lic = await open(h, clock);
    const second = await consume(lic, 'inferences', 1200);
    expect(second.ok).toBe(1100);
    expect(second.last).toMatchObject({ valid: false, error: 'quota_exceeded' });
    expect((await consume(lic, 'tokens', 100, 10)).ok).toBe(100);
    expect((await consume(lic, 'images', 20)).ok).toBe(20);
    await lic.close();
    offset = next + 1_200_000 - Date.now(); // 20 minutes on, the accounts have expired: nothing is held by hosts any more

    // the server's rows: the fleet's net per meter and period (what is billed); past the limit is overage
    const nets = await db.all<{ period: string; metric: string; net: number }>('SELECT period, metric, net FROM quota_totals WHERE entitlement_id = ? ORDER BY period, metric', [e.id]);
    expect(nets.map((o) => [o.period, o.metric, Number(o.net)])).toEqual([
      [M1, 'images', 50],
      [M1, 'inferences', 1030],
      [M1, 'tokens', 250],
      [M2, 'images', 20],
      [M2, 'inferences', 1100],
      [M2, 'tokens', 100],
    ]);
    expect(await rows(e.id, 'inferences', M1)).toEqual({ net: 1030, accounts: 1030, requests: 1030 });
    expect(await rows(e.id, 'inferences', M2)).toEqual({ net: 1100, accounts: 1100, requests: 1100 });
    expect(await rows(e.id, 'tokens', M1)).toEqual({ net: 250, accounts: 250, requests: 250 });
    // what the block held beyond the 20 used went back at the handle's clock, next month
    expect((await rows(e.id, 'images', M2)).net).toBe(20);

    // the API: per period, the server's count with its overage, beside the hosts' reports (which flag the same units as overage)
    const all = await usage(`entitlement=${e.id}`);
    const f = (period: string, metric: string, net: number, limit: number, over: number) => ({ entitlementId: e.id, period, metric, net, limit, overage: over, outstanding: 0, reported: net, difference: 0 });
    expect(all.fleet).toEqual([
      f(M1, 'images', 50, 50, 0),
      f(M1, 'inferences', 1030, 1000, 30),
      f(M1, 'tokens', 250, 100, 150),
      f(M2, 'images', 20, 50, 0),
      f(M2, 'inferences', 1100, 1000, 100),
      f(M2, 'tokens', 100, 100, 0),
    ]);
    expect(all.totals.map((x) => [x.period, x.metric, x.quantity, x.overageQuantity, x.reports])).toEqual([
      [M1, 'images', 50, 0, 1],
      [M1, 'inferences', 1030, 30, 1],
      [M1, 'tokens', 250, 150, 1],
      [M2, 'images', 20, 0, 1],
      [M2, 'inferences', 1100, 100, 1],
      [M2, 'tokens', 100, 0, 1],
    ]);
    expect((await usage(`entitlement=${e.id}&period=${M2}`)).fleet.map((x) => [x.period, x.metric, x.overage])).toEqual([
      [M2, 'images', 0],
      [M2, 'inferences', 100],
      [M2, 'tokens', 0],
    ]);

    // the CLI: one line per period and meter, with the overage
    const cli = await mlic(['admin', 'usage', '--entitlement', e.id], { env: admin() });
    expect(cli.code, cli.stderr).toBe(0);
    const lines = cli.stdout.trim().split('\n');
    for (const line of [
      `${e.id}  ${M1}  inferences (fleet)  granted 1030 of 1000 (overage 30); hosts report 1030 used, no difference`,
      `${e.id}  ${M1}  tokens (fleet)  granted 250 of 100 (overage 150); hosts report 250 used, no difference`,
      `${e.id}  ${M1}  images (fleet)  granted 50 of 50; hosts report 50 used, no difference`,
      `${e.id}  ${M2}  inferences (fleet)  granted 1100 of 1000 (overage 100); hosts report 1100 used, no difference`,
      `${e.id}  ${M2}  tokens (fleet)  granted 100 of 100; hosts report 100 used, no difference`,
      `${e.id}  ${M2}  images (fleet)  granted 20 of 50; hosts report 20 used, no difference`,
      `${e.id}  ${M2}  images  20  from 1 report(s)`,
      `${e.id}  ${M1}  inferences  1030 (overage 30)  from 1 report(s)`,
      `${e.id}  ${M1}  tokens  250 (overage 150)  from 1 report(s)`,
      `${e.id}  ${M2}  inferences  1100 (overage 100)  from 1 report(s)`,
      `${e.id}  ${M2}  tokens  100  from 1 report(s)`,
    ])
      expect(lines).toContain(line);
    const nextMonth = await mlic(['admin', 'usage', '--entitlement', e.id, '--period', M2, '--json'], { env: admin() });
    expect(nextMonth.code, nextMonth.stderr).toBe(0);
    expect(nextMonth.json.result.fleet).toEqual(all.fleet.slice(3));
  }, 60_000);

  it("a host process killed with units reserved: the server's count and the hosts' reports differ by its block, shown non-zero by GET /v1/usage and `mlic admin usage`", async () => {
    let offset = 0;
    clock = () => new Date(Date.now() + offset);
    const e = await entitle([{ metric: 'inferences', limit: 10_000, period: 'month', scope: 'fleet' }]);
    const period = clock().toISOString().slice(0, 7);
    // host A uses 300 and closes: it gives back what it did not use and reports 300
    const a = await activate(e.licenseKey, 'diffa');
    const la = await open(a, clock);
    expect((await consume(la, 'inferences', 300)).ok).toBe(300);
    await la.close();
    expect((await usage(`entitlement=${e.id}`)).fleet).toEqual([{ entitlementId: e.id, period, metric: 'inferences', net: 300, limit: 10_000, overage: 0, outstanding: 300, reported: 300, difference: 0 }]); // A's account lives on (the server cannot know its units are used)
    // host B's process uses at least 200 and is killed with SIGKILL: it never gives back or reports
    const b = await activate(e.licenseKey, 'diffb');
    const c = spawn(process.execPath, [WORKER, b.stateDir, JSON.stringify(b.probe()), '1', '60000', 'forever'], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => {
      let out = '';
      c.stdout.on('data', (d) => {
        out += d;
        if (Number(out.trim().split('\n').pop()) >= 200) {
          c.kill('SIGKILL');
          resolve();
        }
      });
    });
    await new Promise((r) => c.on('close', r));
    const held = (await rows(e.id, 'inferences', period)).net - 300; // B's block(s), by the server's rows
    expect(held).toBeGreaterThanOrEqual(200);
    const live = await usage(`entitlement=${e.id}`);
    expect(live.fleet).toEqual([{ entitlementId: e.id, period, metric: 'inferences', net: 300 + held, limit: 10_000, overage: 0, outstanding: 300 + held, reported: 300, difference: held }]);
    const line = async () => {
      const r = await mlic(['admin', 'usage', '--entitlement', e.id], { env: admin() });
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.split('\n').find((l) => l.includes('(fleet)'));
    };
    expect(await line()).toBe(`${e.id}  ${period}  inferences (fleet)  granted ${300 + held} of 10000, ${300 + held} held by hosts now; hosts report 300 used (difference +${held})`);
    // once the accounts expire, B's block counts as consumed: no longer held, still not reported
    offset = 901_000;
    expect((await usage(`entitlement=${e.id}`)).fleet).toMatchObject([{ net: 300 + held, outstanding: 0, reported: 300, difference: held }]);
    expect(await line()).toBe(`${e.id}  ${period}  inferences (fleet)  granted ${300 + held} of 10000; hosts report 300 used (difference +${held})`);
    // B comes back: its ledger forfeits the dead process's block, and its report counts it; what
    // its processes never took from the host's pool stays the host's, unreported
    const lb = await open(b, clock);
    const [m] = await lb.status();
    expect(m!.used).toBeGreaterThanOrEqual(200);
    expect(m!.used).toBeLessThanOrEqual(held);
    await lb.close();
    const after = (await usage(`entitlement=${e.id}`)).fleet[0]!;
    expect(after).toMatchObject({ net: 300 + held, reported: 300 + m!.used, difference: held - m!.used });
    expect(after.difference).toBeGreaterThanOrEqual(0); // never billed less than used
  }, 60_000);

  it('a host process killed with a reservation in flight (granted by the server, never recorded by the host): the rows never pass the quota, the block counts as consumed at expiry, and the host loses that one block at most', async () => {
    let offset = 0;
    clock = () => new Date(Date.now() + offset);
    const LIMIT = 5000; // blocks of 50 at first, doubling up to 500
    const e = await entitle([{ metric: 'inferences', limit: LIMIT, period: 'month', scope: 'fleet' }]);
    const period = clock().toISOString().slice(0, 7);
    // a proxy between the host and the server: once armed, the next granted reservation reaches
    // the server and is answered, but the host process is killed before the answer gets to it
    let armed = false;
    let child: ChildProcess | undefined;
    let lost: { request: { payload: { requestId: string; amount: number; min: number; used: number } }; answer: { amount: number; accountId: string } } | undefined;
    const proxy: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        void (async () => {
          const up = await fetch(`${url}${req.url}`, { method: req.method, headers: { 'content-type': 'application/json' }, ...(req.method === 'POST' ? { body } : {}) });
          const text = await up.text();
          if (armed && req.url === '/v1/reservations' && up.status === 201) {
            armed = false;
            lost = { request: JSON.parse((JSON.parse(body) as { request: string }).request), answer: JSON.parse(text) };
            const gone = new Promise((r) => child!.on('close', r));
            child!.kill('SIGKILL');
            await gone;
            req.socket.destroy();
            return;
          }
          res.writeHead(up.status, { 'content-type': 'application/json' });
          res.end(text);
        })();
      });
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    try {
      const h = await activate(e.licenseKey, 'inflight', `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`);
      child = spawn(process.execPath, [WORKER, h.stateDir, JSON.stringify(h.probe()), '1', '60000', 'forever'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
        if (!lost && Number(out.trim().split('\n').pop()) >= 300) armed = true;
      });
      await new Promise((r) => child!.on('close', r));
      expect(lost, 'no reservation was intercepted').toBeDefined();
      const inflight = lost!.answer.amount;
      expect(inflight).toBeGreaterThanOrEqual(lost!.request.payload.min);
      expect(inflight).toBeLessThanOrEqual(LIMIT / 10); // one block: never more than 10% of the limit

      // the server's records: the block is granted and logged; the rows agree and stay within the quota
      const r1 = await rows(e.id, 'inferences', period);
      expect(r1.net).toBeLessThanOrEqual(LIMIT);
      expect(r1).toEqual({ net: r1.net, accounts: r1.net, requests: r1.net });
      const logged = await db.get<{ amount: number; action: string }>('SELECT amount, action FROM quota_requests WHERE request_id = ?', [lost!.request.payload.requestId]);
      expect(logged).toMatchObject({ action: 'reserve' });
      expect(Number(logged!.amount)).toBe(inflight);
      // what the host had used when it asked (its own count, signed in the request): everything else the server counts is that block
      const usedWhenAsked = lost!.request.payload.used;
      expect(usedWhenAsked).toBeGreaterThanOrEqual(300);
      // one process, one unit a call: it asks only once its pool is used up, so what it loses is exactly the block in flight
      expect(r1.net - usedWhenAsked).toBe(inflight);
      expect(await fleetUsage(db, { entitlementId: e.id }, clock())).toMatchObject([{ net: r1.net, outstanding: r1.net }]);

      // once the account expires (15 minutes, the default): all of it counts as consumed
      offset = 901_000;
      expect(await fleetUsage(db, { entitlementId: e.id }, clock())).toMatchObject([{ net: r1.net, outstanding: 0 }]);
      // the host comes back: its ledger never saw the block in flight
      const lic = await open(h, clock);
      const grants = (await lic.usageRecords()).reduce((n, r) => n + (r.data.kind === 'grant' ? r.data.amount : 0), 0);
      expect(grants).toBe(r1.net - inflight);
      const [m] = await lic.status();
      expect(grants).toBe(usedWhenAsked);
      expect(m!.used).toBe(usedWhenAsked); // all it was granted (a killed process's unused block would be forfeited: never more than granted)
      // it goes on: the fleet gets exactly the quota, the lost block counted as used
      const rest = await consume(lic, 'inferences', LIMIT);
      expect(rest.last).toMatchObject({ valid: false, error: 'quota_exceeded' });
      await lic.close();
      const r2 = await rows(e.id, 'inferences', period);
      expect(r2).toEqual({ net: LIMIT, accounts: LIMIT, requests: LIMIT });
      const again = await open(h, clock);
      const [after] = await again.status();
      await again.close();
      expect(after!.used).toBe(LIMIT - inflight); // the host used (or forfeited) all the server granted, but the block in flight
      // the admin sees the lost block as the difference between the server's count and the host's report
      expect((await usage(`entitlement=${e.id}`)).fleet).toMatchObject([{ net: LIMIT, reported: LIMIT - inflight, difference: inflight }]);
    } finally {
      child?.kill('SIGKILL');
      await new Promise<void>((r) => proxy.close(() => r()));
    }
  }, 60_000);
});
