/**
 * Two small signed documents of the online flow (docs/FORMAT.md §9):
 *
 * - the revocation list: the vendor key signs which licences are revoked, with a serial that only
 *   grows, so a host can refuse a revoked licence offline and refuse an older list (no rollback);
 * - the deactivation: the host key signs "free my slot", so nobody else can free it.
 *
 * Both are JSON {payload, signature}, signed over a domain string and the payload's canonical JSON,
 * and parsed strictly: exactly the defined fields, bounded sizes.
 */
import { MlicError } from '../errors.js';
import { ed25519Sign, ed25519Verify } from '../crypto/ed25519.js';
import { canonicalJson } from './canonical.js';
import { HEX32_RE, KEYID_RE, isB64, isFormatVersion, isIso, isPlainObject, isSafeUint, unknownKeys } from './fields.js';
import { parseJson } from './json.js';

export const REVOCATION_LIST_VERSION = 1;
export const REVOCATION_SIG_DOMAIN = 'mlic-revocation-list-v1\n';
export const DEACTIVATION_VERSION = 1;
export const DEACTIVATION_SIG_DOMAIN = 'mlic-deactivation-v1\n';
/** a list of 100,000 revoked licences is about 10 MB */
export const MAX_REVOCATION_LIST_BYTES = 32 << 20;
export const MAX_REVOCATION_ENTRIES = 250_000;

export const REVOCATION_REASONS = ['revoked', 'deactivated', 'host revoked', 'entitlement revoked'] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

export interface RevokedLicense {
  /** the licence id */
  id: string;
  revokedAt: string;
  reason: RevocationReason;
}

export interface RevocationListPayload {
  v: 1;
  kind: 'mlic-revocation-list';
  vendor: { keyId: string };
  /** grows with every change (at least the server's time in ms); a host never installs a lower one */
  serial: number;
  issuedAt: string;
  /** sorted by id, no duplicates */
  licenses: RevokedLicense[];
}

export interface RevocationList {
  payload: RevocationListPayload;
  signature: { alg: 'ed25519'; keyId: string; sig: string };
}

export function revocationSigningBytes(p: RevocationListPayload): Buffer {
  return Buffer.from(REVOCATION_SIG_DOMAIN + canonicalJson(p), 'utf8');
}

export function signRevocationList(p: RevocationListPayload, seed: Uint8Array): RevocationList {
  return { payload: p, signature: { alg: 'ed25519', keyId: p.vendor.keyId, sig: ed25519Sign(seed, revocationSigningBytes(p)).toString('base64') } };
}

/** The bytes a list is served and stored as: canonical JSON and a newline. */
export function serializeRevocationList(l: RevocationList): string {
  return canonicalJson(l) + '\n';
}

const bad = (what: string, field: string) => new MlicError('FORMAT_INVALID', `${what}: not a revocation list (bad ${field})`);

/** Parses a revocation list strictly (no signature check: see verifyRevocationList). */
export function parseRevocationList(text: string, what = 'revocation list'): RevocationList {
  if (text.length > MAX_REVOCATION_LIST_BYTES) throw new MlicError('FORMAT_INVALID', `${what}: too large to be a revocation list`);
  const v = parseJson(text, what);
  if (!isPlainObject(v) || unknownKeys(v, ['payload', 'signature']).length) throw bad(what, 'shape: it must hold exactly a payload and a signature');
  const p = v.payload;
  if (!isPlainObject(p) || p.kind !== 'mlic-revocation-list') throw bad(what, 'payload.kind');
  if (isFormatVersion(p.v) && p.v !== REVOCATION_LIST_VERSION)
    throw new MlicError('UNSUPPORTED_VERSION', `${what}: version ${p.v} is not supported (this mlic reads version ${REVOCATION_LIST_VERSION})`, { hint: 'upgrade mlic' });
  if (unknownKeys(p, ['v', 'kind', 'vendor', 'serial', 'issuedAt', 'licenses']).length) throw bad(what, 'payload (unknown field)');
  if (!isPlainObject(p.vendor) || unknownKeys(p.vendor, ['keyId']).length || typeof p.vendor.keyId !== 'string' || !KEYID_RE.test(p.vendor.keyId)) throw bad(what, 'payload.vendor');
  if (!isSafeUint(p.serial)) throw bad(what, 'payload.serial');
  if (!isIso(p.issuedAt)) throw bad(what, 'payload.issuedAt');
  if (!Array.isArray(p.licenses) || p.licenses.length > MAX_REVOCATION_ENTRIES) throw bad(what, 'payload.licenses');
  let prev = '';
  for (const e of p.licenses as unknown[]) {
    if (!isPlainObject(e) || unknownKeys(e, ['id', 'revokedAt', 'reason']).length) throw bad(what, 'payload.licenses[]');
    if (typeof e.id !== 'string' || !HEX32_RE.test(e.id) || e.id <= prev) throw bad(what, 'payload.licenses[].id (hex, sorted, no duplicates)');
    if (!isIso(e.revokedAt) || !(REVOCATION_REASONS as readonly unknown[]).includes(e.reason)) throw bad(what, 'payload.licenses[]');
    prev = e.id;
  }
  const s = v.signature;
  if (!isPlainObject(s) || unknownKeys(s, ['alg', 'keyId', 'sig']).length || s.alg !== 'ed25519' || s.keyId !== p.vendor.keyId || !isB64(s.sig, 64)) throw bad(what, 'signature');
  return v as unknown as RevocationList;
}

