/**
 * The usage ledger (docs/USAGE.md): per host and licence, an append-only, hash-chained, MAC'd
 * log of consumption, shared by every process on the host through an inter-process lock.
 *
 * strict:  every consume is decided and appended under the lock, fsynced before it returns.
 * batched: a process reserves a block of quota under the lock (a lease), consumes from it in
 *          memory, and appends its consumption in batches (at most every flushMs, and on close).
 *          Quota is never exceeded across processes: a reservation counts as committed until it
 *          is consumed or released. A reservation that its process neither consumes nor releases
 *          before it expires (the process was killed) becomes consumed usage: the first process
 *          that sees it expired appends a `consume` record with `forfeited: true` for what was
 *          left. Usage is therefore never lost; a killed process costs its customer at most the
 *          unused part of one block.
 *
 * Every figure (validate(), meter status, meter consume, reports) comes from one function,
 * `figuresOf`: used = consumed (recorded, plus this process's unflushed consumption),
 * reserved = reservations of other processes not yet consumed, remaining = limit - used -
 * reserved: what this process can still use.
 */
import { ChainLog, type ChainRecord } from '../state/chainlog.js';
import { randomBytes } from '../crypto/random.js';
import type { LicensePayload, Meter } from '../format/license.js';
import { decideQuota, hardLimit, periodOf } from '../license/meter.js';
import { Flusher } from '../util/flusher.js';

export type UsageData =
  /** `count` calls (default 1) adding up to `quantity`; batched mode merges the calls of one flush; `forfeited`: what an expired reservation left */
  | { kind: 'consume'; metric: string; period: string; quantity: number; count?: number; feature?: string; overage?: boolean; lease?: string; forfeited?: boolean; t: string }
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

export interface Figures {
  used: number;
  reserved: number;
  remaining: number;
  limit: number;
}

export interface ConsumeResult extends Figures {
  ok: boolean;
  metric: string;
  overage: boolean;
  resetsAt: Date | undefined;
}

export const LEASE_MS = 60_000;
/** A lease is forfeited this long after it expired (its owner renews a second before expiry). */
export const FORFEIT_AFTER_MS = 5_000;

const keyOf = (metric: string, period: string) => `${metric}\u0000${period}`;

