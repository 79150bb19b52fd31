/**
 * The files pack reads, whatever holds them: a file on disk, a member of a plain .tar read in
 * place, or a member of a .tar.gz / .tgz read from the decompressed stream. Pack detects each
 * one's format (inspect) and encrypts its bytes (open) through this interface only.
 */
import { fromFsError } from '../errors.js';
import type { ModelFileInfo } from '../format/models/index.js';
import type { ReadAt, ReadSource } from '../util/read-at.js';

export interface SourceFile {
  /** POSIX relative path recorded in the manifest */
  rel: string;
  size: number;
  component?: string;
  /**
   * Detects and validates its format (src/format/models.ts). For a compressed archive's member
   * this ran while the archive was listed, and this returns (or throws) what it found.
   */
  inspect(): Promise<ModelFileInfo>;
  /** Opens its bytes, read at positions 0 .. size-1. */
  open(): Promise<ReadSource>;
  /**
   * Set on the members of a compressed archive, which share one forward-only stream: reading
   * them in increasing `order` decompresses the archive once (any other order works, but
   * decompresses it again for each step back).
   */
  order?: number;
  /** Frees what the source's archive holds between reads (idempotent; shared by its members). */
  release?: () => Promise<void>;
}

/** Opens a source, runs fn on it and closes it; file-system errors name the file. */
export async function withSource<T>(f: SourceFile, fn: (src: ReadAt) => Promise<T>): Promise<T> {
  let src: ReadSource;
  try {
    src = await f.open();
  } catch (e) {
    throw fromFsError(e, f.rel);
  }
  try {
    return await fn(src);
  } catch (e) {
    throw fromFsError(e, f.rel);
  } finally {
    await src.close();
  }
}

/**
 * The order to read sources in: files first, in the given order, then the members of
 * compressed archives in archive order. The bundle's layout does not depend on it (each file
 * has its place), so any order gives the same bytes.
 */
export function readOrder(files: readonly SourceFile[]): number[] {
  return files.map((_, i) => i).sort((a, b) => (files[a]!.order ?? -1) - (files[b]!.order ?? -1) || a - b);
}

/** Frees what the sources' archives still hold (after a failure part-way, say). */
export async function releaseSources(files: readonly SourceFile[]): Promise<void> {
  const seen = new Set<() => Promise<void>>();
  for (const f of files) if (f.release && !seen.has(f.release)) seen.add(f.release);
  for (const r of seen) await r();
}
