/**
 * Floating seats (docs/FORMAT.md §12): a host asks the licence server for a lease with a request
 * signed by its own key; the server answers with a lease token signed by the vendor key, which the
 * host checks offline until it expires. Both are JSON {payload, signature}, signed over a domain
 * string and the payload's canonical JSON, and parsed strictly.
 */
import { MlicError } from '../errors.js';
import { ed25519Sign, ed25519Verify } from '../crypto/ed25519.js';
import { canonicalJson } from './canonical.js';
import { HEX32_RE, KEYID_RE, isB64, isIso, isPlainObject, isSafeUint, unknownKeys } from './fields.js';
import { parseJson } from './json.js';

export const LEASE_REQUEST_SIG_DOMAIN = 'mlic-lease-request-v1\n';
export const LEASE_SIG_DOMAIN = 'mlic-lease-v1\n';
export const SEAT_UNITS = ['host', 'gpu', 'process'] as const;
export type SeatUnit = (typeof SEAT_UNITS)[number];
/** a process's id on its host (unit process): printable, short */
export const CLIENT_ID_RE = /^[A-Za-z0-9._:-]{1,64}$/;

export interface LeaseRequestPayload {
  v: 1;
  kind: 'mlic-lease-request';
  action: 'checkout' | 'renew' | 'release';
  licenseId: string;
  /** the process asking (unit process: each one holds its own seat) */
  clientId: string;
  /** renew and release: the lease */
  leaseId?: string;
  createdAt: string;
}

export interface LeaseRequest {
  payload: LeaseRequestPayload;
  /** base64 Ed25519 by the host's signing key over LEASE_REQUEST_SIG_DOMAIN || canonical(payload) */
  signature: string;
}

export interface LeasePayload {
  v: 1;
  kind: 'mlic-lease';
  leaseId: string;
  vendor: { keyId: string };
  entitlementId: string;
  licenseId: string;
  hostPublicKey: string;
  clientId: string;
  unit: SeatUnit;
  seats: number;
  issuedAt: string;
  expiresAt: string;
}

export interface Lease {
  payload: LeasePayload;
  signature: { alg: 'ed25519'; keyId: string; sig: string };
}

const LEASE_ID_RE = /^lease_[0-9a-f]{16}$/;

export function signLeaseRequest(p: LeaseRequestPayload, hostSignSeed: Uint8Array): LeaseRequest {
  return { payload: p, signature: ed25519Sign(hostSignSeed, Buffer.from(LEASE_REQUEST_SIG_DOMAIN + canonicalJson(p))).toString('base64') };
}

/** Parses a lease request strictly; the signature is checked by verifyLeaseRequest against the licence's host key. */
export function parseLeaseRequest(text: string, what = 'lease request'): LeaseRequest {
  if (text.length > 4096) throw new MlicError('FORMAT_INVALID', `${what}: too large`);
  const v = parseJson(text, what);
  const bad = (f: string) => new MlicError('FORMAT_INVALID', `${what}: not an mlic lease request (${f})`);
  if (!isPlainObject(v) || unknownKeys(v, ['payload', 'signature']).length || !isB64(v.signature, 64)) throw bad('shape');
  const p = v.payload;
  if (!isPlainObject(p) || p.v !== 1 || p.kind !== 'mlic-lease-request' || unknownKeys(p, ['v', 'kind', 'action', 'licenseId', 'clientId', 'leaseId', 'createdAt']).length) throw bad('payload');
  if (p.action !== 'checkout' && p.action !== 'renew' && p.action !== 'release') throw bad('action');
  if (typeof p.licenseId !== 'string' || !HEX32_RE.test(p.licenseId)) throw bad('licenseId');
  if (typeof p.clientId !== 'string' || !CLIENT_ID_RE.test(p.clientId)) throw bad('clientId');
  if (p.leaseId !== undefined && (typeof p.leaseId !== 'string' || !LEASE_ID_RE.test(p.leaseId))) throw bad('leaseId');
  if (p.action !== 'checkout' && p.leaseId === undefined) throw bad('leaseId (needed to renew or release)');
  if (!isIso(p.createdAt)) throw bad('createdAt');
  return v as unknown as LeaseRequest;
}

