import { describe, it, expect } from 'vitest';
import { gcm } from '@noble/ciphers/aes.js';
import { randomBytes } from 'node:crypto';
import { chunkNonce, openChunk, sealChunk, ciphertextSize, chunkCount, chunkSpan, MIN_CHUNK, TAG_LEN } from '../../src/crypto/stream.js';

describe('chunked AES-256-GCM', () => {
  it('builds STREAM nonces: 11-byte big-endian counter, last-chunk flag', () => {
    expect(chunkNonce(0, false).toString('hex')).toBe('000000000000000000000000');
    expect(chunkNonce(1, true).toString('hex')).toBe('000000000000000000000101');
    expect(chunkNonce(2 ** 40 + 5, false).toString('hex')).toBe('000000000001000000000500');
    expect(() => chunkNonce(2 ** 48, false)).toThrow(RangeError);
    expect(() => chunkNonce(-1, false)).toThrow(RangeError);
  });

  it('counts chunks and ciphertext size at the boundaries', () => {
    const cs = 1 << 20;
    expect([0, 1, cs - 1, cs, cs + 1, 2 * cs + 500].map((n) => chunkCount(n, cs))).toEqual([1, 1, 1, 1, 2, 3]);
    expect(ciphertextSize(0, cs)).toBe(16);
    expect(ciphertextSize(cs + 1, cs)).toBe(cs + 1 + 32);
    expect(ciphertextSize(5 * 2 ** 30, cs)).toBe(5 * 2 ** 30 + 16 * 5 * 1024);
  });

  it('node:crypto seals, @noble/ciphers opens (differential)', () => {
    for (const n of [0, 1, 15, 16, 17, 4096, 100_000]) {
      const key = randomBytes(32);
      const plain = randomBytes(n);
      const sealed = sealChunk(key, 7, n % 2 === 0, plain);
      const opened = gcm(key, chunkNonce(7, n % 2 === 0)).decrypt(sealed);
      expect(Buffer.from(opened).equals(plain)).toBe(true);
    }
  });

  it('@noble/ciphers seals, node:crypto opens (differential)', () => {
    for (const n of [0, 1, 31, 65_537]) {
      const key = randomBytes(32);
      const plain = randomBytes(n);
      const sealed = gcm(key, chunkNonce(3, true)).encrypt(plain);
      expect(openChunk(key, 3, true, sealed)?.equals(plain)).toBe(true);
      expect(openChunk(key, 3, false, sealed)).toBeUndefined();
      expect(openChunk(key, 4, true, sealed)).toBeUndefined();
    }
  });

  it('rejects every single-bit change, a wrong key, and a short input', () => {
    const key = randomBytes(32);
    const plain = randomBytes(64);
    const sealed = sealChunk(key, 0, true, plain);
    for (let i = 0; i < sealed.length; i++) {
      const bad = Buffer.from(sealed);
      bad[i]! ^= 0x01;
      expect(openChunk(key, 0, true, bad)).toBeUndefined();
    }
    expect(openChunk(randomBytes(32), 0, true, sealed)).toBeUndefined();
    expect(openChunk(key, 0, true, sealed.subarray(0, 15))).toBeUndefined();
  });
});

describe('chunkSpan: the one chunk arithmetic', () => {
  it('tiles the plaintext and the sealed stream exactly, at every boundary', () => {
    const C = MIN_CHUNK;
    for (const size of [0, 1, C - 1, C, C + 1, 2 * C, 3 * C - 1, 2 ** 32 + 1, 5 * 2 ** 30]) {
      const n = chunkCount(size, C);
      let plain = 0;
      let sealed = 0;
      for (let i = 0; i < n; i++) {
        const c = chunkSpan(i, size, C);
        expect(c.plainOffset).toBe(plain);
        expect(c.sealedOffset).toBe(sealed);
        expect(c.sealedLen).toBe(c.plainLen + TAG_LEN);
        expect(c.last).toBe(i === n - 1);
        expect(c.plainLen).toBe(i === n - 1 ? size - plain : C);
        if (size > 0) expect(c.plainLen).toBeGreaterThan(0);
        plain += c.plainLen;
        sealed += c.sealedLen;
      }
      expect(plain).toBe(size);
      expect(sealed).toBe(ciphertextSize(size, C));
      expect(() => chunkSpan(n, size, C)).toThrow(RangeError);
      expect(() => chunkSpan(-1, size, C)).toThrow(RangeError);
    }
  });
});
