/** Where the host's chained logs live in the state directory, and the keys that MAC them (docs/FORMAT.md §8.1). */
import { hkdfSha256 } from '../crypto/kdf.js';
import type { HostIdentity, StateDir } from '../state/home.js';

export function ledgerKey(h: HostIdentity, licenseId: string): Buffer {
  return hkdfSha256(h.signSeed, Buffer.from('mlic/v1/ledger'), Buffer.from(licenseId, 'utf8'));
}

export function auditKey(h: HostIdentity): Buffer {
  return hkdfSha256(h.signSeed, Buffer.from('mlic/v1/audit'), Buffer.from('audit-log'));
}

export function ledgerPath(state: StateDir, licenseId: string): string {
  return state.path('usage', `${licenseId}.log`);
}

export function auditPath(state: StateDir): string {
  return state.path('audit', 'audit.log');
}
