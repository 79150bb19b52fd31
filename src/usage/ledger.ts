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
 * fleet:   a meter with scope `fleet` is counted by the vendor's licence server for the whole
 *          entitlement (docs/SERVER.md). The host's processes share a pool of units the server
 *          granted (`grant` records, less `give-back` records): the pool takes the place of the
 *          limit, and when it runs short a process asks the server for a block (adaptive to its
 *          rate, bounded by what the fleet has left), with no network call while units remain.
 *          Unused units go back to the server on close() and before the server's account ends.
 *
 * Every figure (validate(), meter status, meter consume, reports) comes from one function,
 * `figuresOf`: used = consumed (recorded, plus this process's unflushed consumption),
 * reserved = reservations of other processes not yet consumed, remaining = limit - used -
 * reserved: what this process can still use.
 */
import { ChainLog, type ChainRecord } from '../state/chainlog.js';
import { randomBytes } from '../crypto/random.js';
import type { LicensePayload, Meter } from '../format/license.js';
import { hardLimit, periodOf, type PeriodWindow } from '../license/meter.js';
import { Flusher } from '../util/flusher.js';
import { MlicError } from '../errors.js';
import { isFleetFigures, type FleetClient, type FleetFigures, type FleetResult } from '../format/reservation.js';

export type UsageData =
  /** `count` calls (default 1) adding up to `quantity`; batched mode merges the calls of one flush; `forfeited`: what an expired reservation left */
  | { kind: 'consume'; metric: string; period: string; quantity: number; count?: number; feature?: string; overage?: boolean; lease?: string; forfeited?: boolean; t: string }
  | { kind: 'reserve'; metric: string; period: string; amount: number; lease: string; expiresAt: string; t: string }
  | { kind: 'release'; metric: string; period: string; amount: number; lease: string; t: string }
  /** fleet meters: units the licence server granted this host (`overage`: of them, past the meter's limit); its account ends at expiresAt */
  | { kind: 'grant'; metric: string; period: string; amount: number; account: string; expiresAt: string; overage?: number; t: string }
  /** fleet meters: units this host gave back to the server */
  | { kind: 'give-back'; metric: string; period: string; amount: number; account: string; t: string };

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
  /** fleet meters: units granted by the server less units given back */
  pool: number;
  /** fleet meters: of the pool, units granted past the meter's limit (given back first) */
  over: number;
  /** fleet meters: the server account's id and when it ends (the latest grant's) */
  account?: [string, number];
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
  /** fleet meters, when refused: why the server gave no more units (or could not be reached) */
  fleet?: FleetShortfall;
}

export const LEASE_MS = 60_000;
/** A lease is forfeited this long after it expired (its owner renews a second before expiry). */
export const FORFEIT_AFTER_MS = 5_000;

const keyOf = (metric: string, period: string) => `${metric}\u0000${period}`;

function applyRecord(totals: Map<string, Totals>, d: UsageData): void {
  const key = keyOf(d.metric, d.period);
  let t = totals.get(key);
  if (!t) totals.set(key, (t = { consumed: 0, leases: new Map(), pool: 0, over: 0 }));
  if (d.kind === 'grant') {
    t.pool += d.amount;
    t.over += d.overage ?? 0;
    t.account = [d.account, Date.parse(d.expiresAt)];
  } else if (d.kind === 'give-back') {
    t.pool -= d.amount;
    t.over = Math.max(0, t.over - d.amount);
  } else if (d.kind === 'consume') {
    t.consumed += d.quantity;
    const l = d.lease ? t.leases.get(d.lease) : undefined;
    if (l) l[0] = Math.max(0, l[0] - d.quantity);
  } else if (d.kind === 'reserve') t.leases.set(d.lease, [d.amount, Date.parse(d.expiresAt)]);
  else {
    const l = t.leases.get(d.lease);
    if (l) l[0] = Math.max(0, l[0] - d.amount);
  }
}

/**
 * How far usage may go: `cap` (refused past it) and `plain` (past it, usage is overage). A host
 * meter's are its limit and hard limit; a fleet meter's, the pool the server granted this host.
 */
