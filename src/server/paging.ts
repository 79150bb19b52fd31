/**
 * Keyset paging for the admin API's lists: rows in (created_at, id) order, `limit` at a time; the
 * answer's `next` is an opaque cursor (`<created_at>.<id>`) to pass as `after` for the next page, or
 * null on the last page. Stable under inserts (no offsets).
 */
import { MlicError } from '../errors.js';
import type { SqlValue } from './db/index.js';

export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;

export const PAGE_QUERY_PROPERTIES = {
  limit: { type: 'string', pattern: '^[1-9][0-9]{0,3}$', description: `rows per page (default ${DEFAULT_PAGE}, at most ${MAX_PAGE})` },
  after: { type: 'string', pattern: '^[0-9]{1,15}\\.[a-z]{2,5}_[0-9a-f]{16}$', description: 'the `next` cursor of the previous page' },
} as const;

export interface Page {
  /** SQL to AND into the WHERE clause, and its parameters */
  where: string;
  params: SqlValue[];
  /** LIMIT (one more than asked: to know whether there is a next page) */
  limit: number;
}

/** by: 'created' orders by (created_at, id); 'id' by id alone (for rows with no fixed creation time; the cursor's time is 0) */
export function pageOf(q: { limit?: string; after?: string }, by: 'created' | 'id' = 'created'): Page {
  const limit = q.limit === undefined ? DEFAULT_PAGE : Number(q.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new MlicError('USAGE', `limit must be 1 to ${MAX_PAGE}`);
  if (q.after === undefined) return { where: '1 = 1', params: [], limit: limit + 1 };
  const dot = q.after.indexOf('.');
  const t = Number(q.after.slice(0, dot));
  const id = q.after.slice(dot + 1);
  if (by === 'id') return { where: 'id > ?', params: [id], limit: limit + 1 };
  return { where: '(created_at > ? OR (created_at = ? AND id > ?))', params: [t, t, id], limit: limit + 1 };
}

/** The rows of a page and the cursor of the next one. */
export function pageResult<R extends { id: string; created_at?: number }>(rows: R[], page: Page): { rows: R[]; next: string | null } {
  if (rows.length < page.limit) return { rows, next: null };
  const kept = rows.slice(0, page.limit - 1);
  const last = kept[kept.length - 1]!;
  return { rows: kept, next: `${Number(last.created_at ?? 0)}.${last.id}` };
}
