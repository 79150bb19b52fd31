/**
 * Licence files and activation requests, version 2 (docs/FORMAT.md §5, §6): types, strict
 * validation and the armored encoding. Pure: signing and sealing happen in src/license/.
 *
 * Both are parsed as hostile input: bounded size and nesting, exactly the defined fields at every
 * level (an unknown field is an error, never carried along), every value validated. The same
 * validation runs on the vendor's side before signing and on the host before trusting.
 */
import { createHash } from 'node:crypto';
import { MlicError } from '../errors.js';
import { canonicalJson } from './canonical.js';
import { HEX32_RE, HEX64_RE, KEYID_RE, METRIC_RE, NAME_RE, REGION_RE, isB64, isFormatVersion, isIso, isPlainObject, isSafeUint, unknownKeys } from './fields.js';
import { parseJson } from './json.js';
import { parseRange } from './semver-range.js';
import { parseSemver } from './semver.js';

export { METRIC_RE, REGION_RE } from './fields.js';

export const LICENSE_VERSION = 2;
export const REQUEST_VERSION = 2;
export const LICENSE_BEGIN = '-----BEGIN MLIC LICENSE-----';
export const LICENSE_END = '-----END MLIC LICENSE-----';
export const LICENSE_SIG_DOMAIN = 'mlic-license-v2\n';
export const REQUEST_SIG_DOMAIN = 'mlic-activation-request-v2\n';
export const MAX_LICENSE_BYTES = 1 << 20;
export const MAX_REQUEST_BYTES = 256 << 10;
export const MAX_GRANTS = 256;
export const MAX_COMPONENTS = 64;

export type VersionPolicy =
  | { policy: 'range'; range: string }
  | { policy: 'pin'; version: string; bundleId: string }
  | { policy: 'rolling' }
  | { policy: 'maintenance'; until: string; range?: string };

export type MatchPolicy = { policy: 'all' } | { policy: 'most' } | { policy: 'any' } | { policy: 'k'; k: number };

/** The fingerprint kinds mlic probes (src/hardware/probe.ts). */
export const COMPONENT_KINDS = ['gpu', 'machine-id', 'dmi-uuid', 'board-serial', 'cpu', 'mac', 'tpm'] as const;

export interface FingerprintComponent {
  kind: (typeof COMPONENT_KINDS)[number];
  /** HMAC-SHA256(salt, kind || 0x00 || value), hex */
  hash: string;
  /** a short, non-identifying label for messages (e.g. "GPU 0", "NIC eth0"); never the raw value */
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
  /** 'refuse' (default), 'allow' up to `percent` over the limit, or 'record': allow any amount; usage past the limit is flagged overage */
  overage?: { mode: 'refuse' } | { mode: 'allow'; percent: number } | { mode: 'record' };
  /** 'fleet': counted by the vendor's licence server for the whole entitlement (hosts reserve blocks, §13); absent: counted per host */
  scope?: 'fleet';
}
export const MAX_OVERAGE_PERCENT = 1000;

export type Sealed = { sealed: { epk: string; nonce: string; box: string }; clear?: undefined } | { clear: string; sealed?: undefined };

/**
 * A key the licence grants (docs/FORMAT.md §4): one bundle's key (a pin), or the key of node
 * (depth, prefix) of the model's "major" or "zero" line tree, which opens exactly the lines below
 * it. Sealed to the host's key for host-bound licences, clear for unbound ones.
 */
export type GrantedKey = ({ scope: 'bundle'; bundleId: string } | { scope: 'lines'; tree: 'major' | 'zero'; depth: number; prefix: number }) & Sealed;

export interface HostBinding {
  binding: 'host';
  publicKey: string;
  signingPublicKey: string;
  requestId: string;
  hostname?: string;
  region?: string;
  fingerprint: Fingerprint;
  match: MatchPolicy;
  /** a TPM-bound host (§5.1): the keys need this TPM as well as the host key */
  tpm?: TpmBinding;
}

/**
 * The TPM half of a host binding (docs/FORMAT.md §5.1): a credential (TPM2_MakeCredential) that
 * only the TPM holding the endorsement key `ekHash` names can activate, and only for the
 * attestation key `akName`. It releases the 32-byte secret that unmasks every grant.
 */
