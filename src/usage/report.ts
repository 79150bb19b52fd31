/**
 * Signed usage reports for billing (docs/USAGE.md §4): the totals of one calendar month of a
 * licence's ledger on this host, the chain hashes that bound the covered records, signed by the
 * host key; and the vendor's check of a report against the licence and the previous report.
 */
import { MlicError } from '../errors.js';
import { ed25519Sign, ed25519Verify } from '../crypto/ed25519.js';
import { randomBytes } from '../crypto/random.js';
import { canonicalJson } from '../format/canonical.js';
import type { LicensePayload } from '../format/license.js';
import type { ChainRecord } from '../state/chainlog.js';
import type { UsageData } from './ledger.js';

export const REPORT_SIG_DOMAIN = 'mlic-usage-report-v1\n';
const ZERO = '0'.repeat(64);

export interface UsageTotal {
  metric: string;
  feature?: string;
  quantity: number;
  /** quantity consumed beyond the limit, within the allowed overage (billable as overage) */
  overageQuantity: number;
  /** calls counted */
  records: number;
}

export interface UsageReportPayload {
  v: 1;
  kind: 'mlic-usage-report';
  reportId: string;
  createdAt: string;
  period: string; // YYYY-MM
  licenseId: string;
  model: string;
  vendorKeyId: string;
  host: { signingPublicKey: string; hostPublicKey: string };
  ledger: { firstSeq: number; lastSeq: number; count: number; prevHash: string; firstHash: string | null; lastHash: string; headSeq: number; headHash: string };
  totals: UsageTotal[];
}

export interface UsageReport {
  payload: UsageReportPayload;
  signature: string;
}

export function monthBounds(period: string): { start: number; end: number } {
  const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(period);
  if (!m) throw new MlicError('USAGE', `--period must be a month like 2026-11, got '${period}'`);
  const y = Number(m[1]);
  const mo = Number(m[2]) - 1;
  return { start: Date.UTC(y, mo, 1), end: Date.UTC(y, mo + 1, 1) };
}

/**
 * The records of a month: from the first record stamped at or after the month's start to the
 * record before the first stamped at or after its end. Consecutive months therefore tile the
 * chain with no gap and no overlap.
 */
export function buildReport(o: {
  records: readonly ChainRecord<UsageData>[];
  period: string;
  license: LicensePayload;
  hostSignSeed: Uint8Array;
  hostSignPublic: Uint8Array;
  hostBoxPublic: Uint8Array;
  now?: Date;
}): UsageReport {
  const { start, end } = monthBounds(o.period);
  const recs = o.records;
  const firstAtOrAfter = (t: number) => {
    const i = recs.findIndex((r) => Date.parse(r.data.t) >= t);
    return i < 0 ? recs.length : i;
  };
  const a = firstAtOrAfter(start);
  const b = Math.max(a, firstAtOrAfter(end)); // exclusive
  const seg = recs.slice(a, b);
  const totals = new Map<string, UsageTotal>();
  for (const r of seg) {
    const d = r.data;
    if (d.kind !== 'consume') continue;
    const k = `${d.metric}\u0000${d.feature ?? ''}`;
    let t = totals.get(k);
    if (!t) totals.set(k, (t = { metric: d.metric, ...(d.feature ? { feature: d.feature } : {}), quantity: 0, overageQuantity: 0, records: 0 }));
    t.quantity += d.quantity;
    if (d.overage) t.overageQuantity += d.quantity;
    t.records += d.count ?? 1;
  }
  const prevHash = a > 0 ? recs[a - 1]!.hash : ZERO;
  const head = recs.length > 0 ? recs[recs.length - 1]! : undefined;
  const payload: UsageReportPayload = {
    v: 1,
    kind: 'mlic-usage-report',
    reportId: randomBytes(16).toString('hex'),
    createdAt: (o.now ?? new Date()).toISOString(),
    period: o.period,
    licenseId: o.license.licenseId,
    model: o.license.model,
    vendorKeyId: o.license.vendor.keyId,
    host: { signingPublicKey: Buffer.from(o.hostSignPublic).toString('base64'), hostPublicKey: Buffer.from(o.hostBoxPublic).toString('base64') },
    ledger: {
      firstSeq: a,
      lastSeq: b - 1,
      count: seg.length,
      prevHash,
      firstHash: seg.length ? seg[0]!.hash : null,
      lastHash: seg.length ? seg[seg.length - 1]!.hash : prevHash,
      headSeq: head ? head.seq : -1,
      headHash: head ? head.hash : ZERO,
    },
    totals: [...totals.values()].sort((x, y) => (x.metric + (x.feature ?? '') < y.metric + (y.feature ?? '') ? -1 : 1)),
  };
  const signature = ed25519Sign(o.hostSignSeed, Buffer.from(REPORT_SIG_DOMAIN + canonicalJson(payload))).toString('base64');
  return { payload, signature };
}

