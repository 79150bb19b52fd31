/**
 * Fleet-wide quotas (docs/FORMAT.md §13): a host asks the licence server for a block of units of
 * one of its licence's fleet meters, or gives back what it did not use, with a request signed by
 * its own key. The server answers in JSON over the connection (the answer is a figure the host
 * records in its ledger; the server's own rows are what is billed). Parsed strictly.
 */
import { MlicError } from '../errors.js';
import { ed25519Sign, ed25519Verify } from '../crypto/ed25519.js';
import { canonicalJson } from './canonical.js';
import { HEX32_RE, METRIC_RE, isB64, isIso, isPlainObject, isSafeUint, unknownKeys } from './fields.js';
import { parseJson } from './json.js';

export const RESERVATION_REQUEST_SIG_DOMAIN = 'mlic-reservation-request-v1\n';
/** a period key: a UTC day, a UTC month, or the licence's whole term */
export const PERIOD_KEY_RE = /^(\d{4}-\d{2}-\d{2}|\d{4}-\d{2}|term)$/;
const REQUEST_ID_RE = /^[0-9a-f]{32}$/;

export interface ReservationRequestPayload {
  v: 1;
  kind: 'mlic-reservation-request';
  /** reserve: ask for `amount` units (at least `min`); give-back: return `amount` unused units */
  action: 'reserve' | 'give-back';
  /** random, per request: a retried request gets the first answer again, never a second block */
  requestId: string;
  licenseId: string;
  metric: string;
  period: string;
  amount: number;
  /** reserve: the least that is of use (the call's quantity) */
  min?: number;
  /** units of this meter and period the host has consumed so far (its ledger): the server tells other hosts how many units lie unused */
  used: number;
  createdAt: string;
}

export interface ReservationRequest {
  payload: ReservationRequestPayload;
  /** base64 Ed25519 by the host's signing key over RESERVATION_REQUEST_SIG_DOMAIN || canonical(payload) */
  signature: string;
}

export function signReservationRequest(p: ReservationRequestPayload, hostSignSeed: Uint8Array): ReservationRequest {
  return { payload: p, signature: ed25519Sign(hostSignSeed, Buffer.from(RESERVATION_REQUEST_SIG_DOMAIN + canonicalJson(p))).toString('base64') };
}

export function parseReservationRequest(text: string, what = 'reservation request'): ReservationRequest {
  if (text.length > 4096) throw new MlicError('FORMAT_INVALID', `${what}: too large`);
  const v = parseJson(text, what);
  const bad = (f: string) => new MlicError('FORMAT_INVALID', `${what}: not an mlic reservation request (${f})`);
  if (!isPlainObject(v) || unknownKeys(v, ['payload', 'signature']).length || !isB64(v.signature, 64)) throw bad('shape');
  const p = v.payload;
  if (!isPlainObject(p) || p.v !== 1 || p.kind !== 'mlic-reservation-request' || unknownKeys(p, ['v', 'kind', 'action', 'requestId', 'licenseId', 'metric', 'period', 'amount', 'min', 'used', 'createdAt']).length)
    throw bad('payload');
  if (p.action !== 'reserve' && p.action !== 'give-back') throw bad('action');
  if (typeof p.requestId !== 'string' || !REQUEST_ID_RE.test(p.requestId)) throw bad('requestId');
  if (typeof p.licenseId !== 'string' || !HEX32_RE.test(p.licenseId)) throw bad('licenseId');
  if (typeof p.metric !== 'string' || !METRIC_RE.test(p.metric)) throw bad('metric');
  if (typeof p.period !== 'string' || !PERIOD_KEY_RE.test(p.period)) throw bad('period');
  if (!isSafeUint(p.amount) || p.amount < 1) throw bad('amount');
  if (p.action === 'reserve' ? !isSafeUint(p.min) || p.min < 1 || p.min > p.amount : p.min !== undefined) throw bad('min');
  if (!isSafeUint(p.used)) throw bad('used');
  if (!isIso(p.createdAt)) throw bad('createdAt');
  return v as unknown as ReservationRequest;
}