export interface TpmBinding {
  /** SHA-256 of the EK's SubjectPublicKeyInfo (DER), hex */
  ekHash: string;
  /** the AK's TPM name (0x000b || SHA-256 of its TPMT_PUBLIC), hex */
  akName: string;
  /** TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET, base64 */
  credential: { blob: string; secret: string };
}

/** PCR values, sha256 bank: index ("0".."23") to hex. */
export interface PcrValues {
  sha256: Record<string, string>;
}

/** The TPM attestation in an activation request (docs/FORMAT.md §6.1). */
export interface TpmAttestation {
  /** the EK's SubjectPublicKeyInfo (DER), base64 */
  ekPublic: string;
  /** the EK certificate from the TPM's NV (DER), base64, when the TPM has one */
  ekCertificate?: string;
  /** the AK's TPM2B_PUBLIC, base64 */
  akPublic: string;
  /** 16 random bytes, hex: fresh for each request */
  nonce: string;
  /** the quoted PCRs' values */
  pcrs: PcrValues;
  /** the AK's quote (TPMS_ATTEST and TPMT_SIGNATURE, base64) over tpmQualifyingData(payload) */
  quote: { attest: string; signature: string };
}

export interface LicensePayload {
  v: 2;
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
  host: { binding: 'unbound' } | HostBinding;
  meters: Meter[];
  /** allowed regions/countries (ISO 3166 alpha-2 or region codes like "EU"); undefined: anywhere */
  regions?: string[];
  keys: GrantedKey[];
  /** outputs must be watermarked (e.g. a free tier) */
  requireWatermark?: boolean;
  /** the key that watermarks this licence's outputs (§5.2): sealed to the host like the grants, or clear in an unbound licence */
  watermark?: Sealed;
  /** keys for the bundles marked for this licence alone (mlic mark; docs/TRACING.md): they open no common bundle */
  marked?: true;
  /** floating seats: every use needs a live lease from the vendor's licence server (§12) */
  lease?: LeaseTerms;
}

export interface LeaseTerms {
  entitlementId: string;
  unit: 'host' | 'gpu' | 'process';
  /** the entitlement's seats when the licence was issued (for messages) */
  seats: number;
  leaseSeconds: number;
}

export interface SignedLicense {
  payload: LicensePayload;
  signature: { alg: 'ed25519'; keyId: string; sig: string };
}

/** Free text a licence carries (customer reference, vendor name): printable, no control or bidi characters. */
// eslint-disable-next-line no-control-regex
const TEXT_RE = /^[^\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]*$/;
export function isText(s: unknown, max: number): s is string {
  return typeof s === 'string' && s.length <= max && TEXT_RE.test(s);
}
/** Fingerprint labels: printable ASCII (src/hardware/probe.ts writes them so). */
const LABEL_RE = /^[\x20-\x7e]{1,96}$/;
const HOSTNAME_RE = /^[A-Za-z0-9._-]{1,255}$/;

/** Collects bad field paths; `obj` checks that a value is an object with exactly the allowed keys. */
class Problems {
  readonly bad: string[] = [];
  add(path: string): void {
    this.bad.push(path);
  }
  obj(v: unknown, path: string, allowed: readonly string[]): v is Record<string, any> { // eslint-disable-line @typescript-eslint/no-explicit-any
    if (!isPlainObject(v)) {
      this.add(path);
      return false;
    }
    for (const k of unknownKeys(v, allowed)) this.add(`${path ? `${path}.` : ''}${k} (unknown field)`);
    return true;
  }
  check(ok: boolean, path: string): void {
    if (!ok) this.add(path);
  }
  fail(what: string): void {
    if (this.bad.length) throw new MlicError('FORMAT_INVALID', `${what} has invalid fields: ${this.bad.slice(0, 20).join(', ')}${this.bad.length > 20 ? ', ...' : ''}`, { details: { fields: this.bad.slice(0, 100) } });
  }
}

const nameList = (v: unknown, max: number) => Array.isArray(v) && v.length <= max && v.every((f) => typeof f === 'string' && NAME_RE.test(f)) && new Set(v).size === v.length;

