/**
 * The bundle key hierarchy (docs/FORMAT.md §4). Each level is HKDF-SHA256 of the one above:
 *
 *   master secret ──► model key (model name) ──► line key ("2", or "0.3") ──► bundle key (bundle id) ──► file key
 *
 * A licence grants the lowest key that covers what it allows: a bundle key for a pin, a line key
 * per major line for a range, the model key for rolling access. Nothing is re-encrypted.
 */
import { hkdfSha256 } from '../crypto/kdf.js';

const enc = (s: string) => Buffer.from(s, 'utf8');

export function modelKey(master: Uint8Array, modelName: string): Buffer {
  return hkdfSha256(master, enc('mlic/v1/model'), enc(modelName));
}

export function lineKey(modelKeyBytes: Uint8Array, line: string): Buffer {
  return hkdfSha256(modelKeyBytes, enc('mlic/v1/line'), enc(line));
}

export function bundleKey(lineKeyBytes: Uint8Array, bundleIdHex: string): Buffer {
  return hkdfSha256(lineKeyBytes, enc('mlic/v1/bundle'), Buffer.from(bundleIdHex, 'hex'));
}

export function fileKey(bundleKeyBytes: Uint8Array, index: number, path: string): Buffer {
  const info = Buffer.alloc(4);
  info.writeUInt32BE(index);
  return hkdfSha256(bundleKeyBytes, enc('mlic/v1/file'), Buffer.concat([info, enc(path)]));
}

/** Published in the manifest: lets a reader check a key before decrypting anything (and commits GCM to one key). */
export function keyCommitment(bundleKeyBytes: Uint8Array, bundleIdHex: string): Buffer {
  return hkdfSha256(bundleKeyBytes, enc('mlic/v1/commit'), Buffer.from(bundleIdHex, 'hex'));
}

export function bundleKeyFromMaster(master: Uint8Array, modelName: string, line: string, bundleIdHex: string): Buffer {
  return bundleKey(lineKey(modelKey(master, modelName), line), bundleIdHex);
}
