/**
 * The audit log: every licence decision on this host (activate, validate, consume, unpack, run,
 * openBundle), hash-chained and MAC'd like the ledger (src/state/chainlog.ts). In batched mode
 * records are buffered and appended at most every flushMs and on close; in strict mode each
 * record is appended and fsynced before the decision is returned.
 */
import { ChainLog, type ChainRecord } from '../state/chainlog.js';
import type { Durability } from './ledger.js';
import { Flusher } from '../util/flusher.js';

export interface AuditData {
  t: string;
  action: 'activate' | 'validate' | 'consume' | 'unpack' | 'run' | 'openBundle' | 'audit' | 'report';
  decision: 'allow' | 'deny';
  code?: string;
  licenseId?: string;
  bundleId?: string;
  model?: string;
  version?: string;
  feature?: string;
  metric?: string;
  quantity?: number;
  inputHash?: string;
  outputHash?: string;
  /** the watermark a marked output carries: `text`, or `image:<payload hex>` */
  watermark?: string;
  /** batched mode: identical decisions without hashes within one flush window are one record: how many, and the last one's time */
  count?: number;
  tEnd?: string;
  /** the host's clock high-water mark after this decision (docs/SECURITY.md: the clock) */
  hw?: string;
}

const HASH_RE = /^[A-Za-z0-9:+/=_-]{1,200}$/;

/** Input/output hashes are opaque strings from the caller (e.g. "sha256:..."), bounded and printable. */
export function validHash(h: unknown): h is string {
  return typeof h === 'string' && HASH_RE.test(h);
}

export class AuditLog {
  private buffer: AuditData[] = [];
  private merge = new Map<string, AuditData>();
  private readonly flusher: Flusher;

  private constructor(
    readonly log: ChainLog<AuditData>,
    readonly durability: Durability,
    readonly flushMs: number,
    private readonly merging: boolean,
  ) {
    this.flusher = new Flusher(flushMs, async () => {
      if (this.buffer.length === 0) return;
      const batch = this.buffer;
      this.buffer = [];
      this.merge.clear();
      await this.log.transact(() => ({ append: batch, result: undefined }));
    });
  }

  static async open(
    path: string,
    macKey: Uint8Array,
    opts: {
      durability?: Durability;
      /** batched mode: merge identical hash-less decisions of one flush window into one record (default true) */
      merge?: boolean;
      flushMs?: number;
      open?: 'full' | 'tail';
      beforeHead?: (durable: { seq: number; hash: string }) => Promise<void>;
    } = {},
  ): Promise<AuditLog> {
    const durability = opts.durability ?? 'batched';
    // The audit log is only appended to here; records are not kept in memory (readAll re-reads).
    const log = await ChainLog.open<AuditData>({
      path,
      macKey,
      durability,
      flushMs: opts.flushMs ?? 50,
      open: opts.open ?? 'full',
      keepRecords: false,
      ...(opts.beforeHead ? { beforeHead: opts.beforeHead } : {}),
    });
    return new AuditLog(log, durability, opts.flushMs ?? 50, opts.merge ?? true);
  }

  async record(r: AuditData): Promise<void> {
    if (this.durability === 'strict') {
      await this.log.append(r);
      return;
    }
    if (this.merging && r.inputHash === undefined && r.outputHash === undefined) {
      const k = `${r.action}|${r.decision}|${r.code ?? ''}|${r.licenseId ?? ''}|${r.bundleId ?? ''}|${r.feature ?? ''}|${r.metric ?? ''}`;
      const prev = this.merge.get(k);
      if (prev) {
        prev.count = (prev.count ?? 1) + 1;
        if (r.quantity !== undefined) prev.quantity = (prev.quantity ?? 0) + r.quantity;
        prev.tEnd = r.t;
        if (r.hw !== undefined) prev.hw = r.hw;
        return;
      }
      this.merge.set(k, r);
    }
    this.buffer.push(r);
    this.flusher.schedule();
  }

  flush(): Promise<void> {
    return this.flusher.flush();
  }

  async readAll(): Promise<ChainRecord<AuditData>[]> {
    await this.flush();
    return this.log.readAll();
  }

  async close(): Promise<void> {
    await this.flusher.stop();
    await this.flush();
    await this.log.close();
  }
}
