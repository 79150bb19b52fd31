/**
 * Licence files and activation requests (docs/FORMAT.md §5, §6): types, validation and the
 * armored encoding. Pure: signing and sealing happen in src/license/.
 */
import { MlicError } from '../errors.js';
import { canonicalJson } from './canonical.js';
import { NAME_RE } from './manifest.js';
import { parseRange } from './semver-range.js';
import { parseSemver } from './semver.js';

export const LICENSE_BEGIN = '-----BEGIN MLIC LICENSE-----';
export const LICENSE_END = '-----END MLIC LICENSE-----';
export const LICENSE_SIG_DOMAIN = 'mlic-license-v1\n';
export const REQUEST_SIG_DOMAIN = 'mlic-activation-request-v1\n';

export type VersionPolicy =
  | { policy: 'range'; range: string }
  | { policy: 'pin'; version: string; bundleId?: string }
  | { policy: 'rolling' }
  | { policy: 'maintenance'; until: string; range?: string };

export type MatchPolicy = { policy: 'all' } | { policy: 'most' } | { policy: 'any' } | { policy: 'k'; k: number };

export interface FingerprintComponent {
  /** e.g. "gpu", "machine-id", "dmi-uuid", "board-serial", "cpu", "mac" */
  kind: string;
  /** HMAC-SHA256(salt, kind || 0x00 || value), hex */
  hash: string;
  /** a short, non-identifying label for messages (e.g. "GPU 0", "eth0"); never the raw value */
  label: string;
}

export interface Fingerprint {
  salt: string; // hex, 32 bytes
  components: FingerprintComponent[];
  container: boolean;
  vm: boolean;
}

export type Period = 'day' | 'month' | 'term';
export interface Meter {
  metric: string;
  limit: number;
  period: Period;
  /** 'refuse' (default) or 'allow' up to overagePercent over the limit, flagged */
  overage?: { mode: 'refuse' } | { mode: 'allow'; percent: number };
}

export interface GrantedKey {
  scope: 'bundle' | 'line' | 'model';
  /** for scope 'line' */
  line?: string;
  /** for scope 'bundle' */
  bundleId?: string;
  /** the key itself: sealed to the host ({epk, nonce, box}) for bound licences, or clear for unbound ones */
  sealed?: { epk: string; nonce: string; box: string };
  clear?: string;
}

export interface LicensePayload {
  v: 1;
  kind: 'mlic-license';
  licenseId: string; // 32 hex
  issuedAt: string;
  vendor: { keyId: string; name?: string };
  customer?: string;
  model: string;
  versions: VersionPolicy;
  notBefore: string;
  expires?: string;
  graceSeconds: number;
  clockToleranceSeconds: number;
  tier?: string;
  features: string[];
  /** undefined: every component */
  components?: string[];
  host:
    | { binding: 'unbound' }
    | { binding: 'host'; publicKey: string; signingPublicKey: string; requestId: string; hostname?: string; region?: string; fingerprint: Fingerprint; match: MatchPolicy };
  meters: Meter[];
  /** allowed regions/countries (ISO 3166 alpha-2 or region codes like "EU"); undefined: anywhere */
  regions?: string[];
  keys: GrantedKey[];
  /** how many bundles to accept for usage requirements like watermarking (issue-5 territory); carried and signed */
  requireWatermark?: boolean;
}

export interface SignedLicense {
  payload: LicensePayload;
  signature: { alg: 'ed25519'; keyId: string; sig: string };
}

const HEX32 = /^[0-9a-f]{32}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const KEYID = /^[0-9A-F]{16}$/;
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$/;
const isIso = (s: unknown): s is string => typeof s === 'string' && ISO.test(s) && !Number.isNaN(Date.parse(s));
const isB64 = (s: unknown, len?: number): boolean => typeof s === 'string' && B64.test(s) && (len === undefined || Buffer.from(s, 'base64').length === len);
export const METRIC_RE = /^[a-z][a-z0-9_.-]{0,63}$/;
export const REGION_RE = /^[A-Z]{2}$|^[A-Z][A-Za-z0-9-]{1,31}$/;

