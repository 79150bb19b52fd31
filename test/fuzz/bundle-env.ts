/**
 * What the bundle fuzzers share (test/fuzz/bundle-bytes.test.ts, bundle-signed.test.ts): a small
 * bundle and a component bundle packed with the test-vector vendor key, a fake host with a licence
 * for them, byte damage, and manifests with hostile values at the bounds.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pack } from '../../src/bundle/pack.js';
import { openBundle } from '../../src/host/open.js';
import { unpack } from '../../src/host/unpack.js';
import { activateLicense } from '../../src/host/licences.js';
import { MlicError } from '../../src/errors.js';
import type { Manifest } from '../../src/format/manifest.js';
import type { MinisignPublicKey } from '../../src/format/minisign.js';
import type { VendorKey } from '../../src/keys/vendor.js';
import { mutateBytes, mutateJson, WEIRD_STRINGS, type Rng } from './lib.js';
import { NOW, deterministicNacl, fastTmp, host, licence, resetHost, vectorKey, vendorPublicKey, type Host } from './fixtures.js';
import { HOSTILE_PATHS, removeTree, signedBundle } from './bundles.js';

const MiB = 1 << 20;
export const KEYS = ['format', 'formatVersion', 'bundleId', 'createdAt', 'model', 'vendor', 'encryption', 'files', 'components', 'index', 'path', 'size', 'sha256', 'chunkSize', 'ciphertextSize', 'ciphertextDigest', 'component', 'name', 'version', 'releaseDate', 'keyId', 'line', 'keyCommitment'];

const SIZES = [0, 1, MiB - 1, MiB, MiB + 1, 2 * MiB, 2 ** 32, 8 * 2 ** 30, 2 ** 40, 2 ** 53 - 1];
const CHUNKS = [MiB - 1, MiB, MiB + 1, 64 * MiB, 64 * MiB + 1, 0, 1];
const DATES = ['1970-01-01T00:00:00Z', '1969-12-31T23:59:59Z', '0000-01-01T00:00:00Z', '2242-03-16T12:56:31Z', '2242-03-16T12:56:32Z', '2300-01-01T00:00:00Z', '9999-12-31T23:59:59Z', '2026-11-01T00:00:00.500Z'];
const VERSIONS = ['2.0.0', '2.1.0-rc.1+build', '4294967295.0.0', '4294967296.0.0', '0.4294967295.1', '0.0.0', '2.0.0-' + 'a'.repeat(300), '99999999999999999999.0.0'];

/** A hostile value in a signed manifest: paths, sizes, chunk sizes, counts and dates at and past their bounds. */
export function hostile(r: Rng, m: Manifest): { manifest: unknown; desc: string } {
  const c = structuredClone(m) as unknown as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const f = c.files[r.int(c.files.length)];
  switch (r.int(9)) {
    case 0: {
      const p = r.pick(HOSTILE_PATHS);
      f.path = p;
      return { manifest: c, desc: `path of ${Buffer.byteLength(p)} bytes (${p.slice(0, 12)}...)` };
    }
    case 1:
      f.size = r.pick(SIZES);
      return { manifest: c, desc: `size ${f.size}` };
    case 2:
      f.chunkSize = r.pick(CHUNKS);
      if (r.chance(0.5)) f.size = r.pick(SIZES);
      return { manifest: c, desc: `chunkSize ${f.chunkSize}, size ${f.size}` };
    case 3:
      c.createdAt = r.pick(DATES);
      if (r.chance(0.5)) c.model.releaseDate = r.pick(DATES);
      return { manifest: c, desc: `dates ${c.createdAt} / ${c.model.releaseDate}` };
    case 4:
      c.model.version = r.pick(VERSIONS);
      return { manifest: c, desc: `version ${c.model.version}` };
    case 5: {
      // many files: counts at bounds
      const n = r.pick([2, 17, 64, r.chance(0.2) ? 300 : 5]);
      c.files = Array.from({ length: n }, (_, i) => ({ ...c.files[i % c.files.length], index: i, path: `f/${String(i).padStart(5, '0')}`, size: r.chance(0.8) ? 0 : r.int(100) }));
      return { manifest: c, desc: `${n} files` };
    }
    case 6: {
      // components: unknown names, duplicates, out of range, many
      const n = r.pick([0, 1, 2, 64, 65, 300]);
      c.components = Array.from({ length: n }, (_, i) => ({ name: r.chance(0.8) ? `c${i % 3}` : r.pick(WEIRD_STRINGS), files: r.pick([[], [0], [0, 0], [c.files.length], [-1], [0, 1, 2]]) }));
      for (const x of c.files) if (r.chance(0.6)) x.component = r.pick(['c0', 'c1', 'zz', 'c0']);
      return { manifest: c, desc: `${n} components` };
    }
    case 7:
      // the same path twice, or one path the prefix of another
      c.files[c.files.length - 1].path = r.chance(0.5) ? c.files[0].path : `${c.files[0].path}/x`;
      return { manifest: c, desc: 'path collision' };
    default: {
      f.index = r.pick([-1, c.files.length, 2 ** 32, 0.5]);
      return { manifest: c, desc: `index ${f.index}` };
    }
  }
}

