/**
 * What pack needs from an input file: reads at explicit positions. A node:fs FileHandle is one; so
 * is a member of a tar archive (src/bundle/archive.ts), read in place or from a decompressed stream.
 */
export interface ReadAt {
  /**
   * Reads up to `length` bytes at `position` into `buffer` at `offset`; fewer only at the end of
   * the source (0 at or past it). Callers may issue several reads before the first settles; a
   * source that can only go forwards serves them in the order they were issued.
   */
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
}

/** A ReadAt that holds a resource until it is closed. */
export interface ReadSource extends ReadAt {
  close(): Promise<void>;
}
