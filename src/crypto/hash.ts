/** Hashing on node:crypto (OpenSSL, SHA-NI): the fast path for bulk data. */
import { createHash, createHmac, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { MlicError, fromFsError } from '../errors.js';

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

/**
 * Streams a regular file through a node:crypto hash with one 1 MiB buffer (bounded memory
 * whatever the size; 1 MiB reads avoid the per-call overhead of small ones, FACTS.md §1).
 * Errors become MlicError (IO_NOT_FOUND, IO_ERROR, ...).
 */
export async function hashFile(path: string, alg: 'sha256' | 'blake2b512', onBytes?: (n: number) => void): Promise<Buffer> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw fromFsError(e, path);
  }
  try {
    if (!(await fh.stat()).isFile()) throw new MlicError('IO_NOT_REGULAR', `${path}: not a regular file`);
    const h = createHash(alg);
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      onBytes?.(bytesRead);
    }
    return h.digest();
  } catch (e) {
    throw fromFsError(e, path);
  } finally {
    await fh.close();
  }
}
