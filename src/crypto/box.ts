/** Sealing a small secret to a host's X25519 public key: tweetnacl box from an ephemeral sender. */
import nacl from 'tweetnacl';

export interface SealedBox {
  epk: Uint8Array;
  nonce: Uint8Array;
  box: Uint8Array;
}

export function sealTo(recipientPublic: Uint8Array, message: Uint8Array): SealedBox {
  const eph = nacl.box.keyPair();
  const nonce = nacl.randomBytes(24);
  const box = nacl.box(message, nonce, recipientPublic, eph.secretKey);
  eph.secretKey.fill(0);
  return { epk: eph.publicKey, nonce, box };
}

/** Returns undefined when the box does not open with this secret key. */
export function openSealed(recipientSecret: Uint8Array, s: SealedBox): Uint8Array | undefined {
  return nacl.box.open(s.box, s.nonce, s.epk, recipientSecret) ?? undefined;
}
