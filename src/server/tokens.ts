/**
 * Admin API tokens: `mlat_<id>_<secret>`. The server stores the id and the SHA-256 of the secret,
 * never the token; a presented token is found by its id and its secret's hash compared in
 * constant time. Revoked tokens stay on record.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Queries } from './db/index.js';

const TOKEN_RE = /^mlat_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

const hashOf = (secret: string) => createHash('sha256').update(secret, 'utf8').digest('hex');

/** Creates a token; the returned text is the only copy there will ever be. */
export async function createAdminToken(q: Queries, name: string, now: number): Promise<{ id: string; token: string }> {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  await q.run('INSERT INTO admin_tokens (id, hash, name, created_at) VALUES (?, ?, ?, ?)', [id, hashOf(secret), name, now]);
  return { id, token: `mlat_${id}_${secret}` };
}

/** The id of the live token this text is, or undefined. */
export async function checkAdminToken(q: Queries, token: string): Promise<string | undefined> {
  const m = TOKEN_RE.exec(token);
  if (!m) return undefined;
  const row = await q.get<{ hash: string; revoked_at: number | null }>('SELECT hash, revoked_at FROM admin_tokens WHERE id = ?', [m[1]!]);
  const want = Buffer.from(row?.hash ?? '0'.repeat(64), 'hex');
  const ok = timingSafeEqual(want, Buffer.from(hashOf(m[2]!), 'hex'));
  return row && ok && row.revoked_at === null ? m[1] : undefined;
}

export async function liveAdminTokens(q: Queries): Promise<number> {
  const r = await q.get<{ n: number }>('SELECT COUNT(*) AS n FROM admin_tokens WHERE revoked_at IS NULL');
  return Number(r?.n ?? 0);
}

export interface AdminTokenView {
  id: string;
  name: string;
  createdAt: string;
  revokedAt?: string;
}

const iso = (t: number) => new Date(t * 1000).toISOString().replace('.000Z', 'Z');

export async function listAdminTokens(q: Queries): Promise<AdminTokenView[]> {
  const rows = await q.all<{ id: string; name: string; created_at: number; revoked_at: number | null }>('SELECT id, name, created_at, revoked_at FROM admin_tokens ORDER BY created_at, id');
  return rows.map((r) => ({ id: r.id, name: r.name, createdAt: iso(Number(r.created_at)), ...(r.revoked_at !== null ? { revokedAt: iso(Number(r.revoked_at)) } : {}) }));
}

/**
 * Revokes a token (run in a transaction). The last live one is not revoked: nobody could then use
 * the admin API. 'missing' when there is no such token; 'last' when it is the last live one.
 */
export async function revokeAdminToken(q: Queries, id: string, now: number): Promise<'revoked' | 'already' | 'missing' | 'last'> {
  const row = await q.get<{ revoked_at: number | null }>('SELECT revoked_at FROM admin_tokens WHERE id = ?', [id]);
  if (!row) return 'missing';
  if (row.revoked_at !== null) return 'already';
  if ((await liveAdminTokens(q)) <= 1) return 'last';
  await q.run('UPDATE admin_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [now, id]);
  return 'revoked';
}