function checkFingerprint(f: unknown, path: string, p: Problems): void {
  if (!p.obj(f, path, ['salt', 'components', 'container', 'vm'])) return;
  p.check(typeof f.salt === 'string' && HEX64_RE.test(f.salt), `${path}.salt`);
  p.check(typeof f.container === 'boolean', `${path}.container`);
  p.check(typeof f.vm === 'boolean', `${path}.vm`);
  if (!Array.isArray(f.components) || f.components.length > MAX_COMPONENTS) return p.add(`${path}.components`);
  f.components.forEach((c: unknown, i: number) => {
    const at = `${path}.components[${i}]`;
    if (!p.obj(c, at, ['kind', 'hash', 'label'])) return;
    p.check((COMPONENT_KINDS as readonly unknown[]).includes(c.kind), `${at}.kind`);
    p.check(typeof c.hash === 'string' && HEX64_RE.test(c.hash), `${at}.hash`);
    p.check(typeof c.label === 'string' && LABEL_RE.test(c.label), `${at}.label`);
  });
}

const b64Max = (s: unknown, max: number) => isB64(s) && s.length > 0 && Buffer.from(s, 'base64').length <= max;
const PCR_INDEX_RE = /^(?:[0-9]|1[0-9]|2[0-3])$/;

function checkPcrValues(v: unknown, path: string, p: Problems): void {
  if (!p.obj(v, path, ['sha256'])) return;
  const bank = v.sha256;
  if (!isPlainObject(bank) || Object.keys(bank).length === 0 || Object.keys(bank).length > 24) return p.add(`${path}.sha256`);
  for (const [k, val] of Object.entries(bank)) p.check(PCR_INDEX_RE.test(k) && typeof val === 'string' && HEX64_RE.test(val), `${path}.sha256.${k.slice(0, 8)}`);
}

function checkTpmAttestation(t: unknown, path: string, p: Problems): void {
  if (!p.obj(t, path, ['ekPublic', 'ekCertificate', 'akPublic', 'nonce', 'pcrs', 'quote'])) return;
  p.check(b64Max(t.ekPublic, 2048), `${path}.ekPublic`);
  p.check(t.ekCertificate === undefined || b64Max(t.ekCertificate, 8192), `${path}.ekCertificate`);
  p.check(b64Max(t.akPublic, 1024), `${path}.akPublic`);
  p.check(typeof t.nonce === 'string' && HEX32_RE.test(t.nonce), `${path}.nonce`);
  checkPcrValues(t.pcrs, `${path}.pcrs`, p);
  if (p.obj(t.quote, `${path}.quote`, ['attest', 'signature'])) {
    p.check(b64Max(t.quote.attest, 1024), `${path}.quote.attest`);
    p.check(b64Max(t.quote.signature, 1024), `${path}.quote.signature`);
  }
}

function checkTpmBinding(t: unknown, path: string, p: Problems): void {
  if (!p.obj(t, path, ['ekHash', 'akName', 'credential'])) return;
  p.check(typeof t.ekHash === 'string' && HEX64_RE.test(t.ekHash), `${path}.ekHash`);
  p.check(typeof t.akName === 'string' && /^000b[0-9a-f]{64}$/.test(t.akName), `${path}.akName`);
  if (p.obj(t.credential, `${path}.credential`, ['blob', 'secret'])) {
    p.check(b64Max(t.credential.blob, 256), `${path}.credential.blob`);
    p.check(b64Max(t.credential.secret, 1024), `${path}.credential.secret`);
  }
}

function checkVersions(vp: unknown, p: Problems): void {
  const policy = isPlainObject(vp) ? vp.policy : undefined;
  const fields: Record<string, string[]> = { range: ['policy', 'range'], pin: ['policy', 'version', 'bundleId'], rolling: ['policy'], maintenance: ['policy', 'until', 'range'] };
  if (typeof policy !== 'string' || !fields[policy]) return p.add('versions.policy');
  if (!p.obj(vp, 'versions', fields[policy]!)) return;
  switch (policy) {
    case 'range':
      p.check(typeof vp.range === 'string' && parseRange(vp.range) !== undefined, 'versions.range');
      break;
    case 'pin':
      p.check(typeof vp.version === 'string' && parseSemver(vp.version) !== undefined, 'versions.version');
      p.check(typeof vp.bundleId === 'string' && HEX32_RE.test(vp.bundleId), 'versions.bundleId');
      break;
    case 'maintenance':
      p.check(isIso(vp.until), 'versions.until');
      p.check(vp.range === undefined || (typeof vp.range === 'string' && parseRange(vp.range) !== undefined), 'versions.range');
      break;
  }
}

