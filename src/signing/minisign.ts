/** Signing and verifying in minisign's format (prehashed `ED` with BLAKE2b-512, legacy `Ed`). */
import { MlicError } from '../errors.js';
import { ed25519Sign, ed25519Verify } from '../crypto/ed25519.js';
import { constantTimeEqual } from '../crypto/random.js';
import { keyIdHex, type MinisignPublicKey, type MinisignSignature, type SigAlg } from '../format/minisign.js';

export interface Signer {
  seed: Uint8Array;
  keyId: Buffer;
}

/** Signs a message (for ED: its BLAKE2b-512 digest, computed by the caller for streaming). */
export function minisignSign(signer: Signer, data: Uint8Array, alg: SigAlg, trustedComment: string, untrustedComment?: string): MinisignSignature {
  const signature = ed25519Sign(signer.seed, data);
  const globalSignature = ed25519Sign(signer.seed, Buffer.concat([signature, Buffer.from(trustedComment, 'utf8')]));
  return {
    untrustedComment: untrustedComment ?? `signature from mlic secret key ${keyIdHex(signer.keyId)}`,
    alg,
    keyId: signer.keyId,
    signature,
    trustedComment,
    globalSignature,
  };
}

/**
 * Verifies a signature over `data` (the BLAKE2b-512 digest for ED, the raw message for Ed),
 * and the trusted comment. Throws KEY_MISMATCH or SIGNATURE_INVALID.
 */
export function minisignVerify(pk: MinisignPublicKey, sig: MinisignSignature, data: Uint8Array, what = 'signature'): void {
  if (!constantTimeEqual(pk.keyId, sig.keyId))
    throw new MlicError('KEY_MISMATCH', `${what} was made with key ${keyIdHex(sig.keyId)}, not with the given public key ${keyIdHex(pk.keyId)}`, {
      hint: 'check that --pub is the public key of the vendor who signed',
    });
  if (!ed25519Verify(pk.publicKey, data, sig.signature)) throw new MlicError('SIGNATURE_INVALID', `${what}: signature verification failed`);
  if (sig.trustedComment === undefined || sig.globalSignature === undefined) {
    if (sig.alg !== 'Ed') throw new MlicError('SIGNATURE_INVALID', `${what}: prehashed signature without a trusted comment`);
    return; // signify's form: nothing more to check
  }
  const tc = Buffer.concat([sig.signature, Buffer.from(sig.trustedComment, 'utf8')]);
  if (!ed25519Verify(pk.publicKey, tc, sig.globalSignature)) throw new MlicError('SIGNATURE_INVALID', `${what}: trusted comment signature verification failed`);
}
