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
import type { ActivationRequest } from '../format/license.js';
import { regionAllowed } from '../license/policy.js';
import type { VendorKey } from '../keys/vendor.js';
import type { Queries } from './db/index.js';
import { issueOptionsFor, type EntitlementTerms } from './entitlements.js';
import { licenseKeyHash, normalizeLicenseKey } from './license-key.js';
import type { Deactivation } from '../format/revocation.js';
import { parseLicenseText } from '../format/license.js';
import { revokeLicenses } from './revocations.js';
import type { TpmVerifyOptions } from '../tpm/attest.js';

export interface ActivationResult {
  license: string;
  licenseId: string;
  hostId: string;
  reissued: boolean;
}

/** Checks what can be checked before any database work: the key's form, the request's own signature. */
export function parseActivation(licenseKey: string, requestText: string): { normalized: string; request: ActivationRequest } {
  const normalized = normalizeLicenseKey(licenseKey);
  if (!normalized) throw new MlicError('FORMAT_INVALID', 'not a licence key (MLIC-XXXXX-XXXXX-XXXXX-XXXXX; check for a mistyped symbol)');
  return { normalized, request: parseAndVerifyRequest(requestText) };
}

/** How long a TPM challenge may be answered. */
export const CHALLENGE_SECONDS = 600;

