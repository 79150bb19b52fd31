/**
 * The licence server's database, whichever holds it: an embedded SQLite file (the default) or a
 * PostgreSQL shared by several server processes. SQL is written once, with `?` placeholders
 * (rewritten to $1.. for PostgreSQL) and portable types: TEXT, BIGINT (unix seconds), no dialect
 * functions. Values are always parameters, never spliced into SQL.
 */
export type SqlValue = string | number | bigint | null | Buffer;

export interface Queries {
  all<T = Record<string, unknown>>(sql: string, params?: readonly SqlValue[]): Promise<T[]>;
  get<T = Record<string, unknown>>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined>;
  /** rows changed */
  run(sql: string, params?: readonly SqlValue[]): Promise<number>;
}

export interface Database extends Queries {
  readonly kind: 'sqlite' | 'postgres';
  /** where it is, with no password (for messages and logs) */
  readonly where: string;
  /**
   * Runs fn in one transaction that no other writer interleaves with: SQLite's BEGIN IMMEDIATE,
   * PostgreSQL's SERIALIZABLE (retried on a serialization failure). Commits when fn resolves.
   * With `lock`, PostgreSQL first takes that advisory lock (before the transaction's snapshot, so
   * the transaction sees what the previous holder committed); SQLite's writer lock covers it.
   */
  tx<T>(fn: (q: Queries) => Promise<T>, opts?: { lock?: bigint }): Promise<T>;
  close(): Promise<void>;
}