export function verifyReservationRequest(r: ReservationRequest, hostSigningPublicKey: Uint8Array): void {
  if (!ed25519Verify(hostSigningPublicKey, Buffer.from(RESERVATION_REQUEST_SIG_DOMAIN + canonicalJson(r.payload)), Buffer.from(r.signature, 'base64')))
    throw new MlicError('SIGNATURE_INVALID', 'the reservation request is not signed by the host the licence was issued to');
}

/** The fleet's figures for one meter and period, as the server counts them. */
export interface FleetFigures {
  limit: number;
  /** the limit plus the allowed overage (Number.MAX_SAFE_INTEGER: unlimited, recorded) */
  hardLimit: number;
  /** units counted as consumed: given to hosts and not given back (blocks of expired accounts count in full) */
  consumed: number;
  /** units held by hosts in live accounts, not yet given back */
  outstanding: number;
  /** of those, units other hosts hold and had not used when they last told the server: they come back as those hosts give back */
  unusedElsewhere: number;
}

/** The server's answer to a reservation request. */
export interface ReservationAnswer {
  /** the host's account for this licence, meter and period (a new one once the last expired) */
  accountId: string;
  /** reserve: units granted (0 for a give-back); give-back: units taken back */
  amount: number;
  /** of `amount`, units past the meter's limit (billed as overage) */
  overage: number;
  /** when the account's units left with the host count as consumed, unless given back first */
  expiresAt: string;
  fleet: FleetFigures;
}

const ACCOUNT_ID_RE = /^acct_[0-9a-f]{16}$/;

/** Checks the server's answer strictly (a confused or hostile server must not grow the host's pool). */
export function parseReservationAnswer(v: unknown, req: ReservationRequestPayload): ReservationAnswer {
  const bad = (f: string) => new MlicError('FORMAT_INVALID', `the licence server's reservation answer is malformed (${f})`);
  if (!isPlainObject(v)) throw bad('shape');
  if (typeof v.accountId !== 'string' || !ACCOUNT_ID_RE.test(v.accountId)) throw bad('accountId');
  if (!isSafeUint(v.amount) || v.amount > req.amount || (req.action === 'reserve' && v.amount < (req.min ?? 1))) throw bad('amount');
  if (!isSafeUint(v.overage) || v.overage > v.amount) throw bad('overage');
  if (!isIso(v.expiresAt)) throw bad('expiresAt');
  const f = v.fleet;
  if (!isFleetFigures(f)) throw bad('fleet');
  return { accountId: v.accountId, amount: v.amount, overage: v.overage, expiresAt: v.expiresAt, fleet: { limit: f.limit, hardLimit: f.hardLimit, consumed: f.consumed, outstanding: f.outstanding, unusedElsewhere: f.unusedElsewhere } };
}

export function isFleetFigures(f: unknown): f is FleetFigures {
  return isPlainObject(f) && isSafeUint(f.limit) && isSafeUint(f.hardLimit) && isSafeUint(f.consumed) && isSafeUint(f.outstanding) && isSafeUint(f.unusedElsewhere);
}

export type FleetResult =
  | { ok: true; answer: ReservationAnswer }
  /** the server said no (quota used up: the error's details have the fleet's figures), or could not be reached */
  | { ok: false; error: MlicError; unreachable: boolean };

/** How a host's ledger talks to the licence server about a fleet meter (host/quotas.ts). */
export interface FleetClient {
  /** `used`: units of this meter and period the host's ledger shows consumed */
  reserve(metric: string, period: string, amount: number, min: number, used: number, now: Date): Promise<FleetResult>;
  giveBack(metric: string, period: string, amount: number, used: number, now: Date): Promise<FleetResult>;
}