function capOf(m: Meter, t: Totals | undefined): { cap: number; plain: number } {
  if (m.scope === 'fleet') return { cap: t?.pool ?? 0, plain: (t?.pool ?? 0) - (t?.over ?? 0) };
  return { cap: hardLimit(m), plain: m.limit };
}

/**
 * The one place figures come from; `mine` is this process's consumption not yet recorded.
 * remaining: for a host meter, what is left of the limit; for a fleet meter, what this host holds
 * of the server's units and no process is using (more are reserved from the server as needed).
 */
export function figuresOf(meter: Meter, t: Totals | undefined, mine = 0, excludeLease?: string): Figures {
  let reserved = 0;
  for (const [id, [amount]] of t?.leases ?? []) if (id !== excludeLease) reserved += amount;
  const used = (t?.consumed ?? 0) + mine;
  const top = meter.scope === 'fleet' ? (t?.pool ?? 0) : meter.limit;
  return { used, reserved, remaining: Math.max(0, top - used - reserved), limit: meter.limit };
}

/** One try at consuming: done (allowed or refused), or a fleet meter's pool `need`s that many more units from the server. */
type Attempt = Omit<ConsumeResult, 'metric' | 'resetsAt'> | { need: number; figures: Figures };

/** The fleet's refusal, or a server that could not be reached: the result carries it. */
interface FleetShortfall {
  error: MlicError;
  unreachable: boolean;
  fleet?: FleetFigures;
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
  /** fleet meters: this process's request to the server per metric+period, shared by concurrent calls */
  private asking = new Map<string, Promise<FleetShortfall | undefined>>();
  /** fleet meters: the size of the last block asked for and when, per metric+period (blocks adapt to the rate) */
  private adapt = new Map<string, { size: number; at: number }>();

