/**
 * The usage ledger (docs/USAGE.md): per host and licence, an append-only, hash-chained, MAC'd
 * log of consumption, shared by every process on the host through an inter-process lock.
 *
 * strict:  every consume is decided and appended under the lock, fsynced before it returns.
 * batched: a process reserves a block of quota under the lock (a lease), consumes from it in
 *          memory, and appends its consumption in batches (at most every flushMs, and on close).
 *          Quota is never exceeded across processes: reserved blocks count as used until they
 *          are released or expire. A process killed with SIGKILL loses at most its unflushed
 *          consumption (under flushMs); its unused reservation stays counted until it expires.
 */
import { ChainLog, type ChainRecord } from '../state/chainlog.js';
import { randomBytes } from '../crypto/random.js';
import type { LicensePayload, Meter } from '../format/license.js';
import { decideQuota, hardLimit, periodOf } from '../license/meter.js';
import { Flusher } from '../util/flusher.js';

export type UsageData =
  /** `count` calls (default 1) adding up to `quantity`; batched mode merges the calls of one flush */
  | { kind: 'consume'; metric: string; period: string; quantity: number; count?: number; feature?: string; overage?: boolean; lease?: string; t: string }
  | { kind: 'reserve'; metric: string; period: string; amount: number; lease: string; expiresAt: string; t: string }
  | { kind: 'release'; metric: string; period: string; amount: number; lease: string; t: string };

export type Durability = 'strict' | 'batched';

interface Lease {
  id: string;
  metric: string;
  period: string;
  remaining: number;
  expiresAt: number;
}

interface Totals {
  consumed: number;
  /** lease id -> [reserved-not-yet-consumed amount, expiresAt ms] */
  leases: Map<string, [number, number]>;
}

export interface ConsumeResult {
  ok: boolean;
  metric: string;
  used: number;
  remaining: number;
  limit: number;
  overage: boolean;
  resetsAt: Date | undefined;
}

export const LEASE_MS = 60_000;

function applyRecord(totals: Map<string, Totals>, d: UsageData): void {
  const key = `${d.metric}\u0000${d.period}`;
  let t = totals.get(key);
  if (!t) totals.set(key, (t = { consumed: 0, leases: new Map() }));
  if (d.kind === 'consume') {
    t.consumed += d.quantity;
    const l = d.lease ? t.leases.get(d.lease) : undefined;
    if (l) l[0] = Math.max(0, l[0] - d.quantity);
  } else if (d.kind === 'reserve') t.leases.set(d.lease, [d.amount, Date.parse(d.expiresAt)]);
  else {
    const l = t.leases.get(d.lease);
    if (l) l[0] = Math.max(0, l[0] - d.amount);
  }
}

/** consumed, and reserved-but-unconsumed in unexpired leases (optionally not counting one lease). */
function committedOf(t: Totals | undefined, nowMs: number, excludeLease?: string): { consumed: number; outstanding: number } {
  if (!t) return { consumed: 0, outstanding: 0 };
  let outstanding = 0;
  for (const [id, [amount, exp]] of t.leases) if (id !== excludeLease && exp > nowMs) outstanding += amount;
  return { consumed: t.consumed, outstanding };
}

function cloneTotals(t: Totals | undefined): Totals {
  return { consumed: t?.consumed ?? 0, leases: new Map([...(t?.leases ?? new Map<string, [number, number]>())].map(([k, v]) => [k, [v[0], v[1]] as [number, number]])) };
}

export class UsageLedger {
  private totals = new Map<string, Totals>();
  private seen = 0;
  private leases = new Map<string, Lease>();
  private pending: UsageData[] = [];
  /** consumption buffered in `pending`, per metric+period */
  private local = new Map<string, number>();
  private readonly flusher: Flusher;

  private constructor(
    readonly log: ChainLog<UsageData>,
    readonly license: LicensePayload,
    readonly durability: Durability,
    readonly flushMs: number,
  ) {
    this.flusher = new Flusher(flushMs, async () => {
      if (this.pending.length === 0) return;
      const batch = this.takePending();
      await this.log.transact((view) => {
        this.fold(view.records);
        this.local.clear();
        return { append: batch, result: undefined };
      });
    });
  }

  static async open(path: string, macKey: Uint8Array, license: LicensePayload, opts: { durability?: Durability; flushMs?: number } = {}): Promise<UsageLedger> {
    const durability = opts.durability ?? 'batched';
    const log = await ChainLog.open<UsageData>({ path, macKey, durability, flushMs: opts.flushMs ?? 50 });
    return new UsageLedger(log, license, durability, opts.flushMs ?? 50);
  }

  meter(metric: string): Meter | undefined {
    return this.license.meters.find((m) => m.metric === metric);
  }

  private fold(records: readonly ChainRecord<UsageData>[]): void {
    if (records.length < this.seen) {
      this.totals.clear();
      this.seen = 0;
    }
    for (let i = this.seen; i < records.length; i++) applyRecord(this.totals, records[i]!.data);
    this.seen = records.length;
  }

  /** Usage in the current period, as the ledger says after this process's buffer is flushed. */
  async status(metric: string, now: Date): Promise<{ used: number; limit: number; remaining: number; resetsAt: Date | undefined; period: string } | undefined> {
    const m = this.meter(metric);
    if (!m) return undefined;
    const p = periodOf(m, this.license, now);
    await this.flush();
    await this.log.transact((view) => {
      this.fold(view.records);
      return { append: [], result: undefined };
    });
    const used = this.totals.get(`${metric}\u0000${p.key}`)?.consumed ?? 0;
    return { used, limit: m.limit, remaining: Math.max(0, m.limit - used), resetsAt: p.resetsAt, period: p.key };
  }

