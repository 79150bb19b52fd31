/**
 * Does this licence allow this use, on this host, now? Pure: the clock, the host's key,
 * fingerprint and region come in as arguments. Every check returns a decision value, never
 * throws: the one-shot callers (activate, unpack, run, openBundle) turn a denial into an
 * MlicError with `orThrow`, and `validate()` turns it into its lowercase answer through the one
 * table below. The order of the checks is docs/FORMAT.md §5's decision order.
 */
import { MlicError, type DenialCode, type ErrorCode } from '../errors.js';
import type { Fingerprint, LicensePayload, VersionPolicy } from '../format/license.js';
import type { Manifest } from '../format/manifest.js';
import { parseSemver } from '../format/semver.js';
import { parseRange, satisfies } from '../format/semver-range.js';
import { describePolicy, matchFingerprint } from '../hardware/fingerprint.js';

/** A "no": the code a customer sees (exit 1, or 2 for a caller's mistake), and why. */
export interface Denial {
  ok: false;
  code: DenialCode | 'USAGE';
  message: string;
  hint?: string;
  details?: Record<string, unknown>;
}

export interface Allowed {
  ok: true;
  /** inside the grace period after expiry */
  inGrace: boolean;
  /** components released (all the bundle has, or the licensed subset asked for) */
  components?: string[];
}

export type Decision = Allowed | Denial;

export function deny(code: Denial['code'], message: string, extra: { hint?: string; details?: Record<string, unknown> } = {}): Denial {
  return { ok: false, code, message, ...extra };
}

export function denialError(d: Denial): MlicError {
  return new MlicError(d.code, d.message, { ...(d.hint ? { hint: d.hint } : {}), ...(d.details ? { details: d.details } : {}) });
}

/** The allowed value, or the denial thrown as an MlicError. */
export function orThrow<T extends { ok: true }>(d: T | Denial): T {
  if (!d.ok) throw denialError(d);
  return d;
}

/** validate()'s answers (docs/USAGE.md §1) and the error code each one stands for: the one table between the two. */
export const VALIDATE_ERRORS = {
  quota_exceeded: 'QUOTA_EXCEEDED',
  feature_not_licensed: 'FEATURE_NOT_LICENSED',
  license_expired: 'LICENSE_EXPIRED',
  license_not_yet_valid: 'LICENSE_NOT_YET_VALID',
  metric_not_licensed: 'METRIC_NOT_LICENSED',
  clock_tampered: 'CLOCK_TAMPERED',
  license_revoked: 'LICENSE_REVOKED',
  lease_expired: 'LEASE_EXPIRED',
  /** a fleet meter needs units from the licence server, which cannot be reached now */
  quota_unavailable: 'IO_ERROR',
  invalid_request: 'USAGE',
  closed: 'USAGE',
} as const satisfies Record<string, ErrorCode>;

export type ValidateError = keyof typeof VALIDATE_ERRORS;

const ANSWER_OF = new Map<string, ValidateError>(
  (Object.entries(VALIDATE_ERRORS) as [ValidateError, ErrorCode][]).filter(([k]) => k !== 'closed' && k !== 'invalid_request' && k !== 'quota_unavailable').map(([k, v]) => [v, k]),
);

/** validate()'s answer for an error code, when it has one of its own (not invalid_request or quota_unavailable). */
export function validateErrorOfCode(code: ErrorCode): ValidateError | undefined {
  return ANSWER_OF.get(code);
}

/** validate()'s answer for a denial from the checks it shares with the one-shot callers. */
export function validateErrorOf(d: Denial): ValidateError {
  return ANSWER_OF.get(d.code) ?? 'invalid_request';
}

export function describeVersions(v: VersionPolicy): string {
  switch (v.policy) {
    case 'range':
      return `versions ${v.range}`;
    case 'pin':
      return `exactly version ${v.version}`;
    case 'rolling':
      return 'every version released while the licence is valid';
    case 'maintenance':
      return `versions${v.range ? ` ${v.range}` : ''} released up to ${v.until.slice(0, 10)}`;
  }
}

/** A licence's validity window in milliseconds, computed once (validate() checks it per call). */
export interface TimeWindow {
  /** the vendor signed the licence then: no honest clock is earlier */
  issuedAt: number;
  notBefore: number;
  expires: number;
  /** expires + grace */
  hardEnd: number;
  toleranceMs: number;
}

