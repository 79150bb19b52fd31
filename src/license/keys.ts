/** Which key a licence grants for a bundle, and unwrapping it on this host. */
import { MlicError } from '../errors.js';
import { openSealed, sealTo } from '../crypto/seal.js';
import { wipe } from '../crypto/random.js';
import type { GrantedKey, LicensePayload } from '../format/license.js';
import type { Manifest } from '../format/manifest.js';
import { bundleKey, lineKey } from '../keys/derive.js';

export function sealGrant(scope: GrantedKey['scope'], key: Uint8Array, hostBoxPublic: Uint8Array | undefined, extra: { line?: string; bundleId?: string }): GrantedKey {
  const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
  if (!hostBoxPublic) return { scope, ...extra, clear: b64(key) };
  const s = sealTo(hostBoxPublic, key);
  return { scope, ...extra, sealed: { epk: b64(s.epk), nonce: b64(s.nonce), box: b64(s.box) } };
}

/** Opens one grant's key (sealed to this host, or clear); HW_MISMATCH when it is sealed to another host. */
export function unwrapGrant(g: GrantedKey, hostBoxSecret: Uint8Array | undefined): Uint8Array {
  if (g.clear !== undefined) return Buffer.from(g.clear, 'base64');
  if (!g.sealed || !hostBoxSecret) throw new MlicError('HW_MISMATCH', 'the licence key is sealed to a host and this host has no host key');
  const k = openSealed(hostBoxSecret, {
    epk: Buffer.from(g.sealed.epk, 'base64'),
    nonce: Buffer.from(g.sealed.nonce, 'base64'),
    box: Buffer.from(g.sealed.box, 'base64'),
  });
  if (!k) throw new MlicError('HW_MISMATCH', "the licence's keys are sealed to another host's key; this host cannot unwrap them", { hint: 'a licence works only on the host whose activation request it was issued for' });
  return k;
}

/** The bundle key for `manifest` from the licence's grants (cryptographic: a grant that does not cover the bundle cannot produce its key). */
export function bundleKeyFromLicense(l: LicensePayload, m: Pick<Manifest, 'bundleId' | 'encryption' | 'model'>, hostBoxSecret: Uint8Array | undefined): Buffer {
  const byBundle = l.keys.find((g) => g.scope === 'bundle' && g.bundleId === m.bundleId);
  const byLine = l.keys.find((g) => g.scope === 'line' && g.line === m.encryption.line);
  const byModel = l.keys.find((g) => g.scope === 'model');
  const g = byBundle ?? byLine ?? byModel;
  if (!g)
    throw new MlicError('VERSION_NOT_LICENSED', `licence ${l.licenseId.slice(0, 8)} carries no key for ${m.model.name} ${m.model.version} (line ${m.encryption.line})`, {
      hint: 'ask your vendor for a licence that covers this version',
    });
  const k = unwrapGrant(g, hostBoxSecret);
  try {
    if (g.scope === 'bundle') return Buffer.from(k);
    const line = g.scope === 'line' ? k : lineKey(k, m.encryption.line);
    return bundleKey(line, m.bundleId);
  } finally {
    wipe(k);
  }
}