export function assertFingerprint(f: unknown, path: string, bad: string[]): void {
  const o = f as Record<string, unknown>;
  if (typeof o !== 'object' || o === null) {
    bad.push(path);
    return;
  }
  if (typeof o.salt !== 'string' || !HEX64.test(o.salt)) bad.push(`${path}.salt`);
  if (typeof o.container !== 'boolean') bad.push(`${path}.container`);
  if (typeof o.vm !== 'boolean') bad.push(`${path}.vm`);
  if (!Array.isArray(o.components) || o.components.length > 256) bad.push(`${path}.components`);
  else
    o.components.forEach((c: Record<string, unknown>, i: number) => {
      if (typeof c?.kind !== 'string' || !/^[a-z][a-z0-9-]{0,31}$/.test(c.kind)) bad.push(`${path}.components[${i}].kind`);
      if (typeof c?.hash !== 'string' || !HEX64.test(c.hash)) bad.push(`${path}.components[${i}].hash`);
      if (typeof c?.label !== 'string' || c.label.length > 64) bad.push(`${path}.components[${i}].label`);
    });
}

/** Validates a licence payload, collecting every bad field. */
export function assertLicensePayload(v: unknown): asserts v is LicensePayload {
  const o = v as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new MlicError('FORMAT_INVALID', 'licence payload is not an object');
  const bad: string[] = [];
  if (o.kind !== 'mlic-license') bad.push('kind');
  if (o.v !== 1) {
    if (o.kind === 'mlic-license' && typeof o.v === 'number') throw new MlicError('UNSUPPORTED_VERSION', `licence format version ${o.v} is not supported`, { hint: 'upgrade mlic' });
    bad.push('v');
  }
  if (typeof o.licenseId !== 'string' || !HEX32.test(o.licenseId)) bad.push('licenseId');
  if (!isIso(o.issuedAt)) bad.push('issuedAt');
  if (typeof o.vendor?.keyId !== 'string' || !KEYID.test(o.vendor.keyId)) bad.push('vendor.keyId');
  if (o.customer !== undefined && (typeof o.customer !== 'string' || o.customer.length > 256)) bad.push('customer');
  if (typeof o.model !== 'string' || !NAME_RE.test(o.model)) bad.push('model');
  const vp = o.versions;
  switch (vp?.policy) {
    case 'range':
      if (typeof vp.range !== 'string' || !parseRange(vp.range)) bad.push('versions.range');
      break;
    case 'pin':
      if (typeof vp.version !== 'string' || !parseSemver(vp.version)) bad.push('versions.version');
      if (vp.bundleId !== undefined && (typeof vp.bundleId !== 'string' || !HEX32.test(vp.bundleId))) bad.push('versions.bundleId');
      break;
    case 'rolling':
      break;
    case 'maintenance':
      if (!isIso(vp.until)) bad.push('versions.until');
      if (vp.range !== undefined && (typeof vp.range !== 'string' || !parseRange(vp.range))) bad.push('versions.range');
      break;
    default:
      bad.push('versions.policy');
  }
  if (!isIso(o.notBefore)) bad.push('notBefore');
  if (o.expires !== undefined && !isIso(o.expires)) bad.push('expires');
  if (!Number.isSafeInteger(o.graceSeconds) || o.graceSeconds < 0) bad.push('graceSeconds');
  if (!Number.isSafeInteger(o.clockToleranceSeconds) || o.clockToleranceSeconds < 0) bad.push('clockToleranceSeconds');
  if (o.tier !== undefined && (typeof o.tier !== 'string' || !NAME_RE.test(o.tier))) bad.push('tier');
  if (!Array.isArray(o.features) || !o.features.every((f: unknown) => typeof f === 'string' && NAME_RE.test(f))) bad.push('features');
  if (o.components !== undefined && (!Array.isArray(o.components) || !o.components.every((f: unknown) => typeof f === 'string' && NAME_RE.test(f)))) bad.push('components');
  const h = o.host;
  if (h?.binding === 'host') {
    if (!isB64(h.publicKey, 32)) bad.push('host.publicKey');
    if (!isB64(h.signingPublicKey, 32)) bad.push('host.signingPublicKey');
    if (typeof h.requestId !== 'string' || !HEX32.test(h.requestId)) bad.push('host.requestId');
    if (h.region !== undefined && (typeof h.region !== 'string' || !REGION_RE.test(h.region))) bad.push('host.region');
    if (h.hostname !== undefined && (typeof h.hostname !== 'string' || h.hostname.length > 255)) bad.push('host.hostname');
    assertFingerprint(h.fingerprint, 'host.fingerprint', bad);
    const m = h.match;
    if (!['all', 'most', 'any', 'k'].includes(m?.policy)) bad.push('host.match');
    else if (m.policy === 'k' && (!Number.isSafeInteger(m.k) || m.k < 1)) bad.push('host.match.k');
  } else if (h?.binding !== 'unbound') bad.push('host');
  if (!Array.isArray(o.meters)) bad.push('meters');
  else
    o.meters.forEach((m: Record<string, any>, i: number) => { // eslint-disable-line @typescript-eslint/no-explicit-any
      if (typeof m?.metric !== 'string' || !METRIC_RE.test(m.metric)) bad.push(`meters[${i}].metric`);
      if (!Number.isSafeInteger(m?.limit) || m.limit < 0) bad.push(`meters[${i}].limit`);
      if (!['day', 'month', 'term'].includes(m?.period)) bad.push(`meters[${i}].period`);
      if (m?.overage !== undefined && !(m.overage.mode === 'refuse' || (m.overage.mode === 'allow' && Number.isSafeInteger(m.overage.percent) && m.overage.percent >= 0 && m.overage.percent <= 1000)))
        bad.push(`meters[${i}].overage`);
    });
  if (o.regions !== undefined && (!Array.isArray(o.regions) || !o.regions.every((r: unknown) => typeof r === 'string' && REGION_RE.test(r)))) bad.push('regions');
  if (!Array.isArray(o.keys) || o.keys.length === 0 || o.keys.length > 128) bad.push('keys');
  else
    o.keys.forEach((k: Record<string, any>, i: number) => { // eslint-disable-line @typescript-eslint/no-explicit-any
      if (!['bundle', 'line', 'model'].includes(k?.scope)) bad.push(`keys[${i}].scope`);
      if (k?.scope === 'line' && typeof k.line !== 'string') bad.push(`keys[${i}].line`);
      if (k?.scope === 'bundle' && (typeof k.bundleId !== 'string' || !HEX32.test(k.bundleId))) bad.push(`keys[${i}].bundleId`);
      const hasSealed = k?.sealed !== undefined;
      const hasClear = k?.clear !== undefined;
      if (hasSealed === hasClear) bad.push(`keys[${i}] (exactly one of sealed, clear)`);
      if (hasSealed && !(isB64(k.sealed.epk, 32) && isB64(k.sealed.nonce, 24) && isB64(k.sealed.box, 48))) bad.push(`keys[${i}].sealed`);
      if (hasClear && !isB64(k.clear, 32)) bad.push(`keys[${i}].clear`);
      if (hasClear && h?.binding === 'host') bad.push(`keys[${i}].clear (a host-bound licence must seal its keys)`);
    });
  if (o.requireWatermark !== undefined && typeof o.requireWatermark !== 'boolean') bad.push('requireWatermark');
  if (bad.length) throw new MlicError('FORMAT_INVALID', `licence has invalid fields: ${bad.join(', ')}`, { details: { fields: bad } });
}