/** A nonce for a TPM host to quote (POST /v1/activations/challenge); expired ones are cleared on the way. */
export async function newChallenge(q: Queries, now: Date): Promise<{ nonce: string; expiresAt: string }> {
  const t = Math.floor(now.getTime() / 1000);
  await q.run('DELETE FROM tpm_challenges WHERE expires_at < ?', [t - CHALLENGE_SECONDS]);
  const nonce = randomBytes(16).toString('hex');
  await q.run('INSERT INTO tpm_challenges (nonce, issued_at, expires_at) VALUES (?, ?, ?)', [nonce, t, t + CHALLENGE_SECONDS]);
  return { nonce, expiresAt: new Date((t + CHALLENGE_SECONDS) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z') };
}

/** A TPM request's nonce must be a challenge of this server, unexpired and unused: it is used up here (in the activation's transaction). */
async function useChallenge(q: Queries, nonce: string, now: Date): Promise<void> {
  const t = Math.floor(now.getTime() / 1000);
  const c = await q.get<{ expires_at: number; used_at: number | null }>('SELECT expires_at, used_at FROM tpm_challenges WHERE nonce = ?', [nonce]);
  const hint = 'mlic activate --online --tpm asks the server for a fresh challenge each time: run it again';
  if (!c) throw new MlicError('TPM_QUOTE_INVALID', "the TPM quote's nonce is not a challenge this server issued", { hint });
  if (c.used_at !== null) throw new MlicError('TPM_QUOTE_INVALID', "the TPM quote's nonce was already used: a replayed request", { hint });
  if (Number(c.expires_at) < t) throw new MlicError('TPM_QUOTE_INVALID', `the TPM quote's challenge expired (it is good for ${CHALLENGE_SECONDS / 60} minutes)`, { hint });
  await q.run('UPDATE tpm_challenges SET used_at = ? WHERE nonce = ?', [t, nonce]);
}

export async function activate(q: Queries, key: VendorKey, parsed: { normalized: string; request: ActivationRequest }, now: Date, tpm?: TpmVerifyOptions): Promise<ActivationResult> {
  const { normalized, request } = parsed;
  const e = await q.get<{ id: string; customer: string; model: string; terms: string; max_hosts: number; revoked_at: number | null; seats: number | null; seat_unit: 'host' | 'gpu' | 'process' | null; lease_seconds: number | null }>(
    'SELECT id, customer, model, terms, max_hosts, revoked_at, seats, seat_unit, lease_seconds FROM entitlements WHERE key_hash = ?',
    [licenseKeyHash(normalized)],
  );
  if (!e) throw new MlicError('NO_LICENSE', 'no entitlement has this licence key', { hint: 'check the key with your vendor' });
  if (e.revoked_at !== null) throw new MlicError('LICENSE_REVOKED', 'the entitlement of this licence key was revoked', { hint: 'ask your vendor' });
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
  const have = await q.get<{ id: string; deactivated_at: number | null; revoked_at: number | null; signing_key: string | null }>('SELECT id, deactivated_at, revoked_at, signing_key FROM hosts WHERE entitlement_id = ? AND host_key = ?', [
    e.id,
    hostKey,
  ]);
  if (have?.revoked_at != null) throw new MlicError('LICENSE_REVOKED', `this host (${have.id}) was revoked by the vendor`, { hint: 'ask your vendor' });
  // The host key is public (it is in every licence): a request naming it must also come from the
  // signing key that host registered, or anyone with the licence key could take over its slot.
  if (have?.signing_key != null && have.signing_key !== request.payload.signingPublicKey)
    throw new MlicError('SIGNATURE_INVALID', 'this host key is registered under another signing key: the request is not from that host', {
      hint: 'a host that lost its state directory activates as a new host (mlic activate --request makes new keys)',
    });
  const holdsSlot = have !== undefined && have.deactivated_at === null;
  if (!holdsSlot) {
    const used = Number((await q.get<{ n: number }>('SELECT COUNT(*) AS n FROM hosts WHERE entitlement_id = ? AND deactivated_at IS NULL', [e.id]))?.n ?? 0);
    if (used >= Number(e.max_hosts))
      throw new MlicError('HOST_LIMIT_REACHED', `all ${e.max_hosts} host slots of this entitlement are in use`, {
        hint: 'deactivate a host, or ask your vendor for more hosts',
        details: { maxHosts: Number(e.max_hosts), inUse: used },
      });
  }
  // a TPM request is fresh only if it quotes a challenge of ours (a replayed one would vouch for an old state)
  if (request.payload.tpm) await useChallenge(q, request.payload.tpm.nonce, now);
  const lease = e.seats !== null && e.seat_unit !== null && e.lease_seconds !== null ? { entitlementId: e.id, unit: e.seat_unit, seats: Number(e.seats), leaseSeconds: Number(e.lease_seconds) } : undefined;
  const { license, payload } = issueLicense({ ...issueOptionsFor({ customer: e.customer, model: e.model, maxHosts: Number(e.max_hosts), terms }, key, request, now), ...(lease ? { lease } : {}), ...(tpm ? { tpm } : {}) });
  const hostId = have?.id ?? `host_${randomBytes(8).toString('hex')}`;
  if (have)
    await q.run(
      'UPDATE hosts SET license_id = ?, hostname = ?, signing_key = ?, last_seen = ?, activated_at = CASE WHEN deactivated_at IS NULL THEN activated_at ELSE ? END, deactivated_at = NULL WHERE id = ?',
      [payload.licenseId, request.payload.hostname, request.payload.signingPublicKey, t, t, have.id],
    );
  else
    await q.run('INSERT INTO hosts (id, entitlement_id, host_key, signing_key, hostname, license_id, activated_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
      hostId,
      e.id,
      hostKey,
      request.payload.signingPublicKey,
      request.payload.hostname,
      payload.licenseId,
      t,
      t,
    ]);
  const usableUntil = payload.expires ? Math.floor(Date.parse(payload.expires) / 1000) + payload.graceSeconds + payload.clockToleranceSeconds : null;
  const licenseText = serializeLicense(license);
  await q.run('INSERT INTO licenses (id, entitlement_id, host_id, issued_at, usable_until, text) VALUES (?, ?, ?, ?, ?, ?)', [payload.licenseId, e.id, hostId, t, usableUntil, licenseText]);
  return { license: licenseText, licenseId: payload.licenseId, hostId, reissued: holdsSlot };
}

export interface DeactivationResult {
  hostId: string;
  /** licences of this host newly revoked by the deactivation */
  revoked: string[];
  /** the host was already deactivated: nothing changed */
  already: boolean;
}

/** how far a host's clock may lag the server's when it signs a deactivation right after activating */
const DEACTIVATION_SKEW_S = 300;

/**
 * A host frees its slot: the deactivation must be signed by the host key the licence was issued to
 * (nobody else can free it), name one of the licences this server issued to that host, and be
 * made after the host's latest activation (so an old deactivation cannot be replayed to free a slot
 * taken again). The host's licences are revoked (reason "deactivated"): a copy kept after
 * deactivating is refused wherever the revocation list is installed.
 */
export async function deactivate(q: Queries, d: Deactivation, now: Date): Promise<DeactivationResult> {
  const t = Math.floor(now.getTime() / 1000);
  const h = await q.get<{ host_id: string; host_key: string; text: string; activated_at: number; deactivated_at: number | null }>(
    'SELECT h.id AS host_id, h.host_key, l.text, h.activated_at, h.deactivated_at FROM licenses l JOIN hosts h ON h.id = l.host_id WHERE l.id = ?',
    [d.payload.licenseId],
  );
  if (!h) throw new MlicError('IO_NOT_FOUND', `this server issued no licence ${d.payload.licenseId}`);
  // the keys the licence itself was issued to, as signed in it
  const bound = parseLicenseText(h.text).payload.host;
  if (bound.binding !== 'host' || h.host_key !== d.payload.hostPublicKey || bound.publicKey !== d.payload.hostPublicKey || bound.signingPublicKey !== d.payload.signingPublicKey)
    throw new MlicError('SIGNATURE_INVALID', `the deactivation is not signed by the host licence ${d.payload.licenseId} was issued to`);
  if (h.deactivated_at !== null) return { hostId: h.host_id, revoked: [], already: true };
  if (Date.parse(d.payload.createdAt) / 1000 < Number(h.activated_at) - DEACTIVATION_SKEW_S)
    throw new MlicError('IO_EXISTS', 'this deactivation was made before the host last activated (a replay?); make a new one', { hint: 'run `mlic deactivate` on the host again' });
  await q.run('UPDATE hosts SET deactivated_at = ?, last_seen = ? WHERE id = ?', [t, t, h.host_id]);
  const r = await revokeLicenses(q, 'host_id = ?', h.host_id, 'deactivated', t);
  return { hostId: h.host_id, revoked: r.revoked, already: false };
}