export function verifyLeaseRequest(r: LeaseRequest, hostSigningPublicKey: Uint8Array): void {
  if (!ed25519Verify(hostSigningPublicKey, Buffer.from(LEASE_REQUEST_SIG_DOMAIN + canonicalJson(r.payload)), Buffer.from(r.signature, 'base64')))
    throw new MlicError('SIGNATURE_INVALID', 'the lease request is not signed by the host the licence was issued to');
}

export function signLease(p: LeasePayload, vendorSeed: Uint8Array): Lease {
  return { payload: p, signature: { alg: 'ed25519', keyId: p.vendor.keyId, sig: ed25519Sign(vendorSeed, Buffer.from(LEASE_SIG_DOMAIN + canonicalJson(p))).toString('base64') } };
}

export function serializeLease(l: Lease): string {
  return canonicalJson(l) + '\n';
}

/** Parses a lease token strictly (no signature check: verifyLease). */
export function parseLease(text: string, what = 'lease'): Lease {
  if (text.length > 4096) throw new MlicError('FORMAT_INVALID', `${what}: too large`);
  const v = parseJson(text, what);
  const bad = (f: string) => new MlicError('FORMAT_INVALID', `${what}: not an mlic lease (${f})`);
  if (!isPlainObject(v) || unknownKeys(v, ['payload', 'signature']).length) throw bad('shape');
  const p = v.payload;
  const fields = ['v', 'kind', 'leaseId', 'vendor', 'entitlementId', 'licenseId', 'hostPublicKey', 'clientId', 'unit', 'seats', 'issuedAt', 'expiresAt'];
  if (!isPlainObject(p) || p.v !== 1 || p.kind !== 'mlic-lease' || unknownKeys(p, fields).length) throw bad('payload');
  if (typeof p.leaseId !== 'string' || !LEASE_ID_RE.test(p.leaseId)) throw bad('leaseId');
  if (!isPlainObject(p.vendor) || unknownKeys(p.vendor, ['keyId']).length || typeof p.vendor.keyId !== 'string' || !KEYID_RE.test(p.vendor.keyId)) throw bad('vendor');
  if (typeof p.entitlementId !== 'string' || !/^ent_[0-9a-f]{16}$/.test(p.entitlementId)) throw bad('entitlementId');
  if (typeof p.licenseId !== 'string' || !HEX32_RE.test(p.licenseId)) throw bad('licenseId');
  if (!isB64(p.hostPublicKey, 32)) throw bad('hostPublicKey');
  if (typeof p.clientId !== 'string' || !CLIENT_ID_RE.test(p.clientId)) throw bad('clientId');
  if (!(SEAT_UNITS as readonly unknown[]).includes(p.unit)) throw bad('unit');
  if (!isSafeUint(p.seats) || p.seats < 1) throw bad('seats');
  if (!isIso(p.issuedAt) || !isIso(p.expiresAt) || Date.parse(p.expiresAt) <= Date.parse(p.issuedAt)) throw bad('times');
  const s = v.signature;
  if (!isPlainObject(s) || unknownKeys(s, ['alg', 'keyId', 'sig']).length || s.alg !== 'ed25519' || s.keyId !== p.vendor.keyId || !isB64(s.sig, 64)) throw bad('signature');
  return v as unknown as Lease;
}

export function verifyLease(l: Lease, vendorPublicKey: Uint8Array, what = 'lease'): void {
  if (!ed25519Verify(vendorPublicKey, Buffer.from(LEASE_SIG_DOMAIN + canonicalJson(l.payload)), Buffer.from(l.signature.sig, 'base64')))
    throw new MlicError('SIGNATURE_INVALID', `${what}: the vendor signature does not verify; the lease was modified or is not from this vendor`);
}
