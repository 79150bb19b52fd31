/**
 * The keys and the pseudo-random ±1 pattern of a weight fingerprint (docs/TRACING.md,
 * docs/FORMAT.md §14). Every step is one-way:
 *
 *   vendor master ──HKDF "mlic/mark/v1"──► licence mark key (info: the licence id)
 *   tensor nonce = the first 8 bytes of SHA-256("mlic/mark/v1/tensor\n" ‖ the tensor's name in the original)
 *   element i's sign = bit i of AES-256-CTR(key: licence mark key, IV: tensor nonce ‖ 64-bit block counter from 0)
 *                      (bit 0 = lowest bit of byte 0): 1 → +1, 0 → −1
 *
 * so a window of elements starting at a multiple of 128 is one CTR call at block start/128, and a
 * licence's key is derived once, not once per tensor.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { hkdfSha256 } from '../crypto/kdf.js';

const enc = (s: string) => Buffer.from(s, 'utf8');

export function licenceMarkKey(master: Uint8Array, licenseId: string): Buffer {
  return hkdfSha256(master, enc('mlic/mark/v1'), enc(licenseId));
}

export function tensorNonce(tensorName: string): Buffer {
  return createHash('sha256').update('mlic/mark/v1/tensor\n').update(tensorName, 'utf8').digest().subarray(0, 8);
}

const ZEROS = Buffer.alloc(1 << 16);

/**
 * The pattern bits for elements [start, start + count) of a tensor: ceil(count / 8) bytes, bit j of
 * the result is element start + j. `start` must be a multiple of 128 (one AES block of bits).
 */
export function patternBits(markKey: Uint8Array, nonce: Uint8Array, start: number, count: number): Buffer {
  if (start % 128 !== 0) throw new RangeError('pattern windows start at a multiple of 128 elements');
  const iv = Buffer.alloc(16);
  Buffer.from(nonce.buffer, nonce.byteOffset, 8).copy(iv, 0);
  const block = start / 128;
  iv.writeUInt32BE(Math.floor(block / 2 ** 32), 8);
  iv.writeUInt32BE(block % 2 ** 32, 12);
  const c = createCipheriv('aes-256-ctr', markKey, iv);
  const bytes = Math.ceil(count / 8);
  const blocks = Math.ceil(bytes / 16) * 16;
  const parts: Buffer[] = [];
  for (let left = blocks; left > 0; left -= ZEROS.length) parts.push(c.update(ZEROS.subarray(0, Math.min(left, ZEROS.length))));
  const out = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  return out.subarray(0, bytes);
}
