/**
 * Sealing a small secret to a host's X25519 public key: NaCl's crypto_box (X25519, HSalsa20,
 * XSalsa20-Poly1305) from an ephemeral sender key. The X25519 step runs on node:crypto (tweetnacl's
 * pure-JS scalar multiplication cost about 1.3 ms a licence on the licence server); HSalsa20 and
 * the secretbox are tweetnacl's. The result is exactly tweetnacl's `nacl.box` (tested both ways).
 */
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import nacl from 'tweetnacl';
import { MlicError } from '../errors.js';

export interface SealedBox {
  epk: Uint8Array;
  nonce: Uint8Array;
  box: Uint8Array;
}

const X25519_SPKI = Buffer.from('302a300506032b656e032100', 'hex');
const X25519_PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SIGMA = new Uint8Array(Buffer.from('expand 32-byte k', 'latin1'));
const ZERO16 = new Uint8Array(16);
// tweetnacl's types leave out its lowlevel functions
const hsalsa20 = (nacl as unknown as { lowlevel: { crypto_core_hsalsa20(out: Uint8Array, inp: Uint8Array, k: Uint8Array, c: Uint8Array): number } }).lowlevel.crypto_core_hsalsa20;

/** crypto_box_beforenm: HSalsa20 of the X25519 shared secret. */
function boxKey(secret: KeyObject, peerPublic: Uint8Array): Uint8Array {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey: secret, publicKey: createPublicKey({ key: Buffer.concat([X25519_SPKI, peerPublic]), format: 'der', type: 'spki' }) });
  } catch (e) {
    // a low-order point gives an all-zero secret, which OpenSSL refuses: no key could be sealed to it
    throw new MlicError('FORMAT_INVALID', 'the host public key is not a usable X25519 key', { cause: e });
  }
  const k = new Uint8Array(32);
  hsalsa20(k, ZERO16, new Uint8Array(shared), SIGMA);
  shared.fill(0);
  return k;
}

export function sealTo(recipientPublic: Uint8Array, message: Uint8Array): SealedBox {
  if (recipientPublic.length !== 32) throw new RangeError('an X25519 public key is 32 bytes');
  const eph = generateKeyPairSync('x25519');
  const epk = new Uint8Array(eph.publicKey.export({ format: 'der', type: 'spki' }).subarray(X25519_SPKI.length));
  const nonce = nacl.randomBytes(24);
  const k = boxKey(eph.privateKey, recipientPublic);
  const box = nacl.secretbox(message, nonce, k);
  k.fill(0);
  return { epk, nonce, box };
}

/** Returns undefined when the box does not open with this secret key. */
export function openSealed(recipientSecret: Uint8Array, s: SealedBox): Uint8Array | undefined {
  if (recipientSecret.length !== 32 || s.epk.length !== 32) return undefined;
  const der = Buffer.concat([X25519_PKCS8, recipientSecret]);
  let k: Uint8Array;
  try {
    k = boxKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }), s.epk);
  } catch {
    return undefined;
  } finally {
    der.fill(0);
  }
  const m = nacl.secretbox.open(s.box, s.nonce, k) ?? undefined;
  k.fill(0);
  return m;
}
