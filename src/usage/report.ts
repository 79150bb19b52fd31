/**
 * Signed usage reports for billing (docs/USAGE.md §4): the totals of one calendar month of a
 * licence's ledger on this host, the chain hashes that bound the covered records and tie them to
 * the ledger's first record and to the host's audit log, signed by the host key; and the
 * vendor's check of a report against the licence and the previous report.
 */
import { MlicError } from '../errors.js';
import { ed25519Sign, ed25519Verify } from '../crypto/ed25519.js';
import { randomBytes } from '../crypto/random.js';
import { canonicalJson } from '../format/canonical.js';
import { HEX32_RE, HEX64_RE, KEYID_RE, METRIC_RE, NAME_RE, isB64, isFormatVersion, isIso, isPlainObject, isSafeUint, unknownKeys } from '../format/fields.js';
import { parseJson } from '../format/json.js';
import type { LicensePayload } from '../format/license.js';
import type { ChainRecord } from '../state/chainlog.js';
import type { UsageData } from './ledger.js';

export const REPORT_VERSION = 2;
export const REPORT_SIG_DOMAIN = 'mlic-usage-report-v2\n';
export const MAX_REPORT_BYTES = 1 << 20;
const ZERO = '0'.repeat(64);

export interface UsageTotal {
  metric: string;
  feature?: string;
  /** everything billable: consumed, overage and forfeited reservations */
  quantity: number;
  /** consumed beyond the limit, within the allowed overage (billable as overage) */
  overageQuantity: number;
  /** reservations a process left behind when it was killed, counted as consumed when they expired */
  forfeitedQuantity: number;
  /** calls counted */
  records: number;
}

export interface UsageReportPayload {
  v: 2;
  kind: 'mlic-usage-report';
  reportId: string;
  createdAt: string;
  period: string; // YYYY-MM
  licenseId: string;
  model: string;
  vendorKeyId: string;
  host: { signingPublicKey: string; hostPublicKey: string };
  ledger: { firstSeq: number; lastSeq: number; count: number; prevHash: string; firstHash: string | null; lastHash: string; headSeq: number; headHash: string; genesisHash: string };
  /** the host's audit log when the report was made: its last record's seq (never goes back) */
  audit: { seq: number };
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

const signingBytes = (p: UsageReportPayload) => Buffer.from(REPORT_SIG_DOMAIN + canonicalJson(p));

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
  auditSeq: number;
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
    if (!t) totals.set(k, (t = { metric: d.metric, ...(d.feature ? { feature: d.feature } : {}), quantity: 0, overageQuantity: 0, forfeitedQuantity: 0, records: 0 }));
    t.quantity += d.quantity;
    if (d.overage) t.overageQuantity += d.quantity;
    if (d.forfeited) t.forfeitedQuantity += d.quantity;
    else t.records += d.count ?? 1;
  }
  const prevHash = a > 0 ? recs[a - 1]!.hash : ZERO;
  const head = recs.length > 0 ? recs[recs.length - 1]! : undefined;
  const payload: UsageReportPayload = {
    v: 2,
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
      genesisHash: recs.length ? recs[0]!.hash : ZERO,
    },
    audit: { seq: o.auditSeq },
    totals: [...totals.values()].sort((x, y) => (x.metric + '\u0000' + (x.feature ?? '') < y.metric + '\u0000' + (y.feature ?? '') ? -1 : 1)),
  };
  return { payload, signature: ed25519Sign(o.hostSignSeed, signingBytes(payload)).toString('base64') };
}

export interface ReportCheck {
  period: string;
  licenseId: string;
  totals: UsageTotal[];
  records: number;
  continuity: 'checked' | 'first-report' | 'not-checked';
}

const seqOk = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= -1;
const hex64 = (s: unknown) => typeof s === 'string' && HEX64_RE.test(s);