function applyRecord(totals: Map<string, Totals>, d: UsageData): void {
  const key = keyOf(d.metric, d.period);
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

/** The one place figures come from; `mine` is this process's consumption not yet recorded. */
export function figuresOf(meter: Meter, t: Totals | undefined, mine = 0, excludeLease?: string): Figures {
  let reserved = 0;
  for (const [id, [amount]] of t?.leases ?? []) if (id !== excludeLease) reserved += amount;
  const used = (t?.consumed ?? 0) + mine;
  return { used, reserved, remaining: Math.max(0, meter.limit - used - reserved), limit: meter.limit };
}

export class UsageLedger {
  private totals = new Map<string, Totals>();
  private seen = 0;
  private leases = new Map<string, Lease>();
  private pending: UsageData[] = [];
  /** consumption buffered in `pending`, per metric+period */
  private local = new Map<string, number>();
  private merge = new Map<string, UsageData>();
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
        return { append: this.commit(batch), result: undefined };
      });
    });
  }

  static async open(
    path: string,
    macKey: Uint8Array,
    license: LicensePayload,
    opts: { durability?: Durability; flushMs?: number; beforeHead?: (durable: { seq: number; hash: string }) => Promise<void> } = {},
  ): Promise<UsageLedger> {
    const durability = opts.durability ?? 'batched';
    const log = await ChainLog.open<UsageData>({ path, macKey, durability, flushMs: opts.flushMs ?? 50, ...(opts.beforeHead ? { beforeHead: opts.beforeHead } : {}) });
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

  /** Inside a transaction, after fold(): counts what is about to be appended, so figures include it at once. */
  private commit(append: UsageData[]): UsageData[] {
    for (const d of append) applyRecord(this.totals, d);
    this.seen += append.length;
    return append;
  }

  /** Records that turn other processes' expired, abandoned reservations into consumed usage. */
  private forfeits(nowMs: number): UsageData[] {
    const out: UsageData[] = [];
    const t = new Date(nowMs).toISOString();
    for (const [key, tot] of this.totals)
      for (const [id, [amount, exp]] of tot.leases)
        if (amount > 0 && exp + FORFEIT_AFTER_MS <= nowMs && ![...this.leases.values()].some((l) => l.id === id)) {
          const [metric, period] = key.split('\u0000') as [string, string];
          out.push({ kind: 'consume', metric, period, quantity: amount, lease: id, forfeited: true, t });
        }
    return out;
  }

  /** Usage in the current period, as the ledger says after this process's buffer is flushed (expired reservations forfeited). */
  async status(metric: string, now: Date): Promise<(Figures & { resetsAt: Date | undefined; period: string }) | undefined> {
    const m = this.meter(metric);
    if (!m) return undefined;
    const p = periodOf(m, this.license, now);
    await this.flush();
    await this.log.transact((view) => {
      this.fold(view.records);
      return { append: this.commit(this.forfeits(now.getTime())), result: undefined };
    });
    return { ...figuresOf(m, this.totals.get(keyOf(metric, p.key))), resetsAt: p.resetsAt, period: p.key };
  }

  async consume(metric: string, quantity: number, now: Date, feature?: string): Promise<ConsumeResult> {
    const m = this.meter(metric)!;
    const p = periodOf(m, this.license, now);
    const key = keyOf(metric, p.key);
    const nowMs = now.getTime();
    const t = now.toISOString();
    const base = { metric, resetsAt: p.resetsAt };
    if (this.durability === 'strict') {
      return this.log.transact<ConsumeResult>((view) => {
        this.fold(view.records);
        const forfeits = this.commit(this.forfeits(nowMs));
        const f = figuresOf(m, this.totals.get(key));
        const q = decideQuota(m, f.used + f.reserved, quantity);
        if (!q.ok) return { append: forfeits, result: { ok: false, ...base, ...f, overage: false } };
        const rec: UsageData = { kind: 'consume', metric, period: p.key, quantity, ...(feature ? { feature } : {}), ...(q.overage ? { overage: true } : {}), t };
        const append = [...forfeits, ...this.commit([rec])];
        return { append, result: { ok: true, ...base, ...figuresOf(m, this.totals.get(key)), overage: q.overage } };
      });
    }
    // batched: consume from this process's lease; reserve a new block when it runs out.
    let lease = this.leases.get(key);
    if (!lease || lease.remaining < quantity || lease.expiresAt <= nowMs + 1000) {
      const r = await this.reserve(m, p.key, quantity, now, lease);
      if (!r.lease) return { ok: false, ...base, ...r.figures, overage: false };
      lease = r.lease;
    }
    lease.remaining -= quantity;
    const mine = (this.local.get(key) ?? 0) + quantity;
    const tot = this.totals.get(key);
    // This process's own reservation is its to use: figures are from its point of view, as a
    // reader without reservations sees them (reserved = held by other processes).
    const f = figuresOf(m, tot, mine, lease.id);
    const overage = f.used + f.reserved > m.limit;
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
    this.flusher.schedule();
    return { ok: true, ...base, ...f, overage };
  }

  private async reserve(m: Meter, period: string, quantity: number, now: Date, old: Lease | undefined): Promise<{ lease?: Lease; figures: Figures }> {
    const nowMs = now.getTime();
    const key = keyOf(m.metric, period);
    const buffered = this.takePending();
    return this.log.transact<{ lease?: Lease; figures: Figures }>((view) => {
      this.fold(view.records);
      const t = now.toISOString();
      const append: UsageData[] = [...buffered];
      if (old && old.remaining > 0) append.push({ kind: 'release', metric: old.metric, period: old.period, amount: old.remaining, lease: old.id, t });
      if (old) this.leases.delete(keyOf(old.metric, old.period));
      append.push(...this.forfeits(nowMs));
      this.commit(append);
      this.local.clear();
      const f = figuresOf(m, this.totals.get(key));
      const free = hardLimit(m) - f.used - f.reserved;
      if (free < quantity) return { append, result: { figures: f } };
      const block = Math.min(free, Math.max(quantity, Math.min(1000, Math.ceil(m.limit / 100))));
      const lease: Lease = { id: randomBytes(8).toString('hex'), metric: m.metric, period, remaining: block, expiresAt: nowMs + LEASE_MS };
      const rec: UsageData = { kind: 'reserve', metric: m.metric, period, amount: block, lease: lease.id, expiresAt: new Date(lease.expiresAt).toISOString(), t };
      append.push(...this.commit([rec]));
      this.leases.set(key, lease);
      return { append, result: { lease, figures: f } };
    });
  }

  private takePending(): UsageData[] {
    const p = this.pending;
    this.pending = [];
    this.merge.clear();
    return p;
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
    if (batch.length)
      await this.log.transact((view) => {
        this.fold(view.records);
        return { append: this.commit(batch), result: undefined };
      });
    await this.log.close();
  }

  /** Every record, verified (for reports). */
  async records(): Promise<ChainRecord<UsageData>[]> {
    await this.flush();
    return this.log.readAll();
  }
}
