/** The two databases the server runs on, each test on a fresh one: a SQLite file, a new PostgreSQL database. */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { inject } from 'vitest';
import pg from 'pg';
import { mkdir } from 'node:fs/promises';
import { tmp } from '../helpers.js';
import { migrate, openDatabase, type Database } from '../../src/server/db/index.js';
import { createAdminToken } from '../../src/server/tokens.js';

export type Kind = 'sqlite' | 'postgres';
export const KINDS: Kind[] = ['sqlite', 'postgres'];

/** A new, empty PostgreSQL database on the test server; its URL. Fails (never skips) without one. */
export async function freshPostgres(): Promise<string> {
  const admin = inject('pgUrl');
  if (!admin) throw new Error(`no PostgreSQL for the server tests: ${inject('pgWhy')}`);
  const name = `mlic_t_${randomBytes(6).toString('hex')}`;
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  const u = new URL(admin);
  u.pathname = `/${name}`;
  return u.toString();
}

/** A data directory and, for PostgreSQL, the URL of a fresh database. */
export async function freshServerPlace(kind: Kind): Promise<{ dataDir: string; url: string | undefined }> {
  const dataDir = `${await tmp()}/data`;
  return { dataDir, url: kind === 'postgres' ? await freshPostgres() : undefined };
}

/** A fresh database of that kind, migrated, with an admin token: for tests that drive the server's routes in their own process. */
export async function freshDatabase(kind: Kind): Promise<{ db: Database; token: string; dataDir: string; url: string | undefined }> {
  const p = await freshServerPlace(kind);
  await mkdir(p.dataDir, { recursive: true, mode: 0o700 });
  const db = await openDatabase({ dataDir: p.dataDir, url: p.url });
  await migrate(db);
  return { db, token: (await createAdminToken(db, 't', 1_800_000_000)).token, ...p };
}

/** Rows read from a server's database directly (not through its API): `$1`-style parameters, rewritten for SQLite. */
export async function dbRows<T>(kind: Kind, dataDir: string, url: string | undefined, sql: string, params: unknown[] = []): Promise<T[]> {
  if (kind === 'sqlite') {
    const db = new BetterSqlite3(join(dataDir, 'mlic.db'), { readonly: true, fileMustExist: true });
    try {
      return db.prepare(sql.replace(/\$\d+/g, '?')).all(...params) as T[];
    } finally {
      db.close();
    }
  }
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}
