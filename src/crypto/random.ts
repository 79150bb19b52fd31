import { randomBytes as nodeRandomBytes, timingSafeEqual } from 'node:crypto';

export function randomBytes(n: number): Buffer {
  return nodeRandomBytes(n);
}

/** Constant-time comparison; unequal lengths are simply unequal (length is not secret here). */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

/** Best-effort wipe of a secret held in a buffer. */
export function wipe(buf: Uint8Array | undefined): void {
  if (buf) buf.fill(0);
}
