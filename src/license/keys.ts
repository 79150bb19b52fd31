/** The keys a licence grants (docs/FORMAT.md §4, §5): sealing them to a host, and finding a bundle's key among them. */
import { MlicError } from '../errors.js';
import { openSealed, sealTo } from '../crypto/box.js';
import { wipe } from '../crypto/random.js';
import { hkdfSha256 } from '../crypto/kdf.js';
import type { GrantedKey, LicensePayload, Sealed } from '../format/license.js';
import type { Manifest } from '../format/manifest.js';
import { bundleKey, covers, descend, lineKeyFromLeaf, linePos, TREE_DEPTH } from '../keys/derive.js';

type GrantScope = { scope: 'bundle'; bundleId: string } | { scope: 'lines'; tree: 'major' | 'zero'; depth: number; prefix: number };

/**
 * A TPM-bound licence's grants (docs/FORMAT.md §5.1) are masked before they are sealed to the
 * host key: key XOR HKDF-SHA-256(W, "mlic/v2/tpm-grant", licenceId "\n" index), where W is the
 * secret only the host's TPM can recover (credential activation). The host key alone, copied
 * anywhere, opens the masked key and nothing more.
 */
export function tpmGrantMask(w: Uint8Array, licenseId: string, index: number | 'watermark'): Buffer {
  return hkdfSha256(w, Buffer.from('mlic/v2/tpm-grant'), `${licenseId}\n${index}`, 32);
}

function xorInto(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** Seals one 32-byte key to the host key (masked first for a TPM host), or leaves it clear in an unbound licence. */
export function sealKey(key: Uint8Array, hostBoxPublic: Uint8Array | undefined, mask?: Uint8Array): Sealed {
  const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
  if (!hostBoxPublic) return { clear: b64(key) };
  const masked = mask ? xorInto(key, mask) : key;
  const s = sealTo(hostBoxPublic, masked);
  if (mask) wipe(masked);
  return { sealed: { epk: b64(s.epk), nonce: b64(s.nonce), box: b64(s.box) } };
}

export function sealGrant(scope: GrantScope, key: Uint8Array, hostBoxPublic: Uint8Array | undefined, mask?: Uint8Array): GrantedKey {
  return { ...scope, ...sealKey(key, hostBoxPublic, mask) } as GrantedKey;
}

/** Opens one sealed key (sealed to this host, or clear); HOST_KEY_MISMATCH when it is sealed to another host's key. */
export function unwrapGrant(g: Sealed, hostBoxSecret: Uint8Array | undefined, mask?: Uint8Array): Uint8Array {
  if (g.clear !== undefined) return Buffer.from(g.clear, 'base64');
  const hint = 'a licence works only with the host key of the activation request it was issued for';
  if (!hostBoxSecret) throw new MlicError('HOST_KEY_MISMATCH', 'the licence key is sealed to a host key and this state directory has none', { hint });
  const k = openSealed(hostBoxSecret, { epk: Buffer.from(g.sealed.epk, 'base64'), nonce: Buffer.from(g.sealed.nonce, 'base64'), box: Buffer.from(g.sealed.box, 'base64') });
  if (!k) throw new MlicError('HOST_KEY_MISMATCH', "the licence's keys are sealed to another host key; this host cannot unwrap them", { hint });
  if (!mask) return k;
  const out = xorInto(k, mask);
  wipe(k);
  return out;
}

/** Opens a key licence `l` carries (a grant by its index, or its watermark key): with the TPM's secret when the licence is TPM-bound (TPM_KEY_UNAVAILABLE without it). */
function openLicenseKey(l: LicensePayload, sealed: Sealed, index: number | 'watermark', hostBoxSecret: Uint8Array | undefined, tpmSecret: Uint8Array | undefined): Uint8Array {
  if (!(l.host.binding === 'host' && l.host.tpm)) return unwrapGrant(sealed, hostBoxSecret);
  if (!tpmSecret)
    throw new MlicError('TPM_KEY_UNAVAILABLE', `licence ${l.licenseId.slice(0, 8)} is bound to a TPM, and its key was not recovered from one`, {
      hint: 'use mlic on the host whose TPM the licence was issued for',
    });
  const mask = tpmGrantMask(tpmSecret, l.licenseId, index);
  try {
    return unwrapGrant(sealed, hostBoxSecret, mask);
  } finally {
    wipe(mask);
  }
}

/** Opens grant `index` of licence `l`. */
export function unwrapLicenseGrant(l: LicensePayload, index: number, hostBoxSecret: Uint8Array | undefined, tpmSecret?: Uint8Array): Uint8Array {
  return openLicenseKey(l, l.keys[index]!, index, hostBoxSecret, tpmSecret);
}

/** The licence's watermark key, opened on this host (undefined when the licence carries none). */
export function unwrapWatermarkKey(l: LicensePayload, hostBoxSecret: Uint8Array | undefined, tpmSecret?: Uint8Array): Uint8Array | undefined {
  return l.watermark ? openLicenseKey(l, l.watermark, 'watermark', hostBoxSecret, tpmSecret) : undefined;
}

/**
 * The bundle key for `manifest` from the licence's grants. Cryptographic: a grant that does not
 * cover the bundle (its id, or its version line) cannot produce its key.
 */
export function bundleKeyFromLicense(l: LicensePayload, m: Pick<Manifest, 'bundleId' | 'encryption' | 'model' | 'marked'>, hostBoxSecret: Uint8Array | undefined, tpmSecret?: Uint8Array): Buffer {
  // (the keys would not open it either: these say why)
  if (m.marked && m.marked.license !== l.licenseId)
    throw new MlicError('KEY_MISMATCH', `bundle ${m.model.name}@${m.model.version} was marked for licence ${m.marked.license.slice(0, 8)}, not for licence ${l.licenseId.slice(0, 8)}`, {
      hint: 'a marked bundle opens only with the licence it was marked for; use the bundle your vendor sent for your licence',
    });
  if (l.marked && !m.marked)
    throw new MlicError('KEY_MISMATCH', `licence ${l.licenseId.slice(0, 8)} opens only the bundles marked for it, and ${m.model.name}@${m.model.version} is the common bundle`, {
      hint: 'ask your vendor for the bundle marked for your licence (mlic mark)',
    });
  const pos = linePos(m.encryption.line);
  let gi = l.keys.findIndex((k) => k.scope === 'bundle' && k.bundleId === m.bundleId);
  if (gi < 0 && pos) gi = l.keys.findIndex((k) => k.scope === 'lines' && k.tree === pos.tree && covers(k.depth, k.prefix, pos.index));
  const g = gi >= 0 ? l.keys[gi] : undefined;
  if (!g)
    throw new MlicError('VERSION_NOT_LICENSED', `licence ${l.licenseId.slice(0, 8)} carries no key for ${m.model.name} ${m.model.version} (line ${m.encryption.line})`, {
      hint: 'ask your vendor for a licence that covers this version',
    });
  const k = unwrapLicenseGrant(l, gi, hostBoxSecret, tpmSecret);
  try {
    if (g.scope === 'bundle') return Buffer.from(k);
    const leaf = descend(k, g.depth, g.prefix, TREE_DEPTH, pos!.index);
    const line = lineKeyFromLeaf(leaf, m.encryption.line);
    wipe(leaf);
    try {
      return bundleKey(line, m.bundleId);
    } finally {
      wipe(line);
    }
  } finally {
    wipe(k);
  }
}
