/** The embedded default: one SQLite file in the server's data directory, 0600, in WAL mode. */
import { closeSync, constants, fchmodSync, openSync } from 'node:fs';
import { resolve } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { MlicError, fromFsError } from '../../errors.js';
import type { Database, Queries, SqlValue } from './types.js';

/**
 * One connection per file in a process, shared by every openSqlite() of it (closed with the last
 * close()): better-sqlite3 is synchronous, so a second connection waiting for the first one's
 * write lock would block the very event loop that has to finish the first one's transaction.
 * Other processes on the same file wait for the lock (busy_timeout) as SQLite intends.
 */
const shared = new Map<string, { db: Database; refs: number }>();

export function openSqlite(path: string): Database {
  const key = resolve(path);
  const have = shared.get(key);
  if (have) {
    have.refs++;
    let closed = false;
    return {
      ...have.db,
      async close() {
        if (closed) return;
        closed = true;
        await release(key);
      },
    };
  }
  const db = openSqliteConnection(key);
  shared.set(key, { db, refs: 1 });
  let closed = false;
  return {
    ...db,
    async close() {
      if (closed) return;
      closed = true;
      await release(key);
    },
  };
}

async function release(key: string): Promise<void> {
  const s = shared.get(key);
  if (!s) return;
  if (--s.refs > 0) return;
  shared.delete(key);
  await s.db.close();
}

function openSqliteConnection(path: string): Database {
  // Created 0600 before SQLite opens it (its -wal and -shm files take the same mode).
  try {
    const fd = openSync(path, constants.O_CREAT | constants.O_RDWR | constants.O_NOFOLLOW, 0o600);
    // an existing file (a restored backup, say) is made private too; SQLite gives -wal and -shm its mode
    try {
      fchmodSync(fd, 0o600);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    throw fromFsError(e, path);
  }
  let db: BetterSqlite3.Database;
  try {
    db = new BetterSqlite3(path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 10000');
    db.pragma('foreign_keys = ON');
  } catch (e) {
    throw new MlicError('IO_ERROR', `${path}: cannot open the database: ${(e as Error).message}`, { cause: e });
  }
  // prepared statements, by SQL text (the SQL is mlic's own: a few dozen distinct strings)
  const statements = new Map<string, BetterSqlite3.Statement>();
  const stmt = (sql: string) => {
    let st = statements.get(sql);
    if (!st) {
      if (statements.size >= 500) statements.clear();
      st = db.prepare(sql);
      statements.set(sql, st);
    }
    return st;
  };
  const q: Queries = {
    all: async <T>(sql: string, params: readonly SqlValue[] = []) => stmt(sql).all(...params) as T[],
    get: async <T>(sql: string, params: readonly SqlValue[] = []) => stmt(sql).get(...params) as T | undefined,
    run: async (sql: string, params: readonly SqlValue[] = []) => stmt(sql).run(...params).changes,
  };
  /*
   * Group commit. Transactions asked for in the same turn of the event loop run one after another
   * inside one BEGIN IMMEDIATE ... COMMIT, each in its own SAVEPOINT (one that fails is rolled back
   * alone); each caller is answered only after the COMMIT, so nothing is acknowledged before it is
   * durable. Under load this saves one fsync per transaction (synchronous=FULL), and it is the
   * same as running them one by one: each sees what the ones before it wrote.
   */
  interface Job {
    fn: (q: Queries) => Promise<unknown>;
    resolve: (v: unknown) => void;
    reject: (e: unknown) => void;
  }
  let pending: Job[] = [];
  let chain: Promise<unknown> = Promise.resolve();
  const runBatch = async (batch: Job[]): Promise<void> => {
    try {
      db.exec('BEGIN IMMEDIATE');
    } catch (e) {
      for (const j of batch) j.reject(e);
      return;
    }
    const outcomes: { job: Job; ok: boolean; value: unknown }[] = [];
    for (const job of batch) {
      db.exec('SAVEPOINT mlic_tx');
      try {
        const value = await job.fn(q);
        db.exec('RELEASE mlic_tx');
        outcomes.push({ job, ok: true, value });
      } catch (e) {
        if (db.inTransaction) {
          db.exec('ROLLBACK TO mlic_tx');
          db.exec('RELEASE mlic_tx');
        }
        outcomes.push({ job, ok: false, value: e });
      }
    }
    try {
      db.exec('COMMIT');
    } catch (e) {
      if (db.inTransaction) db.exec('ROLLBACK');
      for (const o of outcomes) o.job.reject(o.ok ? e : o.value);
      return;
    }
    for (const o of outcomes) (o.ok ? o.job.resolve : o.job.reject)(o.value);
  };
  const flush = () => {
    const batch = pending;
    pending = [];
    const p = chain.then(() => runBatch(batch));
    chain = p.catch(() => undefined);
  };
  return {
    kind: 'sqlite',
    where: path,
    ...q,
    tx<T>(fn: (q: Queries) => Promise<T>): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        if (pending.length === 0) setImmediate(flush);
        pending.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      });
    },
    async close() {
      await new Promise((r) => setImmediate(r)); // a batch scheduled this turn
      await chain;
      db.close();
    },
  };
}
