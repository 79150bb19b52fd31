/**
 * The host's decision journal: the audit log of every licence decision, and the clock record
 * (clock.json) that binds the audit log and the usage ledgers to each other (docs/FORMAT.md §7,
 * docs/SECURITY.md "The clock").
 *
 * - Every decision, allowed or refused, is an audit record carrying the high-water mark `hw`
 *   (the latest time seen), so the mark moves with refusals too.
 * - The mark is max(clock.json's `t`, the last audit record's `hw`): restoring or deleting
 *   clock.json alone cannot move it back.
 * - clock.json names the last audit record and the last record of each usage ledger that were on
 *   disk when it was written. It is written after the records it names are durable: before every
 *   head file of the audit log (so head(audit) <= clock.audit <= last(audit) always), and for the
 *   ledgers at most a second after their records (and when a handle closes), so
 *   clock.ledgers[id] <= last(ledger). A deleted or older audit log, a deleted or older
 *   clock.json, or a deleted or older usage ledger breaks one of these: STATE_TAMPERED. So does a
 *   missing clock.json while the audit log has records or licences are installed. What goes
 *   unseen: clock.json and the audit log restored together from one copy, or the whole state
 *   (docs/SECURITY.md says so).
 */
import { MlicError } from '../errors.js';
import type { HostIdentity, StateDir, ClockRecord } from '../state/home.js';
import { AuditLog, type AuditData } from '../usage/audit.js';
import type { Durability } from '../usage/ledger.js';
import { auditKey, auditPath } from '../usage/paths.js';

const tampered = (message: string) =>
  new MlicError('STATE_TAMPERED', message, {
    hint: "the host's state directory was partly deleted or restored from an older copy; restore all of it from one backup, or ask your vendor to re-issue the licence",
  });

export interface JournalOptions {
  durability?: Durability;
  flushMs?: number;
  /** 'tail' (one-shot commands: O(1) open) or 'full' */
  open?: 'full' | 'tail';
  /** batched: merge identical hash-less decisions of one flush window (default true) */
  merge?: boolean;
}

/** How often a running handle writes the clock record at most. */
const CLOCK_EVERY_MS = 1000;

