/**
 * Usage reports on the server: hosts post the signed monthly reports they make (`mlic usage report`)
 * or the admin uploads them; the server checks each with the same code as `mlic usage verify`
 * against the licence it issued and the previous report of that licence, stores it, and answers
 * totals per licence, entitlement and month for billing.
 *
 * A report whose signature or host binding fails is refused (nothing is stored). A report that
 * verifies but does not continue the previous one (a gap, a rewind, a rewritten chain) is stored
 * with the problem flagged: the usage happened and is billable, and the vendor sees the flag.
 */
import { MlicError } from '../errors.js';
import { parseLicenseText } from '../format/license.js';
import { parseReport, verifyReport, type UsageTotal } from '../usage/report.js';
import type { Queries } from './db/index.js';

export interface StoredReport {
  reportId: string;
  licenseId: string;
  hostId: string;
  entitlementId: string;
  period: string;
  records: number;
  continuity: 'checked' | 'first-report' | 'not-checked';
  /** a gap or rewind against the previous report of this licence */
  problem?: string;
  totals: UsageTotal[];
  /** this very report was posted before: nothing changed */
  already?: boolean;
}

export async function receiveReport(q: Queries, text: string, now: number): Promise<StoredReport> {
  const r = parseReport(text);
  const p = r.payload;
  const l = await q.get<{ text: string; host_id: string; entitlement_id: string }>('SELECT text, host_id, entitlement_id FROM licenses WHERE id = ?', [p.licenseId]);
  if (!l) throw new MlicError('IO_NOT_FOUND', `this server issued no licence ${p.licenseId}`);
  const license = parseLicenseText(l.text).payload;
  // signature and host binding: a report that fails them is refused
  verifyReport(text, license);
  const same = await q.get<{ id: string; text: string }>('SELECT id, text FROM usage_reports WHERE license_id = ? AND period = ?', [p.licenseId, p.period]);
  if (same) {
    if (same.id === p.reportId && same.text === text) return { ...(await storedReport(q, same.id)), already: true };
    // Hosts post a month's report more than once (after each lease, and when the month ends): a
    // later one that covers the same start of the ledger and goes further replaces the stored one.
    const old = parseReport(same.text).payload.ledger;
    const nu = p.ledger;
    const sameStart = old.firstSeq === nu.firstSeq && old.prevHash === nu.prevHash && (old.count === 0 || old.firstHash === nu.firstHash);
    if (sameStart && nu.lastSeq === old.lastSeq && nu.lastHash === old.lastHash) return { ...(await storedReport(q, same.id)), already: true };
    if (!sameStart || nu.lastSeq <= old.lastSeq)
      throw new MlicError('IO_EXISTS', `a report for licence ${p.licenseId} and ${p.period} is already stored (${same.id}), and this one does not extend it`, {
        hint: 'a later report of the month must cover the same start of the ledger and go further',
      });
    await q.run('DELETE FROM usage_totals WHERE report_id = ?', [same.id]);
    await q.run('DELETE FROM usage_reports WHERE id = ?', [same.id]);
  }
  const taken = await q.get<{ license_id: string; period: string }>('SELECT license_id, period FROM usage_reports WHERE id = ?', [p.reportId]);
  if (taken) throw new MlicError('IO_EXISTS', `report id ${p.reportId} is already stored, for licence ${taken.license_id} and ${taken.period}`);
  const prev = await q.get<{ text: string }>('SELECT text FROM usage_reports WHERE license_id = ? AND period < ? ORDER BY period DESC LIMIT 1', [p.licenseId, p.period]);
  let continuity: StoredReport['continuity'];
  let problem: string | undefined;
  try {
    continuity = verifyReport(text, license, prev?.text).continuity;
  } catch (e) {
    if (!(e instanceof MlicError) || e.code !== 'REPORT_INVALID') throw e;
    continuity = 'not-checked';
    problem = e.message;
  }
  if (!prev && continuity === 'not-checked' && !problem) problem = `the first report stored for this licence starts at ledger record ${p.ledger.firstSeq}: earlier records are in no report the server has`;
  await q.run(
    'INSERT INTO usage_reports (id, license_id, entitlement_id, host_id, period, first_seq, last_seq, continuity, problem, received_at, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    [p.reportId, p.licenseId, l.entitlement_id, l.host_id, p.period, p.ledger.firstSeq, p.ledger.lastSeq, continuity, problem ?? null, now, text],
  );
  for (const t of p.totals)
    await q.run('INSERT INTO usage_totals (report_id, metric, feature, quantity, overage, forfeited, records) VALUES (?, ?, ?, ?, ?, ?, ?)', [
      p.reportId,
      t.metric,
      t.feature ?? '',
      t.quantity,
      t.overageQuantity,
      t.forfeitedQuantity,
      t.records,
    ]);
  return storedReport(q, p.reportId);
}