/** The bundles, host and helpers both bundle fuzzers share (test/fuzz/bundle-*.test.ts). */
export interface BundleEnv {
  vendor: VendorKey;
  pub: MinisignPublicKey;
  A: Host;
  dir: string;
  good: Buffer;
  manifest: Manifest;
  compManifest: Manifest;
  /** writes bytes as a bundle file (a few names, reused) */
  file(bytes: Buffer): Promise<string>;
  unpackTo(p: string): Promise<void>;
  openAll(p: string): Promise<void>;
}

export async function bundleEnv(name: string): Promise<BundleEnv> {
  const vendor = await vectorKey();
  const dir = await fastTmp(`mlic-fuzz-${name}-`);
  const src = join(dir, 'src');
  await mkdir(join(src, 'sub'), { recursive: true });
  await writeFile(join(src, 'config.json'), '{"hidden":4}\n');
  await writeFile(join(src, 'weights.bin'), Buffer.alloc(3000, 7));
  await writeFile(join(src, 'sub', 'tokenizer.txt'), 'a b c\n');
  const date = new Date('2026-11-01T00:00:00Z');
  const goodPath = join(dir, 'good.mlb');
  const manifest = (await pack({ input: src, name: 'vector-model', version: '2.1.0', key: vendor, out: goodPath, now: date, releaseDate: date, bundleId: '00112233445566778899aabbccddeeff' })).manifest;
  const compManifest = (await pack({ components: [{ name: 'det', path: join(src, 'sub') }, { name: 'ocr', path: join(src, 'config.json') }], name: 'vector-model', version: '2.2.0', key: vendor, out: join(dir, 'comp.mlb'), now: date, releaseDate: date, bundleId: 'ffeeddccbbaa99887766554433221100' })).manifest;
  const A = await host(name, vendor);
  await resetHost(A);
  const lic = await deterministicNacl('bundle licence', () => licence(vendor, { request: A.request, features: ['batch'] }, 'bundle'));
  await activateLicense(lic.text, { stateDir: A.fake.stateDir, hostProbe: A.fake.probe(), now: NOW });
  const hostOpts = () => ({ stateDir: A.fake.stateDir, hostProbe: A.fake.probe(), now: NOW });
  await unpack(goodPath, join(dir, 'out-good'), hostOpts());
  let count = 0;
  return {
    vendor,
    pub: vendorPublicKey(vendor),
    A,
    dir,
    good: await readFile(goodPath),
    manifest,
    compManifest,
    async file(bytes) {
      const p = join(dir, `m${count++ % 4}.mlb`);
      await writeFile(p, bytes);
      return p;
    },
    async unpackTo(p) {
      const out = join(dir, `out-${count++}`);
      try {
        await unpack(p, out, hostOpts());
      } finally {
        await removeTree(out);
      }
    },
    async openAll(p) {
      const b = await openBundle(p, hostOpts());
      await b.close();
    },
  };
}

/** Runs each step, so that every one of them sees the input; the first MlicError is the outcome, any other error fails. */
export const all =
  (...steps: (() => Promise<unknown>)[]) =>
  async (): Promise<void> => {
    let first: MlicError | undefined;
    for (const s of steps) {
      try {
        await s();
      } catch (e) {
        if (!(e instanceof MlicError)) throw e;
        first ??= e;
      }
    }
    if (first) throw first;
  };

/** Byte damage, mostly where the parsers look: the headers, the manifest and the signature. */
export function damaged(r: Rng, good: Buffer): { desc: string; bytes: Buffer } {
  const headEnd = 2048 + 1024;
  if (r.chance(0.7)) {
    const m = mutateBytes(r, good.subarray(0, headEnd));
    return { desc: `head: ${m.desc}`, bytes: Buffer.concat([m.bytes, good.subarray(headEnd)]) };
  }
  const m = mutateBytes(r, good);
  return { desc: `anywhere: ${m.desc}`, bytes: m.bytes };
}

/** A manifest mutated (generic JSON mutations, or hostile values at the bounds), signed, in a bundle. */
export function signedMutant(r: Rng, e: BundleEnv): { desc: string; bytes: Buffer } {
  const base = r.chance(0.8) ? e.manifest : e.compManifest;
  const fixup = r.chance(0.75);
  if (r.chance(0.5)) {
    const h = hostile(r, base);
    return { desc: `${fixup ? 'fixed-up ' : ''}hostile ${h.desc}`, bytes: signedBundle(h.manifest, e.vendor, fixup) };
  }
  const m = mutateJson(r, base, [base === e.manifest ? e.compManifest : e.manifest], KEYS);
  return { desc: `${fixup ? 'fixed-up ' : ''}json ${m.desc}`, bytes: signedBundle({ ast: m.ast }, e.vendor, fixup) };
}
