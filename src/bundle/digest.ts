/**
 * The ciphertext digest recorded per file (docs/FORMAT.md §3.3):
 *   SHA-256( "mlic-ct-v1\n" || for each sealed chunk i: SHA-256(ciphertext_i) || tag_i )
 * Anyone can recompute it from the bundle alone; per-chunk hashes can run in parallel.
 */
import { createHasher } from '../crypto/hash.js';

export const CT_DIGEST_DOMAIN = 'mlic-ct-v1\n';

export function ciphertextDigestInit(): { update(chunkHash: Uint8Array, tag: Uint8Array): void; digest(): string } {
  const h = createHasher('sha256').update(CT_DIGEST_DOMAIN);
  return {
    update(chunkHash, tag) {
      h.update(chunkHash);
      h.update(tag);
    },
    digest: () => h.digest('hex'),
  };
}
