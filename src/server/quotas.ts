/**
 * Fleet-wide quotas on the server (docs/SERVER.md, docs/FORMAT.md §13). A meter with scope
 * `fleet` is counted here for the whole entitlement: hosts reserve blocks of units, consume them
 * locally through their ledgers, and give back what they did not use. Each host licence has one
 * live account per meter and period; a block granted extends it by the entitlement's lease
 * duration, and when it expires whatever the host did not give back counts as consumed. So the
 * vendor is never under-billed, and a killed host loses at most the block it held.
 *
 * The fleet's net units (granted - given back) per meter and period are one row, changed in the
 * same transaction as the account, under the entitlement's lock (SQLite's single writer; on
 * PostgreSQL an advisory lock, under SERIALIZABLE): the net never exceeds the meter's hard limit
 * (limit plus allowed overage), whatever the concurrency.
 */
import { randomBytes } from 'node:crypto';
import { MlicError } from '../errors.js';
import { isoSeconds } from '../format/fields.js';
import type { Meter } from '../format/license.js';
import { verifyReservationRequest, type FleetFigures, type ReservationAnswer, type ReservationRequest } from '../format/reservation.js';
import { hardLimit, periodOf } from '../license/meter.js';
import type { Queries } from './db/index.js';
import { DEFAULT_LEASE_SECONDS } from './entitlements.js';
import { hostRequest, requestSkew } from './leases.js';

interface Account {
  id: string;
  granted: number;
  returned: number;
  expires_at: number;
}

async function fleetFigures(q: Queries, entitlementId: string, m: Meter, period: string, t: number, asker: string): Promise<FleetFigures> {
  const net = Number((await q.get<{ net: number }>('SELECT net FROM quota_totals WHERE entitlement_id = ? AND metric = ? AND period = ?', [entitlementId, m.metric, period]))?.net ?? 0);
  // per host licence with a live account: what it holds, and what it said it had used
  const holders = await q.all<{ license_id: string; held: number; used: number; live: number }>(
    'SELECT license_id, SUM(granted - returned) AS held, MAX(used) AS used, SUM(CASE WHEN expires_at > ? THEN granted - returned ELSE 0 END) AS live FROM quota_accounts WHERE entitlement_id = ? AND metric = ? AND period = ? GROUP BY license_id HAVING MAX(expires_at) > ?',
    [t, entitlementId, m.metric, period, t],
  );
  let outstanding = 0;
  let unusedElsewhere = 0;
  for (const h of holders) {
    outstanding += Number(h.live);
    if (h.license_id !== asker) unusedElsewhere += Math.max(0, Math.min(Number(h.live), Number(h.held) - Number(h.used)));
  }
  return { limit: m.limit, hardLimit: hardLimit(m), consumed: net - outstanding, outstanding, unusedElsewhere };
}

async function addNet(q: Queries, entitlementId: string, metric: string, period: string, delta: number): Promise<number> {
  const n = await q.run('UPDATE quota_totals SET net = net + ? WHERE entitlement_id = ? AND metric = ? AND period = ?', [delta, entitlementId, metric, period]);
  if (n === 0) await q.run('INSERT INTO quota_totals (entitlement_id, metric, period, net) VALUES (?, ?, ?, ?)', [entitlementId, metric, period, delta]);
  return Number((await q.get<{ net: number }>('SELECT net FROM quota_totals WHERE entitlement_id = ? AND metric = ? AND period = ?', [entitlementId, metric, period]))!.net);
}

/** Units of a change of the net from `before` to `after` that lie past the limit. */
const overageOf = (limit: number, before: number, after: number) => Math.max(0, after - limit) - Math.max(0, before - limit);

/** The size of a block: what was asked (at least `min`), but no more than half of what is left, so that the last units spread over the hosts still asking. */
export function blockSize(asked: number, min: number, free: number): number {
  return Math.min(asked, free, Math.max(min, Math.ceil(free / 2)));
}

/**
 * One reserve or give-back, in the caller's transaction. A quota that is used up is returned as
 * `refusal` (not thrown), so that the transaction still commits what the host said it had used.
 */