function checkGrant(k: unknown, i: number, bound: boolean, p: Problems): void {
  const at = `keys[${i}]`;
  const scope = isPlainObject(k) ? k.scope : undefined;
  const fields = scope === 'bundle' ? ['scope', 'bundleId', 'sealed', 'clear'] : scope === 'lines' ? ['scope', 'tree', 'depth', 'prefix', 'sealed', 'clear'] : undefined;
  if (!fields) return p.add(`${at}.scope`);
  if (!p.obj(k, at, fields)) return;
  if (scope === 'bundle') p.check(typeof k.bundleId === 'string' && HEX32_RE.test(k.bundleId), `${at}.bundleId`);
  else {
    p.check(k.tree === 'major' || k.tree === 'zero', `${at}.tree`);
    const depthOk = Number.isSafeInteger(k.depth) && k.depth >= 0 && k.depth <= 32;
    p.check(depthOk, `${at}.depth`);
    p.check(depthOk && isSafeUint(k.prefix) && k.prefix < 2 ** k.depth, `${at}.prefix`);
  }
  const hasSealed = k.sealed !== undefined;
  const hasClear = k.clear !== undefined;
  if (hasSealed === hasClear) return p.add(`${at} (exactly one of sealed, clear)`);
  if (hasSealed && p.obj(k.sealed, `${at}.sealed`, ['epk', 'nonce', 'box'])) p.check(isB64(k.sealed.epk, 32) && isB64(k.sealed.nonce, 24) && isB64(k.sealed.box, 48), `${at}.sealed`);
  if (hasClear) p.check(isB64(k.clear, 32), `${at}.clear`);
  if (hasClear && bound) p.add(`${at}.clear (a host-bound licence must seal its keys)`);
  if (hasSealed && !bound) p.add(`${at}.sealed (an unbound licence has no host key to seal to)`);
}

const PAYLOAD_FIELDS = ['v', 'kind', 'licenseId', 'issuedAt', 'vendor', 'customer', 'model', 'versions', 'notBefore', 'expires', 'graceSeconds', 'clockToleranceSeconds', 'tier', 'features', 'components', 'host', 'meters', 'regions', 'keys', 'requireWatermark', 'watermark', 'lease', 'marked'];

