/** A one-line progress display on stderr (bytes, rate, ETA), only when stderr is a TTY and not --json. */
export interface Progress {
  update(done: number, total: number): void;
  done(): void;
}

const fmt = (n: number) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`);

export function makeProgress(label: string, json: boolean): Progress {
  if (json || !process.stderr.isTTY) return { update() {}, done() {} };
  const start = Date.now();
  let last = 0;
  let shown = false;
  return {
    update(done, total) {
      const now = Date.now();
      // Only operations that last: nothing for the first 300 ms, then at most 10 updates a second.
      if (now - start < 300 || (now - last < 100 && done < total)) return;
      last = now;
      shown = true;
      const secs = (now - start) / 1000;
      const rate = secs > 0 ? done / secs : 0;
      const eta = rate > 0 ? Math.max(0, (total - done) / rate) : 0;
      const pct = total > 0 ? ((100 * done) / total).toFixed(0) : '100';
      process.stderr.write(`\r\x1b[K${label} ${fmt(done)} / ${fmt(total)} (${pct}%) ${fmt(rate)}/s ETA ${eta.toFixed(0)}s`);
    },
    done() {
      if (shown) process.stderr.write('\r\x1b[K');
    },
  };
}