  async consume(metric: string, quantity: number, now: Date, feature?: string): Promise<ConsumeResult> {
    const m = this.meter(metric)!;
    const p = periodOf(m, this.license, now);
    const key = `${metric}\u0000${p.key}`;
    const nowMs = now.getTime();
    const t = now.toISOString();
    const base = { metric, limit: m.limit, resetsAt: p.resetsAt };
    if (this.durability === 'strict') {
      return this.log.transact<ConsumeResult>((view) => {
        this.fold(view.records);
        const c = committedOf(this.totals.get(key), nowMs);
        const q = decideQuota(m, c.consumed + c.outstanding, quantity);
        if (!q.ok) return { append: [], result: { ok: false, ...base, used: c.consumed, remaining: Math.max(0, m.limit - c.consumed - c.outstanding), overage: false } };
        const rec: UsageData = { kind: 'consume', metric, period: p.key, quantity, ...(feature ? { feature } : {}), ...(q.overage ? { overage: true } : {}), t };
        return { append: [rec], result: { ok: true, ...base, used: c.consumed + quantity, remaining: Math.max(0, m.limit - c.consumed - c.outstanding - quantity), overage: q.overage } };
      });
    }
    // batched: consume from this process's lease; reserve a new block when it runs out.
    let lease = this.leases.get(key);
    if (!lease || lease.remaining < quantity || lease.expiresAt <= nowMs + 1000) {
      lease = await this.reserve(m, p.key, quantity, now, lease);
      if (!lease) {
        const c = committedOf(this.totals.get(key), nowMs);
        return { ok: false, ...base, used: c.consumed, remaining: Math.max(0, m.limit - c.consumed - c.outstanding), overage: false };
      }
    }
    lease.remaining -= quantity;
    const c = committedOf(this.totals.get(key), nowMs, lease.id);
    const mine = (this.local.get(key) ?? 0) + quantity;
    const used = c.consumed + mine;
    const overage = c.consumed + c.outstanding + mine > m.limit;
    // Merge into this flush's record for the same metric, period, lease, feature and overage flag.
    const mk = `${key}\u0000${lease.id}\u0000${feature ?? ''}\u0000${overage ? 1 : 0}`;
    const rec = this.merge.get(mk);
    if (rec && rec.kind === 'consume') {
      rec.quantity += quantity;
      rec.count = (rec.count ?? 1) + 1;
      rec.t = t;
    } else {
      const fresh: UsageData = { kind: 'consume', metric, period: p.key, quantity, count: 1, lease: lease.id, ...(feature ? { feature } : {}), ...(overage ? { overage: true } : {}), t };
      this.pending.push(fresh);
      this.merge.set(mk, fresh);
    }
    this.local.set(key, mine);
    this.schedule();
    return { ok: true, ...base, used, remaining: Math.max(0, m.limit - c.consumed - c.outstanding - mine), overage };
  }

  private async reserve(m: Meter, period: string, quantity: number, now: Date, old: Lease | undefined): Promise<Lease | undefined> {
    const nowMs = now.getTime();
    const key = `${m.metric}\u0000${period}`;
    const buffered = this.takePending();
    return this.log.transact((view) => {
      this.fold(view.records);
      const t = now.toISOString();
      const append: UsageData[] = [...buffered];
      if (old && old.remaining > 0) append.push({ kind: 'release', metric: old.metric, period: old.period, amount: old.remaining, lease: old.id, t });
      // What the ledger will say once these are appended.
      const after = cloneTotals(this.totals.get(key));
      for (const d of append) if (`${d.metric}\u0000${d.period}` === key) applyRecord(new Map([[key, after]]), d);
      const c = committedOf(after, nowMs);
      const free = hardLimit(m) - c.consumed - c.outstanding;
      this.local.clear();
      if (free < quantity) {
        this.leases.delete(key);
        return { append, result: undefined };
      }
      const block = Math.min(free, Math.max(quantity, Math.min(1000, Math.ceil(m.limit / 100))));
      const lease: Lease = { id: randomBytes(8).toString('hex'), metric: m.metric, period, remaining: block, expiresAt: nowMs + LEASE_MS };
      append.push({ kind: 'reserve', metric: m.metric, period, amount: block, lease: lease.id, expiresAt: new Date(lease.expiresAt).toISOString(), t });
      this.leases.set(key, lease);
      return { append, result: lease };
    });
  }

  private merge = new Map<string, UsageData>();

  private takePending(): UsageData[] {
    const p = this.pending;
    this.pending = [];
    this.merge.clear();
    return p;
  }

  private schedule(): void {
    this.flusher.schedule();
  }

  /** Appends the buffered consumption. */
  flush(): Promise<void> {
    return this.flusher.flush();
  }

  /** Flushes and releases this process's unused reservations. */
  async close(): Promise<void> {
    await this.flusher.stop();
    const t = new Date().toISOString();
    const releases: UsageData[] = [...this.leases.values()].filter((l) => l.remaining > 0).map((l) => ({ kind: 'release' as const, metric: l.metric, period: l.period, amount: l.remaining, lease: l.id, t }));
    const batch = [...this.takePending(), ...releases];
    this.leases.clear();
    if (batch.length) await this.log.transact(() => ({ append: batch, result: undefined }));
    await this.log.close();
  }

  /** Every record, verified (for reports). */
  async records(): Promise<ChainRecord<UsageData>[]> {
    await this.flush();
    return this.log.readAll();
  }
}
