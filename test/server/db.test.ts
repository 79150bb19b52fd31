/** The server's database layer: the same conformance checks on SQLite and on a real PostgreSQL. */
import { describe, it, expect } from 'vitest';
import { mkdir } from 'node:fs/promises';
import { MIGRATIONS, SCHEMA_VERSION, migrate, openDatabase, type Database, type Migration } from '../../src/server/db/index.js';
import { checkAdminToken, createAdminToken } from '../../src/server/tokens.js';
import { MlicError } from '../../src/errors.js';
import { KINDS, freshServerPlace } from './databases.js';

async function open(kind: (typeof KINDS)[number]): Promise<{ db: Database; again: () => Promise<Database> }> {
  const p = await freshServerPlace(kind);
  await mkdir(p.dataDir, { recursive: true, mode: 0o700 });
  const again = () => openDatabase({ dataDir: p.dataDir, url: p.url });
  return { db: await again(), again };
}

const tables = async (db: Database): Promise<string[]> =>
  (db.kind === 'sqlite'
    ? await db.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    : await db.all<{ name: string }>("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name")
  ).map((r) => r.name);

describe.each(KINDS)('server database on %s', (kind) => {
  it('migrates an empty database to the latest schema once; a second run finds nothing to do', async () => {
    const { db } = await open(kind);
    try {
      expect(await migrate(db)).toEqual({ from: 0, to: SCHEMA_VERSION });
      expect(await migrate(db)).toEqual({ from: SCHEMA_VERSION, to: SCHEMA_VERSION });
      const rows = await db.all<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      expect(rows.map((r) => Number(r.version))).toEqual(MIGRATIONS.map((m) => m.version));
      expect(await tables(db)).toEqual(expect.arrayContaining(['admin_tokens', 'schema_migrations']));
    } finally {
      await db.close();
    }
  });

  it('servers starting at once migrate once between them', async () => {
    const { db, again } = await open(kind);
    const others = await Promise.all([again(), again(), again()]);
    try {
      const r = await Promise.all([db, ...others].map((d) => migrate(d)));
      expect(r.filter((x) => x.from === 0)).toHaveLength(1);
      expect(r.every((x) => x.to === SCHEMA_VERSION)).toBe(true);
      expect(await db.all('SELECT version FROM schema_migrations')).toHaveLength(MIGRATIONS.length);
    } finally {
      for (const d of [db, ...others]) await d.close();
    }
  });

  it('refuses a database newer than itself (UNSUPPORTED_VERSION), and changes nothing', async () => {
    const { db } = await open(kind);
    try {
      await migrate(db);
      await db.run('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [SCHEMA_VERSION + 1, 'from the future', 0]);
      const e = await migrate(db).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(MlicError);
      expect((e as MlicError).code).toBe('UNSUPPORTED_VERSION');
      expect((e as MlicError).message).toContain(`schema version ${SCHEMA_VERSION + 1}`);
    } finally {
      await db.close();
    }
  });

  it('a migration that fails part-way leaves no trace (one transaction with its record)', async () => {
    const { db } = await open(kind);
    try {
      await migrate(db);
      const bad: Migration[] = [...MIGRATIONS, { version: SCHEMA_VERSION + 1, name: 'half', sql: ['CREATE TABLE half_done (x TEXT)', 'CREATE TABLE nonsense ('] }];
      await expect(migrate(db, bad)).rejects.toThrow();
      expect(await tables(db)).not.toContain('half_done');
      expect(await migrate(db)).toEqual({ from: SCHEMA_VERSION, to: SCHEMA_VERSION });
    } finally {
      await db.close();
    }
  });

  it('transactions are atomic and serialized: 40 concurrent read-then-write increments lose none', async () => {
    const { db, again } = await open(kind);
    const other = await again();
    try {
      await migrate(db);
      await db.run('CREATE TABLE counter (id TEXT PRIMARY KEY, n BIGINT NOT NULL)');
      await db.run("INSERT INTO counter (id, n) VALUES ('c', 0)");
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          (i % 2 ? db : other).tx(async (q) => {
            const r = await q.get<{ n: number }>("SELECT n FROM counter WHERE id = 'c'");
            await new Promise((res) => setTimeout(res, 1));
            await q.run("UPDATE counter SET n = ? WHERE id = 'c'", [Number(r!.n) + 1]);
          }),
        ),
      );
      expect(Number((await db.get<{ n: number }>("SELECT n FROM counter WHERE id = 'c'"))!.n)).toBe(40);
      await expect(db.tx(async (q) => (await q.run("UPDATE counter SET n = 0 WHERE id = 'c'"), Promise.reject(new Error('abort'))))).rejects.toThrow('abort');
      expect(Number((await db.get<{ n: number }>("SELECT n FROM counter WHERE id = 'c'"))!.n)).toBe(40);
    } finally {
      await other.close();
      await db.close();
    }
  });

  it('admin tokens: stored as a hash, found by id, the secret compared; revoked or altered tokens fail', async () => {
    const { db } = await open(kind);
    try {
      await migrate(db);
      const { id, token } = await createAdminToken(db, 'test', 1_800_000_000);
      expect(token).toMatch(/^mlat_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
      const row = await db.get<{ hash: string }>('SELECT hash FROM admin_tokens WHERE id = ?', [id]);
      expect(row!.hash).toMatch(/^[0-9a-f]{64}$/);
      expect(JSON.stringify(await db.all('SELECT * FROM admin_tokens'))).not.toContain(token.slice(22));
      expect(await checkAdminToken(db, token)).toBe(id);
      const last = token.at(-1) === 'A' ? 'B' : 'A';
      for (const bad of [token.slice(0, -1) + last, token.replace(id, '0'.repeat(16)), token + 'x', '', 'mlat_', `Bearer ${token}`]) expect(await checkAdminToken(db, bad)).toBeUndefined();
      await db.run('UPDATE admin_tokens SET revoked_at = ? WHERE id = ?', [1_800_000_001, id]);
      expect(await checkAdminToken(db, token)).toBeUndefined();
    } finally {
      await db.close();
    }
  });
});