  private constructor(
    readonly log: ChainLog<UsageData>,
    readonly license: LicensePayload,
    readonly durability: Durability,
    readonly flushMs: number,
    private readonly fleet: FleetClient | undefined,
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
    opts: { durability?: Durability; flushMs?: number; beforeHead?: (durable: { seq: number; hash: string }) => Promise<void>; fleet?: FleetClient } = {},
  ): Promise<UsageLedger> {
    const durability = opts.durability ?? 'batched';
    const log = await ChainLog.open<UsageData>({ path, macKey, durability, flushMs: opts.flushMs ?? 50, ...(opts.beforeHead ? { beforeHead: opts.beforeHead } : {}) });
    return new UsageLedger(log, license, durability, opts.flushMs ?? 50, opts.fleet);
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

  /** The period `now` falls in, for a meter (kept per meter until the period ends: this runs on every call). */
  private periodAt(m: Meter, now: Date): PeriodWindow {
    const t = now.getTime();
    const hit = this.periods.get(m);
    if (hit && t >= hit.start.getTime() && (hit.resetsAt === undefined || t < hit.resetsAt.getTime())) return hit;
    const p = periodOf(m, this.license, now);
    this.periods.set(m, p);
    return p;
  }

  private periods = new Map<Meter, PeriodWindow>();

  async consume(metric: string, quantity: number, now: Date, feature?: string): Promise<ConsumeResult> {
    const m = this.meter(metric)!;
    const p = this.periodAt(m, now);
    const base = { metric, resetsAt: p.resetsAt };
    // a fleet meter whose pool runs short asks the server for a block, then tries again (at most three times: others may take the block first)
    for (let attempt = 0; ; attempt++) {
      const r = this.durability === 'strict' ? await this.consumeStrict(m, p.key, quantity, now, feature) : await this.consumeBatched(m, p.key, quantity, now, feature);
      if (!('need' in r)) {
        // (filled in place: this runs on every metered call)
        const done = r as ConsumeResult;
        done.metric = metric;
        done.resetsAt = p.resetsAt;
        return done;
      }
      // The call that asked for the block claims its part in the transaction that records the
      // grant (strict: consumes; batched: reserves its block), so other processes of the host
      // cannot take all of it first and starve the process that asked.
      let claimed: Attempt | undefined;
      const claim = (): UsageData[] => {
        if (this.durability === 'strict') {
          const s = this.strictStep(m, p.key, quantity, now, feature, []);
          if (!('need' in s.result)) claimed = s.result;
          return s.append;
        }
        const old = this.leases.get(keyOf(m.metric, p.key));
        if (old && old.remaining >= quantity && old.expiresAt > now.getTime() + 1000) return [];
        return this.claimBlock(m, p.key, quantity, now.getTime()).append;
      };
      const short = attempt < 3 ? await this.topUp(m, p.key, r.need, now, claim) : { error: new MlicError('QUOTA_EXCEEDED', 'other processes of this host took the units the server granted first'), unreachable: false };
      if (short) return { ok: false, ...base, ...r.figures, overage: false, fleet: short };
      if (claimed) {
        const done = claimed as ConsumeResult;
        done.metric = metric;
        done.resetsAt = p.resetsAt;
        return done;
      }
    }
  }

  private consumeStrict(m: Meter, period: string, quantity: number, now: Date, feature?: string): Promise<Attempt> {
    return this.log.transact<Attempt>((view) => {
      this.fold(view.records);
      return this.strictStep(m, period, quantity, now, feature, this.commit(this.forfeits(now.getTime())));
    });
  }

  /** strict, inside a transaction after fold(): consumes `quantity` now, or says why not. `before`: records already committed in this transaction. */
  private strictStep(m: Meter, period: string, quantity: number, now: Date, feature: string | undefined, before: UsageData[]): { append: UsageData[]; result: Attempt } {
    const key = keyOf(m.metric, period);
    const tot = this.totals.get(key);
    const f = figuresOf(m, tot);
    const { cap, plain } = capOf(m, tot);
    const after = f.used + f.reserved + quantity;
    if (after > cap) {
      if (m.scope === 'fleet' && this.fleet) return { append: before, result: { need: after - cap, figures: f } };
      return { append: before, result: { ok: false, ...f, overage: false } };
    }
    const overage = after > plain;
    const rec: UsageData = { kind: 'consume', metric: m.metric, period, quantity, ...(feature ? { feature } : {}), ...(overage ? { overage: true } : {}), t: now.toISOString() };
    return { append: [...before, ...this.commit([rec])], result: { ok: true, ...figuresOf(m, this.totals.get(key)), overage } };
  }

  /** batched: consume from this process's block; reserve a new block from the host's quota (or pool) when it runs out. */
  private async consumeBatched(m: Meter, period: string, quantity: number, now: Date, feature?: string): Promise<Attempt> {
    const key = keyOf(m.metric, period);
    const nowMs = now.getTime();
    let lease = this.leases.get(key);
    if (!lease || lease.remaining < quantity || lease.expiresAt <= nowMs + 1000) {
      const r = await this.reserve(m, period, quantity, now, lease);
      if (r.need !== undefined) return { need: r.need, figures: r.figures };
      if (!r.lease) return { ok: false, ...r.figures, overage: false };
      lease = r.lease;
    }
    lease.remaining -= quantity;
    const mine = (this.local.get(key) ?? 0) + quantity;
    const tot = this.totals.get(key);
    // This process's own reservation is its to use: figures are from its point of view, as a
    // reader without reservations sees them (reserved = held by other processes).
    const f = figuresOf(m, tot, mine, lease.id);
    const overage = f.used + f.reserved > capOf(m, tot).plain;
    // Merge into this flush's record for the same metric, period, lease, feature and overage flag.
    const mk = `${key}\u0000${lease.id}\u0000${feature ?? ''}\u0000${overage ? 1 : 0}`;
    const rec = this.merge.get(mk);
    const t = now.toISOString();
    if (rec && rec.kind === 'consume') {
      rec.quantity += quantity;
      rec.count = (rec.count ?? 1) + 1;
      rec.t = t;
    } else {
      const fresh: UsageData = { kind: 'consume', metric: m.metric, period, quantity, count: 1, lease: lease.id, ...(feature ? { feature } : {}), ...(overage ? { overage: true } : {}), t };
      this.pending.push(fresh);
      this.merge.set(mk, fresh);
    }
    this.local.set(key, mine);
    this.flusher.schedule();
    return { ok: true, used: f.used, reserved: f.reserved, remaining: f.remaining, limit: f.limit, overage };
  }

  private async reserve(m: Meter, period: string, quantity: number, now: Date, old: Lease | undefined): Promise<{ lease?: Lease; need?: number; figures: Figures }> {
    const nowMs = now.getTime();
    const buffered = this.takePending();
    return this.log.transact<{ lease?: Lease; need?: number; figures: Figures }>((view) => {
      this.fold(view.records);
      const t = now.toISOString();
      const append: UsageData[] = [...buffered];
      if (old && old.remaining > 0) append.push({ kind: 'release', metric: old.metric, period: old.period, amount: old.remaining, lease: old.id, t });
      if (old) this.leases.delete(keyOf(old.metric, old.period));
      append.push(...this.forfeits(nowMs));
      this.commit(append);
      this.local.clear();
      const c = this.claimBlock(m, period, quantity, nowMs);
      append.push(...c.append);
      if (c.lease) return { append, result: { lease: c.lease, figures: c.figures } };
      return { append, result: m.scope === 'fleet' && this.fleet ? { need: quantity - Math.max(0, c.free), figures: c.figures } : { figures: c.figures } };
    });
  }

  /** batched, inside a transaction after fold(): reserves this process's next block (at least `quantity`) if that much is free. */
  private claimBlock(m: Meter, period: string, quantity: number, nowMs: number): { lease?: Lease; append: UsageData[]; figures: Figures; free: number } {
    const key = keyOf(m.metric, period);
    const tot = this.totals.get(key);
    const f = figuresOf(m, tot);
    const free = capOf(m, tot).cap - f.used - f.reserved;
    if (free < quantity) return { append: [], figures: f, free };
    const block = Math.min(free, Math.max(quantity, Math.min(1000, Math.ceil(m.limit / 100))));
    const lease: Lease = { id: randomBytes(8).toString('hex'), metric: m.metric, period, remaining: block, expiresAt: nowMs + LEASE_MS };
    const rec: UsageData = { kind: 'reserve', metric: m.metric, period, amount: block, lease: lease.id, expiresAt: new Date(lease.expiresAt).toISOString(), t: new Date(nowMs).toISOString() };
    this.leases.set(key, lease);
    return { lease, append: this.commit([rec]), figures: f, free };
  }

  /**
   * Fleet meters: asks the server for a block of at least `need` units and records the grant in
   * the ledger (undefined), or says why not. Concurrent calls in one process share one request.
   * The block adapts to this process's rate: twice the last one when that lasted under 5 s, half
   * when over a minute; it starts at 1% of the limit (at most 1,000) and never passes 10% of it.
   */
  private topUp(m: Meter, period: string, need: number, now: Date, claim: () => UsageData[]): Promise<FleetShortfall | undefined> {
    const key = keyOf(m.metric, period);
    const inflight = this.asking.get(key);
    if (inflight) return inflight;
    const ask = (async (): Promise<FleetShortfall | undefined> => {
      const first = Math.max(1, Math.min(1000, Math.ceil(m.limit / 100)));
      const a = this.adapt.get(key);
      const ms = now.getTime() - (a?.at ?? 0);
      const size = !a ? first : ms < 5_000 ? a.size * 2 : ms > 60_000 ? Math.max(first, Math.floor(a.size / 2)) : a.size;
      const amount = Math.max(need, Math.min(size, Math.max(first, Math.ceil(m.limit / 10))));
      const used = (this.totals.get(key)?.consumed ?? 0) + (this.local.get(key) ?? 0);
      const r: FleetResult = await this.fleet!.reserve(m.metric, period, amount, need, used, now);
      if (!r.ok) return { error: r.error, unreachable: r.unreachable, ...(isFleetFigures(r.error.details) ? { fleet: r.error.details } : {}) };
      this.adapt.set(key, { size: amount, at: now.getTime() });
      const g = r.answer;
      await this.log.transact((view) => {
        this.fold(view.records);
        const rec: UsageData = { kind: 'grant', metric: m.metric, period, amount: g.amount, account: g.accountId, expiresAt: g.expiresAt, ...(g.overage ? { overage: g.overage } : {}), t: now.toISOString() };
        const granted = this.commit([rec]);
        return { append: [...granted, ...claim()], result: undefined };
      });
      return undefined;
    })();
    this.asking.set(key, ask);
    return ask.finally(() => this.asking.delete(key));
  }

  /**
   * Fleet meters: gives the server back the units this host holds that no process is using, for
   * accounts that are still live (an expired one's units were counted as consumed). `soon`: only
   * those of accounts ending within that many ms, or of a past period. The units are first held
   * by a reservation of this process (so no other process takes them meanwhile), then given
   * back, and the hold released; if this process dies in between, the hold is forfeited like any
   * other, so the host never counts units it may have given back.
   */
  async giveBack(now: Date, o: { soon?: number } = {}): Promise<number> {
    if (!this.fleet || !this.license.meters.some((m) => m.scope === 'fleet')) return 0;
    const nowMs = now.getTime();
    const current = new Set(this.license.meters.map((m) => keyOf(m.metric, periodOf(m, this.license, now).key)));
    const buffered = this.takePending();
    const holds = await this.log.transact((view) => {
      this.fold(view.records);
      const append = this.commit([...buffered, ...this.forfeits(nowMs)]);
      this.local.clear();
      const out: { metric: string; period: string; amount: number; account: string; lease: string; used: number }[] = [];
      for (const [key, tot] of this.totals) {
        const [metric, period] = key.split('\u0000') as [string, string];
        const m = this.meter(metric);
        if (m?.scope !== 'fleet' || !tot.account || tot.account[1] <= nowMs + 1000) continue;
        if (o.soon !== undefined && tot.account[1] > nowMs + o.soon && current.has(key)) continue;
        const f = figuresOf(m, tot);
        const free = tot.pool - f.used - f.reserved;
        if (free <= 0) continue;
        const lease = randomBytes(8).toString('hex');
        append.push(...this.commit([{ kind: 'reserve', metric, period, amount: free, lease, expiresAt: new Date(nowMs + LEASE_MS).toISOString(), t: now.toISOString() }]));
        out.push({ metric, period, amount: free, account: tot.account[0], lease, used: f.used });
      }
      return { append, result: out };
    });
    if (holds.length === 0) return 0;
    let total = 0;
    const done: UsageData[] = [];
    for (const h of holds) {
      const r = await this.fleet.giveBack(h.metric, h.period, h.amount, h.used, now).catch(() => undefined);
      const back = r?.ok ? r.answer.amount : 0;
      total += back;
      const t = now.toISOString();
      if (back > 0) done.push({ kind: 'give-back', metric: h.metric, period: h.period, amount: back, account: r!.ok ? r!.answer.accountId : h.account, t });
      done.push({ kind: 'release', metric: h.metric, period: h.period, amount: h.amount, lease: h.lease, t });
    }
    await this.log.transact((view) => {
      this.fold(view.records);
      return { append: this.commit(done), result: undefined };
    });
    return total;
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

  /**
   * Flushes, releases this process's unused reservations and gives unused fleet units back to the
   * server, leaving the ledger open (for a last report); close() does it too.
   */
  async settle(now: Date = new Date()): Promise<void> {
    await this.flusher.stop();
    const t = now.toISOString();
    const releases: UsageData[] = [...this.leases.values()].filter((l) => l.remaining > 0).map((l) => ({ kind: 'release' as const, metric: l.metric, period: l.period, amount: l.remaining, lease: l.id, t }));
    const batch = [...this.takePending(), ...releases];
    this.leases.clear();
    try {
      if (batch.length)
        await this.log.transact((view) => {
          this.fold(view.records);
          return { append: this.commit(batch), result: undefined };
        });
      // fleet units this host no longer uses go back to the server (other processes keep their blocks)
      await this.giveBack(now).catch(() => undefined);
    } catch (e) {
      await this.log.close();
      throw e;
    }
  }

  /** Flushes, releases this process's unused reservations (and fleet units), and closes the log. */
  async close(now: Date = new Date()): Promise<void> {
    try {
      if (!this.log.isClosed) await this.settle(now);
    } finally {
      await this.log.close();
    }
  }

  /** Every record, verified (for reports). */
  async records(): Promise<ChainRecord<UsageData>[]> {
    await this.flush();
    return this.log.readAll();
  }
}
