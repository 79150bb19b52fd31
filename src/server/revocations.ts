/**
 * Revocation on the server: marking licences revoked (one licence, every licence of a host or of an
 * entitlement, or a host's own deactivation), and the signed revocation list that hosts install.
 *
 * The list is a function of its serial alone: a licence enters it at `listed_serial` and leaves it
 * (when it can no longer be used anyway: past its expiry, grace and clock tolerance, plus a day) at
 * `unlisted_serial`; the list at serial S holds the licences with listed_serial <= S <
 * unlisted_serial. Every change moves the serial up (to at least the time in ms) in the same transaction, so any server
 * process builds the same list for a serial (Ed25519 is deterministic: the same bytes too) and may
 * cache it until the serial moves.
 */
import { MlicError } from '../errors.js';
import { isoSeconds } from '../format/fields.js';
import { keyIdHex } from '../format/minisign.js';
import { MAX_REVOCATION_ENTRIES, serializeRevocationList, signRevocationList, type RevocationReason, type RevokedLicense } from '../format/revocation.js';
import type { VendorKey } from '../keys/vendor.js';
import type { Database, Queries } from './db/index.js';

/** a revoked licence stays listed this long after it could last have been used */
const UNLIST_MARGIN_S = 86_400;

export type RevokeTarget = { licenseId: string } | { hostId: string } | { entitlementId: string };

export interface RevokeResult {
  /** licences newly revoked */
  revoked: string[];
  /** the list's serial after the change (unchanged when nothing was newly revoked) */
  serial: number;
}

/**
 * Revokes every licence of the target that is not revoked yet, in the caller's transaction, and
 * moves the serial when anything changed. Revoking a host also frees its slot and bars its host key
 * from activating again under that entitlement; revoking an entitlement bars new activations.
 */
export async function revoke(q: Queries, target: RevokeTarget, now: number, reason?: RevocationReason): Promise<RevokeResult> {
  let where: 'id = ?' | 'host_id = ?' | 'entitlement_id = ?';
  let param: string;
  let why: RevocationReason;
  if ('licenseId' in target) {
    const l = await q.get('SELECT id FROM licenses WHERE id = ?', [target.licenseId]);
    if (!l) throw new MlicError('IO_NOT_FOUND', `this server issued no licence ${target.licenseId}`);
    [where, param, why] = ['id = ?', target.licenseId, reason ?? 'revoked'];
  } else if ('hostId' in target) {
    const n = await q.run('UPDATE hosts SET revoked_at = COALESCE(revoked_at, ?), deactivated_at = COALESCE(deactivated_at, ?) WHERE id = ?', [now, now, target.hostId]);
    if (n === 0) throw new MlicError('IO_NOT_FOUND', `no host ${target.hostId}`);
    [where, param, why] = ['host_id = ?', target.hostId, reason ?? 'host revoked'];
  } else {
    const n = await q.run('UPDATE entitlements SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?', [now, target.entitlementId]);
    if (n === 0) throw new MlicError('IO_NOT_FOUND', `no entitlement ${target.entitlementId}`);
    [where, param, why] = ['entitlement_id = ?', target.entitlementId, reason ?? 'entitlement revoked'];
  }
  return revokeLicenses(q, where, param, why, now);
}

/** Revokes the licences matching a fixed `where` clause (its one parameter bound), moving the serial when any is new. */
export async function revokeLicenses(q: Queries, where: 'id = ?' | 'host_id = ?' | 'entitlement_id = ?', param: string, why: RevocationReason, now: number): Promise<RevokeResult> {
  const rows = await q.all<{ id: string }>(`SELECT id FROM licenses WHERE ${where} AND revoked_at IS NULL`, [param]);
  if (rows.length === 0) return { revoked: [], serial: await currentSerial(q) };
  // hosts refuse a list longer than this: refuse to make one
  const listed = Number((await q.get<{ n: number }>('SELECT COUNT(*) AS n FROM licenses WHERE listed_serial IS NOT NULL AND unlisted_serial IS NULL'))?.n ?? 0);
  if (listed + rows.length > MAX_REVOCATION_ENTRIES)
    throw new MlicError('USAGE', `the revocation list would hold ${listed + rows.length} licences, more than the ${MAX_REVOCATION_ENTRIES} hosts accept`, {
      hint: 'revoked licences leave the list a day after they expire: issue licences with an expiry (perpetual ones stay listed)',
    });
  const serial = await bumpSerial(q, now);
  await q.run(`UPDATE licenses SET revoked_at = ?, revoke_reason = ?, listed_serial = ? WHERE ${where} AND revoked_at IS NULL`, [now, why, serial, param]);
  return { revoked: rows.map((r) => r.id).sort(), serial };
}

async function currentSerial(q: Queries): Promise<number> {
  return Number((await q.get<{ serial: number }>('SELECT serial FROM revocation_state WHERE id = 1'))?.serial ?? 0);
}

/**
 * Moves the serial up, and unlists what can no longer be used; the new serial. The serial is at
 * least the time in milliseconds: it keeps growing across a restore of an older backup (whose
 * serial is behind what hosts hold), so the next change still reaches them.
 */
async function bumpSerial(q: Queries, now: number): Promise<number> {
  const serial = Math.max((await currentSerial(q)) + 1, Date.now());
  await q.run('UPDATE revocation_state SET serial = ?, issued_at = ? WHERE id = 1', [serial, now]);
  await q.run('UPDATE licenses SET unlisted_serial = ? WHERE listed_serial IS NOT NULL AND unlisted_serial IS NULL AND usable_until IS NOT NULL AND usable_until < ?', [
    serial,
    now - UNLIST_MARGIN_S,
  ]);
  return serial;
}

/** The signed revocation list at the current serial, built once per serial and process. */
export class RevocationLists {
  private cached: { serial: number; text: string } | undefined;
  constructor(
    private readonly db: Database,
    private readonly key: VendorKey,
  ) {}

  async current(): Promise<{ serial: number; text: string }> {
    const st = await this.db.get<{ serial: number; issued_at: number }>('SELECT serial, issued_at FROM revocation_state WHERE id = 1');
    if (!st) throw new MlicError('INTERNAL', 'the revocation state row is missing');
    const serial = Number(st.serial);
    if (this.cached?.serial === serial) return this.cached;
    const rows = await this.db.all<{ id: string; revoked_at: number; revoke_reason: RevocationReason }>(
      'SELECT id, revoked_at, revoke_reason FROM licenses WHERE listed_serial IS NOT NULL AND listed_serial <= ? AND (unlisted_serial IS NULL OR unlisted_serial > ?)',
      [serial, serial],
    );
    // sorted here, not by the database: collations differ
    const licenses: RevokedLicense[] = rows
      .map((r) => ({ id: r.id, revokedAt: isoSeconds(new Date(Number(r.revoked_at) * 1000)), reason: r.revoke_reason }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const list = signRevocationList(
      { v: 1, kind: 'mlic-revocation-list', vendor: { keyId: keyIdHex(this.key.keyId) }, serial, issuedAt: isoSeconds(new Date(Number(st.issued_at) * 1000)), licenses },
      this.key.seed,
    );
    const text = serializeRevocationList(list);
    if (!this.cached || this.cached.serial < serial) this.cached = { serial, text };
    return { serial, text };
  }
}