/** Parses a report strictly: exactly the defined fields, every value checked, before anything is hashed or trusted. */
export function parseReport(text: string, what = 'report'): UsageReport {
  if (text.length > MAX_REPORT_BYTES) throw new MlicError('FORMAT_INVALID', `${what}: too large to be a usage report`);
  const r = parseJson(text, what);
  const bad = (field: string) => new MlicError('FORMAT_INVALID', `${what}: not a valid mlic usage report (${field})`);
  if (!isPlainObject(r) || unknownKeys(r, ['payload', 'signature']).length) throw bad('top level');
  if (!isB64(r.signature, 64)) throw bad('signature');
  const p = r.payload;
  if (!isPlainObject(p)) throw bad('payload');
  if (p.kind === 'mlic-usage-report' && isFormatVersion(p.v) && p.v !== REPORT_VERSION)
    throw new MlicError('UNSUPPORTED_VERSION', `${what}: usage report version ${p.v} is not supported (this mlic reads version ${REPORT_VERSION})`);
  const extra = unknownKeys(p, ['v', 'kind', 'reportId', 'createdAt', 'period', 'licenseId', 'model', 'vendorKeyId', 'host', 'ledger', 'audit', 'totals']);
  if (extra.length) throw bad(`unknown field ${extra[0]}`);
  if (p.v !== REPORT_VERSION || p.kind !== 'mlic-usage-report') throw bad('kind');
  if (typeof p.reportId !== 'string' || !HEX32_RE.test(p.reportId)) throw bad('reportId');
  if (!isIso(p.createdAt)) throw bad('createdAt');
  if (typeof p.period !== 'string' || !/^\d{4}-(0[1-9]|1[0-2])$/.test(p.period)) throw bad('period');
  if (typeof p.licenseId !== 'string' || !HEX32_RE.test(p.licenseId)) throw bad('licenseId');
  if (typeof p.model !== 'string' || !NAME_RE.test(p.model)) throw bad('model');
  if (typeof p.vendorKeyId !== 'string' || !KEYID_RE.test(p.vendorKeyId)) throw bad('vendorKeyId');
  const h = p.host;
  if (!isPlainObject(h) || unknownKeys(h, ['signingPublicKey', 'hostPublicKey']).length || !isB64(h.signingPublicKey, 32) || !isB64(h.hostPublicKey, 32)) throw bad('host');
  const l = p.ledger;
  if (!isPlainObject(l) || unknownKeys(l, ['firstSeq', 'lastSeq', 'count', 'prevHash', 'firstHash', 'lastHash', 'headSeq', 'headHash', 'genesisHash']).length) throw bad('ledger');
  if (!isSafeUint(l.firstSeq) || !seqOk(l.lastSeq) || !isSafeUint(l.count) || !seqOk(l.headSeq)) throw bad('ledger seq');
  if (!hex64(l.prevHash) || !hex64(l.lastHash) || !hex64(l.headHash) || !hex64(l.genesisHash) || !(l.firstHash === null || hex64(l.firstHash))) throw bad('ledger hash');
  if (!isPlainObject(p.audit) || unknownKeys(p.audit, ['seq']).length || !seqOk(p.audit.seq)) throw bad('audit');
  if (!Array.isArray(p.totals) || p.totals.length > 1024) throw bad('totals');
  const seen = new Set<string>();
  for (const t of p.totals) {
    if (!isPlainObject(t) || unknownKeys(t, ['metric', 'feature', 'quantity', 'overageQuantity', 'forfeitedQuantity', 'records']).length) throw bad('totals');
    const id = `${String(t.metric)}\u0000${String(t.feature ?? '')}`;
    if (seen.has(id)) throw bad('totals: a metric and feature twice');
    seen.add(id);
    if (typeof t.metric !== 'string' || !METRIC_RE.test(t.metric) || (t.feature !== undefined && (typeof t.feature !== 'string' || !NAME_RE.test(t.feature)))) throw bad('totals');
    if (!isSafeUint(t.quantity) || !isSafeUint(t.overageQuantity) || !isSafeUint(t.forfeitedQuantity) || !isSafeUint(t.records)) throw bad('totals');
  }
  return r as unknown as UsageReport;
}

