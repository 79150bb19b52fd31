/** Key derivation: HKDF-SHA256 (node:crypto) for keys from keys, scrypt (@noble/hashes) for passphrases. */
import { hkdfSync } from 'node:crypto';
import { scrypt } from '@noble/hashes/scrypt.js';

export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array | string, length = 32): Buffer {
  const infoBytes = typeof info === 'string' ? Buffer.from(info, 'utf8') : info;
  return Buffer.from(hkdfSync('sha256', ikm, salt, infoBytes, length));
}

export interface ScryptParams {
  logN: number;
  r: number;
  p: number;
}

/** Default passphrase cost: N=2^17, r=8 (128 MiB, about 0.5 s here), as age's default work factor class. */
export const DEFAULT_SCRYPT: ScryptParams = { logN: 17, r: 8, p: 1 };

export function scryptKey(passphrase: string, salt: Uint8Array, params: ScryptParams): Uint8Array {
  if (!Number.isInteger(params.logN) || params.logN < 10 || params.logN > 22) throw new RangeError('scrypt logN out of range');
  if (!Number.isInteger(params.r) || params.r < 1 || params.r > 32) throw new RangeError('scrypt r out of range');
  if (!Number.isInteger(params.p) || params.p < 1 || params.p > 16) throw new RangeError('scrypt p out of range');
  return scrypt(passphrase.normalize('NFKC'), salt, { N: 2 ** params.logN, r: params.r, p: params.p, dkLen: 32, maxmem: 2 ** 31 });
}
