import { describe, it, expect } from 'vitest';
import nacl from 'tweetnacl';
import { randomBytes } from 'node:crypto';
import { ed25519ForgetKey, ed25519Generate, ed25519PublicFromSeed, ed25519Sign, ed25519Verify } from '../../src/crypto/ed25519.js';

describe('Ed25519 on node:crypto, against tweetnacl', () => {
  it('signs as tweetnacl does (Ed25519 is deterministic), also when one seed buffer is reused with new bytes (the cached key follows the bytes)', () => {
    const seed = Buffer.alloc(32);
    for (let i = 0; i < 50; i++) {
      randomBytes(32).copy(seed); // the same buffer, new bytes
      const msg = randomBytes(i * 7);
      const theirs = nacl.sign.detached(msg, nacl.sign.keyPair.fromSeed(seed).secretKey);
      expect(ed25519Sign(seed, msg).equals(Buffer.from(theirs))).toBe(true);
      expect(ed25519Sign(seed, msg).equals(Buffer.from(theirs))).toBe(true); // from the cached key
      expect(ed25519Verify(ed25519PublicFromSeed(seed), msg, theirs)).toBe(true);
    }
    ed25519ForgetKey();
    const k = ed25519Generate();
    expect(ed25519Verify(k.publicKey, Buffer.from('m'), ed25519Sign(k.seed, Buffer.from('m')))).toBe(true);
    expect(ed25519Verify(k.publicKey, Buffer.from('n'), ed25519Sign(k.seed, Buffer.from('m')))).toBe(false);
  });
});
