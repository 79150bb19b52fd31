/** `mlic server init` through the built binary, on SQLite and on PostgreSQL. */
import { describe, it, expect } from 'vitest';
import { chmod, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { mlic } from '../cli/run.js';
import { openDatabase } from '../../src/server/db/index.js';
import { checkAdminToken } from '../../src/server/tokens.js';
import { tmp } from '../helpers.js';
import { KINDS, freshServerPlace } from './databases.js';

describe.each(KINDS)('mlic server init on %s', (kind) => {
  it('creates the data directory 0700, migrates, prints one working admin token once; a second init is IO_EXISTS', async () => {
    const { dataDir, url } = await freshServerPlace(kind);
    const args = ['server', 'init', '--data', dataDir, ...(url ? ['--database', url] : [])];
    const r = await mlic([...args, '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const token = r.json.result.adminToken as string;
    expect(token).toMatch(/^mlat_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(r.json.result.schemaVersion).toBeGreaterThanOrEqual(1);
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    if (kind === 'sqlite') expect((await stat(join(dataDir, 'mlic.db'))).mode & 0o777).toBe(0o600);
    const db = await openDatabase({ dataDir, url });
    try {
      expect(await checkAdminToken(db, token)).toBeDefined();
    } finally {
      await db.close();
    }
    const again = await mlic([...args, '--json']);
    expect(again.code).toBe(2);
    expect(again.json.error.code).toBe('IO_EXISTS');
    // the text form: the token alone on stdout, the words on stderr
    const fresh = await freshServerPlace(kind);
    const t = await mlic(['server', 'init', '--data', fresh.dataDir, ...(fresh.url ? ['--database', fresh.url] : [])]);
    expect(t.code).toBe(0);
    expect(t.stdout.trim()).toMatch(/^mlat_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(t.stderr).toMatch(/shown this once/);
  });
});

describe('mlic server init: bad places', () => {
  it('refuses a data directory other users can enter (IO_UNSAFE_PATH) and a bad database URL (USAGE)', async () => {
    const d = join(await tmp(), 'open');
    await mkdir(d, { mode: 0o755 });
    await chmod(d, 0o755);
    const r = await mlic(['server', 'init', '--data', d, '--json']);
    expect(r.code).toBe(2);
    expect(r.json.error.code).toBe('IO_UNSAFE_PATH');
    const u = await mlic(['server', 'init', '--data', join(await tmp(), 'x'), '--database', 'mysql://db/mlic', '--json']);
    expect(u.code).toBe(2);
    expect(u.json.error.code).toBe('USAGE');
  });

  it('a database it cannot reach is IO_ERROR, and a password in the URL (user:pw@ or ?password=) is never shown', async () => {
    const r = await mlic(['server', 'init', '--data', join(await tmp(), 'x'), '--database', 'postgres://mlic:s3cret-pw@127.0.0.1:1/mlic', '--json']);
    expect(r.code).toBe(2);
    expect(r.json.error.code).toBe('IO_ERROR');
    expect(r.stdout + r.stderr).not.toContain('s3cret-pw');
    expect(r.json.error.message).toContain('***');
    const q = await mlic(['server', 'init', '--data', join(await tmp(), 'y'), '--database', 'postgres://mlic@127.0.0.1:1/mlic?password=Qu3ry-pw&sslpassword=Ssl-pw', '--json']);
    expect(q.json.error.code).toBe('IO_ERROR');
    expect(q.stdout + q.stderr).not.toMatch(/Qu3ry-pw|Ssl-pw/);
  });

  it('an existing database file with looser permissions (a restored backup) is made 0600', async () => {
    const d = join(await tmp(), 'd');
    await mkdir(d, { mode: 0o700 });
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(d, 'mlic.db'), '', { mode: 0o644 });
    await chmod(join(d, 'mlic.db'), 0o644);
    const r = await mlic(['server', 'init', '--data', d, '--json']);
    expect(r.code, r.stdout).toBe(0);
    expect((await stat(join(d, 'mlic.db'))).mode & 0o777).toBe(0o600);
  });
});
