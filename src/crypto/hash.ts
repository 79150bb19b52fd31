/** Hashing on node:crypto (OpenSSL, SHA-NI): the fast path for bulk data. */
import { createHash, createHmac, type Hash } from 'node:crypto';

export type { Hash };

export function sha256(data: Uint8Array | string): Buffer {
  return createHash('sha256').update(data).digest();
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function sha512(data: Uint8Array | string): Buffer {
  return createHash('sha512').update(data).digest();
}

export function blake2b512(data: Uint8Array | string): Buffer {
  return createHash('blake2b512').update(data).digest();
}

/** A streaming hash object (update/digest), e.g. 'sha256' or 'blake2b512'. */
export function createHasher(alg: 'sha256' | 'sha512' | 'blake2b512'): Hash {
  return createHash(alg);
}

export function hmacSha256(key: Uint8Array, data: Uint8Array | string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}