export async function reservation(q: Queries, r: ReservationRequest, now: Date): Promise<ReservationAnswer | { refusal: MlicError }> {
  const t = Math.floor(now.getTime() / 1000);
  const p = r.payload;
  const { c, license } = await hostRequest(q, p, 'reservation request', now, (pk) => verifyReservationRequest(r, pk));
  const meter = license.meters.find((m) => m.metric === p.metric);
  if (!meter) throw new MlicError('METRIC_NOT_LICENSED', `licence ${p.licenseId} has no meter '${p.metric}'`);
  if (meter.scope !== 'fleet') throw new MlicError('USAGE', `meter '${p.metric}' of licence ${p.licenseId} is counted by its host, not by the server`);

  // a retried request (the answer was lost on the way) gets the first answer again
  const done = await q.get<{ account_id: string; action: string; amount: number; overage: number; license_id: string; expires_at: number }>(
    'SELECT r.account_id, r.action, r.amount, r.overage, a.license_id, a.expires_at FROM quota_requests r JOIN quota_accounts a ON a.id = r.account_id WHERE r.request_id = ?',
    [p.requestId],
  );
  if (done) {
    if (done.license_id !== p.licenseId || done.action !== p.action) throw new MlicError('FORMAT_INVALID', `request id ${p.requestId} was used by another request`);
    return {
      accountId: done.account_id,
      amount: Number(done.amount),
      overage: Number(done.overage),
      expiresAt: isoSeconds(new Date(Number(done.expires_at) * 1000)),
      fleet: await fleetFigures(q, c.entitlement_id, meter, p.period, t, p.licenseId),
    };
  }
  const live = await q.get<Account>('SELECT id, granted, returned, expires_at FROM quota_accounts WHERE license_id = ? AND metric = ? AND period = ? AND expires_at > ? ORDER BY expires_at DESC LIMIT 1', [
    p.licenseId,
    p.metric,
    p.period,
    t,
  ]);
  // the host's own count of what it used, on every account of this meter and period; it only
  // grows (two processes of a host race: the one that counted earlier may be answered later)
  await q.run('UPDATE quota_accounts SET used = CASE WHEN used < ? THEN ? ELSE used END WHERE license_id = ? AND metric = ? AND period = ?', [p.used, p.used, p.licenseId, p.metric, p.period]);
  const log = (accountId: string, amount: number, overage: number) =>
    q.run('INSERT INTO quota_requests (request_id, account_id, action, amount, overage, at) VALUES (?, ?, ?, ?, ?, ?)', [p.requestId, accountId, p.action, amount, overage, t]);

  if (p.action === 'give-back') {
    // only a live account takes units back: once it expired, they were counted as consumed
    if (!live)
      throw new MlicError('LEASE_EXPIRED', `licence ${p.licenseId} holds no live ${p.metric} account for ${p.period}: its units were counted as consumed when it expired`, {
        hint: 'nothing to give back; the units stay usable on the host',
      });
    const back = Math.min(p.amount, Number(live.granted) - Number(live.returned));
    await q.run('UPDATE quota_accounts SET returned = returned + ? WHERE id = ?', [back, live.id]);
    await addNet(q, c.entitlement_id, p.metric, p.period, -back);
    await log(live.id, back, 0);
    return { accountId: live.id, amount: back, overage: 0, expiresAt: isoSeconds(new Date(Number(live.expires_at) * 1000)), fleet: await fleetFigures(q, c.entitlement_id, meter, p.period, t, p.licenseId) };
  }

  if (c.ent_revoked !== null || c.lic_revoked !== null || c.deactivated_at !== null)
    throw new MlicError('LICENSE_REVOKED', `licence ${p.licenseId} was revoked${c.deactivated_at !== null ? ' (its host was deactivated)' : ''}: no units`, { hint: 'ask your vendor' });
  // the period is the server's, give or take the allowed skew (a host's clock at a period's edge)
  const skew = requestSkew(license);
  const periods = new Set([-skew, 0, skew].map((d) => periodOf(meter, license, new Date((t + d) * 1000)).key));
  if (!periods.has(p.period)) throw new MlicError('CLOCK_TAMPERED', `the request is for period ${p.period}, but the server's is ${[...periods].join(' or ')}`, { hint: "check the host's clock" });

  const fleet = await fleetFigures(q, c.entitlement_id, meter, p.period, t, p.licenseId);
  const net = fleet.consumed + fleet.outstanding;
  const free = Math.max(0, fleet.hardLimit - net);
  if (free < p.min!) {
    const refusal = new MlicError('QUOTA_EXCEEDED', `the fleet's quota for '${p.metric}' is used up for ${p.period}: ${fleet.consumed} consumed and ${fleet.outstanding} held by hosts, of ${fleet.limit}`, {
      hint: fleet.unusedElsewhere > 0 ? `${fleet.unusedElsewhere} units lie unused on other hosts: they come back as those hosts give them back` : 'the quota resets with the next period',
      details: { ...fleet, need: p.min },
    });
    return { refusal };
  }
  const amount = blockSize(p.amount, p.min!, free);
  const seconds = Number(c.lease_seconds ?? DEFAULT_LEASE_SECONDS);
  const expires = t + seconds;
  let accountId: string;
  if (live) {
    accountId = live.id;
    await q.run('UPDATE quota_accounts SET granted = granted + ?, expires_at = ? WHERE id = ?', [amount, expires, live.id]);
  } else {
    accountId = `acct_${randomBytes(8).toString('hex')}`;
    await q.run('INSERT INTO quota_accounts (id, entitlement_id, host_id, license_id, metric, period, granted, returned, used, opened_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)', [
      accountId,
      c.entitlement_id,
      c.host_id,
      p.licenseId,
      p.metric,
      p.period,
      amount,
      p.used,
      t,
      expires,
    ]);
  }
  const after = await addNet(q, c.entitlement_id, p.metric, p.period, amount);
  if (after > fleet.hardLimit) throw new MlicError('INTERNAL', `the fleet's net units would pass the hard limit (${after} > ${fleet.hardLimit})`);
  const overage = overageOf(meter.limit, after - amount, after);
  await log(accountId, amount, overage);
  return { accountId, amount, overage, expiresAt: isoSeconds(new Date(expires * 1000)), fleet: { ...fleet, outstanding: fleet.outstanding + amount } };
}

