import { describe, it, expect } from 'vitest';
import { scrypt as nobleScrypt } from '@noble/hashes/scrypt.js';
import { scryptKey, scryptParamsProblem, DEFAULT_SCRYPT } from '../../src/crypto/kdf.js';

describe('scrypt on node:crypto, checked against @noble/hashes (an independent implementation)', () => {
  it('the same key for the same passphrase, salt and parameters (NFKC-normalised passphrases)', async () => {
    for (const [pw, logN, r, p] of [['correct horse', 10, 8, 1], ['ｐａｓｓ', 11, 4, 2], ['', 10, 1, 1]] as const) {
      const salt = Buffer.alloc(32, logN);
      const ours = await scryptKey(pw, salt, { logN, r, p });
      const theirs = nobleScrypt(pw.normalize('NFKC'), salt, { N: 2 ** logN, r, p, dkLen: 32 });
      expect(ours.equals(Buffer.from(theirs))).toBe(true);
    }
  });

  it('refuses parameters above the bound before any work', async () => {
    expect(scryptParamsProblem(DEFAULT_SCRYPT)).toBeUndefined();
    for (const bad of [{ logN: 22, r: 8, p: 1 }, { logN: 17, r: 8, p: 16 }, { logN: 17, r: 32, p: 1 }, { logN: 9, r: 8, p: 1 }, { logN: 17.5, r: 8, p: 1 }, null])
      expect(scryptParamsProblem(bad), JSON.stringify(bad)).toBeDefined();
    await expect(scryptKey('x', Buffer.alloc(32), { logN: 22, r: 8, p: 1 })).rejects.toThrow(RangeError);
  });
});
