/**
 * Online activation: a licence key and a host's signed activation request in, a host-bound licence
 * out. Within one transaction: the key finds a live entitlement, its window and regions admit the
 * host, and the host takes one of maxHosts slots, or keeps the one it has (the same host key
 * activating again is re-issued its licence without using another slot). SQLite's single writer
 * and PostgreSQL's SERIALIZABLE make the count exact under any number of concurrent requests.
 */
import { randomBytes } from 'node:crypto';
import { MlicError } from '../errors.js';
import { serializeLicense } from '../format/license.js';
import { issueLicense } from '../license/issue.js';
import { parseAndVerifyRequest } from '../license/sign.js';
import { regionAllowed } from '../license/policy.js';
import type { VendorKey } from '../keys/vendor.js';
import type { Queries } from './db/index.js';
import { issueOptionsFor, type EntitlementTerms } from './entitlements.js';
import { licenseKeyHash, normalizeLicenseKey } from './license-key.js';

export interface ActivationResult {
  license: string;
  licenseId: string;
  hostId: string;
  reissued: boolean;
}

export async function activate(q: Queries, key: VendorKey, licenseKey: string, requestText: string, now: Date): Promise<ActivationResult> {
  const normalized = normalizeLicenseKey(licenseKey);
  if (!normalized) throw new MlicError('FORMAT_INVALID', 'not a licence key (MLIC-XXXXX-XXXXX-XXXXX-XXXXX; check for a mistyped symbol)');
  const request = parseAndVerifyRequest(requestText);
  const e = await q.get<{ id: string; customer: string; model: string; terms: string; max_hosts: number; revoked_at: number | null }>(
    'SELECT id, customer, model, terms, max_hosts, revoked_at FROM entitlements WHERE key_hash = ?',
    [licenseKeyHash(normalized)],
  );
  if (!e || e.revoked_at !== null) throw new MlicError('NO_LICENSE', 'no live entitlement has this licence key', { hint: 'check the key with your vendor' });
  const terms = JSON.parse(e.terms) as EntitlementTerms;
  const t = Math.floor(now.getTime() / 1000);
  if (terms.notBefore && Date.parse(terms.notBefore) > now.getTime()) throw new MlicError('LICENSE_NOT_YET_VALID', `this entitlement starts at ${terms.notBefore}`);
  if (terms.expires && Date.parse(terms.expires) <= now.getTime()) throw new MlicError('LICENSE_EXPIRED', `this entitlement ended at ${terms.expires}`);
  if (terms.regions?.length) {
    const region = request.payload.region;
    if (region === undefined || !regionAllowed(region, terms.regions))
      throw new MlicError('REGION_NOT_ALLOWED', `this host's region (${region ?? 'not declared'}) is not among the entitlement's regions: ${terms.regions.join(', ')}`, {
        hint: 'activate with --region CODE on an allowed host',
      });
  }
  const hostKey = request.payload.hostPublicKey;
  const have = await q.get<{ id: string; deactivated_at: number | null }>('SELECT id, deactivated_at FROM hosts WHERE entitlement_id = ? AND host_key = ?', [e.id, hostKey]);
  const holdsSlot = have !== undefined && have.deactivated_at === null;
  if (!holdsSlot) {
    const used = Number((await q.get<{ n: number }>('SELECT COUNT(*) AS n FROM hosts WHERE entitlement_id = ? AND deactivated_at IS NULL', [e.id]))?.n ?? 0);
    if (used >= Number(e.max_hosts))
      throw new MlicError('HOST_LIMIT_REACHED', `all ${e.max_hosts} host slots of this entitlement are in use`, {
        hint: 'deactivate a host, or ask your vendor for more hosts',
        details: { maxHosts: Number(e.max_hosts), inUse: used },
      });
  }
  const { license, payload } = issueLicense(issueOptionsFor({ customer: e.customer, model: e.model, maxHosts: Number(e.max_hosts), terms }, key, request, now));
  const hostId = have?.id ?? `host_${randomBytes(8).toString('hex')}`;
  if (have)
    await q.run('UPDATE hosts SET license_id = ?, hostname = ?, last_seen = ?, activated_at = CASE WHEN deactivated_at IS NULL THEN activated_at ELSE ? END, deactivated_at = NULL WHERE id = ?', [
      payload.licenseId,
      request.payload.hostname,
      t,
      t,
      have.id,
    ]);
  else
    await q.run('INSERT INTO hosts (id, entitlement_id, host_key, hostname, license_id, activated_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)', [
      hostId,
      e.id,
      hostKey,
      request.payload.hostname,
      payload.licenseId,
      t,
      t,
    ]);
  return { license: serializeLicense(license), licenseId: payload.licenseId, hostId, reissued: holdsSlot };
}
