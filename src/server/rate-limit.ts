/**
 * Rate limits for the public routes: token buckets per client address (activations, deactivations
 * and usage reports) and per licence key (activations), so that licence keys cannot be guessed at
 * speed and one customer cannot flood the server. A bucket holds a minute's allowance and refills
 * continuously. The buckets live in each server process's memory: with several processes behind a
 * load balancer, each enforces its own limit (docs/SERVER.md says so). Memory is bounded: past
 * MAX_BUCKETS the least recently used buckets are dropped (a dropped bucket starts full again).
 */
import { MlicError } from '../errors.js';

export const MAX_BUCKETS = 100_000;

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /** perMinute 0: no limit */
  constructor(
    readonly perMinute: number,
    private readonly what: string,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /** Takes one token for `id`, or throws RATE_LIMITED with the seconds until the next one. */
  take(id: string): void {
    if (this.perMinute <= 0) return;
    const now = this.clock();
    const b = this.buckets.get(id);
    let tokens = this.perMinute;
    if (b) {
      tokens = Math.min(this.perMinute, b.tokens + ((now - b.at) / 60_000) * this.perMinute);
      this.buckets.delete(id); // re-inserted below: Map order is recency
    } else if (this.buckets.size >= MAX_BUCKETS) this.buckets.delete(this.buckets.keys().next().value!);
    if (tokens < 1) {
      this.buckets.set(id, { tokens, at: now });
      const retryAfter = Math.max(1, Math.ceil(((1 - tokens) * 60) / this.perMinute - 1e-9));
      throw new MlicError('RATE_LIMITED', `too many requests ${this.what} (at most ${this.perMinute} a minute); retry in ${retryAfter} s`, { details: { retryAfter } });
    }
    this.buckets.set(id, { tokens: tokens - 1, at: now });
  }

  get size(): number {
    return this.buckets.size;
  }
}