/** Validates a licence payload, collecting every bad field: what a host accepts, and all a vendor may sign. */
export function assertLicensePayload(v: unknown): asserts v is LicensePayload {
  if (!isPlainObject(v)) throw new MlicError('FORMAT_INVALID', 'licence payload is not an object');
  if (v.kind === 'mlic-license' && isFormatVersion(v.v) && v.v !== LICENSE_VERSION)
    throw new MlicError('UNSUPPORTED_VERSION', `licence format version ${v.v} is not supported (this mlic reads version ${LICENSE_VERSION})`, {
      hint: v.v < LICENSE_VERSION ? 'ask your vendor to re-issue the licence with a current mlic' : 'upgrade mlic',
    });
  const p = new Problems();
  p.obj(v, '', PAYLOAD_FIELDS);
  p.check(v.kind === 'mlic-license', 'kind');
  p.check(v.v === LICENSE_VERSION, 'v');
  p.check(typeof v.licenseId === 'string' && HEX32_RE.test(v.licenseId), 'licenseId');
  p.check(isIso(v.issuedAt), 'issuedAt');
  if (p.obj(v.vendor, 'vendor', ['keyId', 'name'])) {
    p.check(typeof v.vendor.keyId === 'string' && KEYID_RE.test(v.vendor.keyId), 'vendor.keyId');
    p.check(v.vendor.name === undefined || (isText(v.vendor.name, 128) && NAME_RE.test(v.vendor.name)), 'vendor.name');
  }
  p.check(v.customer === undefined || isText(v.customer, 256), 'customer');
  p.check(typeof v.model === 'string' && NAME_RE.test(v.model), 'model');
  checkVersions(v.versions, p);
  p.check(isIso(v.notBefore), 'notBefore');
  p.check(v.expires === undefined || (isIso(v.expires) && isIso(v.notBefore) && Date.parse(v.expires) > Date.parse(v.notBefore)), 'expires');
  p.check(isSafeUint(v.graceSeconds) && v.graceSeconds <= 10 * 365 * 86400, 'graceSeconds');
  p.check(isSafeUint(v.clockToleranceSeconds) && v.clockToleranceSeconds <= 365 * 86400, 'clockToleranceSeconds');
  p.check(v.tier === undefined || (typeof v.tier === 'string' && NAME_RE.test(v.tier)), 'tier');
  p.check(nameList(v.features, 256), 'features');
  p.check(v.components === undefined || (nameList(v.components, 256) && (v.components as unknown[]).length > 0), 'components');
  if (v.lease !== undefined && p.obj(v.lease, 'lease', ['entitlementId', 'unit', 'seats', 'leaseSeconds'])) {
    p.check(typeof v.lease.entitlementId === 'string' && /^ent_[0-9a-f]{16}$/.test(v.lease.entitlementId), 'lease.entitlementId');
    p.check(v.lease.unit === 'host' || v.lease.unit === 'gpu' || v.lease.unit === 'process', 'lease.unit');
    p.check(isSafeUint(v.lease.seats) && v.lease.seats >= 1, 'lease.seats');
    p.check(isSafeUint(v.lease.leaseSeconds) && v.lease.leaseSeconds >= 60 && v.lease.leaseSeconds <= 7 * 86400, 'lease.leaseSeconds');
    p.check(isPlainObject(v.host) && v.host.binding === 'host', 'lease (a licence with seats is bound to a host)');
  }
  const h = v.host;
  const bound = isPlainObject(h) && h.binding === 'host';
  if (bound) {
    if (p.obj(h, 'host', ['binding', 'publicKey', 'signingPublicKey', 'requestId', 'hostname', 'region', 'fingerprint', 'match', 'tpm'])) {
      if (h.tpm !== undefined) checkTpmBinding(h.tpm, 'host.tpm', p);
      p.check(isB64(h.publicKey, 32), 'host.publicKey');
      p.check(isB64(h.signingPublicKey, 32), 'host.signingPublicKey');
      p.check(typeof h.requestId === 'string' && HEX32_RE.test(h.requestId), 'host.requestId');
      p.check(h.region === undefined || (typeof h.region === 'string' && REGION_RE.test(h.region)), 'host.region');
      p.check(h.hostname === undefined || (typeof h.hostname === 'string' && HOSTNAME_RE.test(h.hostname)), 'host.hostname');
      checkFingerprint(h.fingerprint, 'host.fingerprint', p);
      const m = h.match;
      const policy = isPlainObject(m) ? m.policy : undefined;
      if (policy === 'k') {
        if (p.obj(m, 'host.match', ['policy', 'k'])) p.check(Number.isSafeInteger(m.k) && m.k >= 1 && m.k <= MAX_COMPONENTS, 'host.match.k');
      } else if (policy === 'all' || policy === 'most' || policy === 'any') p.obj(m, 'host.match', ['policy']);
      else p.add('host.match');
    }
  } else p.check(isPlainObject(h) && h.binding === 'unbound' && unknownKeys(h, ['binding']).length === 0, 'host');
  if (!Array.isArray(v.meters) || v.meters.length > 64) p.add('meters');
  else {
    const metrics = new Set<unknown>();
    v.meters.forEach((m: unknown, i: number) => {
      const at = `meters[${i}]`;
      if (!p.obj(m, at, ['metric', 'limit', 'period', 'overage', 'scope'])) return;
      p.check(m.scope === undefined || (m.scope === 'fleet' && bound), `${at}.scope`);
      p.check(typeof m.metric === 'string' && METRIC_RE.test(m.metric), `${at}.metric`);
      if (metrics.has(m.metric)) p.add(`${at}.metric (duplicate)`);
      metrics.add(m.metric);
      p.check(isSafeUint(m.limit), `${at}.limit`);
      p.check(['day', 'month', 'term'].includes(m.period as string), `${at}.period`);
      const o = m.overage;
      if (o !== undefined) {
        const mode = isPlainObject(o) ? o.mode : undefined;
        if (mode === 'refuse' || mode === 'record') p.obj(o, `${at}.overage`, ['mode']);
        else if (mode === 'allow') {
          if (p.obj(o, `${at}.overage`, ['mode', 'percent'])) p.check(isSafeUint(o.percent) && o.percent <= MAX_OVERAGE_PERCENT, `${at}.overage.percent`);
        } else p.add(`${at}.overage`);
      }
    });
  }
  p.check(v.regions === undefined || (Array.isArray(v.regions) && v.regions.length > 0 && v.regions.length <= 64 && v.regions.every((r: unknown) => typeof r === 'string' && REGION_RE.test(r))), 'regions');
  if (!Array.isArray(v.keys) || v.keys.length === 0 || v.keys.length > MAX_GRANTS) p.add('keys');
  else v.keys.forEach((k: unknown, i: number) => checkGrant(k, i, bound, p));
  p.check(v.requireWatermark === undefined || v.requireWatermark === true, 'requireWatermark');
  if (v.watermark !== undefined) {
    p.check(v.requireWatermark === true, 'watermark (only with requireWatermark)');
    const w = v.watermark;
    if (!isPlainObject(w) || (w.sealed === undefined) === (w.clear === undefined)) p.add('watermark (exactly one of sealed, clear)');
    else if (w.sealed !== undefined) {
      if (p.obj(w, 'watermark', ['sealed']) && p.obj(w.sealed, 'watermark.sealed', ['epk', 'nonce', 'box']))
        p.check(isB64(w.sealed.epk, 32) && isB64(w.sealed.nonce, 24) && isB64(w.sealed.box, 48), 'watermark.sealed');
      p.check(bound, 'watermark.sealed (an unbound licence has no host key to seal to)');
    } else {
      if (p.obj(w, 'watermark', ['clear'])) p.check(isB64(w.clear, 32), 'watermark.clear');
      p.check(!bound, 'watermark.clear (a host-bound licence must seal its keys)');
    }
  }
  p.check(v.marked === undefined || v.marked === true, 'marked');
  p.fail('licence');
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
 * Parses armored licence text strictly: exactly {payload, signature} with exactly the defined
 * fields, and the text must be exactly what serializeLicense writes for its content (only a
 * missing final newline is tolerated), so no byte can change and no field can be added.
 */
export function parseLicenseText(text: string, what = 'licence'): SignedLicense {
  if (typeof text !== 'string' || text.length > MAX_LICENSE_BYTES) throw new MlicError('FORMAT_INVALID', `${what}: too large to be a licence`);
  const start = text.indexOf(LICENSE_BEGIN);
  const stop = text.indexOf(LICENSE_END);
  if (start < 0 || stop < start) throw new MlicError('FORMAT_INVALID', `${what}: not an mlic licence (no BEGIN/END MLIC LICENSE lines)`);
  if (text.slice(0, start).trim() !== '') throw new MlicError('FORMAT_INVALID', `${what}: unexpected text before the licence`);
  const b64 = text.slice(start + LICENSE_BEGIN.length, stop).replace(/\n/g, '');
  if (!isB64(b64)) throw new MlicError('FORMAT_INVALID', `${what}: licence body is not base64`);
  const obj = parseJson(Buffer.from(b64, 'base64').toString('utf8'), `${what}: licence body`);
  if (!isPlainObject(obj) || unknownKeys(obj, ['payload', 'signature']).length || !isPlainObject(obj.signature) || unknownKeys(obj.signature, ['alg', 'keyId', 'sig']).length)
    throw new MlicError('FORMAT_INVALID', `${what}: not a licence: it must hold exactly a payload and a signature {alg, keyId, sig}`);
  const s = obj.signature;
  if (s.alg !== 'ed25519' || typeof s.keyId !== 'string' || !KEYID_RE.test(s.keyId) || !isB64(s.sig, 64)) throw new MlicError('FORMAT_INVALID', `${what}: licence signature is malformed`);
  assertLicensePayload(obj.payload);
  const l = obj as unknown as SignedLicense;
  if (text.slice(start) !== serializeLicense(l) && text.slice(start) + '\n' !== serializeLicense(l))
    throw new MlicError('SIGNATURE_INVALID', `${what}: licence text was modified (not in canonical form)`);
  return l;
}

// ---- activation requests ----

export interface ActivationRequestPayload {
  v: 2;
  kind: 'mlic-activation-request';
  requestId: string;
  createdAt: string;
  hostPublicKey: string; // X25519, base64
  signingPublicKey: string; // Ed25519, base64 (the host signs its request and its usage reports)
  hostname: string;
  region?: string;
  customer?: string;
  fingerprint: Fingerprint;
  /** present when the host key is bound to a TPM (§6.1) */
  tpm?: TpmAttestation;
}

export interface ActivationRequest {
  payload: ActivationRequestPayload;
  signature: string; // base64 Ed25519 by signingPublicKey over REQUEST_SIG_DOMAIN || canonical(payload)
}

/** Validates an activation request strictly: exactly the defined fields, each validated (docs/FORMAT.md §6). */
export function assertActivationRequest(v: unknown, what = 'activation request'): asserts v is ActivationRequest {
  if (!isPlainObject(v) || !isPlainObject(v.payload)) throw new MlicError('FORMAT_INVALID', `${what}: not an activation request (no payload)`);
  const pl = v.payload;
  if (pl.kind === 'mlic-activation-request' && isFormatVersion(pl.v) && pl.v !== REQUEST_VERSION)
    throw new MlicError('UNSUPPORTED_VERSION', `${what}: activation request version ${pl.v} is not supported (this mlic reads version ${REQUEST_VERSION})`, {
      hint: pl.v < REQUEST_VERSION ? 'make a new request with `mlic activate --request` using a current mlic' : 'upgrade mlic',
    });
  const p = new Problems();
  p.obj(v, '', ['payload', 'signature']);
  p.obj(pl, 'payload', ['v', 'kind', 'requestId', 'createdAt', 'hostPublicKey', 'signingPublicKey', 'hostname', 'region', 'customer', 'fingerprint', 'tpm']);
  p.check(pl.kind === 'mlic-activation-request', 'payload.kind');
  p.check(pl.v === REQUEST_VERSION, 'payload.v');
  p.check(typeof pl.requestId === 'string' && HEX32_RE.test(pl.requestId), 'payload.requestId');
  p.check(isIso(pl.createdAt), 'payload.createdAt');
  p.check(isB64(pl.hostPublicKey, 32), 'payload.hostPublicKey');
  p.check(isB64(pl.signingPublicKey, 32), 'payload.signingPublicKey');
  p.check(typeof pl.hostname === 'string' && HOSTNAME_RE.test(pl.hostname), 'payload.hostname');
  p.check(pl.region === undefined || (typeof pl.region === 'string' && REGION_RE.test(pl.region)), 'payload.region');
  p.check(pl.customer === undefined || isText(pl.customer, 256), 'payload.customer');
  checkFingerprint(pl.fingerprint, 'payload.fingerprint', p);
  if (pl.tpm !== undefined) checkTpmAttestation(pl.tpm, 'payload.tpm', p);
  p.check(isB64(v.signature, 64), 'signature');
  p.fail(what);
}

export function parseRequestText(text: string, what = 'activation request'): ActivationRequest {
  if (text.length > MAX_REQUEST_BYTES) throw new MlicError('FORMAT_INVALID', `${what}: too large to be an activation request`);
  const v = parseJson(text, what);
  assertActivationRequest(v, what);
  return v;
}

export function requestSigningBytes(p: ActivationRequestPayload): Buffer {
  return Buffer.from(REQUEST_SIG_DOMAIN + canonicalJson(p), 'utf8');
}

export const TPM_QUOTE_DOMAIN = 'mlic-tpm-quote-v1\n';

/**
 * What a TPM request's quote must carry as qualifying data (§6.1): SHA-256 over the domain and
 * the canonical payload with `tpm.quote` left out, so the quote covers every other field (the
 * host keys, the fingerprint, the nonce, the PCR values) and belongs to this request alone.
 */
export function tpmQualifyingData(p: ActivationRequestPayload): Buffer {
  if (!p.tpm) throw new TypeError('not a TPM request');
  const { quote: _q, ...tpm } = p.tpm;
  return createHash('sha256').update(TPM_QUOTE_DOMAIN + canonicalJson({ ...p, tpm }), 'utf8').digest();
}

/** The payload with key material replaced by a description: safe to print. */
export function redactedPayload(p: LicensePayload): Omit<LicensePayload, 'keys' | 'watermark'> & { watermark?: 'sealed to host' | 'clear (unbound)' } & { keys: { scope: string; tree?: string; depth?: number; prefix?: number; bundleId?: string; protection: 'sealed to host' | 'clear (unbound)' }[] } {
  const { watermark, ...rest } = p;
  return {
    ...rest,
    ...(watermark ? { watermark: watermark.sealed ? ('sealed to host' as const) : ('clear (unbound)' as const) } : {}),
    keys: p.keys.map((k) => ({
      scope: k.scope,
      ...(k.scope === 'lines' ? { tree: k.tree, depth: k.depth, prefix: k.prefix } : { bundleId: k.bundleId }),
      protection: k.sealed ? ('sealed to host' as const) : ('clear (unbound)' as const),
    })),
  };
}
