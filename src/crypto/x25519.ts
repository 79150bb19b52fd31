/** X25519 key pairs (a host's key for sealed licence keys) on node:crypto; the box itself is in box.ts. */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';

export interface X25519KeyPair {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

// PKCS#8 and SPKI prefixes of a raw X25519 key (RFC 8410): node:crypto derives a public key in
// well under a millisecond, where tweetnacl's scalar multiplication costs ~20 ms of start-up.
const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const X25519_SPKI_LEN = 12;

export function x25519Generate(): X25519KeyPair {
  const { privateKey } = generateKeyPairSync('x25519');
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  const secretKey = new Uint8Array(der.subarray(X25519_PKCS8.length));
  der.fill(0);
  return x25519FromSecret(secretKey);
}

export function x25519FromSecret(secretKey: Uint8Array): X25519KeyPair {
  if (secretKey.length !== 32) throw new RangeError('an X25519 secret key is 32 bytes');
  const der = Buffer.concat([X25519_PKCS8, secretKey]);
  try {
    const spki = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'der', type: 'spki' });
    return { publicKey: new Uint8Array(spki.subarray(X25519_SPKI_LEN)), secretKey: new Uint8Array(secretKey) };
  } finally {
    der.fill(0);
  }
}
