/** The manifest's signature: a minisign `ED` signature of manifest.json (docs/FORMAT.md §3.4). */
import { MlicError } from '../errors.js';
import { blake2b512 } from '../crypto/hash.js';
import { parseSignature, serializeSignature, type MinisignPublicKey } from '../format/minisign.js';
import { minisignSign, minisignVerify, type Signer } from '../signing/minisign.js';
import { mtimeOf } from './layout.js';

export function manifestTrustedComment(bundleId: string, createdAt: string): string {
  return `timestamp:${mtimeOf(createdAt)}\tfile:manifest.json\thashed\tmlic-bundle:${bundleId}`;
}

/** Fixed: the signature entry is compared byte for byte with what mlic writes, comments included. */
export const MANIFEST_UNTRUSTED_COMMENT = 'mlic bundle manifest signature';

export function signManifest(signer: Signer, manifestBytes: Uint8Array, bundleId: string, createdAt: string): Buffer {
  const sig = minisignSign(signer, blake2b512(manifestBytes), 'ED', manifestTrustedComment(bundleId, createdAt), MANIFEST_UNTRUSTED_COMMENT);
  return Buffer.from(serializeSignature(sig), 'utf8');
}

/** Verifies the manifest signature; returns the parsed signature. Throws SIGNATURE_INVALID or KEY_MISMATCH. */
export function verifyManifestSignature(pub: MinisignPublicKey, manifestBytes: Uint8Array, sigBytes: Uint8Array): { trustedComment: string } {
  let sig;
  try {
    sig = parseSignature(Buffer.from(sigBytes).toString('utf8'), 'manifest signature');
  } catch (e) {
    throw new MlicError('SIGNATURE_INVALID', `manifest signature is malformed: ${(e as Error).message}`);
  }
  if (sig.alg !== 'ED' || sig.trustedComment === undefined) throw new MlicError('SIGNATURE_INVALID', 'manifest signature must be prehashed (ED) with a trusted comment');
  // minisign does not sign the untrusted comment; a bundle's is fixed, and the whole entry must be
  // exactly what mlic writes, so that no byte of a bundle can change unnoticed.
  let canonical: string | undefined;
  try {
    canonical = serializeSignature(sig);
  } catch {
    canonical = undefined; // a comment with a stray carriage return, say
  }
  if (sig.untrustedComment !== MANIFEST_UNTRUSTED_COMMENT || canonical !== Buffer.from(sigBytes).toString('utf8'))
    throw new MlicError('SIGNATURE_INVALID', 'manifest signature entry was modified (untrusted comment or layout)');
  minisignVerify(pub, sig, blake2b512(manifestBytes), 'manifest signature');
  return { trustedComment: sig.trustedComment };
}

/** After the manifest is parsed: the signed trusted comment must name the same bundle. */
export function checkTrustedComment(trustedComment: string, bundleId: string, createdAt: string): void {
  if (trustedComment !== manifestTrustedComment(bundleId, createdAt))
    throw new MlicError('SIGNATURE_INVALID', 'manifest signature belongs to another bundle (trusted comment does not match)');
}