async function storedReport(q: Queries, id: string): Promise<StoredReport> {
  const r = await q.get<{ id: string; license_id: string; host_id: string; entitlement_id: string; period: string; first_seq: number; last_seq: number; continuity: StoredReport['continuity']; problem: string | null }>(
    'SELECT id, license_id, host_id, entitlement_id, period, first_seq, last_seq, continuity, problem FROM usage_reports WHERE id = ?',
    [id],
  );
  if (!r) throw new MlicError('INTERNAL', `report ${id} vanished`);
  const totals = await q.all<{ metric: string; feature: string; quantity: number; overage: number; forfeited: number; records: number }>(
    'SELECT metric, feature, quantity, overage, forfeited, records FROM usage_totals WHERE report_id = ? ORDER BY metric, feature',
    [id],
  );
  return {
    reportId: r.id,
    licenseId: r.license_id,
    hostId: r.host_id,
    entitlementId: r.entitlement_id,
    period: r.period,
    records: Number(r.last_seq) - Number(r.first_seq) + 1,
    continuity: r.continuity,
    ...(r.problem !== null ? { problem: r.problem } : {}),
    totals: totals.map(toTotal),
  };
}

const toTotal = (t: { metric: string; feature: string; quantity: number; overage: number; forfeited: number; records: number }): UsageTotal => ({
  metric: t.metric,
  ...(t.feature !== '' ? { feature: t.feature } : {}),
  quantity: Number(t.quantity),
  overageQuantity: Number(t.overage),
  forfeitedQuantity: Number(t.forfeited),
  records: Number(t.records),
});

export interface UsageSummary {
  /** per entitlement and month: the sums over its licences' reports */
  totals: { entitlementId: string; period: string; metric: string; feature?: string; quantity: number; overageQuantity: number; forfeitedQuantity: number; records: number; reports: number }[];
  /** every report matched, with its problem if any */
  reports: StoredReport[];
}

/** Totals for billing: by entitlement and month (and each report, flagged), optionally for one entitlement and/or month. */
export async function usageSummary(q: Queries, o: { entitlement?: string; period?: string }): Promise<UsageSummary> {
  const where: string[] = ['1 = 1'];
  const params: string[] = [];
  if (o.entitlement !== undefined) {
    where.push('r.entitlement_id = ?');
    params.push(o.entitlement);
  }
  if (o.period !== undefined) {
    where.push('r.period = ?');
    params.push(o.period);
  }
  const sums = await q.all<{ entitlement_id: string; period: string; metric: string; feature: string; quantity: number; overage: number; forfeited: number; records: number; reports: number }>(
    `SELECT r.entitlement_id, r.period, t.metric, t.feature, SUM(t.quantity) AS quantity, SUM(t.overage) AS overage, SUM(t.forfeited) AS forfeited, SUM(t.records) AS records, COUNT(*) AS reports FROM usage_reports r JOIN usage_totals t ON t.report_id = r.id WHERE ${where.join(' AND ')} GROUP BY r.entitlement_id, r.period, t.metric, t.feature ORDER BY r.entitlement_id, r.period, t.metric, t.feature`,
    params,
  );
  const ids = await q.all<{ id: string }>(`SELECT r.id FROM usage_reports r WHERE ${where.join(' AND ')} ORDER BY r.period, r.license_id LIMIT 10000`, params);
  const reports: StoredReport[] = [];
  for (const { id } of ids) reports.push(await storedReport(q, id));
  return {
    totals: sums.map((s) => ({
      entitlementId: s.entitlement_id,
      period: s.period,
      metric: s.metric,
      ...(s.feature !== '' ? { feature: s.feature } : {}),
      quantity: Number(s.quantity),
      overageQuantity: Number(s.overage),
      forfeitedQuantity: Number(s.forfeited),
      records: Number(s.records),
      reports: Number(s.reports),
    })),
    reports,
  };
}