export function timeWindow(l: LicensePayload): TimeWindow {
  const expires = l.expires !== undefined ? Date.parse(l.expires) : Infinity;
  return { issuedAt: Date.parse(l.issuedAt), notBefore: Date.parse(l.notBefore), expires, hardEnd: expires + l.graceSeconds * 1000, toleranceMs: l.clockToleranceSeconds * 1000 };
}

const ALLOWED = { ok: true, inGrace: false } as const;
const IN_GRACE = { ok: true, inGrace: true } as const;

/**
 * Clock rollback, then the validity window, at time `t` (ms) with the host's high-water mark
 * `hw` (ms, 0 when none): the one time rule (docs/SECURITY.md "The clock"). The licence's own
 * signed issue time is a floor that no state on the host can move back.
 */
export function checkTimeAt(l: LicensePayload, w: TimeWindow, t: number, hw: number): { ok: true; inGrace: boolean } | Denial {
  if (hw > 0 && t < hw - w.toleranceMs)
    return deny('CLOCK_TAMPERED', `the system clock (${new Date(t).toISOString()}) is behind the latest time this host has seen (${new Date(hw).toISOString()})`, {
      hint: 'set the clock right (e.g. with NTP) and try again',
    });
  if (t < w.issuedAt - w.toleranceMs)
    return deny('CLOCK_TAMPERED', `the system clock (${new Date(t).toISOString()}) is before licence ${l.licenseId.slice(0, 8)} was issued (${l.issuedAt})`, {
      hint: 'set the clock right (e.g. with NTP) and try again',
    });
  if (t < w.notBefore) return deny('LICENSE_NOT_YET_VALID', `licence ${l.licenseId.slice(0, 8)} is valid from ${l.notBefore}`, { hint: 'wait until then, or check the system clock' });
  if (t > w.hardEnd) return deny('LICENSE_EXPIRED', `licence ${l.licenseId.slice(0, 8)} expired on ${l.expires}`, { hint: 'ask your vendor for a renewed licence, then `mlic activate` it' });
  return t > w.expires ? IN_GRACE : ALLOWED;
}

export function checkTime(l: LicensePayload, now: Date, highWater?: Date): { ok: true; inGrace: boolean } | Denial {
  return checkTimeAt(l, timeWindow(l), now.getTime(), highWater?.getTime() ?? 0);
}

export function checkFeature(l: LicensePayload, feature: string | undefined): Denial | undefined {
  if (feature === undefined || l.features.includes(feature)) return undefined;
  return deny('FEATURE_NOT_LICENSED', `feature '${feature}' is not licensed${l.tier ? ` (tier ${l.tier})` : ''}; licensed features: ${l.features.join(', ') || 'none'}`);
}

export function versionAllowed(v: VersionPolicy, l: LicensePayload, m: Pick<Manifest, 'bundleId' | 'model'>): boolean {
  const ver = parseSemver(m.model.version);
  if (!ver) return false;
  const released = Date.parse(m.model.releaseDate);
  switch (v.policy) {
    case 'range':
      return satisfies(ver, parseRange(v.range)!);
    case 'pin':
      return m.model.version === v.version && (v.bundleId === undefined || v.bundleId === m.bundleId);
    case 'rolling':
      return l.expires === undefined || released <= Date.parse(l.expires);
    case 'maintenance':
      return released <= Date.parse(v.until) && (v.range === undefined || satisfies(ver, parseRange(v.range)!));
  }
}

export interface DecisionInput {
  license: LicensePayload;
  /** the bundle, when the decision is about one */
  manifest?: Pick<Manifest, 'bundleId' | 'model' | 'vendor' | 'components'>;
  now: Date;
  /** the highest time this host has seen (clock rollback check) */
  highWater?: Date;
  /** this host's X25519 public key (base64), when it has one */
  hostKey?: string;
  /** this host's fingerprint, hashed with the licence's salt; required for host-bound licences */
  fingerprint?: Fingerprint;
  /** the region this host declared at activation */
  region?: string;
  feature?: string;
  /** components the caller wants; undefined: all the bundle has */
  components?: string[];
}

