/**
 * Chunked AES-256-GCM, STREAM construction (as age's payload stream, with a larger chunk and AES):
 * chunk i of a file is sealed under the file's own key with the 12-byte nonce
 *   nonce = 0x00 * 5 || uint48_be(i) || flag      (flag = 0x01 on the last chunk, else 0x00)
 * so reordering, truncation, appending and cross-file swapping all fail authentication.
 * A file of n bytes has max(1, ceil(n / cs)) chunks; only an empty file has an empty (last) chunk.
 * Each sealed chunk is ciphertext || 16-byte tag.
 *
 * These are the one-chunk reference functions; the bulk path (pack, unpack, verify) runs the same
 * construction through kernel.ts and engine.ts.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';

export const TAG_LEN = 16;
export const MIN_CHUNK = 1 << 20;
export const MAX_CHUNK = 64 << 20;
export const DEFAULT_CHUNK = 1 << 20;
const MAX_COUNTER = 2 ** 48;

export function chunkCount(plainSize: number, chunkSize: number): number {
  return plainSize === 0 ? 1 : Math.ceil(plainSize / chunkSize);
}

export function ciphertextSize(plainSize: number, chunkSize: number): number {
  return plainSize + TAG_LEN * chunkCount(plainSize, chunkSize);
}

/** Where chunk i of a file lies, in its plaintext and in its sealed stream (docs/FORMAT.md §3). */
export interface ChunkSpan {
  last: boolean;
  plainOffset: number;
  plainLen: number;
  sealedOffset: number;
  /** plainLen + TAG_LEN */
  sealedLen: number;
}

/** The one place the chunk arithmetic lives: pack, unpack, openBundle and verify all ask here. */
export function chunkSpan(i: number, plainSize: number, chunkSize: number): ChunkSpan {
  const n = chunkCount(plainSize, chunkSize);
  if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`chunk ${i} of ${n}`);
  const plainOffset = i * chunkSize;
  const plainLen = i === n - 1 ? plainSize - plainOffset : chunkSize;
  return { last: i === n - 1, plainOffset, plainLen, sealedOffset: i * (chunkSize + TAG_LEN), sealedLen: plainLen + TAG_LEN };
}

export function chunkNonce(counter: number, last: boolean): Buffer {
  if (!Number.isInteger(counter) || counter < 0 || counter >= MAX_COUNTER) throw new RangeError('chunk counter out of range');
  const n = Buffer.alloc(12);
  n.writeUIntBE(counter, 5, 6);
  n[11] = last ? 1 : 0;
  return n;
}

/** Seals one chunk; returns ciphertext||tag as a single new buffer. */
export function sealChunk(key: Uint8Array, counter: number, last: boolean, plain: Uint8Array): Buffer {
  const c = createCipheriv('aes-256-gcm', key, chunkNonce(counter, last));
  const out = Buffer.allocUnsafe(plain.length + TAG_LEN);
  const n = c.update(plain).copy(out, 0);
  c.final();
  c.getAuthTag().copy(out, n);
  return out;
}

/**
 * Opens one sealed chunk. Returns undefined when authentication fails; no plaintext from
 * a chunk is ever returned before its tag has been checked.
 */
export function openChunk(key: Uint8Array, counter: number, last: boolean, sealed: Uint8Array): Buffer | undefined {
  if (sealed.length < TAG_LEN) return undefined;
  const d = createDecipheriv('aes-256-gcm', key, chunkNonce(counter, last));
  d.setAuthTag(sealed.subarray(sealed.length - TAG_LEN));
  const plain = d.update(sealed.subarray(0, sealed.length - TAG_LEN));
  try {
    d.final();
  } catch {
    plain.fill(0);
    return undefined;
  }
  return plain;
}
