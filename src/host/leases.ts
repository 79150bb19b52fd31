/**
 * Floating seats on the host: a licence with `lease` terms is used only under a live lease from
 * the vendor's licence server (docs/SERVER.md, docs/FORMAT.md §12). The lease token is kept in
 * `leases/<licenceId>.<clientId>.json` with the host's time of receipt, and checked offline (the
 * vendor's signature, this licence, entitlement, host and process, not over), so a host keeps
 * working through a server outage until its lease ends; a missing or ended one is checked out
 * (or renewed) from the server the host activated with.
 *
 * A lease lasts, on the host, its duration (expiresAt - issuedAt) from when the host received it,
 * by the host's clock: a host whose clock is ahead of or behind the server's (within the licence's
 * clock tolerance, which the server checks) holds it for as long as the server counts it, no
 * longer and no shorter.
 */
import { mkdir, readFile, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { FileLock, processAlive, processMark } from '../state/lock.js';
import { MlicError, fromFsError } from '../errors.js';
import { isIso, isoSeconds } from '../format/fields.js';
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

/** A lease as the host holds it: the token, and when it ends by the host's clock (ms). */
export interface HeldLease {
  lease: Lease;
  endsAt: number;
}

/** The stored file: the token's text and when the host received it (docs/FORMAT.md §12). */
function storedText(lease: Lease, receivedAt: Date): string {
  return JSON.stringify({ v: 1, receivedAt: receivedAt.toISOString(), lease: serializeLease(lease).trimEnd() }) + '\n';
}

function parseStored(text: string, what: string): { lease: Lease; receivedAt: number } {
  const v = JSON.parse(text) as { v?: unknown; receivedAt?: unknown; lease?: unknown };
  if (v.v !== 1 || typeof v.lease !== 'string' || !isIso(v.receivedAt)) throw new MlicError('FORMAT_INVALID', `${what}: not a stored lease`);
  return { lease: parseLease(v.lease, what), receivedAt: Date.parse(v.receivedAt) };
}

const durationOf = (l: Lease) => Date.parse(l.payload.expiresAt) - Date.parse(l.payload.issuedAt);

/** The stored lease for this licence and client, if it is valid now (signature, licence, entitlement, host, process, not over); else why not. */
async function stored(state: StateDir, host: HostIdentity, l: LicensePayload, clientId: string, now: Date): Promise<{ lease?: HeldLease; expired?: HeldLease }> {
  let text: string;
  try {
    text = await readFile(fileOf(state, l.licenseId, clientId), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw fromFsError(e, fileOf(state, l.licenseId, clientId));
  }
  let lease: Lease;
  let receivedAt: number;
  try {
    ({ lease, receivedAt } = parseStored(text, 'stored lease'));
    const pk = await state.trusted(lease.payload.vendor.keyId);
    if (!pk || lease.payload.vendor.keyId !== l.vendor.keyId) return {};
    verifyLease(lease, pk.publicKey);
  } catch {
    return {}; // a damaged or forged file is as good as none: check out a new lease
  }
  const p = lease.payload;
  if (p.licenseId !== l.licenseId || p.entitlementId !== l.lease?.entitlementId || p.hostPublicKey !== b64(host.boxPublic) || p.clientId !== clientId) return {};
  // received in the future: the clock went back since (the decision's high-water mark says so); no lease
  if (receivedAt > now.getTime() + 60_000) return {};
  const held = { lease, endsAt: receivedAt + durationOf(lease) };
  return held.endsAt > now.getTime() ? { lease: held } : { expired: held };
}

const requestBody = (payload: LeaseRequestPayload, host: HostIdentity) => ({ request: JSON.stringify(signLeaseRequest(payload, host.signSeed)) });

/**
 * A live lease for this licence, from the store or from the server. Throws SEAT_UNAVAILABLE (all
 * seats taken, or no server to ask), LEASE_EXPIRED (the lease ran out and the server cannot be
 * reached), or the server's refusal. `renew`: extends the stored lease (live or ended), and does
 * nothing when none is stored (it was given back).
 *
 * A host or GPU lease is shared by the host's processes: asking the server, storing the answer and
 * giving the lease back (keepLease) happen under the licence's lease lock, so that no checkout or
 * renewal answered after a give-back can store a lease the server has already taken back (which
 * another host may then be using).
 */
export async function ensureLease(state: StateDir, host: HostIdentity, l: LicensePayload, now: Date, o: { renew?: boolean } = {}): Promise<HeldLease> {
  if (l.lease?.unit === 'process') return ensureLeaseHere(state, host, l, now, o);
  return underLeaseLock(state, l.licenseId, () => ensureLeaseHere(state, host, l, now, o));
}

/** ensureLease, with the lease lock held by the caller (shared leases). */
async function ensureLeaseHere(state: StateDir, host: HostIdentity, l: LicensePayload, now: Date, o: { renew?: boolean } = {}): Promise<HeldLease> {
  const clientId = clientIdFor(l);
  const have = await stored(state, host, l, clientId, now);
  // renew: ask the server even with a live lease (it extends the one this host holds)
  if (have.lease && !o.renew) return have.lease;
  if (o.renew && !have.lease && !have.expired) throw new MlicError('LEASE_EXPIRED', `licence ${l.licenseId} holds no lease to renew (it was given back)`);
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
      throw new MlicError('LEASE_EXPIRED', `the lease of licence ${l.licenseId} ended at ${new Date(have.expired.endsAt).toISOString()} and the licence server cannot be reached (${why})`, {
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
  // received now, by this host's clock (not when the request was made: the answer may have been slow)
  const receivedAt = new Date(Math.max(now.getTime(), Date.now()));
  await writeSmallFileAtomic(fileOf(state, l.licenseId, clientId), storedText(lease, receivedAt), { mode: 0o600, force: true });
  return { lease, endsAt: receivedAt.getTime() + durationOf(lease) };
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
      const { lease, receivedAt } = parseStored(await readFile(state.path('leases', n), 'utf8'), n);
      const p = lease.payload;
      const endsAt = receivedAt + durationOf(lease);
      out.push({ leaseId: p.leaseId, licenseId: p.licenseId, clientId: p.clientId, unit: p.unit, seats: p.seats, expiresAt: new Date(endsAt).toISOString(), live: endsAt > now.getTime() });
    } catch {
      /* a damaged file is not a lease */
    }
  }
  return out;
}

/** Tells the server a lease is given back (best effort: a lease not given back ends by itself) and forgets it here. */
async function giveLeaseBack(state: StateDir, host: HostIdentity, l: LicensePayload, clientId: string, now: Date): Promise<void> {
  const have = await stored(state, host, l, clientId, now);
  const lease = (have.lease ?? have.expired)?.lease;
  if (!lease) return;
  const server = await state.serverUrl();
  if (server)
    await callServer(server, 'v1/leases', {
      body: requestBody({ v: 1, kind: 'mlic-lease-request', action: 'release', licenseId: l.licenseId, clientId, leaseId: lease.payload.leaseId, createdAt: isoSeconds(now) }, host),
      timeoutMs: 10_000,
    }).catch(() => undefined);
  await unlink(fileOf(state, l.licenseId, clientId)).catch(() => undefined);
}

/** Gives a process seat back (a process's own lease, on close); host and GPU leases are shared by the host's processes (keepLease gives them back with the last one). */
export async function releaseLease(state: StateDir, host: HostIdentity, l: LicensePayload, now: Date): Promise<void> {
  if (l.lease?.unit !== 'process') return;
  await giveLeaseBack(state, host, l, clientIdFor(l), now);
}

/** A lease kept alive in the background: renewed at about a third of its duration until stop(). */
export interface KeptLease {
  /** when the lease ends (host clock, ms) unless a renewal reaches the server first */
  endsAt(): number;
  /** stops renewing and gives the lease back: a process seat at once, a host's (host and GPU seats) when its last holder stops */
  stop(): Promise<void>;
}

/**
 * Host and GPU seats are one lease per host, shared by its processes: each process that keeps it
 * is a holder (a file `leases/<licenceId>.holders/<pid>`), and the last holder to stop (or the
 * first to stop after the others died) gives it back, so that a host that is done frees its seats
 * at once instead of at the lease's end. Holders come and go under `leases/<licenceId>.lock`: a
 * process that registers after the last holder gave the lease back finds no lease stored and
 * checks out a new one.
 */
async function underLeaseLock<T>(state: StateDir, licenseId: string, fn: () => Promise<T>): Promise<T> {
  await state.ensure('leases');
  // held across a call to the server (at most 30 s), so waiters wait longer than that
  const lock = new FileLock(state.path('leases', `${licenseId}.lock`), 75_000);
  await lock.acquire();
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

const holdersOf = (state: StateDir, licenseId: string) => state.path('leases', `${licenseId}.holders`);

/**
 * Keeps `held` renewed every third of the licence's lease duration (at least every second). A
 * renewal that fails (the server is away, or the seat was taken) changes nothing: the lease then
 * ends at its time, and the caller refuses from then on (validate(): lease_expired; run: SIGTERM).
 */
export async function keepLease(state: StateDir, host: HostIdentity, l: LicensePayload, held: HeldLease, clock: () => Date = () => new Date()): Promise<KeptLease> {
  const shared = l.lease?.unit !== 'process';
  const me = join(holdersOf(state, l.licenseId), String(process.pid));
  if (shared)
    held = await underLeaseLock(state, l.licenseId, async () => {
      await mkdir(holdersOf(state, l.licenseId), { recursive: true, mode: 0o700 });
      await writeSmallFileAtomic(me, processMark(), { mode: 0o600, force: true });
      // the last holder may have given the lease back since we found it: then check out anew
      const now = clock();
      return (await stored(state, host, l, clientIdFor(l), now)).lease ?? ensureLeaseHere(state, host, l, now);
    });
  let ends = held.endsAt;
  let stopped = false;
  const timer = setInterval(
    () => {
      if (stopped) return;
      void ensureLease(state, host, l, clock(), { renew: true }).then(
        (h) => (ends = h.endsAt),
        () => undefined,
      );
    },
    Math.max(1000, ((l.lease?.leaseSeconds ?? 900) * 1000) / 3),
  );
  timer.unref();
  return {
    endsAt: () => ends,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      if (!shared) return releaseLease(state, host, l, clock()).catch(() => undefined);
      await underLeaseLock(state, l.licenseId, async () => {
        await unlink(me).catch(() => undefined);
        let others = 0;
        for (const n of await readdir(holdersOf(state, l.licenseId)).catch(() => [] as string[])) {
          const mark = await readFile(join(holdersOf(state, l.licenseId), n), 'utf8').catch(() => '');
          if (mark && processAlive(mark)) others++;
          else await unlink(join(holdersOf(state, l.licenseId), n)).catch(() => undefined); // a holder that died
        }
        if (others === 0) await giveLeaseBack(state, host, l, clientIdFor(l), clock());
      }).catch(() => undefined);
    },
  };
}
