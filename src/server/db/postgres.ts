/** PostgreSQL, for several server processes on one database. */
import pg from 'pg';
import { MlicError } from '../../errors.js';
import type { Database, Queries, SqlValue } from './types.js';

// BIGINT (int8) as a number: the server's values (unix seconds, counts) are far below 2^53.
pg.types.setTypeParser(20, (v: string) => Number(v));

/**
 * The URL for messages: scheme, user, host, port and database only. A password (`user:pw@`, or
 * `?password=` / `?sslpassword=` that pg also reads) and every other parameter are left out.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.username ? `${u.username}${u.password ? ':***' : ''}@` : ''}${u.host}${u.pathname}${u.search ? '?…' : ''}`;
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

/** `?` placeholders to $1, $2, ... (the SQL the server writes has no `?` inside literals). */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/** A database that cannot be reached, or no connection free in time, is 503 IO_ERROR (retry), not an internal error. */
function unavailable(e: unknown): never {
  const msg = (e as Error).message ?? '';
  const code = (e as { code?: string }).code ?? '';
  if (e instanceof MlicError) throw e;
  // a Node socket error (ECONNREFUSED, ECONNRESET, ...) or pg's own connect timeout; SQLSTATEs pass through
  if (/^E[A-Z]+$/.test(code) || /timeout exceeded when trying to connect|Connection terminated/i.test(msg))
    throw new MlicError('IO_ERROR', `the database is not available now (${msg}); retry`, { cause: e });
  throw e;
}

function queriesOn(c: pg.Pool | pg.PoolClient): Queries {
  const query = (sql: string, params: readonly SqlValue[]) => c.query(numbered(sql), params as unknown[]).catch(unavailable);
  return {
    all: async <T>(sql: string, params: readonly SqlValue[] = []) => (await query(sql, params)).rows as T[],
    get: async <T>(sql: string, params: readonly SqlValue[] = []) => (await query(sql, params)).rows[0] as T | undefined,
    run: async (sql: string, params: readonly SqlValue[] = []) => (await query(sql, params)).rowCount ?? 0,
  };
}

const RETRYABLE = new Set(['40001', '40P01']); // serialization_failure, deadlock_detected

export async function openPostgres(url: string, opts: { max?: number } = {}): Promise<Database> {
  const where = redactUrl(url);
  const pool = new pg.Pool({ connectionString: url, max: opts.max ?? 10, connectionTimeoutMillis: 10_000 });
  pool.on('error', () => undefined); // an idle client's error: the next query reports it
  try {
    const c = await pool.connect();
    c.release();
  } catch (e) {
    await pool.end().catch(() => undefined);
    const why = (e as { code?: string; message?: string }).code ?? (e as Error).message;
    throw new MlicError('IO_ERROR', `cannot connect to the database at ${where}: ${why}`, { hint: 'check --database (or MLIC_DATABASE_URL) and that PostgreSQL is running' });
  }
  return {
    kind: 'postgres',
    where,
    ...queriesOn(pool),
    async tx<T>(fn: (q: Queries) => Promise<T>, opts: { lock?: bigint } = {}): Promise<T> {
      for (let attempt = 0; ; attempt++) {
        const c = await pool.connect().catch(unavailable);
        let locked = false;
        try {
          if (opts.lock !== undefined) {
            await c.query('SELECT pg_advisory_lock($1)', [opts.lock.toString()]);
            locked = true;
          }
          await c.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
          const r = await fn(queriesOn(c));
          await c.query('COMMIT');
          return r;
        } catch (e) {
          await c.query('ROLLBACK').catch(() => undefined);
          if (RETRYABLE.has((e as { code?: string }).code ?? '')) {
            if (attempt < 20) {
              await new Promise((res) => setTimeout(res, Math.random() * 5 * (attempt + 1)));
              continue;
            }
            // nothing was written: the client may retry (503), this is not a server fault
            throw new MlicError('IO_ERROR', 'the database is busy (the transaction kept conflicting with others); nothing was changed, retry', { cause: e });
          }
          throw e;
        } finally {
          if (locked) await c.query('SELECT pg_advisory_unlock($1)', [opts.lock!.toString()]).catch(() => undefined);
          c.release();
        }
      }
    },
    async close() {
      await pool.end();
    },
  };
}
