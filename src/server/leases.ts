/**
 * Floating seats on the server: a host checks out a lease for the seats it needs (one per host,
 * one per GPU its licence's fingerprint lists, or one per process), renews it before it expires
 * and releases it when done. Within one transaction (SQLite's single writer; on PostgreSQL an
 * entitlement's lease changes queue on its advisory lock, under SERIALIZABLE), the seats held by
 * unexpired, unreleased leases never exceed the entitlement's count. A lease that is not renewed
 * expires by itself: a killed host frees its seats within one lease duration.
 */
import { randomBytes } from 'node:crypto';
import { MlicError } from '../errors.js';
import { isoSeconds } from '../format/fields.js';
import { parseLicenseText, type HostBinding, type LicensePayload } from '../format/license.js';
import { signLease, verifyLeaseRequest, type Lease, type LeaseRequest, type SeatUnit } from '../format/lease.js';
import { keyIdHex } from '../format/minisign.js';
import type { VendorKey } from '../keys/vendor.js';
import type { Queries } from './db/index.js';

/** How far a host's clock may be from the server's when it signs a lease or reservation request: the licence's clock tolerance, at least a minute. */
export function requestSkew(license: Pick<LicensePayload, 'clockToleranceSeconds'>): number {
  return Math.max(60, license.clockToleranceSeconds);
}

/** Refuses a request signed at a time further from the server's than the licence's clock tolerance. */
export function checkRequestTime(what: string, createdAt: string, license: Pick<LicensePayload, 'clockToleranceSeconds'>, now: Date): void {
  const skew = requestSkew(license);
  if (Math.abs(Date.parse(createdAt) - now.getTime()) / 1000 > skew)
    throw new MlicError('CLOCK_TAMPERED', `the ${what} was made at ${createdAt}, more than ${skew} s (the licence's clock tolerance) from the server's time ${isoSeconds(now)}`, {
      hint: "check the host's clock",
    });
}

export type LeaseAnswer = { lease: Lease; renewed: boolean } | { released: boolean; leaseId: string };

export interface LicenseContext {
  entitlement_id: string;
  seats: number | null;
  seat_unit: SeatUnit | null;
  lease_seconds: number | null;
  ent_revoked: number | null;
  host_id: string;
  host_key: string;
  deactivated_at: number | null;
  lic_revoked: number | null;
  text: string;
}

/** A licence this server issued, with its host and entitlement (for leases and fleet quotas). */
export async function licenseContext(q: Queries, licenseId: string): Promise<LicenseContext> {
  const c = await q.get<LicenseContext>(
    `SELECT e.id AS entitlement_id, e.seats, e.seat_unit, e.lease_seconds, e.revoked_at AS ent_revoked, h.id AS host_id, h.host_key, h.deactivated_at, l.revoked_at AS lic_revoked, l.text
     FROM licenses l JOIN hosts h ON h.id = l.host_id JOIN entitlements e ON e.id = l.entitlement_id WHERE l.id = ?`,
    [licenseId],
  );
  if (!c) throw new MlicError('IO_NOT_FOUND', `this server issued no licence ${licenseId}`);
  return c;
}

// Parsed licences by id (every lease and reservation request names one: parsing and checking its
// text cost an eighth of a renewal); the stored text is compared each time, at most PARSED kept.
const PARSED = 4096;
const parsed = new Map<string, { text: string; payload: LicensePayload }>();

function parsedLicense(id: string, text: string): LicensePayload {
  const hit = parsed.get(id);
  if (hit && hit.text === text) return hit.payload;
  const payload = parseLicenseText(text).payload;
  if (parsed.size >= PARSED) parsed.delete(parsed.keys().next().value!);
  parsed.set(id, { text, payload });
  return payload;
}

/**
 * The licence a host's signed request names (lease or reservation), with the request's signature
 * checked against the signing key bound in that licence and its time against the licence's clock
 * tolerance.
 */
export async function hostRequest(
  q: Queries,
  p: { licenseId: string; createdAt: string },
  what: string,
  now: Date,
  verify: (hostSigningPublicKey: Uint8Array) => void,
): Promise<{ c: LicenseContext; license: LicensePayload & { host: HostBinding } }> {
  const c = await licenseContext(q, p.licenseId);
  const license = parsedLicense(p.licenseId, c.text);
  const host = license.host;
  if (host.binding !== 'host') throw new MlicError('INTERNAL', 'an online licence without a host');
  verify(Buffer.from(host.signingPublicKey, 'base64'));
  checkRequestTime(what, p.createdAt, license, now);
  return { c, license: { ...license, host } };
}

/** The entitlement a licence belongs to, for finding its lease lock before the transaction. */
export async function leaseEntitlement(q: Queries, licenseId: string): Promise<string | undefined> {
  return (await q.get<{ entitlement_id: string }>('SELECT entitlement_id FROM licenses WHERE id = ?', [licenseId]))?.entitlement_id;
}

