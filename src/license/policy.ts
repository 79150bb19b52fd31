/**
 * Does this licence allow this bundle, on this host, now? Pure: the clock, the host's
 * fingerprint and region come in as arguments. Throws MlicError with the code a customer sees.
 */
import { MlicError } from '../errors.js';
import type { Fingerprint, LicensePayload, VersionPolicy } from '../format/license.js';
import type { Manifest } from '../format/manifest.js';
import { parseSemver } from '../format/semver.js';
import { parseRange, satisfies } from '../format/semver-range.js';
import { describePolicy, matchFingerprint } from '../hardware/fingerprint.js';

export interface DecisionInput {
  license: LicensePayload;
  /** the bundle, when the decision is about one */
  manifest?: Pick<Manifest, 'bundleId' | 'model' | 'vendor' | 'components'>;
  now: Date;
  /** this host's fingerprint, hashed with the licence's salt; required for host-bound licences */
  fingerprint?: Fingerprint;
  /** the region this host declared at activation */
  region?: string;
  feature?: string;
  /** components the caller wants; undefined: all the bundle has */
  components?: string[];
  /** the highest time this host has seen (clock rollback check) */
  highWater?: Date;
}

export interface Decision {
  /** inside the grace period after expiry */
  inGrace: boolean;
  /** components released (all the bundle has, or the licensed subset asked for) */
  components?: string[];
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

export function checkTime(l: LicensePayload, now: Date, highWater?: Date): { inGrace: boolean } {
  if (highWater && now.getTime() < highWater.getTime() - l.clockToleranceSeconds * 1000)
    throw new MlicError('CLOCK_TAMPERED', `the system clock (${now.toISOString()}) is behind the latest time this host has seen (${highWater.toISOString()})`, {
      hint: 'set the clock right (e.g. with NTP) and try again',
    });
  if (now.getTime() < Date.parse(l.notBefore))
    throw new MlicError('LICENSE_NOT_YET_VALID', `licence ${l.licenseId.slice(0, 8)} is valid from ${l.notBefore}`, { hint: 'wait until then, or check the system clock' });
  if (l.expires !== undefined) {
    const exp = Date.parse(l.expires);
    if (now.getTime() > exp + l.graceSeconds * 1000)
      throw new MlicError('LICENSE_EXPIRED', `licence ${l.licenseId.slice(0, 8)} expired on ${l.expires}`, { hint: 'ask your vendor for a renewed licence, then `mlic activate` it' });
    if (now.getTime() > exp) return { inGrace: true };
  }
  return { inGrace: false };
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

export function decide(input: DecisionInput): Decision {
  const l = input.license;
  const m = input.manifest;
  if (m) {
    if (m.vendor.keyId !== l.vendor.keyId) throw new MlicError('NO_LICENSE', `licence ${l.licenseId.slice(0, 8)} is from vendor key ${l.vendor.keyId}, the bundle from ${m.vendor.keyId}`);
    if (m.model.name !== l.model) throw new MlicError('NO_LICENSE', `licence ${l.licenseId.slice(0, 8)} is for model ${l.model}, not ${m.model.name}`);
  }
  const { inGrace } = checkTime(l, input.now, input.highWater);
  if (l.host.binding === 'host') {
    if (!input.fingerprint) throw new MlicError('HW_MISMATCH', 'this host could not be fingerprinted');
    const r = matchFingerprint(l.host.fingerprint.components, input.fingerprint.components, l.host.match);
    if (!r.ok)
      throw new MlicError('HW_MISMATCH', `this host does not match the licence: ${r.matched} of ${r.total} components match, ${describePolicy(l.host.match, r.total)} required; differing: ${r.missing.map((c) => c.label).join(', ') || 'none'}`, {
        hint: 'run `mlic fingerprint --compare <request.json>`, then ask your vendor to re-issue the licence for this host',
        details: { missing: r.missing.map((c) => c.label), matched: r.matched, total: r.total },
      });
  }
  if (l.regions !== undefined) {
    const region = l.host.binding === 'host' ? l.host.region : input.region;
    if (region === undefined || !regionAllowed(region, l.regions))
      throw new MlicError('REGION_NOT_ALLOWED', `this host's region (${region ?? 'not declared'}) is not among the licensed regions: ${l.regions.join(', ')}`, {
        hint: 'licences restricted to regions need `mlic activate --request --region CODE` on an allowed host',
      });
  }
  if (m && !versionAllowed(l.versions, l, m))
    throw new MlicError('VERSION_NOT_LICENSED', `${m.model.name} ${m.model.version} (released ${m.model.releaseDate.slice(0, 10)}) is not licensed; licence ${l.licenseId.slice(0, 8)} grants ${describeVersions(l.versions)}`, {
      hint: 'use a licensed version, or ask your vendor to extend the licence',
    });
  if (input.feature !== undefined && !l.features.includes(input.feature))
    throw new MlicError('FEATURE_NOT_LICENSED', `feature '${input.feature}' is not licensed${l.tier ? ` (tier ${l.tier})` : ''}; licensed features: ${l.features.join(', ') || 'none'}`);
  let components: string[] | undefined;
  if (m?.components?.length) {
    const all = m.components.map((c) => c.name);
    const wanted = input.components ?? (l.components ? all.filter((c) => l.components!.includes(c)) : all);
    const unknown = wanted.filter((c) => !all.includes(c));
    if (unknown.length) throw new MlicError('USAGE', `the bundle has no component ${unknown.join(', ')} (it has ${all.join(', ')})`);
    const denied = l.components ? wanted.filter((c) => !l.components!.includes(c)) : [];
    if (denied.length || wanted.length === 0)
      throw new MlicError('COMPONENT_NOT_LICENSED', `component${denied.length > 1 ? 's' : ''} ${denied.join(', ') || '(none)'} not licensed; licensed components: ${l.components?.join(', ') || 'none'}`);
    components = wanted;
  } else if (input.components?.length) {
    throw new MlicError('USAGE', 'the bundle has no components');
  }
  return { inGrace, ...(components ? { components } : {}) };
}

const EU = ['AT', 'BE', 'BG', 'HR', 'CY', 'CZ', 'DK', 'EE', 'FI', 'FR', 'DE', 'GR', 'HU', 'IE', 'IT', 'LV', 'LT', 'LU', 'MT', 'NL', 'PL', 'PT', 'RO', 'SK', 'SI', 'ES', 'SE'];
const EEA = [...EU, 'IS', 'LI', 'NO'];

/** A region matches itself; the groups EU and EEA contain their member countries. */
export function regionAllowed(region: string, allowed: string[]): boolean {
  return allowed.some((a) => a === region || (a === 'EU' && EU.includes(region)) || (a === 'EEA' && EEA.includes(region)));
}
