/**
 * Floating seats on the host: a licence with `lease` terms is used only under a live lease from
 * the vendor's licence server (docs/SERVER.md, docs/FORMAT.md §12). The lease token is kept in
 * `leases/<licenceId>.<clientId>.json` and checked offline (the vendor's signature, this licence,
 * this host, not expired), so a host keeps working through a server outage until its lease ends;
 * a missing or expired one is checked out (or renewed) from the server the host activated with.
 */
import { readFile, readdir, unlink } from 'node:fs/promises';
import { MlicError, fromFsError } from '../errors.js';
import { isoSeconds } from '../format/fields.js';
import type { LicensePayload } from '../format/license.js';
import { parseLease, serializeLease, signLeaseRequest, verifyLease, type Lease, type LeaseRequestPayload } from '../format/lease.js';
import type { HostIdentity, StateDir } from '../state/home.js';
import { writeSmallFileAtomic } from '../util/atomic.js';
import { callServer, expectField } from './server-client.js';

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');

/** The process's id for `process` seats; hosts and GPUs are leased per host. */
export function clientIdFor(l: LicensePayload): string {
  return l.lease?.unit === 'process' ? `pid-${process.pid}` : 'host';
}

const fileOf = (state: StateDir, licenseId: string, clientId: string) => state.path('leases', `${licenseId}.${clientId}.json`);

/** The stored lease for this licence and client, if it is valid now (signature, licence, host, expiry); else why not. */
async function stored(state: StateDir, host: HostIdentity, l: LicensePayload, clientId: string, now: Date): Promise<{ lease?: Lease; expired?: Lease }> {
  let text: string;
  try {
    text = await readFile(fileOf(state, l.licenseId, clientId), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw fromFsError(e, fileOf(state, l.licenseId, clientId));
  }
  let lease: Lease;
  try {
    lease = parseLease(text);
    const pk = await state.trusted(lease.payload.vendor.keyId);
    if (!pk || lease.payload.vendor.keyId !== l.vendor.keyId) return {};
    verifyLease(lease, pk.publicKey);
  } catch {
    return {}; // a damaged or forged file is as good as none: check out a new lease
  }
  const p = lease.payload;
  if (p.licenseId !== l.licenseId || p.entitlementId !== l.lease?.entitlementId || p.hostPublicKey !== b64(host.boxPublic) || p.clientId !== clientId) return {};
  return Date.parse(p.expiresAt) > now.getTime() ? { lease } : { expired: lease };
}

const requestBody = (payload: LeaseRequestPayload, host: HostIdentity) => ({ request: JSON.stringify(signLeaseRequest(payload, host.signSeed)) });

/**
 * A live lease for this licence, from the store or from the server. Throws SEAT_UNAVAILABLE (all
 * seats taken, or no server to ask), LEASE_EXPIRED (the lease ran out and the server cannot be
 * reached), or the server's refusal.
 */
export async function ensureLease(state: StateDir, host: HostIdentity, l: LicensePayload, now: Date, o: { renew?: boolean } = {}): Promise<Lease> {
  const clientId = clientIdFor(l);
  const have = await stored(state, host, l, clientId, now);
  // renew: ask the server even with a live lease (it extends the one this host holds)
  if (have.lease && !o.renew) return have.lease;
  const server = await state.serverUrl();
  if (!server)
    throw new MlicError('SEAT_UNAVAILABLE', `licence ${l.licenseId} is used under floating seats, and this host knows no licence server to lease one from`, {
      hint: 'activate online (mlic activate --online URL --license-key KEY) so that the host knows its server',
    });
  const payload: LeaseRequestPayload = {
    v: 1,
    kind: 'mlic-lease-request',
    action: 'checkout',
    licenseId: l.licenseId,
    clientId,
    createdAt: isoSeconds(now),
  };
  let answer;
  try {
    answer = await callServer(server, 'v1/leases', { body: requestBody(payload, host), timeoutMs: 30_000 });
  } catch (e) {
    if (!(e instanceof MlicError) || e.code !== 'IO_ERROR') throw e;
    const why = e.message.replace(/^cannot reach the licence server at \S+: /, '');
    if (have.expired)
      throw new MlicError('LEASE_EXPIRED', `the lease of licence ${l.licenseId} ended at ${have.expired.payload.expiresAt} and the licence server cannot be reached (${why})`, {
        hint: 'it resumes by itself once the server is reachable again',
      });
    throw new MlicError('SEAT_UNAVAILABLE', `no lease for licence ${l.licenseId}: the licence server at ${server} cannot be reached (${why})`, { hint: 'try again when it is reachable' });
  }
  expectField(answer, 'lease', 'lease');
  const lease = parseLease(String(answer.json!.lease), "the server's lease");
  const pk = await state.trusted(lease.payload.vendor.keyId);
  if (!pk || lease.payload.vendor.keyId !== l.vendor.keyId) throw new MlicError('UNTRUSTED_VENDOR', `the server's lease is signed by vendor key ${lease.payload.vendor.keyId}, not this licence's`);
  verifyLease(lease, pk.publicKey, "the server's lease");
  const p = lease.payload;
  const other =
    p.licenseId !== l.licenseId ? `licence ${p.licenseId}` : p.entitlementId !== l.lease?.entitlementId ? `entitlement ${p.entitlementId}` : p.hostPublicKey !== b64(host.boxPublic) ? 'another host' : p.clientId !== clientId ? `process ${p.clientId}` : undefined;
  if (other) throw new MlicError('HW_MISMATCH', `the server's lease is for ${other}, not for this host's licence ${l.licenseId}`);
  await state.ensure('leases');
  await writeSmallFileAtomic(fileOf(state, l.licenseId, clientId), serializeLease(lease), { mode: 0o600, force: true });
  return lease;
}

/** The leases stored on this host, for `mlic leases`. */
export async function listLeases(state: StateDir, now: Date): Promise<{ leaseId: string; licenseId: string; clientId: string; unit: string; seats: number; expiresAt: string; live: boolean }[]> {
  let names: string[];
  try {
    names = (await readdir(state.path('leases'))).filter((n) => /^[0-9a-f]{32}\.[A-Za-z0-9._:-]{1,64}\.json$/.test(n)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fromFsError(e, state.path('leases'));
  }
  const out = [];
  for (const n of names) {
    try {
      const l = parseLease(await readFile(state.path('leases', n), 'utf8'), n);
      const p = l.payload;
      out.push({ leaseId: p.leaseId, licenseId: p.licenseId, clientId: p.clientId, unit: p.unit, seats: p.seats, expiresAt: p.expiresAt, live: Date.parse(p.expiresAt) > now.getTime() });
    } catch {
      /* a damaged file is not a lease */
    }
  }
  return out;
}

/** Gives a process seat back (a process's own lease, on close); host and GPU leases are shared by the host's processes and run out by themselves. */
export async function releaseLease(state: StateDir, host: HostIdentity, l: LicensePayload, now: Date): Promise<void> {
  if (l.lease?.unit !== 'process') return;
  const clientId = clientIdFor(l);
  const have = await stored(state, host, l, clientId, now);
  const lease = have.lease ?? have.expired;
  if (!lease) return;
  const server = await state.serverUrl();
  if (server)
    await callServer(server, 'v1/leases', {
      body: requestBody({ v: 1, kind: 'mlic-lease-request', action: 'release', licenseId: l.licenseId, clientId, leaseId: lease.payload.leaseId, createdAt: isoSeconds(now) }, host),
      timeoutMs: 30_000,
    }).catch(() => undefined);
  await unlink(fileOf(state, l.licenseId, clientId)).catch(() => undefined);
}
