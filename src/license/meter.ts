/**
 * Quotas (pure): which period a moment falls in, and whether a quantity fits a meter.
 * Periods: `day` (UTC calendar day), `month` (UTC calendar month), `term` (the licence's whole
 * validity). The clock comes in as an argument.
 */
import type { LicensePayload, Meter } from '../format/license.js';

export interface PeriodWindow {
  /** stable key of the period, e.g. "2026-11-28", "2026-11", "term" */
  key: string;
  start: Date;
  /** when the next period starts (undefined for a term without an end) */
  resetsAt: Date | undefined;
}

export function periodOf(meter: Meter, license: Pick<LicensePayload, 'notBefore' | 'expires'>, now: Date): PeriodWindow {
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  const d = now.getUTCDate();
  switch (meter.period) {
    case 'day':
      return { key: now.toISOString().slice(0, 10), start: new Date(Date.UTC(y, m, d)), resetsAt: new Date(Date.UTC(y, m, d + 1)) };
    case 'month':
      return { key: now.toISOString().slice(0, 7), start: new Date(Date.UTC(y, m, 1)), resetsAt: new Date(Date.UTC(y, m + 1, 1)) };
    case 'term':
      return { key: 'term', start: new Date(license.notBefore), resetsAt: license.expires ? new Date(license.expires) : undefined };
  }
}

/** The most that may be used in one period: the limit, plus the allowed overage. */
export function hardLimit(meter: Meter): number {
  if (meter.overage?.mode === 'record') return Number.MAX_SAFE_INTEGER;
  if (meter.overage?.mode === 'allow') return meter.limit + Math.floor((meter.limit * meter.overage.percent) / 100);
  return meter.limit;
}

/** The overage policy in words, for listings: '', ' (+10%)', ' (overage recorded)'. */
export function overageText(m: Meter): string {
  if (m.overage?.mode === 'allow') return ` (+${m.overage.percent}%)`;
  if (m.overage?.mode === 'record') return ' (overage recorded)';
  return '';
}

export interface QuotaDecision {
  ok: boolean;
  used: number;
  /** remaining under the limit proper (never negative) */
  remaining: number;
  /** this consumption goes over the limit, within the allowed overage: flag it for billing */
  overage: boolean;
  limit: number;
  hardLimit: number;
}

export function decideQuota(meter: Meter, usedSoFar: number, quantity: number): QuotaDecision {
  const hard = hardLimit(meter);
  const after = usedSoFar + quantity;
  const ok = Number.isSafeInteger(quantity) && quantity >= 0 && after <= hard;
  const used = ok ? after : usedSoFar;
  return { ok, used, remaining: Math.max(0, meter.limit - used), overage: ok && after > meter.limit, limit: meter.limit, hardLimit: hard };
}