/** Host key and hardware: a host-bound licence works only with the host key it was issued for, on hardware that still matches. */
export function checkHost(l: LicensePayload, hostKey: string | undefined, fingerprint: Fingerprint | undefined): Denial | undefined {
  if (l.host.binding !== 'host') return undefined;
  if (hostKey !== l.host.publicKey)
    return deny('HOST_KEY_MISMATCH', `licence ${l.licenseId.slice(0, 8)} was issued for another host key than this state directory holds`, {
      hint:
        hostKey === undefined
          ? 'this state directory has no host key: it is not the one the activation request came from (check MLIC_HOME / --home), or it was lost; then run `mlic activate --request` and ask your vendor for a new licence'
          : 'the licence belongs to another host, or this state directory was recreated (a new host key); run `mlic activate --request` and ask your vendor for a licence for this host key',
    });
  if (!fingerprint) return deny('HW_MISMATCH', 'this host could not be fingerprinted');
  const r = matchFingerprint(l.host.fingerprint.components, fingerprint.components, l.host.match);
  if (!r.ok)
    return deny('HW_MISMATCH', `this host does not match the licence: ${r.matched} of ${r.total} components match, ${describePolicy(l.host.match, r.total)} required; differing: ${r.missing.map((c) => c.label).join(', ') || 'none'}`, {
      hint: 'run `mlic fingerprint --compare <licence>`, then ask your vendor to re-issue the licence for this host',
      details: { missing: r.missing.map((c) => c.label), matched: r.matched, total: r.total },
    });
  return undefined;
}

/** The whole decision, in docs/FORMAT.md §5's order; the first failure wins. */
export function decide(input: DecisionInput): Decision {
  const l = input.license;
  const m = input.manifest;
  if (m) {
    if (m.vendor.keyId !== l.vendor.keyId) return deny('NO_LICENSE', `licence ${l.licenseId.slice(0, 8)} is from vendor key ${l.vendor.keyId}, the bundle from ${m.vendor.keyId}`);
    if (m.model.name !== l.model) return deny('NO_LICENSE', `licence ${l.licenseId.slice(0, 8)} is for model ${l.model}, not ${m.model.name}`);
  }
  const time = checkTime(l, input.now, input.highWater);
  if (!time.ok) return time;
  const host = checkHost(l, input.hostKey, input.fingerprint);
  if (host) return host;
  if (l.regions !== undefined) {
    const region = l.host.binding === 'host' ? l.host.region : input.region;
    if (region === undefined || !regionAllowed(region, l.regions))
      return deny('REGION_NOT_ALLOWED', `this host's region (${region ?? 'not declared'}) is not among the licensed regions: ${l.regions.join(', ')}`, {
        hint: 'licences restricted to regions need `mlic activate --request --region CODE` on an allowed host',
      });
  }
  if (m && !versionAllowed(l.versions, l, m))
    return deny('VERSION_NOT_LICENSED', `${m.model.name} ${m.model.version} (released ${m.model.releaseDate.slice(0, 10)}) is not licensed; licence ${l.licenseId.slice(0, 8)} grants ${describeVersions(l.versions)}`, {
      hint: 'use a licensed version, or ask your vendor to extend the licence',
    });
  const feature = checkFeature(l, input.feature);
  if (feature) return feature;
  let components: string[] | undefined;
  if (m?.components?.length) {
    const all = m.components.map((c) => c.name);
    const wanted = input.components ?? (l.components ? all.filter((c) => l.components!.includes(c)) : all);
    const unknown = wanted.filter((c) => !all.includes(c));
    if (unknown.length) return deny('USAGE', `the bundle has no component ${unknown.join(', ')} (it has ${all.join(', ')})`);
    const denied = l.components ? wanted.filter((c) => !l.components!.includes(c)) : [];
    if (denied.length || wanted.length === 0)
      return deny('COMPONENT_NOT_LICENSED', `component${denied.length > 1 ? 's' : ''} ${denied.join(', ') || '(none)'} not licensed; licensed components: ${l.components?.join(', ') || 'none'}`);
    components = wanted;
  } else if (input.components?.length) {
    return deny('USAGE', 'the bundle has no components');
  }
  return { ok: true, inGrace: time.inGrace, ...(components ? { components } : {}) };
}

const EU = ['AT', 'BE', 'BG', 'HR', 'CY', 'CZ', 'DK', 'EE', 'FI', 'FR', 'DE', 'GR', 'HU', 'IE', 'IT', 'LV', 'LT', 'LU', 'MT', 'NL', 'PL', 'PT', 'RO', 'SK', 'SI', 'ES', 'SE'];
const EEA = [...EU, 'IS', 'LI', 'NO'];

/** A region matches itself; the groups EU and EEA contain their member countries. */
export function regionAllowed(region: string, allowed: string[]): boolean {
  return allowed.some((a) => a === region || (a === 'EU' && EU.includes(region)) || (a === 'EEA' && EEA.includes(region)));
}