/**
 * The vendor's check of a report: signature, binding to the licence's host, and, with the
 * previous report, that it continues the same ledger (the same first record, the next record,
 * the same chain) and that the host's audit log moved forward.
 */
export function verifyReport(text: string, license: LicensePayload, previousText?: string): ReportCheck {
  const r = parseReport(text, 'report');
  const p = r.payload;
  if (!ed25519Verify(Buffer.from(p.host.signingPublicKey, 'base64'), signingBytes(p), Buffer.from(r.signature, 'base64')))
    throw new MlicError('SIGNATURE_INVALID', 'the usage report signature does not verify (the report was modified)');
  if (p.licenseId !== license.licenseId) throw new MlicError('REPORT_INVALID', `the report is for licence ${p.licenseId}, not ${license.licenseId}`);
  if (license.host.binding === 'host' && (p.host.signingPublicKey !== license.host.signingPublicKey || p.host.hostPublicKey !== license.host.publicKey))
    throw new MlicError('REPORT_INVALID', 'the report was signed by another host than the one the licence was issued to');
  const l = p.ledger;
  if (l.lastSeq - l.firstSeq + 1 !== l.count || (l.count === 0 && l.lastHash !== l.prevHash) || l.headSeq < l.lastSeq) throw new MlicError('REPORT_INVALID', "the report's ledger range is inconsistent");
  let continuity: ReportCheck['continuity'] = l.firstSeq === 0 && l.prevHash === ZERO ? 'first-report' : 'not-checked';
  if (previousText !== undefined) {
    const prev = parseReport(previousText, 'previous report');
    const pp = prev.payload;
    if (!ed25519Verify(Buffer.from(pp.host.signingPublicKey, 'base64'), signingBytes(pp), Buffer.from(prev.signature, 'base64')))
      throw new MlicError('SIGNATURE_INVALID', 'the previous usage report signature does not verify');
    if (pp.licenseId !== p.licenseId || pp.host.signingPublicKey !== p.host.signingPublicKey) throw new MlicError('REPORT_INVALID', 'the previous report is for another licence or host');
    if (pp.ledger.genesisHash !== ZERO && l.genesisHash !== pp.ledger.genesisHash)
      throw new MlicError('REPORT_INVALID', 'the report comes from another ledger than the previous one (its first record differs)', {
        hint: "the host's usage state was reset, or a second state directory uses a copy of the host key: both consume the same quota",
      });
    if (l.firstSeq <= pp.ledger.lastSeq)
      throw new MlicError('REPORT_INVALID', `rewind: this report starts at record ${l.firstSeq}, but the previous one already covered up to ${pp.ledger.lastSeq}`, {
        hint: "the host's ledger was reset or restored from an older copy",
      });
    if (l.firstSeq > pp.ledger.lastSeq + 1) throw new MlicError('REPORT_INVALID', `gap: records ${pp.ledger.lastSeq + 1} to ${l.firstSeq - 1} are in no report`);
    if (l.prevHash !== pp.ledger.lastHash) throw new MlicError('REPORT_INVALID', 'the chain does not continue from the previous report (its last hash differs): the ledger was rewritten');
    if (l.headSeq < pp.ledger.headSeq) throw new MlicError('REPORT_INVALID', `rewind: the ledger now ends at record ${l.headSeq}, before the ${pp.ledger.headSeq} the previous report saw`);
    if (p.audit.seq <= pp.audit.seq)
      throw new MlicError('REPORT_INVALID', `rewind: the host's audit log is at record ${p.audit.seq}, not past the ${pp.audit.seq} of the previous report`, {
        hint: "the host's state was restored from an older copy",
      });
    if (p.period <= pp.period) throw new MlicError('REPORT_INVALID', `rewind: period ${p.period} does not follow ${pp.period}`);
    continuity = 'checked';
  }
  return { period: p.period, licenseId: p.licenseId, totals: p.totals, records: l.count, continuity };
}
