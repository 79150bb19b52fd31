/**
 * The per-chunk work of the bulk path (docs/FORMAT.md §3.2, §3.3), on node:crypto: seal a chunk,
 * open a chunk, hash a region. The same code runs on the calling thread and inside worker
 * threads (engine.ts sends this function's source text to them), so it is self-contained:
 * it refers to nothing outside its own body and gets node:crypto as an argument.
 *
 * Data goes through node:crypto in 64 KiB pieces: cipher.update() returns a new buffer for
 * every call, and on this kind of VM a fresh 1 MiB allocation (mmap, page faults, zero fill)
 * costs more than the cipher itself; 64 KiB buffers are recycled by malloc (1 MiB in one call:
 * ~500 MB/s; in 64 KiB pieces: ~2300 MB/s, measured). The pieces are copied into the caller's
 * output region, so the output lives in memory the caller controls and reuses.
 */
export interface ChunkKernel {
  /** Encrypts src into dst (ciphertext, then the 16-byte tag at dst[src.length]); returns the tag and, if asked, SHA-256 of the ciphertext. */
  seal(key: Uint8Array, nonce: Uint8Array, src: Uint8Array, dst: Uint8Array, hashCiphertext: boolean): { tag: Uint8Array; ctHash: Uint8Array | undefined };
  /** Decrypts sealed (ciphertext || tag) into dst; true when the tag verifies, else dst is zeroed and false. */
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, dst: Uint8Array): boolean;
  sha256(data: Uint8Array): Uint8Array;
}

type NodeCrypto = typeof import('node:crypto');

export function chunkKernel(crypto: NodeCrypto): ChunkKernel {
  const PIECE = 65536;
  const TAG = 16;
  return {
    seal(key, nonce, src, dst, hashCiphertext) {
      if (dst.length < src.length + TAG) throw new RangeError('seal: output region too small');
      const c = crypto.createCipheriv('aes-256-gcm', key, nonce);
      const h = hashCiphertext ? crypto.createHash('sha256') : undefined;
      let o = 0;
      for (let p = 0; p < src.length; p += PIECE) {
        const part = c.update(src.subarray(p, Math.min(p + PIECE, src.length)));
        if (h) h.update(part);
        dst.set(part, o);
        o += part.length;
      }
      const rest = c.final();
      if (rest.length > 0) {
        if (h) h.update(rest);
        dst.set(rest, o);
        o += rest.length;
      }
      if (o !== src.length) throw new Error('seal: ciphertext length differs from plaintext length');
      const tag = c.getAuthTag();
      dst.set(tag, o);
      return { tag, ctHash: h ? h.digest() : undefined };
    },
    open(key, nonce, sealed, dst) {
      if (sealed.length < TAG) return false;
      const n = sealed.length - TAG;
      if (dst.length < n) throw new RangeError('open: output region too small');
      const d = crypto.createDecipheriv('aes-256-gcm', key, nonce);
      d.setAuthTag(sealed.subarray(n));
      let o = 0;
      for (let p = 0; p < n; p += PIECE) {
        const part = d.update(sealed.subarray(p, Math.min(p + PIECE, n)));
        dst.set(part, o);
        o += part.length;
        part.fill(0);
      }
      try {
        const rest = d.final();
        dst.set(rest, o);
        o += rest.length;
      } catch {
        dst.fill(0, 0, n);
        return false;
      }
      if (o !== n) {
        dst.fill(0, 0, n);
        return false;
      }
      return true;
    },
    sha256(data) {
      return crypto.createHash('sha256').update(data).digest();
    },
  };
}
