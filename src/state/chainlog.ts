/**
 * An append-only, hash-chained, MAC'd record log shared by the processes of one host
 * (docs/FORMAT.md §8). One JSON line per record, `data` last:
 *   {"seq":n,"time":ISO,"prev":hash(n-1),"hash":H,"mac":HMAC(key, H),"data":D}
 *   H = SHA-256(seq "\n" time "\n" prev "\n" D), D being the exact bytes of the data member.
 * A head file (<path>.head) holds the latest {seq, hash, mac}, written after each append, so that
 * deleting records at the end or restoring an older copy of the log is detected.
 * Every change happens under an inter-process lock; a torn last line from a crashed writer is
 * the one thing repaired automatically.
 */
import { open, readFile, rename, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { MlicError, fromFsError } from '../errors.js';
import { equalHex, hmacHex, sha256Hex } from '../crypto/mac.js';
import { FileLock } from './lock.js';

export interface ChainLogOptions {
  path: string;
  macKey: Uint8Array;
  durability?: 'strict' | 'batched';
  flushMs?: number;
  lockTimeoutMs?: number;
  /**
   * 'full' (default) verifies every record on open. 'tail' verifies only the last record and the
   * head file, for writers that only append (one-shot audit records): opening stays O(1) as the
   * log grows. Readers (readAll, verify) always verify everything.
   */
  open?: 'full' | 'tail';
  /** keep verified records in memory for transact's view (default true); long-lived append-only writers turn it off */
  keepRecords?: boolean;
  /**
   * Called under the lock once the records up to `seq` are on disk and before the head file names
   * them (docs/FORMAT.md §8.2): a caller binds other state to the log here (the host's clock
   * record, docs/FORMAT.md §7). A failure fails the append (strict) or the sync (batched).
   */
  beforeHead?: (durable: { seq: number; hash: string }) => Promise<void>;
}

export interface ChainRecord<T> {
  seq: number;
  time: string;
  prev: string;
  hash: string;
  data: T;
}

export type TamperKind = 'edited' | 'mac' | 'deleted' | 'reordered' | 'inserted' | 'rolled-back' | 'truncated' | 'malformed' | 'head';

const ZERO = '0'.repeat(64);
const LINE = /^\{"seq":(0|[1-9]\d{0,15}),"time":"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)","prev":"([0-9a-f]{64})","hash":"([0-9a-f]{64})","mac":"([0-9a-f]{64})","data":(.*)\}$/;

function tampered(path: string, kind: TamperKind, message: string, seq?: number): MlicError {
  return new MlicError('LEDGER_TAMPERED', `${path}: ${message}`, { details: { kind, ...(seq !== undefined ? { seq } : {}) }, hint: 'the log was modified outside mlic; restore it from a backup or contact your vendor' });
}

interface Head {
  seq: number;
  hash: string;
  mac: string;
}

export class ChainLog<T = unknown> {
  private records: ChainRecord<T>[] = [];
  /** seq of records[0] (0, or more after a tail-only open) */
  private base = 0;
  private offset = 0;
  private lastHash = ZERO;
  private queue: Promise<unknown> = Promise.resolve();
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly lock: FileLock;
  private closed = false;

  private constructor(
    readonly opts: ChainLogOptions,
    private fh: FileHandle,
  ) {
    this.lock = new FileLock(`${opts.path}.lock`, opts.lockTimeoutMs ?? 30_000);
  }

  get path(): string {
    return this.opts.path;
  }

  static async open<T>(opts: ChainLogOptions): Promise<ChainLog<T>> {
    if (opts.macKey.length !== 32) throw new RangeError('macKey must be 32 bytes');
    let fh: FileHandle;
    try {
      fh = await open(opts.path, 'a+', 0o600);
    } catch (e) {
      throw fromFsError(e, opts.path);
    }
    const log = new ChainLog<T>(opts, fh);
    log.keep = opts.keepRecords !== false;
    try {
      await log.locked(async () => {
        if (opts.open === 'tail') await log.seekTail();
        await log.catchUp(true);
        // A new log gets its head file at once (seq -1), so that a missing head is always tampering.
        if (log.base + log.records.length === 0 && !(await log.readHead())) await log.writeHead(opts.durability === 'strict');
      });
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
    return log;
  }

  private recordHash(seq: number, time: string, prev: string, dataJson: string): string {
    return sha256Hex(`${seq}\n${time}\n${prev}\n${dataJson}`);
  }

  private headMac(seq: number, hash: string): string {
    return hmacHex(this.opts.macKey, `head\n${seq}\n${hash}`);
  }

  /** Serializes in-process callers, then takes the inter-process lock. */
  private locked<R>(fn: () => Promise<R>): Promise<R> {
    const run = async () => {
      await this.lock.acquire();
      try {
        return await fn();
      } finally {
        await this.lock.release();
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Tail-only open: verify the last complete record and continue from it. */
  private async seekTail(): Promise<void> {
    const { size } = await this.fh.stat();
    if (size === 0) return;
    const want = Math.min(size, 256 * 1024);
    const buf = Buffer.alloc(want);
    await this.fh.read(buf, 0, want, size - want);
    const lastNl = buf.lastIndexOf(10);
    if (lastNl < 0) return; // no complete line in the window: fall back to a full read
    const prevNl = buf.lastIndexOf(10, lastNl - 1);
    if (prevNl < 0 && want < size) return;
    const line = buf.toString('utf8', prevNl + 1, lastNl);
    const m = LINE.exec(line);
    if (!m) throw tampered(this.path, 'malformed', 'the last record is malformed');
    this.base = Number(m[1]);
    this.lastHash = m[3]!;
    this.offset = size - want + prevNl + 1;
  }

  /** Reads and verifies what other processes appended; repairs a torn tail (under the lock). */
  private async catchUp(checkHead: boolean): Promise<void> {
    const { size } = await this.fh.stat();
    if (size < this.offset) throw tampered(this.path, 'truncated', `the log shrank from ${this.offset} to ${size} bytes`);
    if (size > this.offset) {
      const buf = Buffer.alloc(size - this.offset);
      await this.fh.read(buf, 0, buf.length, this.offset);
      let start = 0;
      for (;;) {
        const nl = buf.indexOf(10, start);
        if (nl < 0) break;
        try {
          this.accept(buf.toString('utf8', start, nl), this.base + this.records.length);
        } catch (e) {
          // A missing record that turns up later in the file was moved, not deleted.
          const expect = this.base + this.records.length;
          if (e instanceof MlicError && e.details?.kind === 'deleted' && buf.toString('utf8', nl + 1).includes(`{"seq":${expect},`))
            throw tampered(this.path, 'reordered', `record ${expect} is out of order`, expect);
          throw e;
        }
        start = nl + 1;
      }
      if (start < buf.length) {
        // A torn last line (a writer killed mid-append) is cut off, but only when it holds a record
        // the head file has not yet acknowledged; a cut inside acknowledged records is evidence.
        const head = await this.readHead();
        const last = this.base + this.records.length - 1;
        if (head && head.seq > last) throw tampered(this.path, 'truncated', `the log was cut inside record ${last + 1} (the head file records ${head.seq})`, last + 1);
        const good = this.offset + start;
        await this.fh.truncate(good);
        await this.fh.sync();
        this.offset = good;
      } else this.offset = size;
    }
    if (checkHead) await this.checkHead();
  }

  private accept(line: string, expectSeq: number): void {
    const m = LINE.exec(line);
    let r: ChainRecord<T> & { mac: string; raw: string };
    try {
      if (!m) throw new Error('shape');
      r = { seq: Number(m[1]), time: m[2]!, prev: m[3]!, hash: m[4]!, mac: m[5]!, raw: m[6]!, data: JSON.parse(m[6]!) as T };
    } catch {
      throw tampered(this.path, 'malformed', `record ${expectSeq} is malformed`, expectSeq);
    }
    if (r.seq !== expectSeq) {
      const kind: TamperKind = typeof r.seq === 'number' && r.seq > expectSeq ? 'deleted' : r.seq < expectSeq ? 'reordered' : 'malformed';
      throw tampered(this.path, kind, `record ${expectSeq} is missing or out of order (found seq ${String(r.seq)})`, expectSeq);
    }
    if (r.prev !== this.lastHash) throw tampered(this.path, 'inserted', `record ${expectSeq} does not follow the previous record (chain broken)`, expectSeq);
    const hash = this.recordHash(r.seq, r.time, r.prev, r.raw);
    if (!equalHex(hash, r.hash)) throw tampered(this.path, 'edited', `record ${expectSeq} was edited (hash mismatch)`, expectSeq);
    if (!equalHex(hmacHex(this.opts.macKey, hash), r.mac)) throw tampered(this.path, 'mac', `record ${expectSeq} has a bad MAC (forged or written with another key)`, expectSeq);
    this.lastRecord = { seq: r.seq, time: r.time, prev: r.prev, hash: r.hash, data: r.data };
    if (this.keep) this.records.push(this.lastRecord);
    else this.base = r.seq + 1;
    this.lastHash = hash;
  }

  private lastRecord: ChainRecord<T> | undefined;

  /** The last record this process has seen or written (also after a tail-only open). */
  get last(): ChainRecord<T> | undefined {
    return this.lastRecord;
  }

  private keep = true;

  private async readHead(): Promise<Head | undefined> {
    let head: Head | undefined;
    try {
      head = JSON.parse(await readFile(`${this.path}.head`, 'utf8')) as Head;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw tampered(this.path, 'head', 'the head file is corrupt');
      return undefined;
    }
    if (typeof head?.seq !== 'number' || typeof head.hash !== 'string' || typeof head.mac !== 'string' || !equalHex(this.headMac(head.seq, head.hash), head.mac))
      throw tampered(this.path, 'head', 'the head file was modified');
    return head;
  }

  private async checkHead(): Promise<void> {
    const head = await this.readHead();
    if (!head) {
      if (this.base + this.records.length > 0) throw tampered(this.path, 'rolled-back', 'the head file is missing while the log has records');
      return;
    }
    if (head.seq < 0) return;
    if (head.seq < this.base) return; // a tail-only open: older records are checked by full readers
    const last = this.base + this.records.length - 1;
    if (!this.keep && head.seq === last) {
      if (!equalHex(this.lastHash, head.hash)) throw tampered(this.path, 'rolled-back', `record ${head.seq} differs from the one recorded in the head file`, head.seq);
      return;
    }
    const r = this.records[head.seq - this.base];
    if (!r) throw tampered(this.path, 'rolled-back', `the log ends at record ${last} but has already reached ${head.seq}: records were removed or an older copy restored`, last + 1);
    if (!equalHex(r.hash, head.hash)) throw tampered(this.path, 'rolled-back', `record ${head.seq} differs from the one recorded in the head file`, head.seq);
  }

  private async writeHead(sync: boolean): Promise<void> {
    const seq = this.base + this.records.length - 1;
    const hash = seq >= 0 ? this.lastHash : ZERO;
    const tmp = `${this.path}.head.tmp-${process.pid}`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify({ seq, hash, mac: this.headMac(seq, hash) }));
      if (sync) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, `${this.path}.head`);
    // The directory is fsynced when the head file is new (so that its absence later is always
    // tampering); a later head lost in a crash only leaves an older head, which readers accept.
    if (sync && seq < 0) {
      const dir = await open(dirname(this.path), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    }
  }

  /**
   * Under the lock: catch up with other processes, let `decide` look at every record, and append
   * what it returns, atomically with respect to other processes.
   */
  transact<R>(decide: (view: { records: readonly ChainRecord<T>[]; head: string; seq: number }) => { append: T[]; result: R }, appended: (records: ChainRecord<T>[]) => void = () => undefined): Promise<R> {
    if (this.closed) return Promise.reject(new MlicError('USAGE', `${this.path}: the log is closed`));
    return this.locked(async () => {
      if (this.closed && this.fhClosed) throw new MlicError('USAGE', `${this.path}: the log is closed`);
      await this.catchUp(true);
      const { append, result } = decide({ records: this.records, head: this.lastHash, seq: this.base + this.records.length - 1 });
      if (append.length === 0) return result;
      let text = '';
      const added: ChainRecord<T>[] = [];
      let prev = this.lastHash;
      const time = new Date().toISOString();
      for (const data of append) {
        const seq = this.base + this.records.length + added.length;
        const dataJson = JSON.stringify(data);
        const hash = this.recordHash(seq, time, prev, dataJson);
        text += `{"seq":${seq},"time":"${time}","prev":"${prev}","hash":"${hash}","mac":"${hmacHex(this.opts.macKey, hash)}","data":${dataJson}}\n`;
        added.push({ seq, time, prev, hash, data });
        prev = hash;
      }
      const bytes = Buffer.from(text, 'utf8');
      const { bytesWritten } = await this.fh.write(bytes, 0, bytes.length, this.offset);
      if (bytesWritten !== bytes.length) throw new MlicError('IO_ERROR', `${this.path}: short write`);
      this.offset += bytes.length;
      if (this.keep) this.records.push(...added);
      else this.base += added.length;
      this.lastHash = prev;
      this.lastRecord = added[added.length - 1];
      if (this.opts.durability === 'strict') {
        await this.fh.datasync();
        await this.opts.beforeHead?.({ seq: this.lastSeq, hash: this.lastHash });
        await this.writeHead(true);
      } else {
        // The head is written only after the data it names is on disk (at the next flush), so a
        // power failure can never leave a head that is ahead of the log.
        this.scheduleSync();
      }
      appended(added);
      return result;
    });
  }

  private scheduleSync(): void {
    this.dirty = true;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.dirty && !this.fhClosed) void this.syncNow().catch(() => undefined);
    }, this.opts.flushMs ?? 50);
    this.timer.unref();
  }

  /**
   * Batched mode: data to disk, then the head that names it. Under the lock, after catching up
   * with other processes (whose appends to the same file the datasync also makes durable), so
   * that heads never go backwards.
   */
  private async syncNow(): Promise<void> {
    await this.locked(async () => {
      if (!this.dirty || this.fhClosed) return;
      this.dirty = false;
      await this.catchUp(false);
      await this.fh.datasync();
      await this.opts.beforeHead?.({ seq: this.lastSeq, hash: this.lastHash });
      await this.writeHead(false);
    });
  }

  /** Batched mode: makes what was appended durable now (and writes the head), instead of at the next timer. */
  async sync(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.dirty && !this.fhClosed) await this.syncNow();
  }

  /** Runs `fn` under this log's inter-process lock, caught up with other processes (for state that must change in step with the log). */
  exclusive<R>(fn: () => Promise<R>): Promise<R> {
    return this.locked(async () => {
      await this.catchUp(false);
      return fn();
    });
  }

  /** The seq of the last record this process has seen (-1 for an empty log). */
  get lastSeq(): number {
    return this.base + this.records.length - 1;
  }

  /** The head file's seq (-1 when it names no record or is absent); verified. */
  async headSeq(): Promise<number> {
    return (await this.readHead())?.seq ?? -1;
  }

  async append(data: T): Promise<ChainRecord<T>> {
    let rec: ChainRecord<T> | undefined;
    await this.transact(
      () => ({ append: [data], result: undefined }),
      (added) => (rec = added[0]),
    );
    return rec!;
  }

  /** Re-reads the whole file from disk and verifies every record and the head. */
  async readAll(): Promise<ChainRecord<T>[]> {
    return this.locked(async () => {
      const keep = this.keep;
      this.keep = true;
      this.records = [];
      this.base = 0;
      this.offset = 0;
      this.lastHash = ZERO;
      try {
        await this.catchUp(true);
        return [...this.records];
      } finally {
        if (!keep) {
          this.base += this.records.length;
          this.records = [];
          this.keep = false;
        }
      }
    });
  }

  async verify(): Promise<{ ok: true; records: number; head: string }> {
    const all = await this.readAll();
    return { ok: true, records: all.length, head: all.length ? all[all.length - 1]!.hash : ZERO };
  }

  private fhClosed = false;

  /** close() was called: no more transactions */
  get isClosed(): boolean {
    return this.closed;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true; // new transacts are refused from here on; queued ones finish
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.queue;
    if (this.dirty) await this.syncNow().catch(() => undefined);
    this.fhClosed = true;
    await this.fh.close();
  }
}
