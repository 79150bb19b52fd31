/**
 * Opening the server's database and bringing its schema up to date. Migrations are numbered and
 * only ever appended; each runs once, inside one transaction with its record in
 * schema_migrations, so a crash leaves the schema at one version or the next, never between.
 * Servers starting at once on one PostgreSQL take an advisory lock: one migrates, the others
 * then find nothing to do. A database newer than this mlic is refused.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { MlicError } from '../../errors.js';
import { openSqlite } from './sqlite.js';
import type { Database } from './types.js';

export type { Database, Queries, SqlValue } from './types.js';

export interface Migration {
  version: number;
  name: string;
  sql: string[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'admin tokens',
    sql: ['CREATE TABLE admin_tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL, name TEXT NOT NULL, created_at BIGINT NOT NULL, revoked_at BIGINT)'],
  },
  {
    version: 2,
    name: 'entitlements',
    sql: [
      'CREATE TABLE entitlements (id TEXT PRIMARY KEY, customer TEXT NOT NULL, model TEXT NOT NULL, terms TEXT NOT NULL, max_hosts BIGINT NOT NULL, key_hash TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL, revoked_at BIGINT)',
      'CREATE INDEX entitlements_customer ON entitlements (customer)',
    ],
  },
  {
    version: 3,
    name: 'hosts',
    sql: [
      'CREATE TABLE hosts (id TEXT PRIMARY KEY, entitlement_id TEXT NOT NULL REFERENCES entitlements (id), host_key TEXT NOT NULL, hostname TEXT NOT NULL, license_id TEXT NOT NULL, activated_at BIGINT NOT NULL, last_seen BIGINT NOT NULL, deactivated_at BIGINT)',
      'CREATE UNIQUE INDEX hosts_entitlement_key ON hosts (entitlement_id, host_key)',
    ],
  },
  {
    version: 4,
    name: 'issued licences, host signing keys, revocations',
    sql: [
      // the host's Ed25519 key: it signs deactivations and usage reports
      'ALTER TABLE hosts ADD COLUMN signing_key TEXT',
      'ALTER TABLE hosts ADD COLUMN revoked_at BIGINT',
      // every licence issued; usable_until: expiry + grace + clock tolerance (NULL: perpetual)
      'CREATE TABLE licenses (id TEXT PRIMARY KEY, entitlement_id TEXT NOT NULL REFERENCES entitlements (id), host_id TEXT NOT NULL REFERENCES hosts (id), issued_at BIGINT NOT NULL, usable_until BIGINT, text TEXT NOT NULL, revoked_at BIGINT, revoke_reason TEXT, listed_serial BIGINT, unlisted_serial BIGINT)',
      'CREATE INDEX licenses_host ON licenses (host_id)',
      'CREATE INDEX licenses_entitlement ON licenses (entitlement_id)',
      'CREATE INDEX licenses_listed ON licenses (listed_serial)',
      // the revocation list's serial: the list at serial S holds the licences with listed_serial <= S < unlisted_serial
      'CREATE TABLE revocation_state (id BIGINT PRIMARY KEY, serial BIGINT NOT NULL, issued_at BIGINT NOT NULL)',
      'INSERT INTO revocation_state (id, serial, issued_at) VALUES (1, 0, 0)',
    ],
  },
  {
    version: 5,
    name: 'usage reports',
    sql: [
      // one signed report per licence and month; problem: a gap or rewind against the previous report (stored, flagged)
      'CREATE TABLE usage_reports (id TEXT PRIMARY KEY, license_id TEXT NOT NULL REFERENCES licenses (id), entitlement_id TEXT NOT NULL REFERENCES entitlements (id), host_id TEXT NOT NULL REFERENCES hosts (id), period TEXT NOT NULL, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL, continuity TEXT NOT NULL, problem TEXT, received_at BIGINT NOT NULL, text TEXT NOT NULL)',
      'CREATE UNIQUE INDEX usage_reports_license_period ON usage_reports (license_id, period)',
      'CREATE INDEX usage_reports_entitlement_period ON usage_reports (entitlement_id, period)',
      "CREATE TABLE usage_totals (report_id TEXT NOT NULL REFERENCES usage_reports (id), metric TEXT NOT NULL, feature TEXT NOT NULL, quantity BIGINT NOT NULL, overage BIGINT NOT NULL, forfeited BIGINT NOT NULL, records BIGINT NOT NULL, PRIMARY KEY (report_id, metric, feature))",
    ],
  },
  {
    version: 6,
    name: 'an index for counting active hosts',
    // an entitlement's active hosts are counted on every activation: from the index alone, not every host row
    sql: ['CREATE INDEX hosts_entitlement_active ON hosts (entitlement_id, deactivated_at)'],
  },
  {
    version: 7,
    name: 'floating seats and leases',
    sql: [
      // seats: how many at once (NULL: no floating seats); seat_unit host, gpu or process; lease_seconds: a lease's life
      'ALTER TABLE entitlements ADD COLUMN seats BIGINT',
      'ALTER TABLE entitlements ADD COLUMN seat_unit TEXT',
      'ALTER TABLE entitlements ADD COLUMN lease_seconds BIGINT',
      // client_id: '' for host and gpu seats (one lease per host), the process's id for process seats
      'CREATE TABLE leases (id TEXT PRIMARY KEY, entitlement_id TEXT NOT NULL REFERENCES entitlements (id), host_id TEXT NOT NULL REFERENCES hosts (id), license_id TEXT NOT NULL REFERENCES licenses (id), client_id TEXT NOT NULL, seats BIGINT NOT NULL, issued_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, released_at BIGINT)',
      'CREATE INDEX leases_entitlement_live ON leases (entitlement_id, released_at, expires_at)',
      'CREATE INDEX leases_holder ON leases (host_id, client_id)',
    ],
  },
  {
    version: 8,
    name: 'fleet quotas',
    sql: [
      // one per host licence, fleet meter and period while it lives: granted - returned units are the host's; at expires_at what is left counts as consumed;
      // used: the host's own count of units it consumed this period, as of its last request (for telling other hosts what lies unused)
      'CREATE TABLE quota_accounts (id TEXT PRIMARY KEY, entitlement_id TEXT NOT NULL REFERENCES entitlements (id), host_id TEXT NOT NULL REFERENCES hosts (id), license_id TEXT NOT NULL REFERENCES licenses (id), metric TEXT NOT NULL, period TEXT NOT NULL, granted BIGINT NOT NULL, returned BIGINT NOT NULL, used BIGINT NOT NULL, opened_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)',
      'CREATE INDEX quota_accounts_meter ON quota_accounts (entitlement_id, metric, period, expires_at)',
      'CREATE INDEX quota_accounts_holder ON quota_accounts (license_id, metric, period, expires_at)',
      // the fleet's net units (granted - returned) per meter and period: the quota check reads one row
      'CREATE TABLE quota_totals (entitlement_id TEXT NOT NULL REFERENCES entitlements (id), metric TEXT NOT NULL, period TEXT NOT NULL, net BIGINT NOT NULL, PRIMARY KEY (entitlement_id, metric, period))',
      // every reserve and give-back, by the host's request id: a retried request gets its first answer again
      'CREATE TABLE quota_requests (request_id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES quota_accounts (id), action TEXT NOT NULL, amount BIGINT NOT NULL, overage BIGINT NOT NULL, at BIGINT NOT NULL)',
    ],
  },
  {
    version: 9,
    name: 'TPM activation challenges',
    sql: [
      // a nonce the server gave a TPM host to quote: used once, within its time
      'CREATE TABLE tpm_challenges (nonce TEXT PRIMARY KEY, issued_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, used_at BIGINT)',
      'CREATE INDEX tpm_challenges_expiry ON tpm_challenges (expires_at)',
    ],
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** The embedded database's file in a data directory. */
export const SQLITE_FILE = 'mlic.db';

