import { describe, it, expect } from 'vitest';
import nacl from 'tweetnacl';
import { randomBytes } from 'node:crypto';
import { openSealed, sealTo } from '../../src/crypto/box.js';
import { x25519FromSecret, x25519Generate } from '../../src/crypto/x25519.js';

describe('X25519 key pairs on node:crypto, against tweetnacl', () => {
  it('derive the same public key as tweetnacl for random and edge-case secrets', () => {
    const secrets = [Buffer.alloc(32), Buffer.alloc(32, 0xff), Buffer.from([1, ...Array(31).fill(0)]), ...Array.from({ length: 200 }, () => randomBytes(32))];
    for (const s of secrets) {
      const ours = x25519FromSecret(s);
      const theirs = nacl.box.keyPair.fromSecretKey(new Uint8Array(s));
      expect(Buffer.from(ours.publicKey).toString('hex')).toBe(Buffer.from(theirs.publicKey).toString('hex'));
      expect(Buffer.from(ours.secretKey).equals(s)).toBe(true);
    }
    expect(() => x25519FromSecret(new Uint8Array(31))).toThrow(RangeError);
  });

  it('generated pairs are consistent and seal/open with tweetnacl box', () => {
    for (let i = 0; i < 20; i++) {
      const kp = x25519Generate();
      expect(Buffer.from(nacl.box.keyPair.fromSecretKey(kp.secretKey).publicKey).equals(Buffer.from(kp.publicKey))).toBe(true);
      const msg = randomBytes(32);
      const box = sealTo(kp.publicKey, msg);
      expect(Buffer.from(openSealed(kp.secretKey, box)!).equals(msg)).toBe(true);
      expect(openSealed(x25519Generate().secretKey, box)).toBeUndefined();
    }
  });
});

describe('the sealed box (X25519 on node:crypto, HSalsa20 + secretbox from tweetnacl) is exactly NaCl crypto_box', () => {
  it('what sealTo seals, tweetnacl nacl.box.open opens; what nacl.box seals, openSealed opens; a changed byte opens nowhere', () => {
    for (let i = 0; i < 100; i++) {
      const host = nacl.box.keyPair();
      const msg = randomBytes(1 + (i % 64));
      const s = sealTo(host.publicKey, msg);
      expect(Buffer.from(nacl.box.open(s.box, s.nonce, s.epk, host.secretKey)!).equals(msg)).toBe(true);
      const eph = nacl.box.keyPair();
      const nonce = nacl.randomBytes(24);
      const theirs = { epk: eph.publicKey, nonce, box: nacl.box(msg, nonce, host.publicKey, eph.secretKey) };
      expect(Buffer.from(openSealed(host.secretKey, theirs)!).equals(msg)).toBe(true);
      const bad = { ...s, box: Uint8Array.from(s.box) };
      bad.box[i % bad.box.length]! ^= 1;
      expect(openSealed(host.secretKey, bad)).toBeUndefined();
    }
  });

  it('refuses to seal to a low-order point (no key could be sealed to it) with FORMAT_INVALID, and never opens from one', () => {
    const lowOrder = [new Uint8Array(32), Uint8Array.from([1, ...Array(31).fill(0)])];
    for (const p of lowOrder) {
      expect(() => sealTo(p, new Uint8Array(32))).toThrow(expect.objectContaining({ code: 'FORMAT_INVALID' }));
      expect(openSealed(nacl.box.keyPair().secretKey, { epk: p, nonce: new Uint8Array(24), box: new Uint8Array(48) })).toBeUndefined();
    }
  });
});