/** Checks the vendor's signature with its public key. */
export function verifyRevocationList(l: RevocationList, publicKey: Uint8Array, what = 'revocation list'): void {
  if (!ed25519Verify(publicKey, revocationSigningBytes(l.payload), Buffer.from(l.signature.sig, 'base64')))
    throw new MlicError('SIGNATURE_INVALID', `${what}: the vendor signature does not verify; the list was modified or is not from this vendor`);
}

// ---- deactivation ----

export interface DeactivationPayload {
  v: 1;
  kind: 'mlic-deactivation';
  /** the licence whose slot is freed */
  licenseId: string;
  hostPublicKey: string;
  signingPublicKey: string;
  createdAt: string;
}

export interface Deactivation {
  payload: DeactivationPayload;
  /** base64 Ed25519 by signingPublicKey over DEACTIVATION_SIG_DOMAIN || canonical(payload) */
  signature: string;
}

export function deactivationSigningBytes(p: DeactivationPayload): Buffer {
  return Buffer.from(DEACTIVATION_SIG_DOMAIN + canonicalJson(p), 'utf8');
}

export function signDeactivation(p: DeactivationPayload, seed: Uint8Array): Deactivation {
  return { payload: p, signature: ed25519Sign(seed, deactivationSigningBytes(p)).toString('base64') };
}

/** Parses a deactivation strictly and checks the host's signature over it (who may free the slot is the server's decision). */
export function parseDeactivation(text: string, what = 'deactivation'): Deactivation {
  if (text.length > 4096) throw new MlicError('FORMAT_INVALID', `${what}: too large`);
  const v = parseJson(text, what);
  if (!isPlainObject(v) || unknownKeys(v, ['payload', 'signature']).length) throw new MlicError('FORMAT_INVALID', `${what}: it must hold exactly a payload and a signature`);
  const p = v.payload;
  if (!isPlainObject(p) || p.kind !== 'mlic-deactivation' || p.v !== DEACTIVATION_VERSION || unknownKeys(p, ['v', 'kind', 'licenseId', 'hostPublicKey', 'signingPublicKey', 'createdAt']).length)
    throw new MlicError('FORMAT_INVALID', `${what}: not an mlic deactivation (v${DEACTIVATION_VERSION})`);
  if (typeof p.licenseId !== 'string' || !HEX32_RE.test(p.licenseId) || !isB64(p.hostPublicKey, 32) || !isB64(p.signingPublicKey, 32) || !isIso(p.createdAt) || !isB64(v.signature, 64))
    throw new MlicError('FORMAT_INVALID', `${what}: malformed field`);
  const d = v as unknown as Deactivation;
  if (!ed25519Verify(Buffer.from(d.payload.signingPublicKey, 'base64'), deactivationSigningBytes(d.payload), Buffer.from(d.signature, 'base64')))
    throw new MlicError('SIGNATURE_INVALID', `${what}: the host's signature does not verify`);
  return d;
}
