/** Fingerprints: salting and hashing probed components, and matching them under a policy. */
import { hmacSha256 } from '../crypto/hash.js';
import type { Fingerprint, FingerprintComponent, MatchPolicy } from '../format/license.js';
import type { HostProbe } from './probe.js';

/** Each component leaves the host only as HMAC-SHA256(salt, kind || 0x00 || value). */
export function fingerprintOf(probe: HostProbe, salt: Uint8Array): Fingerprint {
  const components: FingerprintComponent[] = probe.components.map((c) => ({
    kind: c.kind,
    label: c.label,
    hash: hmacSha256(salt, Buffer.concat([Buffer.from(c.kind, 'utf8'), Buffer.from([0]), Buffer.from(c.value, 'utf8')])).toString('hex'),
  }));
  return { salt: Buffer.from(salt).toString('hex'), components, container: probe.container, vm: probe.vm };
}

export interface MatchResult {
  ok: boolean;
  matched: number;
  total: number;
  required: number;
  /** licensed components not found on this host */
  missing: FingerprintComponent[];
  /** components on this host that the licence does not name */
  added: FingerprintComponent[];
}

export function requiredMatches(policy: MatchPolicy, total: number): number {
  switch (policy.policy) {
    case 'all':
      return total;
    case 'most':
      return Math.floor(total / 2) + 1;
    case 'any':
      return Math.min(1, total);
    case 'k':
      return Math.min(policy.k, total);
  }
}

export function matchFingerprint(licensed: FingerprintComponent[], current: FingerprintComponent[], policy: MatchPolicy): MatchResult {
  const have = new Set(current.map((c) => c.hash));
  const want = new Set(licensed.map((c) => c.hash));
  const missing = licensed.filter((c) => !have.has(c.hash));
  const added = current.filter((c) => !want.has(c.hash));
  const matched = licensed.length - missing.length;
  const required = requiredMatches(policy, licensed.length);
  // A licence that names no components at all binds to nothing but the host key; allow it only for 'any'.
  const ok = licensed.length === 0 ? policy.policy === 'any' : matched >= required;
  return { ok, matched, total: licensed.length, required, missing, added };
}

export function describePolicy(p: MatchPolicy, total: number): string {
  return p.policy === 'k' ? `${p.k} of ${total}` : `${p.policy} (${requiredMatches(p, total)} of ${total})`;
}