/** Per entitlement, fleet meter and period: what the server counts, and what the hosts' reports say they used. */
export interface FleetUsage {
  entitlementId: string;
  metric: string;
  /** the meter's period key: a month, a day, or 'term' */
  period: string;
  /** units given to hosts and not given back (what is billed; includes units held by live accounts) */
  net: number;
  /** units held by live accounts now */
  outstanding: number;
  /** net units past the meter's limit */
  overage: number;
  limit: number;
  /**
   * monthly meters: the units the hosts' usage reports for this month record (their signed
   * ledgers), and net minus that. A positive difference is units granted and not reported used:
   * still held, lost with a killed host, or a report not yet posted; a negative one, a host that
   * used more than it was granted (a tampered host, to look into).
   */
  reported?: number;
  difference?: number;
}

export async function fleetUsage(q: Queries, o: { entitlementId?: string; period?: string }, now: Date): Promise<FleetUsage[]> {
  const t = Math.floor(now.getTime() / 1000);
  const where: string[] = ['1 = 1'];
  const params: (string | number)[] = [];
  if (o.entitlementId !== undefined) {
    where.push('entitlement_id = ?');
    params.push(o.entitlementId);
  }
  if (o.period !== undefined) {
    // a month: its days too
    where.push('(period = ? OR period LIKE ?)');
    params.push(o.period, `${o.period}-%`);
  }
  const rows = await q.all<{ entitlement_id: string; metric: string; period: string; net: number }>(
    `SELECT entitlement_id, metric, period, net FROM quota_totals WHERE ${where.join(' AND ')} ORDER BY entitlement_id, period, metric`,
    params,
  );
  const out: FleetUsage[] = [];
  for (const r of rows) {
    const live = await q.get<{ n: number | null }>('SELECT SUM(granted - returned) AS n FROM quota_accounts WHERE entitlement_id = ? AND metric = ? AND period = ? AND expires_at > ?', [
      r.entitlement_id,
      r.metric,
      r.period,
      t,
    ]);
    const lim = await meterLimit(q, r.entitlement_id, r.metric);
    const net = Number(r.net);
    const row: FleetUsage = { entitlementId: r.entitlement_id, metric: r.metric, period: r.period, net, outstanding: Number(live?.n ?? 0), overage: lim === undefined ? 0 : Math.max(0, net - lim), limit: lim ?? 0 };
    if (/^\d{4}-\d{2}$/.test(r.period)) {
      const rep = await q.get<{ n: number | null }>(
        'SELECT SUM(t.quantity) AS n FROM usage_reports u JOIN usage_totals t ON t.report_id = u.id WHERE u.entitlement_id = ? AND u.period = ? AND t.metric = ?',
        [r.entitlement_id, r.period, r.metric],
      );
      row.reported = Number(rep?.n ?? 0);
      row.difference = net - row.reported;
    }
    out.push(row);
  }
  return out;
}

async function meterLimit(q: Queries, entitlementId: string, metric: string): Promise<number | undefined> {
  const e = await q.get<{ terms: string }>('SELECT terms FROM entitlements WHERE id = ?', [entitlementId]);
  const meters = (e ? (JSON.parse(e.terms) as { meters?: Meter[] }).meters : undefined) ?? [];
  return meters.find((m) => m.metric === metric)?.limit;
}
