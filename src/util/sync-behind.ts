/**
 * Flushes a file being written to disk as it grows (fdatasync on the thread pool every
 * `every` bytes, one at a time), so that the final fsync before a rename does not stall on a
 * gigabyte of dirty pages. Shared by every writer of one file; settle() waits for the flush in
 * progress and reports its failure.
 */
import type { FileHandle } from 'node:fs/promises';

export class SyncBehind {
  private unsynced = 0;
  private running: Promise<void> | undefined;
  private failure: unknown;

  constructor(
    private readonly fh: FileHandle,
    private readonly every = 64 << 20,
  ) {}

  /** Records n bytes written; starts a flush when enough are waiting and none is running. */
  wrote(n: number): void {
    this.unsynced += n;
    if (this.unsynced < this.every || this.running || this.failure !== undefined) return;
    this.unsynced = 0;
    this.running = this.fh.datasync().then(
      () => {
        this.running = undefined;
      },
      (e: unknown) => {
        this.running = undefined;
        this.failure ??= e;
      },
    );
  }

  async settle(): Promise<void> {
    await this.running;
    if (this.failure !== undefined) throw this.failure;
  }
}
