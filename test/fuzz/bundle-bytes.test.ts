/**
 * Fuzz: damaged bundles, through what `mlic inspect`, `mlic verify B --pub`, `mlic unpack` and
 * `mlic run` call (inspectBundle, verifyBundle, authorizeBundle -> unpack / openBundle on a fake
 * host with an installed licence).
 */
import { describe, it, beforeAll } from 'vitest';
import { inspectBundle } from '../../src/bundle/inspect.js';
import { verifyBundle } from '../../src/bundle/verify.js';
import { cases, fuzz } from './lib.js';
import { all, bundleEnv, damaged, type BundleEnv } from './bundle-env.js';

describe('fuzz: damaged bundles', () => {
  let e: BundleEnv;

  beforeAll(async () => {
    e = await bundleEnv('fuzzbytes');
  });

  it('inspectBundle and verifyBundle', async () => {
    const t = await fuzz('bundle bytes (inspect, verify)', 0xb001, cases(2500), 10_000, async (r) => {
      const m = damaged(r, e.good);
      const p = await e.file(m.bytes);
      return { desc: m.desc, run: all(() => inspectBundle(p), () => verifyBundle(p, e.pub)) };
    });
    t.report();
  }, 180_000);

  it('unpack and openBundle on a licensed host', async () => {
    const t = await fuzz('bundle bytes (unpack, openBundle)', 0xb002, cases(300), 30_000, async (r) => {
      const m = damaged(r, e.good);
      const p = await e.file(m.bytes);
      return { desc: m.desc, run: all(() => e.unpackTo(p), () => e.openAll(p)) };
    });
    t.report();
  }, 180_000);
});
