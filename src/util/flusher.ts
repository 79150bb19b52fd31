/**
 * Deferred, serialized flushing for buffered writers (the usage ledger and the audit log in
 * batched mode): schedule() runs the flush at most flushMs later; flush() runs it now, after any
 * flush in progress; flushes never overlap. The timer never keeps the process alive.
 */
export class Flusher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly flushMs: number,
    private readonly doFlush: () => Promise<void>,
  ) {}

  schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush().catch(() => undefined);
    }, this.flushMs);
    this.timer.unref();
  }

  async flush(): Promise<void> {
    while (this.running) await this.running;
    this.running = this.doFlush().finally(() => {
      this.running = undefined;
    });
    await this.running;
  }

  /** Cancels a scheduled flush and waits for one in progress. */
  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.running) await this.running;
  }
}