export interface ReportCheck {
  period: string;
  licenseId: string;
  totals: UsageTotal[];
  records: number;
  continuity: 'checked' | 'first-report' | 'not-checked';
}

function parseReport(text: string, what: string): UsageReport {
  let r: UsageReport;
  try {
    r = JSON.parse(text) as UsageReport;
  } catch {
    throw new MlicError('FORMAT_INVALID', `${what}: not JSON`);
  }
  const p = r?.payload;
  const l = p?.ledger;
  if (
    typeof r?.signature !== 'string' ||
    p?.kind !== 'mlic-usage-report' ||
    p.v !== 1 ||
    typeof p.licenseId !== 'string' ||
    typeof p.period !== 'string' ||
    typeof p.host?.signingPublicKey !== 'string' ||
    typeof l !== 'object' ||
    l === null ||
    !Number.isSafeInteger(l.firstSeq) ||
    !Number.isSafeInteger(l.lastSeq) ||
    typeof l.prevHash !== 'string' ||
    typeof l.lastHash !== 'string' ||
    !Array.isArray(p.totals)
  )
    throw new MlicError('FORMAT_INVALID', `${what}: not an mlic usage report`);
  return r;
}

/** The vendor's check of a report: signature, binding to the licence's host, continuity. */
export function verifyReport(text: string, license: LicensePayload, previousText?: string): ReportCheck {
  const r = parseReport(text, 'report');
  const p = r.payload;
  const pub = Buffer.from(p.host.signingPublicKey, 'base64');
  if (!ed25519Verify(pub, Buffer.from(REPORT_SIG_DOMAIN + canonicalJson(p)), Buffer.from(r.signature, 'base64')))
    throw new MlicError('SIGNATURE_INVALID', 'the usage report signature does not verify (the report was modified)');
  if (p.licenseId !== license.licenseId) throw new MlicError('REPORT_INVALID', `the report is for licence ${p.licenseId}, not ${license.licenseId}`);
  if (license.host.binding === 'host') {
    if (p.host.signingPublicKey !== license.host.signingPublicKey || p.host.hostPublicKey !== license.host.publicKey)
      throw new MlicError('REPORT_INVALID', 'the report was signed by another host than the one the licence was issued to');
  }
  const l = p.ledger;
  if (l.lastSeq - l.firstSeq + 1 !== l.count || (l.count === 0 && l.lastHash !== l.prevHash)) throw new MlicError('REPORT_INVALID', 'the report\'s ledger range is inconsistent');
  let continuity: ReportCheck['continuity'] = l.firstSeq === 0 && l.prevHash === ZERO ? 'first-report' : 'not-checked';
  if (previousText !== undefined) {
    const prev = parseReport(previousText, 'previous report');
    const pp = prev.payload;
    if (!ed25519Verify(Buffer.from(pp.host.signingPublicKey, 'base64'), Buffer.from(REPORT_SIG_DOMAIN + canonicalJson(pp)), Buffer.from(prev.signature, 'base64')))
      throw new MlicError('SIGNATURE_INVALID', 'the previous usage report signature does not verify');
    if (pp.licenseId !== p.licenseId || pp.host.signingPublicKey !== p.host.signingPublicKey) throw new MlicError('REPORT_INVALID', 'the previous report is for another licence or host');
    if (l.firstSeq <= pp.ledger.lastSeq)
      throw new MlicError('REPORT_INVALID', `rewind: this report starts at record ${l.firstSeq}, but the previous one already covered up to ${pp.ledger.lastSeq}`, {
        hint: 'the host\'s ledger was reset or restored from an older copy',
      });
    if (l.firstSeq > pp.ledger.lastSeq + 1) throw new MlicError('REPORT_INVALID', `gap: records ${pp.ledger.lastSeq + 1} to ${l.firstSeq - 1} are in no report`);
    if (l.prevHash !== pp.ledger.lastHash) throw new MlicError('REPORT_INVALID', 'the chain does not continue from the previous report (its last hash differs): the ledger was rewritten');
    if (p.period <= pp.period) throw new MlicError('REPORT_INVALID', `rewind: period ${p.period} does not follow ${pp.period}`);
    continuity = 'checked';
  }
  return { period: p.period, licenseId: p.licenseId, totals: p.totals, records: l.count, continuity };
}