export function licenseSigningBytes(payload: LicensePayload): Buffer {
  return Buffer.from(LICENSE_SIG_DOMAIN + canonicalJson(payload), 'utf8');
}

function armor(begin: string, end: string, body: string): string {
  const b64 = Buffer.from(body, 'utf8').toString('base64');
  return `${begin}\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n${end}\n`;
}

export function serializeLicense(l: SignedLicense): string {
  return armor(LICENSE_BEGIN, LICENSE_END, canonicalJson(l));
}

/**
 * Parses armored licence text strictly: the text must be exactly what serializeLicense would
 * write for its content, so any changed byte (even whitespace) is rejected.
 */
export function parseLicenseText(text: string, what = 'licence'): SignedLicense {
  if (typeof text !== 'string' || text.length > 1 << 20) throw new MlicError('FORMAT_INVALID', `${what}: too large to be a licence`);
  const t = text.replace(/\r\n/g, '\n');
  const start = t.indexOf(LICENSE_BEGIN);
  const stop = t.indexOf(LICENSE_END);
  if (start < 0 || stop < start) throw new MlicError('FORMAT_INVALID', `${what}: not an mlic licence (no BEGIN/END MLIC LICENSE lines)`);
  const b64 = t.slice(start + LICENSE_BEGIN.length, stop).replace(/\n/g, '');
  if (!B64.test(b64)) throw new MlicError('FORMAT_INVALID', `${what}: licence body is not base64`);
  let obj: SignedLicense;
  try {
    obj = JSON.parse(Buffer.from(b64, 'base64').toString('utf8')) as SignedLicense;
  } catch {
    throw new MlicError('FORMAT_INVALID', `${what}: licence body is not JSON`);
  }
  if (typeof obj !== 'object' || obj === null || typeof obj.signature !== 'object' || obj.signature === null)
    throw new MlicError('FORMAT_INVALID', `${what}: licence has no signature`);
  const s = obj.signature;
  if (s.alg !== 'ed25519' || typeof s.keyId !== 'string' || !KEYID.test(s.keyId) || !isB64(s.sig, 64))
    throw new MlicError('FORMAT_INVALID', `${what}: licence signature is malformed`);
  assertLicensePayload(obj.payload);
  let canonical: string;
  try {
    canonical = serializeLicense(obj);
  } catch {
    throw new MlicError('FORMAT_INVALID', `${what}: licence is not canonical`);
  }
  // Outside the armor, only a trailing newline may follow; inside, the bytes must be canonical.
  if (t.slice(start) !== canonical && t.slice(start) + '\n' !== canonical)
    throw new MlicError('SIGNATURE_INVALID', `${what}: licence text was modified (not in canonical form)`);
  if (t.slice(0, start).trim() !== '') throw new MlicError('FORMAT_INVALID', `${what}: unexpected text before the licence`);
  return obj;
}

