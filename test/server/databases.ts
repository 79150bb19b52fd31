/** The two databases the server runs on, each test on a fresh one: a SQLite file, a new PostgreSQL database. */
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import pg from 'pg';
import { tmp } from '../helpers.js';

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
