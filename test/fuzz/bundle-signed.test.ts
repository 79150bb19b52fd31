/**
 * Fuzz: bundles whose manifest carries hostile values and is signed for real by the vendor key
 * (fixtures/vectors/bundles/test-vendor.key), with the derived fields (digests, sizes, key
 * commitment) made to agree, so that every check after the signature sees them: the manifest
 * parser, the layout check, decryption and unpack (paths of 4,001 and 4,096 bytes, 2,000
 * directories deep, sizes and chunk sizes at the bounds, dates the tar header cannot hold, many
 * files and components).
 */
import { describe, it, beforeAll, expect } from 'vitest';
import { inspectBundle } from '../../src/bundle/inspect.js';
import { verifyBundle } from '../../src/bundle/verify.js';
import { cases, fuzz } from './lib.js';
import { all, bundleEnv, signedMutant, type BundleEnv } from './bundle-env.js';
import { signedBundle } from './bundles.js';

describe('fuzz: signed manifests with hostile values', () => {
  let e: BundleEnv;

  beforeAll(async () => {
    e = await bundleEnv('fuzzsigned');
  });

  it('the builder makes bundles that verify and unpack (so that the fuzz reaches decryption)', async () => {
    const p = await e.file(signedBundle(structuredClone(e.manifest), e.vendor, true));
    await verifyBundle(p, e.pub);
    await e.unpackTo(p);
  });

  it('inspectBundle and verifyBundle', async () => {
    const t = await fuzz('signed manifest (inspect, verify)', 0xb003, cases(2000), 10_000, async (r) => {
      const m = signedMutant(r, e);
      const p = await e.file(m.bytes);
      return { desc: m.desc, run: all(() => inspectBundle(p), () => verifyBundle(p, e.pub)) };
    });
    t.report();
    expect(t.counts.get('ok') ?? 0).toBeGreaterThan(0);
  }, 180_000);

  it('unpack and openBundle on a licensed host', async () => {
    const t = await fuzz('signed manifest (unpack, openBundle)', 0xb004, cases(300), 60_000, async (r) => {
      const m = signedMutant(r, e);
      const p = await e.file(m.bytes);
      return { desc: m.desc, run: all(() => e.unpackTo(p), () => e.openAll(p)) };
    });
    t.report();
    expect(t.counts.get('ok') ?? 0).toBeGreaterThan(0);
  }, 180_000);
});
