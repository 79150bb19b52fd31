import { describe, it, expect } from 'vitest';
import * as nodeCrypto from 'node:crypto';
import { randomBytes, createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { chunkKernel } from '../../src/crypto/kernel.js';
import { CryptoEngine } from '../../src/crypto/engine.js';
import { chunkNonce, openChunk, sealChunk } from '../../src/crypto/stream.js';
import { MlicError } from '../../src/errors.js';
import { mapLimit } from '../../src/util/limit.js';

const k = chunkKernel(nodeCrypto);
const MiB = 1 << 20;
const sizes = [0, 1, 15, 16, 65535, 65536, 65537, 3 * 65536 + 5, MiB];

describe('chunk kernel (the code the workers run)', () => {
  it('seals exactly as sealChunk does, and hashes the ciphertext', () => {
    for (const n of sizes) {
      const key = randomBytes(32);
      const plain = randomBytes(n);
      const dst = Buffer.alloc(n + 16 + 7, 0xee);
      const r = k.seal(key, chunkNonce(5, n % 2 === 1), plain, dst, true);
      const want = sealChunk(key, 5, n % 2 === 1, plain);
      expect(dst.subarray(0, n + 16).equals(want), `size ${n}`).toBe(true);
      expect(dst.subarray(n + 16).every((b) => b === 0xee)).toBe(true);
      expect(Buffer.from(r.tag).equals(want.subarray(n))).toBe(true);
      expect(Buffer.from(r.ctHash!).equals(createHash('sha256').update(want.subarray(0, n)).digest())).toBe(true);
    }
  });

  it('opens what sealChunk sealed; a damaged chunk leaves the output zeroed', () => {
    for (const n of sizes) {
      const key = randomBytes(32);
      const plain = randomBytes(n);
      const sealed = sealChunk(key, 9, true, plain);
      const dst = Buffer.alloc(n);
      expect(k.open(key, chunkNonce(9, true), sealed, dst)).toBe(true);
      expect(dst.equals(plain)).toBe(true);
      expect(openChunk(key, 9, true, sealed)!.equals(plain)).toBe(true);
      const bad = Buffer.from(sealed);
      bad[Math.floor(bad.length / 2)]! ^= 1;
      const dst2 = Buffer.alloc(n, 0x55);
      expect(k.open(key, chunkNonce(9, true), bad, dst2)).toBe(false);
      expect(dst2.every((b) => b === 0)).toBe(true);
      expect(k.open(key, chunkNonce(9, false), sealed, Buffer.alloc(n))).toBe(false);
    }
  });
});

describe('crypto engine', () => {
  const key = randomBytes(32);
  const run = async (workers: number) => {
    const e = new CryptoEngine({ workers, slots: 3, regionSize: MiB + 16, queueDepth: workers ? Infinity : 2 });
    try {
      const out: string[] = [];
      const h = e.streamHasher();
      await mapLimit([0, 1, 2, 3, 4, 5], 3, async (i) => {
        const s = await e.acquire();
        try {
          const plain = createHash('sha512').update(`p${i}`).digest();
          const len = i * 100_000 + 64;
          for (let o = 0; o < len; o += 64) plain.copy(s.a, o, 0, Math.min(64, len - o));
          const { tag, ctHash } = await e.seal(key, chunkNonce(i, i === 5), s, len);
          out[i] = `${tag.toString('hex')}:${ctHash.toString('hex')}:${(await e.sha256(s, 'b', len)).toString('hex')}`;
          expect(Buffer.from(s.b.subarray(len, len + 16)).equals(tag)).toBe(true);
          // open it back from a copy in region a
          s.b.copy(s.a, 0, 0, len + 16);
          expect(await e.open(key, chunkNonce(i, i === 5), s, len + 16)).toBe(true);
        } finally {
          e.release(s);
        }
      });
      const s = await e.acquire();
      for (let i = 0; i < 4; i++) {
        s.a.fill(i, 0, 1000);
        await h.update(s, 'a', 1000);
      }
      e.release(s);
      out.push((await h.digest()).toString('hex'));
      return out;
    } finally {
      await e.close();
    }
  };

  it('gives the same results on worker threads as on this thread', async () => {
    const local = await run(0);
    expect(await run(1)).toEqual(local);
    expect(await run(2)).toEqual(local);
    const h = createHash('sha256');
    for (let i = 0; i < 4; i++) h.update(Buffer.alloc(1000, i));
    expect(local.at(-1)).toBe(h.digest('hex'));
  });

  it('an error inside a worker rejects with INTERNAL, and every later job too; nothing hangs', async () => {
    const e = new CryptoEngine({ workers: 1, slots: 2, regionSize: 4096, queueDepth: Infinity });
    try {
      const s = await e.acquire();
      const err = await e.seal(randomBytes(31), chunkNonce(0, true), s, 100).catch((x: unknown) => x);
      expect(err).toBeInstanceOf(MlicError);
      expect((err as MlicError).code).toBe('INTERNAL');
      expect((err as MlicError).message).toMatch(/crypto worker failed/);
      await expect(e.sha256(s, 'a', 10)).rejects.toMatchObject({ code: 'INTERNAL' });
    } finally {
      await e.close();
    }
  });

  it('a worker that dies while a job is waiting rejects the job with INTERNAL', async () => {
    const e = new CryptoEngine({ workers: 1, slots: 1, regionSize: MiB + 16, queueDepth: Infinity });
    try {
      const s = await e.acquire();
      const worker = (e as unknown as { lanes: { worker: Worker }[] }).lanes[0]!.worker;
      const jobs = Array.from({ length: 8 }, () => e.sha256(s, 'a', MiB).catch((x: unknown) => x));
      await worker.terminate();
      const results = await Promise.all(jobs);
      expect(results.some((r) => r instanceof MlicError && r.code === 'INTERNAL' && /exited unexpectedly/.test(r.message))).toBe(true);
      await expect(e.acquire()).rejects.toMatchObject({ code: 'INTERNAL' });
    } finally {
      await e.close();
    }
  });

  it('bounds memory: acquire waits for a free slot; close() rejects the waiters', async () => {
    const e = new CryptoEngine({ workers: 0, slots: 1, regionSize: 4096 });
    const s = await e.acquire();
    let got = false;
    const w = e.acquire().then(() => (got = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(got).toBe(false);
    e.release(s);
    await w;
    expect(got).toBe(true);
    const w2 = e.acquire().catch((x: unknown) => x);
    await e.close();
    expect(await w2).toMatchObject({ code: 'INTERNAL' });
  });

  it('never keeps the process alive: a program that forgets close() still exits', () => {
    const dist = fileURLToPath(new URL('../../dist/crypto/engine.js', import.meta.url));
    const prog = `
      const { CryptoEngine } = await import(${JSON.stringify(dist)});
      const e = new CryptoEngine({ workers: 2, slots: 2, regionSize: 65536, queueDepth: Infinity });
      const s = await e.acquire();
      const h = await e.sha256(s, 'a', 1000);
      console.log(h.length);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', prog], { encoding: 'utf8', timeout: 20_000 });
    expect(r.error).toBeUndefined();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('32');
  });
});

describe('crypto engine failures', () => {
  const dist = (m: string) => JSON.stringify(fileURLToPath(new URL(`../../dist/${m}`, import.meta.url)));

  it('a worker that dies while a chunk is being written: encryptFileInto rejects with INTERNAL, nothing is left unhandled', () => {
    // Run in a child: an unhandled rejection there ends the process with a stack instead of the MlicError.
    const prog = `
      const { CryptoEngine } = await import(${dist('crypto/engine.js')});
      const { encryptFileInto } = await import(${dist('bundle/encrypt.js')});
      const { randomBytes } = await import('node:crypto');
      const chunk = 1 << 20, size = 3 * chunk, data = randomBytes(size);
      const engine = new CryptoEngine({ workers: 2, slots: 64, regionSize: chunk + 16 });
      const lanes = engine['lanes'];
      const src = { read: async (buf, off, len, pos) => { const n = Math.max(0, Math.min(len, size - pos)); data.copy(buf, off, pos, pos + n); return { bytesRead: n }; } };
      let first = true;
      const out = {
        write: (buf, off, len) => {
          if (first) { first = false; setTimeout(() => void lanes[0].worker.terminate(), 20); }
          return new Promise((r) => setTimeout(() => r({ bytesWritten: len }), 300));
        },
        datasync: async () => {},
      };
      // keep the hashing lane busy, so that the chunks' hash updates are queued while they are written
      void lanes[0].post({ op: 'hash', src: 0, len: engine.arena.byteLength }).catch(() => {});
      try { await encryptFileInto(src, size, randomBytes(32), chunk, out, 0, undefined, 'f', { engine }); console.log('resolved'); }
      catch (e) { console.log('rejected', e.code); }
      await engine.close();`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', prog], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('rejected INTERNAL');
    expect(r.stderr).not.toMatch(/Unhandled|PromiseRejection/);
  });

  it('close() answers a job still in flight (it rejects), never leaves it waiting', async () => {
    const e = new CryptoEngine({ workers: 1, slots: 2, regionSize: 1 << 20, hashQueueDepth: Infinity });
    const s = await e.acquire();
    const job = e.sha256(s, 'a', 1 << 20).then(() => 'resolved', (x: unknown) => (x as MlicError).code);
    await e.close();
    const r = await Promise.race([job, new Promise((res) => setTimeout(() => res('pending'), 2000))]);
    expect(['INTERNAL', 'resolved']).toContain(r);
  });
});

describe('mapLimit', () => {
  it('keeps order and the limit', async () => {
    let running = 0;
    let peak = 0;
    const r = await mapLimit([5, 1, 4, 2, 3, 0], 2, async (x) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((res) => setTimeout(res, x * 3));
      running--;
      return x * 10;
    });
    expect(r).toEqual([50, 10, 40, 20, 30, 0]);
    expect(peak).toBe(2);
  });

  it('starts nothing after a failure, waits for the running ones, throws the lowest failure', async () => {
    const started: number[] = [];
    const finished: number[] = [];
    const err = await mapLimit([0, 1, 2, 3, 4, 5], 3, async (x) => {
      started.push(x);
      await new Promise((res) => setTimeout(res, x === 0 ? 20 : x === 2 ? 30 : 5));
      if (x === 1 || x === 2) throw new Error(`boom ${x}`);
      finished.push(x);
    }).catch((e: Error) => e);
    expect((err as Error).message).toBe('boom 1');
    expect(started).toEqual([0, 1, 2]);
    expect(finished).toEqual([0]);
  });
});
