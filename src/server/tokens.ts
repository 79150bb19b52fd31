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
