/** Small-secret sealing with XChaCha20-Poly1305 (@noble/ciphers): key files. */
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import nacl from 'tweetnacl';

export function xsealEncrypt(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array): Uint8Array {
  return xchacha20poly1305(key, nonce, aad).encrypt(plaintext);
}

/** Returns undefined when authentication fails. */
export function xsealDecrypt(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, aad?: Uint8Array): Uint8Array | undefined {
  try {
    return xchacha20poly1305(key, nonce, aad).decrypt(ciphertext);
  } catch {
    return undefined;
  }
}

/** X25519 key pairs and sealing a small secret to a host's public key (tweetnacl box, ephemeral sender). */

export interface X25519KeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

export function x25519Generate(): X25519KeyPair {
  return nacl.box.keyPair();
}

export function x25519FromSecret(secretKey: Uint8Array): X25519KeyPair {
  return nacl.box.keyPair.fromSecretKey(secretKey);
}

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
