/**
 * The hot path of pack: stream one file through AES-256-GCM chunks into its place in the bundle.
 * Each chunk is read into an engine slot, sealed (with the SHA-256 of its ciphertext) on a worker
 * or on this thread, and written; meanwhile the plaintext SHA-256 runs over the chunks in order
 * on a worker. A few chunks are in flight (reads, crypto and writes overlap); memory is the
 * engine's arena, whatever the size.
 */
import type { FileHandle } from 'node:fs/promises';
import type { ReadAt } from '../util/read-at.js';
import { MlicError, fromFsError } from '../errors.js';
import { chunkCount, chunkNonce, chunkSpan, ciphertextSize, TAG_LEN } from '../crypto/stream.js';
import { CryptoEngine, FILE_WINDOW } from '../crypto/engine.js';
import { SyncBehind } from '../util/sync-behind.js';
import { ciphertextDigestInit } from './digest.js';
import { forEachChunk, InOrderFold, readExactly, writeAll } from './pipeline.js';

export interface EncryptResult {
  sha256: string;
  ciphertextDigest: string;
  bytesWritten: number;
}

export interface EncryptOptions {
  /** the engine to run on (shared by the files of one pack); default: a private one on this thread */
  engine?: CryptoEngine;
  /** flushes the output as it grows; default: a private one (every 64 MiB) */
  sync?: SyncBehind;
  /** the output's name in errors (a write that fails names the bundle, not the source) */
  outName?: string;
}

export async function encryptFileInto(
  src: ReadAt,
  srcSize: number,
  key: Uint8Array,
  chunkSize: number,
  out: FileHandle,
  outOffset: number,
  onBytes?: (n: number) => void,
  what = 'file',
  opts: EncryptOptions = {},
): Promise<EncryptResult> {
  const engine = opts.engine ?? new CryptoEngine({ workers: 0, slots: FILE_WINDOW, regionSize: chunkSize + TAG_LEN });
  if (engine.regionSize < chunkSize + TAG_LEN) throw new MlicError('INTERNAL', 'engine slots are smaller than the chunk size');
  const sync = opts.sync ?? new SyncBehind(out);
  try {
    const n = chunkCount(srcSize, chunkSize);
    const plainHash = engine.streamHasher();
    const ct = ciphertextDigestInit();
    const fold = new InOrderFold<{ h: Buffer; tag: Buffer }>((x) => ct.update(x.h, x.tag));
    const shrank = () => new MlicError('IO_ERROR', `${what}: file shrank while being packed`);
    await forEachChunk(engine, n, async (i, slot, inOrder) => {
      const c = chunkSpan(i, srcSize, chunkSize);
      await readExactly(src, slot.a, c.plainLen, c.plainOffset, shrank);
      const { done: hashed } = await inOrder(() => ({ done: plainHash.update(slot, 'a', c.plainLen) }));
      // Handled from now on: the engine may reject it (a worker failed) while this chunk is written.
      hashed.catch(() => undefined);
      try {
        const { tag, ctHash } = await engine.seal(key, chunkNonce(i, c.last), slot, c.plainLen);
        fold.add(i, { h: ctHash, tag });
        await writeAll(out, slot.b, c.sealedLen, outOffset + c.sealedOffset).catch((e: unknown) => {
          throw fromFsError(e, opts.outName ?? 'the bundle');
        });
        sync.wrote(c.sealedLen);
      } finally {
        await hashed.catch(() => undefined);
      }
      await hashed;
      onBytes?.(c.plainLen);
    });
    if (fold.count !== n) throw new MlicError('INTERNAL', `${what}: ${fold.count} of ${n} chunks sealed`);
    const sha256 = (await plainHash.digest()).toString('hex');
    if (!opts.sync) await sync.settle();
    return { sha256, ciphertextDigest: ct.digest(), bytesWritten: ciphertextSize(srcSize, chunkSize) };
  } finally {
    if (!opts.sync) await sync.settle().catch(() => undefined);
    if (!opts.engine) await engine.close();
  }
}
