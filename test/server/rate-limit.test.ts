/**
 * Rate limits on the public routes: per licence key and per client address, 429 RATE_LIMITED with
 * Retry-After, refilled with time; bounded memory. The limiter with a fake clock, and a real server
 * process with small limits.
 */
import { describe, it, expect } from 'vitest';
import { join } from 'node:path';
import { MlicError } from '../../src/errors.js';
import { RateLimiter, MAX_BUCKETS } from '../../src/server/rate-limit.js';
import { mlic } from '../cli/run.js';
import { tmp } from '../helpers.js';
import { startServer, stop } from './process.js';

describe('RateLimiter', () => {
  it('allows a minute\'s allowance at once, then one per 60/N seconds; buckets are separate; 0 is no limit', () => {
    let t = 0;
    const r = new RateLimiter(6, 'here', () => t);
    for (let i = 0; i < 6; i++) r.take('a');
    let e: unknown;
    try {
      r.take('a');
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(MlicError);
    expect((e as MlicError).code).toBe('RATE_LIMITED');
    expect((e as MlicError).details).toEqual({ retryAfter: 10 });
    r.take('b'); // another client is not affected
    t += 9_000;
    expect(() => r.take('a')).toThrow(/retry in 1 s/);
    t += 1_500;
    r.take('a');
    expect(() => r.take('a')).toThrow();
    const none = new RateLimiter(0, 'here', () => t);
    for (let i = 0; i < 10_000; i++) none.take('x');
    expect(none.size).toBe(0);
  });

  it(`keeps at most ${MAX_BUCKETS} buckets, dropping the least recently used`, () => {
    const r = new RateLimiter(1, 'here', () => 0);
    r.take('first');
    for (let i = 0; i < MAX_BUCKETS; i++) r.take(`c${i}`);
    expect(r.size).toBe(MAX_BUCKETS);
    r.take('first'); // dropped: full again
    expect(() => r.take(`c${MAX_BUCKETS - 1}`)).toThrow();
  });
});

describe('a server with rate limits', () => {
  it('answers 429 RATE_LIMITED with Retry-After past the limit per licence key and per address', async () => {
    const v = await tmp('mlic-vendor-');
    expect((await mlic(['keygen', '-o', v, '--name', 'acme', '--unencrypted'])).code).toBe(0);
    const s = await startServer(['--data', join(await tmp(), 'd'), '--key', join(v, 'acme.key'), '--rate-limit-key', '2', '--rate-limit-address', '4']);
    try {
      const post = (licenseKey: string) =>
        fetch(`${s.url}/v1/activations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ licenseKey, request: '{}' }) });
      const k1 = 'MLIC-00000-00000-00000-00000';
      expect((await post(k1)).status).toBe(400); // a bad request, but counted
      expect((await post(k1.toLowerCase())).status).toBe(400); // the same key in another case
      const third = await post(k1);
      expect(third.status).toBe(429);
      expect(third.headers.get('retry-after')).toBe('30');
      expect(((await third.json()) as { error: { code: string } }).error.code).toBe('RATE_LIMITED');
      expect((await post('MLIC-11111-11111-11111-11111')).status).toBe(400); // the 4th from this address
      const fifth = await post('MLIC-22222-22222-22222-22222');
      expect(fifth.status).toBe(429);
      expect(((await fifth.json()) as { error: { message: string } }).error.message).toMatch(/from this address/);
      // the admin API and health checks are not limited
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
      // the CLI says it and exits 2
      const cli = await mlic(['activate', '--online', s.url, '--license-key', k1, '--json'], { env: { MLIC_HOME: join(await tmp(), 'h') } });
      expect([cli.code, cli.json.error.code]).toEqual([2, 'RATE_LIMITED']);
    } finally {
      expect(await stop(s)).toBe(0);
    }
  }, 30_000);

  it('--trust-proxy takes the address the proxy in front appended: a client rotating the first X-Forwarded-For entry does not escape the limit', async () => {
    const s = await startServer(['--data', join(await tmp(), 'd'), '--rate-limit-address', '2', '--trust-proxy']);
    try {
      const post = (xff: string) =>
        fetch(`${s.url}/v1/deactivations`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': xff }, body: JSON.stringify({ deactivation: '{}' }) });
      expect((await post('10.0.0.1, 203.0.113.7')).status).toBe(400);
      expect((await post('10.0.0.2, 203.0.113.7')).status).toBe(400);
      expect((await post('10.0.0.3, 203.0.113.7')).status).toBe(429);
      expect((await post('10.0.0.4, 203.0.113.8')).status).toBe(400); // another client behind the proxy
      expect(s.stdout()).toContain('"ip":"203.0.113.7"');
    } finally {
      expect(await stop(s)).toBe(0);
    }
  }, 30_000);

  it('refuses a limit that is not a number', async () => {
    const r = await mlic(['server', 'start', '--data', join(await tmp(), 'd'), '--rate-limit-key', 'many', '--json']);
    expect([r.code, r.json.error.code]).toEqual([2, 'USAGE']);
  });
});
