/** Small-secret sealing with XChaCha20-Poly1305 (@noble/ciphers): key files. */
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';

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