// ---- activation requests ----

export interface ActivationRequestPayload {
  v: 1;
  kind: 'mlic-activation-request';
  requestId: string;
  createdAt: string;
  hostPublicKey: string; // X25519, base64
  signingPublicKey: string; // Ed25519, base64 (the host signs its request and its usage reports)
  hostname: string;
  region?: string;
  customer?: string;
  fingerprint: Fingerprint;
}

export interface ActivationRequest {
  payload: ActivationRequestPayload;
  signature: string; // base64 Ed25519 by signingPublicKey over REQUEST_SIG_DOMAIN || canonical(payload)
}

export function assertActivationRequest(v: unknown): asserts v is ActivationRequest {
  const o = v as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const p = o?.payload;
  const bad: string[] = [];
  if (typeof p !== 'object' || p === null) throw new MlicError('FORMAT_INVALID', 'not an activation request (no payload)');
  if (p.kind !== 'mlic-activation-request') bad.push('payload.kind');
  if (p.v !== 1) bad.push('payload.v');
  if (typeof p.requestId !== 'string' || !HEX32.test(p.requestId)) bad.push('payload.requestId');
  if (!isIso(p.createdAt)) bad.push('payload.createdAt');
  if (!isB64(p.hostPublicKey, 32)) bad.push('payload.hostPublicKey');
  if (!isB64(p.signingPublicKey, 32)) bad.push('payload.signingPublicKey');
  if (typeof p.hostname !== 'string' || p.hostname.length > 255) bad.push('payload.hostname');
  if (p.region !== undefined && (typeof p.region !== 'string' || !REGION_RE.test(p.region))) bad.push('payload.region');
  if (p.customer !== undefined && (typeof p.customer !== 'string' || p.customer.length > 256)) bad.push('payload.customer');
  assertFingerprint(p.fingerprint, 'payload.fingerprint', bad);
  if (!isB64(o.signature, 64)) bad.push('signature');
  if (bad.length) throw new MlicError('FORMAT_INVALID', `activation request has invalid fields: ${bad.join(', ')}`, { details: { fields: bad } });
}

export function requestSigningBytes(p: ActivationRequestPayload): Buffer {
  return Buffer.from(REQUEST_SIG_DOMAIN + canonicalJson(p), 'utf8');
}

/** The payload with key material replaced by a description: safe to print. */
export function redactedPayload(p: LicensePayload): Omit<LicensePayload, 'keys'> & { keys: { scope: string; line?: string; bundleId?: string; protection: 'sealed to host' | 'clear (unbound)' }[] } {
  return {
    ...p,
    keys: p.keys.map((k) => ({ scope: k.scope, ...(k.line ? { line: k.line } : {}), ...(k.bundleId ? { bundleId: k.bundleId } : {}), protection: k.sealed ? 'sealed to host' : 'clear (unbound)' })),
  };
}
