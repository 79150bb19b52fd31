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
  const q: Queries = {
    all: async <T>(sql: string, params: readonly SqlValue[] = []) => db.prepare(sql).all(...params) as T[],
    get: async <T>(sql: string, params: readonly SqlValue[] = []) => db.prepare(sql).get(...params) as T | undefined,
    run: async (sql: string, params: readonly SqlValue[] = []) => db.prepare(sql).run(...params).changes,
  };
  // One transaction at a time in this process (better-sqlite3 is synchronous, but fn may await).
  let chain: Promise<unknown> = Promise.resolve();
  return {
    kind: 'sqlite',
    where: path,
    ...q,
    tx<T>(fn: (q: Queries) => Promise<T>): Promise<T> {
      const run = async (): Promise<T> => {
        db.exec('BEGIN IMMEDIATE');
        try {
          const r = await fn(q);
          db.exec('COMMIT');
          return r;
        } catch (e) {
          if (db.inTransaction) db.exec('ROLLBACK');
          throw e;
        }
      };
      const p = chain.then(run, run);
      chain = p.catch(() => undefined);
      return p;
    },
    async close() {
      await chain;
      db.close();
    },
  };
}