/** `postgres://...` or `postgresql://...` for PostgreSQL; none for the SQLite file in dataDir. */
export async function openDatabase(o: { dataDir: string; url?: string | undefined }): Promise<Database> {
  if (o.url === undefined || o.url === '') return openSqlite(join(o.dataDir, SQLITE_FILE));
  // loaded only for PostgreSQL: the driver is not needed (nor loaded) with SQLite
  if (/^postgres(ql)?:\/\//i.test(o.url)) return (await import('./postgres.js')).openPostgres(o.url);
  throw new MlicError('USAGE', 'the database must be a postgres:// URL (or none, for the SQLite file in the data directory)');
}

// advisory lock keys: "mlic" in ASCII, then 1 (schema migrations), 2 (revocation changes)
const MIGRATION_LOCK = 0x6d6c6963_00000001n;
export const REVOCATION_LOCK = 0x6d6c6963_00000002n;

/**
 * The advisory lock of one entitlement's activations (from its licence key's hash): on PostgreSQL
 * they then queue for each other instead of failing SERIALIZABLE checks and retrying.
 */
export function activationLock(keyHashHex: string): bigint {
  return BigInt.asIntN(64, BigInt(`0x${keyHashHex.slice(0, 16)}`));
}

/** The advisory lock of one entitlement's leases and fleet quotas. */
export function leaseLock(entitlementId: string): bigint {
  return BigInt.asIntN(64, BigInt(`0x${createHash('sha256').update(`lease ${entitlementId}`).digest('hex').slice(0, 16)}`));
}

/** Applies the missing migrations; returns the versions before and after. */
export async function migrate(db: Database, migrations: readonly Migration[] = MIGRATIONS): Promise<{ from: number; to: number }> {
  const latest = migrations[migrations.length - 1]?.version ?? 0;
  return db.tx(async (q) => {
    await q.run('CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)');
    const row = await q.get<{ v: number | null }>('SELECT MAX(version) AS v FROM schema_migrations');
    const from = Number(row?.v ?? 0);
    if (from > latest)
      throw new MlicError('UNSUPPORTED_VERSION', `the database at ${db.where} has schema version ${from}, newer than this mlic knows (${latest})`, {
        hint: 'run the mlic that last migrated it, or a newer one',
      });
    for (const m of migrations) {
      if (m.version <= from) continue;
      for (const s of m.sql) await q.run(s);
      await q.run('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [m.version, m.name, Math.floor(Date.now() / 1000)]);
    }
    return { from, to: Math.max(from, latest) };
  }, { lock: MIGRATION_LOCK });
}
