/** Ed25519 on node:crypto (about 100x faster than tweetnacl here; FACTS.md §1). */
import { createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify, generateKeyPairSync, type KeyObject } from 'node:crypto';

const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface Ed25519KeyPair {
  /** 32-byte seed */
  seed: Buffer;
  /** 32-byte public key */
  publicKey: Buffer;
}

export function ed25519Generate(): Ed25519KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length);
  const pub = publicKey.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length);
  return { seed: Buffer.from(seed), publicKey: Buffer.from(pub) };
}

function privateKeyObject(seed: Uint8Array): KeyObject {
  if (seed.length !== 32) throw new RangeError('ed25519 seed must be 32 bytes');
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

function publicKeyObject(pub: Uint8Array): KeyObject {
  if (pub.length !== 32) throw new RangeError('ed25519 public key must be 32 bytes');
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' });
}

export function ed25519PublicFromSeed(seed: Uint8Array): Buffer {
  const pub = createPublicKey(privateKeyObject(seed)).export({ format: 'der', type: 'spki' });
  return Buffer.from(pub.subarray(SPKI_PREFIX.length));
}

// The private KeyObject of the last seed signed with (a licence server signs every licence with
// one vendor key: rebuilding the key from its seed cost about half a millisecond a signature).
// Kept only while the seed's bytes are unchanged: a seed wiped or refilled is rebuilt.
let lastSeed: { seed: Uint8Array; bytes: Buffer; key: KeyObject } | undefined;

export function ed25519Sign(seed: Uint8Array, message: Uint8Array): Buffer {
  let key: KeyObject;
  if (lastSeed && lastSeed.seed === seed && lastSeed.bytes.equals(seed)) key = lastSeed.key;
  else {
    key = privateKeyObject(seed);
    lastSeed = { seed, bytes: Buffer.from(seed), key };
  }
  return nodeSign(null, message, key);
}

/** Forgets the cached signing key (tests; and callers that wipe a seed and want no copy left). */
export function ed25519ForgetKey(): void {
  lastSeed?.bytes.fill(0);
  lastSeed = undefined;
}

// Public KeyObjects by key (a licence server verifies every lease and reservation request against
// its host's key: rebuilding the object cost more than half of a verification). Public keys are
// not secret; at most VERIFY_KEYS are kept, the oldest dropped first.
const VERIFY_KEYS = 4096;
const verifyKeys = new Map<string, KeyObject>();

function cachedPublicKey(pub: Uint8Array): KeyObject {
  const id = Buffer.from(pub).toString('hex');
  let key = verifyKeys.get(id);
  if (!key) {
    key = publicKeyObject(pub);
    if (verifyKeys.size >= VERIFY_KEYS) verifyKeys.delete(verifyKeys.keys().next().value!);
    verifyKeys.set(id, key);
  }
  return key;
}

/** Never throws for a malformed signature or key: returns false. */
export function ed25519Verify(pub: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64 || pub.length !== 32) return false;
  try {
    return nodeVerify(null, message, cachedPublicKey(pub), signature);
  } catch {
    return false;
  }
}