export async function lease(q: Queries, key: VendorKey, r: LeaseRequest, now: Date): Promise<LeaseAnswer> {
  const t = Math.floor(now.getTime() / 1000);
  const p = r.payload;
  const { c, license } = await hostRequest(q, p, 'lease request', now, (pk) => verifyLeaseRequest(r, pk));
  if (c.seats === null || c.seat_unit === null || c.lease_seconds === null) throw new MlicError('USAGE', 'this entitlement has no floating seats: its licences need no lease');
  const unit = c.seat_unit;
  const clientId = unit === 'process' ? p.clientId : '';
  if (p.action === 'release') {
    const n = await q.run('UPDATE leases SET released_at = ? WHERE id = ? AND host_id = ? AND released_at IS NULL', [t, p.leaseId!, c.host_id]);
    return { released: n > 0, leaseId: p.leaseId! };
  }
  if (c.ent_revoked !== null || c.lic_revoked !== null || c.deactivated_at !== null)
    throw new MlicError('LICENSE_REVOKED', `licence ${p.licenseId} was revoked${c.deactivated_at !== null ? ' (its host was deactivated)' : ''}: no lease`, { hint: 'ask your vendor' });
  const need = unit === 'gpu' ? license.host.fingerprint.components.filter((x) => x.kind === 'gpu').length : 1;
  if (need === 0) throw new MlicError('SEAT_UNAVAILABLE', 'the seats are GPUs, and this host\'s licence lists none', { hint: 'activate on a host whose GPUs mlic fingerprint shows' });
  const expires = t + Number(c.lease_seconds);
  const sign = (id: string, issued: number) =>
    signLease(
      {
        v: 1,
        kind: 'mlic-lease',
        leaseId: id,
        vendor: { keyId: keyIdHex(key.keyId) },
        entitlementId: c.entitlement_id,
        licenseId: p.licenseId,
        hostPublicKey: c.host_key,
        clientId: p.clientId,
        unit,
        seats: need,
        issuedAt: isoSeconds(new Date(issued * 1000)),
        expiresAt: isoSeconds(new Date(expires * 1000)),
      },
      key.seed,
    );
  // the holder's live lease: renewed in place (a checkout by a host that already holds one is a renewal)
  const held = await q.get<{ id: string; expires_at: number }>(
    'SELECT id, expires_at FROM leases WHERE host_id = ? AND client_id = ? AND entitlement_id = ? AND released_at IS NULL AND expires_at > ? ORDER BY expires_at DESC LIMIT 1',
    [c.host_id, clientId, c.entitlement_id, t],
  );
  if (p.action === 'renew' && (!held || held.id !== p.leaseId))
    throw new MlicError('LEASE_EXPIRED', `lease ${p.leaseId} has expired or was released`, { hint: 'check out a new one (its seat may have been taken meanwhile)' });
  if (held) {
    await q.run('UPDATE leases SET expires_at = ?, license_id = ? WHERE id = ?', [expires, p.licenseId, held.id]);
    return { lease: sign(held.id, t), renewed: true };
  }
  const used = await q.get<{ n: number | null; next: number | null }>(
    'SELECT SUM(seats) AS n, MIN(expires_at) AS next FROM leases WHERE entitlement_id = ? AND released_at IS NULL AND expires_at > ?',
    [c.entitlement_id, t],
  );
  const inUse = Number(used?.n ?? 0);
  if (inUse + need > Number(c.seats))
    throw new MlicError('SEAT_UNAVAILABLE', `${inUse} of ${c.seats} ${unit} seats are in use; this host needs ${need}`, {
      hint: used?.next ? `the next lease ends by ${isoSeconds(new Date(Number(used.next) * 1000))} unless renewed; try again then` : 'try again later',
      details: { seats: Number(c.seats), inUse, need, unit, ...(used?.next ? { nextFreeAt: isoSeconds(new Date(Number(used.next) * 1000)) } : {}) },
    });
  const id = `lease_${randomBytes(8).toString('hex')}`;
  await q.run('INSERT INTO leases (id, entitlement_id, host_id, license_id, client_id, seats, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
    id,
    c.entitlement_id,
    c.host_id,
    p.licenseId,
    clientId,
    need,
    t,
    expires,
  ]);
  return { lease: sign(id, t), renewed: false };
}

/** Seats in use now, per entitlement (for the admin). */
export async function seatsInUse(q: Queries, entitlementId: string, now: Date): Promise<{ inUse: number; leases: number }> {
  const t = Math.floor(now.getTime() / 1000);
  const r = await q.get<{ n: number | null; c: number }>('SELECT SUM(seats) AS n, COUNT(*) AS c FROM leases WHERE entitlement_id = ? AND released_at IS NULL AND expires_at > ?', [entitlementId, t]);
  return { inUse: Number(r?.n ?? 0), leases: Number(r?.c ?? 0) };
}
