/**
 * Fleet-wide quotas on the licence server (the server's side of issue 10), on both databases,
 * through the full HTTP pipeline with a clock the test moves: the fleet's net units never pass the
 * hard limit whatever the concurrency (checked in the database's own rows); a retried request is
 * counted once; units given back return to the fleet while the account lives, and count as
 * consumed once it expired; overage policies; every refusal has its code.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/server/app.js';
import { type Database } from '../../src/server/db/index.js';
import { createActivationRequest } from '../../src/host/licences.js';
import { signReservationRequest, type ReservationRequestPayload } from '../../src/format/reservation.js';
import { blockSize } from '../../src/server/quotas.js';
import { key } from '../helpers.js';
import { fakeHost } from '../license/hosts.js';
import { KINDS, freshDatabase } from './databases.js';

interface Host {
  licenseId: string;
  signSeed: Uint8Array;
}

describe('block sizes', () => {
  it('a block is what was asked, at most half of what is left, at least the call', () => {
    expect(blockSize(1000, 1, 100_000)).toBe(1000);
    expect(blockSize(1000, 1, 1500)).toBe(750);
    expect(blockSize(1000, 10, 12)).toBe(10);
    expect(blockSize(1000, 1, 1)).toBe(1);
    expect(blockSize(5, 5, 5)).toBe(5);
  });
});

describe.each(KINDS)('fleet quotas on %s', (kind) => {
  let db: Database;
  let app: FastifyInstance;
  let token: string;
  let now = new Date('2027-03-10T12:00:00Z');
  const iso = () => now.toISOString().replace(/\.\d+Z$/, 'Z');
  beforeAll(async () => {
    ({ db, token } = await freshDatabase(kind));
    app = await buildApp({ db, issuer: key('acme'), log: () => undefined, clock: () => now, rateLimits: { perKey: 0, perAddress: 0 } });
  });
  afterAll(async () => {
    await app?.close();
    await db?.close();
  });

  const post = (url: string, body: unknown, auth = false) =>
    app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${token}` } : {}) }, payload: JSON.stringify(body) });

  async function entitle(meters: unknown[], seats?: unknown): Promise<{ id: string; licenseKey: string }> {
    const r = await post('/v1/entitlements', { customer: 'globex', model: 'resnet', maxHosts: 50, terms: { versions: { policy: 'range', range: '^2' }, expires: '2099-01-01T00:00:00Z', meters }, ...(seats ? { seats } : {}) }, true);
    expect(r.statusCode, r.body).toBe(201);
    return { id: r.json().entitlement.id, licenseKey: r.json().licenseKey };
  }

  async function activateHost(licenseKey: string, name: string): Promise<Host> {
    const fake = await fakeHost(name);
    const request = JSON.stringify((await createActivationRequest({ stateDir: fake.stateDir, hostProbe: fake.probe() })).request);
    const r = await post('/v1/activations', { licenseKey, request });
    expect(r.statusCode, r.body).toBe(201);
    return { licenseId: r.json().licenseId, signSeed: (await fake.state.loadHost())!.signSeed };
  }

  const signed = (h: Host, p: Partial<ReservationRequestPayload> = {}, seed = h.signSeed) =>
    JSON.stringify(
      signReservationRequest(
        { v: 1, kind: 'mlic-reservation-request', action: 'reserve', requestId: randomBytes(16).toString('hex'), licenseId: h.licenseId, metric: 'inferences', period: '2027-03', amount: 100, min: 1, used: 0, createdAt: iso(), ...p },
        seed,
      ),
    );
  const ask = (h: Host, p: Partial<ReservationRequestPayload> = {}, seed?: Uint8Array) => post('/v1/reservations', { request: signed(h, p, seed) });

  const rows = async (entitlementId: string) => {
    const net = await db.get<{ net: number }>('SELECT net FROM quota_totals WHERE entitlement_id = ?', [entitlementId]);
    const acc = await db.get<{ g: number; r: number }>('SELECT SUM(granted) AS g, SUM(returned) AS r FROM quota_accounts WHERE entitlement_id = ?', [entitlementId]);
    const reqs = await db.get<{ n: number }>(
      "SELECT SUM(CASE WHEN q.action = 'reserve' THEN q.amount ELSE -q.amount END) AS n FROM quota_requests q JOIN quota_accounts a ON a.id = q.account_id WHERE a.entitlement_id = ?",
      [entitlementId],
    );
    return { net: Number(net?.net ?? 0), accounts: Number(acc?.g ?? 0) - Number(acc?.r ?? 0), requests: Number(reqs?.n ?? 0) };
  };

  it('10 hosts racing with 300 requests against a quota of 20,000: exactly 20,000 granted, then QUOTA_EXCEEDED; the rows agree', async () => {
    const e = await entitle([{ metric: 'inferences', limit: 20_000, period: 'month', scope: 'fleet' }]);
    const hosts: Host[] = [];
    for (let i = 0; i < 10; i++) hosts.push(await activateHost(e.licenseKey, `q${i}`));
    let granted = 0;
    let refused = 0;
    for (let round = 0; round < 6; round++) {
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, i) => {
          const amount = 50 + ((i * 37) % 400);
          return ask(hosts[i % 10]!, { amount, min: 1 + (i % 3) });
        }),
      );
      for (const r of answers) {
        if (r.statusCode === 201) {
          const a = r.json();
          expect(a.amount).toBeGreaterThanOrEqual(1);
          expect(a.fleet.hardLimit).toBe(20_000);
          granted += a.amount;
        } else {
          expect(r.statusCode, r.body).toBe(403);
          expect(r.json().error).toMatchObject({ code: 'QUOTA_EXCEEDED', details: { limit: 20_000 } });
          refused++;
        }
      }
      expect((await rows(e.id)).net).toBeLessThanOrEqual(20_000);
    }
    // what is left goes in blocks of at least one unit until none is
    for (let guard = 0; guard < 100; guard++) {
      const r = await ask(hosts[guard % 10]!, { amount: 1000, min: 1 });
      if (r.statusCode !== 201) break;
      granted += r.json().amount;
    }
    expect(granted).toBe(20_000);
    expect(refused).toBeGreaterThan(0);
    expect(await rows(e.id)).toEqual({ net: 20_000, accounts: 20_000, requests: 20_000 });
    const last = await ask(hosts[0]!, { amount: 1, min: 1 });
    expect(last.statusCode).toBe(403);
    expect(last.json().error.details).toMatchObject({ consumed: 0, outstanding: 20_000, need: 1 });
  }, 120_000);

  it('a retried request is answered again and counted once; a request id reused for another request is refused', async () => {
    const e = await entitle([{ metric: 'inferences', limit: 1000, period: 'month', scope: 'fleet' }]);
    const h = await activateHost(e.licenseKey, 'retry');
    const request = signed(h, { amount: 300 });
    const a = await post('/v1/reservations', { request });
    const b = await post('/v1/reservations', { request });
    expect(a.statusCode).toBe(201);
    expect(b.json()).toMatchObject({ accountId: a.json().accountId, amount: 300 });
    expect((await rows(e.id)).net).toBe(300);
    const reused = await ask(h, { requestId: JSON.parse(request).payload.requestId, action: 'give-back', amount: 10, min: undefined });
    expect(reused.statusCode).toBe(400);
    expect(reused.json().error.code).toBe('FORMAT_INVALID');
  });

  it('units given back return to the fleet while the account lives; once it expired they count as consumed and cannot be given back', async () => {
    const e = await entitle([{ metric: 'inferences', limit: 1000, period: 'month', scope: 'fleet' }], { count: 5, unit: 'host', leaseSeconds: 600 });
    const [h1, h2] = [await activateHost(e.licenseKey, 'gb1'), await activateHost(e.licenseKey, 'gb2')];
    expect((await ask(h1, { amount: 400, min: 400 })).json()).toMatchObject({ amount: 400, fleet: { outstanding: 400, consumed: 0 } });
    // h1 says it used 100 of them: h2 learns that 300 lie unused there
    const b = await ask(h2, { amount: 500, min: 1, used: 0 });
    expect(b.json()).toMatchObject({ amount: 300, fleet: { outstanding: 700 } }); // half of the 600 left
    // a refused request still tells the server what the host used: h1 used all 400, so none lie unused there
    const refused = await ask(h1, { amount: 400, min: 400, used: 400 });
    expect(refused.json().error).toMatchObject({ code: 'QUOTA_EXCEEDED', details: { unusedElsewhere: 300 } }); // h2's, unused
    expect((await ask(h2, { amount: 1, min: 1, used: 1 })).json().fleet).toMatchObject({ unusedElsewhere: 0 });
    // a request of h1 that counted earlier (100) but is answered later does not take the count back: still none unused at h1
    expect((await ask(h1, { amount: 400, min: 400, used: 100 })).json().error.code).toBe('QUOTA_EXCEEDED');
    expect((await ask(h2, { amount: 100_000, min: 100_000, used: 1 })).json().error.details).toMatchObject({ unusedElsewhere: 0 });
    const gb = await ask(h1, { action: 'give-back', amount: 300, min: undefined, used: 100 });
    expect(gb.statusCode, gb.body).toBe(200);
    expect(gb.json()).toMatchObject({ amount: 300, fleet: { outstanding: 401, consumed: 0 } });

    // giving back more than is held takes back only what is held
    expect((await ask(h1, { action: 'give-back', amount: 999, min: undefined, used: 100 })).json().amount).toBe(100);
    expect((await rows(e.id)).net).toBe(301);
    // h2's account runs out (a killed host): its 301 count as consumed, for good
    now = new Date(now.getTime() + 601_000);
    const late = await ask(h2, { action: 'give-back', amount: 301, min: undefined, createdAt: iso() });
    expect(late.statusCode).toBe(403);
    expect(late.json().error.code).toBe('LEASE_EXPIRED');
    const again = await ask(h1, { amount: 10, min: 10, createdAt: iso() });
    expect(again.json().fleet).toMatchObject({ consumed: 301, outstanding: 10 });
    expect((await rows(e.id)).net).toBe(311);
  });

  it('overage: allow 10% grants up to 1,100 and marks the units past 1,000; record grants any amount; refuse stops at the limit', async () => {
    const e = await entitle([
      { metric: 'inferences', limit: 1000, period: 'month', scope: 'fleet', overage: { mode: 'allow', percent: 10 } },
      { metric: 'tokens', limit: 100, period: 'month', scope: 'fleet', overage: { mode: 'record' } },
      { metric: 'images', limit: 50, period: 'day', scope: 'fleet', overage: { mode: 'refuse' } },
    ]);
    const h = await activateHost(e.licenseKey, 'over');
    expect((await ask(h, { amount: 900, min: 900 })).json()).toMatchObject({ amount: 900, overage: 0 });
    const a = await ask(h, { amount: 150, min: 150 });
    expect(a.json()).toMatchObject({ amount: 150, overage: 50, fleet: { limit: 1000, hardLimit: 1100 } });
    expect((await ask(h, { amount: 60, min: 60 })).json().error.code).toBe('QUOTA_EXCEEDED');
    expect((await ask(h, { amount: 50, min: 50 })).json()).toMatchObject({ amount: 50, overage: 50 });
    const t = await ask(h, { metric: 'tokens', amount: 5000, min: 5000 });
    expect(t.json()).toMatchObject({ amount: 5000, overage: 4900 });
    const day = now.toISOString().slice(0, 10);
    expect((await ask(h, { metric: 'images', period: day, amount: 50, min: 50 })).statusCode).toBe(201);
    expect((await ask(h, { metric: 'images', period: day, amount: 1, min: 1 })).json().error.code).toBe('QUOTA_EXCEEDED');
  });

  it('refusals: forged or foreign signature, unknown metric, a host-counted meter, another period, a skewed clock, a revoked licence, hostile JSON', async () => {
    const e = await entitle([
      { metric: 'inferences', limit: 1000, period: 'month', scope: 'fleet' },
      { metric: 'local', limit: 1000, period: 'month' },
    ]);
    const h = await activateHost(e.licenseKey, 'bad');
    const other = await activateHost(e.licenseKey, 'bad2');
    const code = async (r: Awaited<ReturnType<typeof ask>>) => [r.statusCode, r.json().error?.code];
    expect(await code(await ask(h, {}, other.signSeed))).toEqual([403, 'SIGNATURE_INVALID']);
    const tampered = JSON.parse(signed(h, { amount: 10 }));
    tampered.payload.amount = 1000;
    expect(await code(await post('/v1/reservations', { request: JSON.stringify(tampered) }))).toEqual([403, 'SIGNATURE_INVALID']);
    expect(await code(await ask(h, { metric: 'nope' }))).toEqual([403, 'METRIC_NOT_LICENSED']);
    expect(await code(await ask(h, { metric: 'local' }))).toEqual([400, 'USAGE']);
    expect(await code(await ask(h, { period: '2027-01' }))).toEqual([403, 'CLOCK_TAMPERED']);
    expect(await code(await ask(h, { createdAt: '2027-03-01T00:00:00Z' }))).toEqual([403, 'CLOCK_TAMPERED']);
    // within the licence's clock tolerance (an hour, the default) a host's clock may be off either way
    for (const off of [-50, 50]) expect((await ask(h, { createdAt: new Date(now.getTime() + off * 60_000).toISOString().replace(/\.\d+Z$/, 'Z') })).statusCode).toBe(201);
    expect(await code(await ask(h, { createdAt: new Date(now.getTime() + 61 * 60_000).toISOString().replace(/\.\d+Z$/, 'Z') }))).toEqual([403, 'CLOCK_TAMPERED']);
    expect(await code(await ask(h, { licenseId: 'f'.repeat(32) }))).toEqual([404, 'IO_NOT_FOUND']);
    for (const bad of ['{}', '[]', 'x', JSON.stringify({ payload: { v: 1 }, signature: 'AA==' }), signed(h).replace('"amount":100', '"amount":-1'), signed(h).replace('"min":1', '"min":101')])
      expect(await code(await post('/v1/reservations', { request: bad }))).toEqual([400, 'FORMAT_INVALID']);
    expect((await post('/v1/reservations', { request: 'x'.repeat(5000) })).statusCode).toBe(400);
    const rv = await post('/v1/revocations', { licenseId: h.licenseId }, true);
    expect(rv.statusCode, rv.body).toBeLessThan(300);
    expect(await code(await ask(h))).toEqual([403, 'LICENSE_REVOKED']);
    expect((await rows(e.id)).net).toBe(200); // the two within the tolerance
  });
});
