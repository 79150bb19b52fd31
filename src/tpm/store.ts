/**
 * A TPM-bound host's key file, tpm.json in the state directory (docs/FORMAT.md §7.1), and the host
 * keys it stands for. It holds only blobs that the host's TPM alone can load (their private parts
 * are encrypted under keys that never leave the chip): the attestation key (AK), a child of the
 * endorsement key (EK), that quotes activation requests and activates the licences' credentials;
 * and the host key, an HMAC key under the storage hierarchy's root key (SRK), from which the
 * host's own keys are computed by the TPM, once per process:
 *
 *   material  = HMAC-SHA-256 in the TPM (host HMAC key, "mlic/v1/host-keys")
 *   boxSecret = HKDF-SHA-256(material, "mlic/v1/tpm-host", "box")    (X25519: licences seal to it)
 *   signSeed  = HKDF-SHA-256(material, "mlic/v1/tpm-host", "sign")   (Ed25519: requests, usage
 *               reports; the usage ledger's and the audit log's MAC keys derive from it)
 *
 * So a TPM host keeps no key on disk: host.json says only that the host is TPM-bound, and a copy
 * of the state directory anywhere else (another machine, a cloned VM with a fresh TPM) yields
 * nothing but blobs that no other TPM can load (TPM_KEY_UNAVAILABLE).
 */
import { createHash, createPublicKey } from 'node:crypto';
import { MlicError } from '../errors.js';
import { readJsonIfPresent } from '../util/files.js';
import { hkdfSha256 } from '../crypto/kdf.js';
import { HEX64_RE, isB64, isPlainObject, unknownKeys } from '../format/fields.js';
import { writeSmallFileAtomic } from '../util/atomic.js';
import { createAttestationKey, createHmacKey, tpmHmac, type AttestationKey, type SealedHmacKey } from './host.js';
import { tctiOf, type TpmOptions } from './tools.js';

/** Where a state directory keeps its files (src/state/home.ts's StateDir). */
export interface StatePlace {
  readonly dir: string;
  path(...p: string[]): string;
  ensure(sub?: string): Promise<string>;
}

export interface TpmKeys extends AttestationKey {
  ekHash: string;
  hostKey: SealedHmacKey;
}

interface TpmFile {
  v: 1;
  ekHash: string;
  ekPublic: string;
  ekCertificate?: string;
  akPublic: string;
  akPrivate: string;
  akName: string;
  hostKeyPublic: string;
  hostKeyPrivate: string;
  createdAt: string;
}

const FIELDS = ['v', 'ekHash', 'ekPublic', 'ekCertificate', 'akPublic', 'akPrivate', 'akName', 'hostKeyPublic', 'hostKeyPrivate', 'createdAt'];
const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
export const spkiDer = (pem: string): Buffer => createPublicKey(pem).export({ type: 'spki', format: 'der' });
export const ekHashOf = (der: Uint8Array): string => createHash('sha256').update(der).digest('hex');

/** The host's TPM key file, or undefined when there is none. */
export async function loadTpmKey(state: StatePlace): Promise<TpmKeys | undefined> {
  const path = state.path('tpm.json');
  const hint = 'restore it from a backup of this host, or activate again in a new state directory';
  const f = await readJsonIfPresent(path, hint);
  if (f === undefined) return undefined;
  const ok =
    isPlainObject(f) &&
    unknownKeys(f, FIELDS).length === 0 &&
    f.v === 1 &&
    typeof f.ekHash === 'string' &&
    HEX64_RE.test(f.ekHash) &&
    typeof f.ekPublic === 'string' &&
    f.ekPublic.includes('BEGIN PUBLIC KEY') &&
    (f.ekCertificate === undefined || isB64(f.ekCertificate)) &&
    isB64(f.akPublic) &&
    isB64(f.akPrivate) &&
    typeof f.akName === 'string' &&
    /^000b[0-9a-f]{64}$/.test(f.akName) &&
    isB64(f.hostKeyPublic) &&
    isB64(f.hostKeyPrivate);
  if (!ok) throw new MlicError('FORMAT_INVALID', `${path}: corrupt TPM key file`, { hint });
  const t = f as unknown as TpmFile;
  return {
    ekHash: t.ekHash,
    ekPublic: t.ekPublic,
    ...(t.ekCertificate ? { ekCertificate: Buffer.from(t.ekCertificate, 'base64') } : {}),
    akPublic: Buffer.from(t.akPublic, 'base64'),
    akPrivate: Buffer.from(t.akPrivate, 'base64'),
    akName: Buffer.from(t.akName, 'hex'),
    hostKey: { public: Buffer.from(t.hostKeyPublic, 'base64'), private: Buffer.from(t.hostKeyPrivate, 'base64') },
  };
}

/** The host's TPM keys: the stored ones, or new ones made in the TPM and stored (of processes racing, one wins). */
export async function ensureTpmKey(state: StatePlace, o: TpmOptions, now: Date): Promise<TpmKeys> {
  const have = await loadTpmKey(state);
  if (have) return have;
  const opts = { ...o, tcti: o.tcti ?? tctiOf() };
  const ak = await createAttestationKey(opts);
  const hostKey = await createHmacKey(opts);
  const f: TpmFile = {
    v: 1,
    ekHash: ekHashOf(spkiDer(ak.ekPublic)),
    ekPublic: ak.ekPublic,
    ...(ak.ekCertificate ? { ekCertificate: b64(ak.ekCertificate) } : {}),
    akPublic: b64(ak.akPublic),
    akPrivate: b64(ak.akPrivate),
    akName: Buffer.from(ak.akName).toString('hex'),
    hostKeyPublic: b64(hostKey.public),
    hostKeyPrivate: b64(hostKey.private),
    createdAt: now.toISOString(),
  };
  await state.ensure();
  try {
    await writeSmallFileAtomic(state.path('tpm.json'), JSON.stringify(f, null, 2) + '\n', { mode: 0o600, force: false });
  } catch (e) {
    if (!(e instanceof MlicError && e.code === 'IO_EXISTS')) throw e;
  }
  return (await loadTpmKey(state))!;
}

const derived = new Map<string, { boxSecret: Buffer; signSeed: Buffer }>();

/** The host's keys, computed by its TPM (once per process). TPM_KEY_UNAVAILABLE without the key file or on another TPM. */
export async function tpmHostSecrets(state: StatePlace, o: TpmOptions = {}): Promise<{ boxSecret: Buffer; signSeed: Buffer }> {
  const k = await loadTpmKey(state);
  if (!k)
    throw new MlicError('TPM_KEY_UNAVAILABLE', `this host's keys are in its TPM, and ${state.path('tpm.json')} (the TPM key file) is missing`, {
      hint: 'restore it from a backup of this host; without it, activate again in a new state directory',
    });
  const tcti = o.tcti ?? tctiOf();
  const id = createHash('sha256').update(tcti).update('\0').update(k.hostKey.public).update(k.hostKey.private).digest('hex');
  let d = derived.get(id);
  if (!d) {
    const material = await tpmHmac(k.hostKey, Buffer.from('mlic/v1/host-keys'), { ...o, tcti });
    const salt = Buffer.from('mlic/v1/tpm-host');
    d = { boxSecret: hkdfSha256(material, salt, 'box'), signSeed: hkdfSha256(material, salt, 'sign') };
    material.fill(0);
    derived.set(id, d);
  }
  return { boxSecret: Buffer.from(d.boxSecret), signSeed: Buffer.from(d.signSeed) };
}
