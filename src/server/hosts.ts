/** The hosts an entitlement's licences were issued to, for the admin (`GET /v1/hosts`, `mlic admin hosts`). */
import { isoSeconds } from '../format/fields.js';
import type { Queries } from './db/index.js';
import { pageOf, pageResult } from './paging.js';

export interface HostView {
  id: string;
  entitlementId: string;
  hostname: string;
  /** the host's X25519 public key (base64): what its licences are sealed to */
  hostKey: string;
  /** its latest licence */
  licenseId: string;
  activatedAt: string;
  lastSeen: string;
  deactivatedAt?: string;
  revokedAt?: string;
}

interface Row {
  id: string;
  entitlement_id: string;
  hostname: string;
  host_key: string;
  license_id: string;
  activated_at: number;
  last_seen: number;
  deactivated_at: number | null;
  revoked_at: number | null;
}

const iso = (t: number) => isoSeconds(new Date(t * 1000));

export async function listHosts(q: Queries, o: { entitlement?: string; active?: boolean; limit?: string; after?: string }): Promise<{ hosts: HostView[]; next: string | null }> {
  const page = pageOf(o, 'id');
  const where = [page.where];
  const params = [...page.params];
  if (o.entitlement !== undefined) {
    where.push('entitlement_id = ?');
    params.push(o.entitlement);
  }
  if (o.active !== undefined) where.push(o.active ? 'deactivated_at IS NULL' : 'deactivated_at IS NOT NULL');
  const rows = await q.all<Row>(
    `SELECT id, entitlement_id, hostname, host_key, license_id, activated_at, last_seen, deactivated_at, revoked_at FROM hosts WHERE ${where.join(' AND ')} ORDER BY id LIMIT ${page.limit}`,
    params,
  );
  const r = pageResult(rows, page);
  return {
    next: r.next,
    hosts: r.rows.map((h) => ({
      id: h.id,
      entitlementId: h.entitlement_id,
      hostname: h.hostname,
      hostKey: h.host_key,
      licenseId: h.license_id,
      activatedAt: iso(Number(h.activated_at)),
      lastSeen: iso(Number(h.last_seen)),
      ...(h.deactivated_at !== null ? { deactivatedAt: iso(Number(h.deactivated_at)) } : {}),
      ...(h.revoked_at !== null ? { revokedAt: iso(Number(h.revoked_at)) } : {}),
    })),
  };
}
