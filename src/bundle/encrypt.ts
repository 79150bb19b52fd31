/**
 * The hot path: stream one file through AES-256-GCM chunks into the bundle.
 * Reads are double-buffered (the next chunk is read while this one is sealed), the plaintext
 * SHA-256 runs on the main thread, each sealed chunk's SHA-256 runs on the libuv pool, and the
 * write of one chunk overlaps the sealing of the next. Memory: a few chunks, whatever the size.
 */
import type { FileHandle } from 'node:fs/promises';
import type { ReadAt } from '../util/read-at.js';
import { MlicError } from '../errors.js';
import { createHasher } from '../crypto/hash.js';
import { sealChunkParts, sha256Async } from '../crypto/stream.js';
import { ciphertextDigestInit } from './digest.js';

export interface EncryptResult {
  sha256: string;
  ciphertextDigest: string;
  bytesWritten: number;
}

const HASH_WINDOW = 4;
const WRITE_WINDOW = 2;
const SYNC_EVERY = 64 << 20;

export async function encryptFileInto(
  src: ReadAt,
  srcSize: number,
  key: Uint8Array,
  chunkSize: number,
  out: FileHandle,
  outOffset: number,
  onBytes?: (n: number) => void,
  what = 'file',
): Promise<EncryptResult> {
  // Two read buffers, placed off a 4 KiB boundary (FACTS.md §1: faster kernel copies here).
  const stride = chunkSize + 8192;
  const slab = Buffer.allocUnsafeSlow(2 * stride);
  const bufs = [slab.subarray(4080, 4080 + chunkSize), slab.subarray(stride + 4080, stride + 4080 + chunkSize)] as const;
  const plainHash = createHasher('sha256');
  const ct = ciphertextDigestInit();
  const pendingHashes: Promise<Buffer>[] = [];
  const pendingTags: Buffer[] = [];
  const n = srcSize === 0 ? 1 : Math.ceil(srcSize / chunkSize);

  const readChunk = async (i: number): Promise<Buffer> => {
    const want = i === n - 1 ? srcSize - i * chunkSize : chunkSize;
    const buf = bufs[i % 2]!;
    let got = 0;
    while (got < want) {
      const { bytesRead } = await src.read(buf, got, want - got, i * chunkSize + got);
      if (bytesRead === 0) throw new MlicError('IO_ERROR', `${what}: file shrank while being packed`);
      got += bytesRead;
    }
    return buf.subarray(0, want);
  };

  let pos = outOffset;
  const writes: Promise<void>[] = [];
  // Flush to disk as we go (on the thread pool), so the final fsync before the rename does not
  // stall on a gigabyte of dirty pages.
  let syncing: Promise<void> | undefined;
  let unsynced = 0;
  let readP = readChunk(0);
  for (let i = 0; i < n; i++) {
    const plain = await readP;
    const last = i === n - 1;
    // Seal first: the plaintext buffer can then be refilled while we hash it.
    const [ctext, tag] = sealChunkParts(key, i, last, plain);
    if (!last) readP = readChunk(i + 1); // into the other buffer
    plainHash.update(plain);
    pendingHashes.push(sha256Async(ctext));
    pendingTags.push(tag);
    if (pendingHashes.length > HASH_WINDOW) ct.update(await pendingHashes.shift()!, pendingTags.shift()!);
    if (writes.length >= WRITE_WINDOW) await writes.shift();
    writes.push(writevAll(out, [ctext, tag], pos));
    pos += ctext.length + tag.length;
    unsynced += ctext.length + tag.length;
    if (unsynced >= SYNC_EVERY && !syncing) {
      unsynced = 0;
      syncing = out.datasync().finally(() => {
        syncing = undefined;
      });
    }
    onBytes?.(plain.length);
  }
  await Promise.all(writes);
  await syncing;
  while (pendingHashes.length > 0) ct.update(await pendingHashes.shift()!, pendingTags.shift()!);
  return { sha256: plainHash.digest('hex'), ciphertextDigest: ct.digest(), bytesWritten: pos - outOffset };
}

async function writevAll(fh: FileHandle, bufs: Buffer[], position: number): Promise<void> {
  const total = bufs.reduce((a, b) => a + b.length, 0);
  let { bytesWritten: done } = await fh.writev(bufs, position);
  if (done === total) return;
  const joined = Buffer.concat(bufs);
  while (done < total) {
    const { bytesWritten } = await fh.write(joined, done, total - done, position + done);
    done += bytesWritten;
  }
}