export class Journal {
  private hw: number;
  /** durable seqs not yet in clock.json: 'audit' or a licence id -> seq */
  private pending = new Map<string, number>();
  private pendingRevocations = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly state: StateDir,
    private readonly host: HostIdentity,
    readonly audit: AuditLog,
    hw: number,
  ) {
    this.hw = hw;
  }

  /**
   * Opens the audit log and checks it against the clock record. `licensed`: licences are
   * installed (then a missing clock record is tampering, not a fresh start).
   */
  static async open(state: StateDir, host: HostIdentity, opts: JournalOptions & { licensed: boolean }): Promise<Journal> {
    await state.ensure('audit');
    let journal: Journal | undefined;
    const audit = await AuditLog.open(auditPath(state), auditKey(host), {
      durability: opts.durability ?? 'strict',
      open: opts.open ?? 'tail',
      merge: opts.merge ?? true,
      ...(opts.flushMs ? { flushMs: opts.flushMs } : {}),
      // The clock record is written before every audit head: head(audit) <= clock.audit always.
      beforeHead: async (durable) => {
        if (!journal) return;
        journal.pending.set('audit', Math.max(journal.pending.get('audit') ?? -1, durable.seq));
        await journal.mergeClock();
      },
    });
    try {
      const hw = await audit.log.exclusive(async () => {
        const clock = await state.readClock(host);
        const last = audit.log.lastSeq;
        if (!clock) {
          if (last >= 0) throw tampered(`${state.path('clock.json')} is missing while the audit log holds ${last + 1} records`);
          if (opts.licensed) throw tampered(`${state.path('clock.json')} and the audit log are missing while licences are installed`);
          // A fresh host: the clock record exists from now on, so that a missing one is tampering.
          await state.writeClock(host, { v: 2, t: new Date(0).toISOString(), audit: -1, ledgers: {} }, true);
          return 0;
        }
        if (clock.audit > last)
          throw tampered(`the audit log ends at record ${last} but the clock record names record ${clock.audit}: the audit log was removed or restored from an older copy`);
        const head = await audit.log.headSeq();
        if (clock.audit < head)
          throw tampered(`the clock record names audit record ${clock.audit} but the audit log's head is at ${head}: clock.json was restored from an older copy`);
        const lastHw = audit.log.last?.data.hw;
        return Math.max(Date.parse(clock.t), lastHw ? Date.parse(lastHw) : 0);
      });
      journal = new Journal(state, host, audit, hw);
      return journal;
    } catch (e) {
      await audit.close().catch(() => undefined);
      throw e;
    }
  }

  /** The latest time this host has seen, or undefined on a fresh host. */
  highWater(): Date | undefined {
    return this.hw > 0 ? new Date(this.hw) : undefined;
  }

  /** Moves the mark forward to `now` (never back); returns it. */
  advance(now: Date): Date {
    if (now.getTime() > this.hw) this.hw = now.getTime();
    return new Date(this.hw);
  }

  /** Records a decision (allowed or refused) and advances the mark to its time. */
  async record(data: Omit<AuditData, 'hw'>, now: Date): Promise<void> {
    const hw = this.advance(now);
    // Strict (one-shot decisions): the record, then the clock record (the audit log's beforeHead hook), are on disk before this returns.
    await this.audit.record({ ...data, hw: hw.toISOString() });
  }

  /** A usage ledger's records up to `seq` are on disk (its beforeHead hook): a clock record written within a second names them. */
  durable(licenseId: string, seq: number): void {
    this.pending.set(licenseId, Math.max(this.pending.get(licenseId) ?? -1, seq));
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.writeClock().catch(() => undefined);
      }, CLOCK_EVERY_MS);
      this.timer.unref();
    }
  }

  /** Merges the mark and the durable seqs into clock.json (fsynced; every value only grows). The caller holds the audit log's lock. */
  private async mergeClock(): Promise<void> {
    const cur = (await this.state.readClock(this.host)) ?? { v: 2 as const, t: new Date(0).toISOString(), audit: -1, ledgers: {} };
    const pending = this.pending;
    this.pending = new Map();
    const next: ClockRecord = {
      v: 2,
      t: new Date(Math.max(Date.parse(cur.t), this.hw)).toISOString(),
      audit: Math.max(cur.audit, pending.get('audit') ?? -1),
      ledgers: { ...cur.ledgers },
      revocations: { ...cur.revocations },
    };
    for (const [k, seq] of pending) if (k !== 'audit') next.ledgers[k] = Math.max(next.ledgers[k] ?? -1, seq);
    for (const [k, serial] of this.pendingRevocations) next.revocations![k] = Math.max(next.revocations![k] ?? 0, serial);
    this.pendingRevocations = new Map();
    await this.state.writeClock(this.host, next, true);
  }

  /** Writes the clock record now, under the audit log's lock. */
  writeClock(): Promise<void> {
    return this.audit.log.exclusive(() => this.mergeClock());
  }

  /** The host's state directory. */
  get stateDir(): StateDir {
    return this.state;
  }

  /**
   * A revocation list with this serial is installed (its file is on disk): the clock record names
   * it from now on, so removing the list or putting an older one back is STATE_TAMPERED.
   */
  async bindRevocationList(keyId: string, serial: number): Promise<void> {
    this.pendingRevocations.set(keyId, Math.max(this.pendingRevocations.get(keyId) ?? 0, serial));
    await this.writeClock();
  }

  /** Checks the installed revocation lists (vendor key id -> serial) against the serials the clock record names. */
  async checkRevocationLists(installed: ReadonlyMap<string, number>): Promise<void> {
    const clock = await this.audit.log.exclusive(() => this.state.readClock(this.host));
    for (const [keyId, serial] of Object.entries(clock?.revocations ?? {}))
      if ((installed.get(keyId) ?? 0) < serial)
        throw tampered(
          `the revocation list of vendor key ${keyId} ${installed.has(keyId) ? `is at serial ${installed.get(keyId)}` : 'is missing'} but the clock record names serial ${serial}: revocations/ was removed or restored from an older copy`,
        );
  }

  /**
   * Checks a usage ledger against the clock record (see above) when it is opened, under the
   * ledger's lock; `last` is its last record's seq (-1 when none).
   */
  async checkLedger(licenseId: string, last: number): Promise<void> {
    const clock = await this.audit.log.exclusive(() => this.state.readClock(this.host));
    const bound = clock?.ledgers[licenseId] ?? -1;
    if (bound > last) throw tampered(`the usage ledger of licence ${licenseId.slice(0, 8)} ends at record ${last} but the clock record names record ${bound}: usage/ was removed or restored from an older copy`);
  }

  /** Appends and syncs what is buffered, then writes the clock record that names it. */
  async flush(): Promise<void> {
    await this.audit.flush();
    await this.audit.log.sync();
    await this.writeClock();
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    try {
      await this.flush();
    } finally {
      await this.audit.close();
    }
  }
}
