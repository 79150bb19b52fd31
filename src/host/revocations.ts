/**
 * Revocation lists on the host (docs/FORMAT.md §9): one per vendor key, in
 * `revocations/<KEYID>.json`, installed only when signed by a trusted vendor key and not older
 * than the one installed (a lower serial is ROLLBACK_REFUSED). Every licence decision reads them: a
 * listed licence is refused with LICENSE_REVOKED, offline as online.
 */
import { readFile, readdir } from 'node:fs/promises';
import { MlicError, fromFsError } from '../errors.js';
import { parseRevocationList, serializeRevocationList, verifyRevocationList, type RevocationList, type RevokedLicense } from '../format/revocation.js';
import { FileLock } from '../state/lock.js';
import type { StateDir } from '../state/home.js';
import { writeSmallFileAtomic } from '../util/atomic.js';
import { Journal } from './journal.js';
import { callServer } from './server-client.js';

export interface InstallResult {
  keyId: string;
  serial: number;
  /** the serial installed before (0: none) */
  previous: number;
  status: 'installed' | 'unchanged';
  revoked: number;
  /** installed licences this list revokes */
  revokesInstalled: string[];
}

const fileOf = (state: StateDir, keyId: string) => state.path('revocations', `${keyId}.json`);

async function readInstalled(state: StateDir, keyId: string): Promise<RevocationList | undefined> {
  let text: string;
  try {
    text = await readFile(fileOf(state, keyId), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromFsError(e, fileOf(state, keyId));
  }
  const l = parseRevocationList(text, fileOf(state, keyId));
  const pk = await state.trusted(keyId);
  // a list whose vendor is no longer trusted revokes nothing that could still be used
  if (pk) verifyRevocationList(l, pk.publicKey, fileOf(state, keyId));
  return l;
}

/** Verifies a list against the trusted vendor key it names and installs it unless an equal or newer one is installed. */
export async function installRevocationList(state: StateDir, text: string, what = 'revocation list'): Promise<InstallResult> {
  const l = parseRevocationList(text, what);
  const keyId = l.payload.vendor.keyId;
  const pk = await state.trusted(keyId);
  if (!pk)
    throw new MlicError('UNTRUSTED_VENDOR', `${what} is signed by vendor key ${keyId}, which this host does not trust`, {
      hint: "add the vendor's public key with `mlic trust add vendor.pub` (check it with the vendor first)",
    });
  verifyRevocationList(l, pk.publicKey, what);
  await state.ensure('revocations');
  // one installer at a time: two racing installs must not leave the lower serial on disk
  const lock = new FileLock(state.path('revocations', '.lock'));
  await lock.acquire();
  try {
    const have = await readInstalled(state, keyId);
    const previous = have?.payload.serial ?? 0;
    const installed = new Set((await state.licenseTexts()).map((t) => /([0-9a-f]{32})\.lic$/.exec(t.path)?.[1]));
    const revokesInstalled = l.payload.licenses.map((e) => e.id).filter((id) => installed.has(id));
    const base = { keyId, serial: l.payload.serial, previous, revoked: l.payload.licenses.length, revokesInstalled };
    if (have && have.payload.serial > l.payload.serial)
      throw new MlicError('ROLLBACK_REFUSED', `${what} has serial ${l.payload.serial}, older than the installed list (serial ${have.payload.serial}) of vendor key ${keyId}`, {
        hint: 'a newer list is already installed; nothing to do',
        details: { installed: have.payload.serial, offered: l.payload.serial },
      });
    if (have && have.payload.serial === l.payload.serial) return { ...base, status: 'unchanged' };
    await writeSmallFileAtomic(fileOf(state, keyId), serializeRevocationList(l), { mode: 0o600, force: true, sync: true });
    // then the clock record names it: deleting the list, or putting an older one back, is tampering
    const host = await state.hostIdentity({ create: true });
    const journal = await Journal.open(state, host, { licensed: (await state.licenseTexts()).length > 0 });
    try {
      await journal.bindRevocationList(keyId, l.payload.serial);
    } finally {
      await journal.close();
    }
    return { ...base, status: 'installed' };
  } finally {
    await lock.release();
  }
}

/** What the installed lists revoke, per vendor key id: the list's serial and its licences. */
export type Revoked = Map<string, { serial: number; licenses: Map<string, RevokedLicense> }>;

export async function loadRevoked(state: StateDir): Promise<Revoked> {
  const out: Revoked = new Map();
  for (const l of await loadRevokedLists(state)) out.set(l.payload.vendor.keyId, { serial: l.payload.serial, licenses: new Map(l.payload.licenses.map((e) => [e.id, e])) });
  return out;
}

/** The installed lists, for `mlic revocations list`. */
export async function installedLists(state: StateDir): Promise<{ keyId: string; serial: number; issuedAt: string; revoked: number }[]> {
  const r = await loadRevokedLists(state);
  return r.map((l) => ({ keyId: l.payload.vendor.keyId, serial: l.payload.serial, issuedAt: l.payload.issuedAt, revoked: l.payload.licenses.length }));
}

async function loadRevokedLists(state: StateDir): Promise<RevocationList[]> {
  let names: string[];
  try {
    names = (await readdir(state.path('revocations'))).filter((n) => /^[0-9A-F]{16}\.json$/.test(n)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fromFsError(e, state.path('revocations'));
  }
  const out: RevocationList[] = [];
  for (const n of names) {
    const l = await readInstalled(state, n.slice(0, 16));
    if (l) out.push(l);
  }
  return out;
}

/** The list a licence server publishes (GET /v1/revocations). */
export async function fetchRevocationList(server: string): Promise<string> {
  const a = await callServer(server, 'v1/revocations');
  if (!a.ok) throw new MlicError('IO_ERROR', `the licence server answered ${a.status} for its revocation list`);
  return a.text;
}
