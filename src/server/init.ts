/**
 * mlic server init: a private data directory, the schema at its latest version, and a first admin
 * token, printed once. A database that already has an admin token is not initialized again.
 */
import { lstat, mkdir } from 'node:fs/promises';
import { MlicError, fromFsError } from '../errors.js';
import { migrate, openDatabase, SCHEMA_VERSION } from './db/index.js';
import { createAdminToken, liveAdminTokens } from './tokens.js';

export interface InitOptions {
  dataDir: string;
  /** postgres://...; none: the SQLite file in dataDir */
  database?: string | undefined;
  now?: Date;
}

export interface InitResult {
  dataDir: string;
  database: string;
  schemaVersion: number;
  adminToken: string;
}

/** Creates dataDir 0700, or checks that an existing one is a private directory (not a link). */
export async function privateDataDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw fromFsError(e, dir);
  }
  const st = await lstat(dir).catch((e: unknown) => {
    throw fromFsError(e, dir);
  });
  if (st.isSymbolicLink() || !st.isDirectory()) throw new MlicError('IO_UNSAFE_PATH', `${dir}: not a plain directory`);
  if ((st.mode & 0o077) !== 0)
    throw new MlicError('IO_UNSAFE_PATH', `${dir}: other users can enter it (mode ${(st.mode & 0o777).toString(8)}); the server's data directory must be private`, { hint: `chmod 700 ${dir}` });
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) throw new MlicError('IO_UNSAFE_PATH', `${dir}: owned by another user`);
}

export async function initServer(o: InitOptions): Promise<InitResult> {
  await privateDataDir(o.dataDir);
  const db = await openDatabase({ dataDir: o.dataDir, url: o.database });
  try {
    const { to } = await migrate(db);
    const now = Math.floor((o.now ?? new Date()).getTime() / 1000);
    const { token } = await db.tx(async (q) => {
      if ((await liveAdminTokens(q)) > 0)
        throw new MlicError('IO_EXISTS', `the server at ${db.where} is already initialized (it has an admin token)`, {
          hint: 'the first token was printed by the first init; create more with an existing token',
        });
      return createAdminToken(q, 'first admin token (server init)', now);
    });
    return { dataDir: o.dataDir, database: db.where, schemaVersion: to, adminToken: token };
  } finally {
    await db.close();
  }
}

export { SCHEMA_VERSION };
