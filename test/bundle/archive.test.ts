import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFile, cp, link, mkdir, readdir, readFile, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pack, type PackOptions } from '../../src/bundle/pack.js';
import { collectInputs } from '../../src/bundle/collect.js';
import { withSource } from '../../src/bundle/sources.js';
import { MlicError } from '../../src/errors.js';
import type { VendorKey } from '../../src/keys/vendor.js';
import { codeOf, decryptAll, key, prng, tmp, writeRandom } from '../helpers.js';
import { gnuTar, makeTar, type TarSpec } from '../archive-helpers.js';

const FIX = new URL('../../fixtures/models/', import.meta.url).pathname;
const FIXED = { bundleId: '0123456789abcdef0123456789abcdef', now: new Date('2026-01-02T03:04:05Z'), name: 'm', version: '1.0.0' };

/** A model directory with what an archive must carry faithfully. */
async function makeModel(dir: string, { long = true } = {}): Promise<void> {
  await cp(join(FIX, 'onnx-external'), join(dir, 'onnx'), { recursive: true });
  await cp(join(FIX, 'sharded'), join(dir, 'sharded'), { recursive: true });
  await copyFile(join(FIX, 'tiny.gguf'), join(dir, 'tiny.gguf'));
  await writeRandom(join(dir, 'big.bin'), 3 * 2 ** 20 + 17, 3); // several chunks
  await writeFile(join(dir, 'empty.txt'), '');
  await writeFile(join(dir, '._big.bin'), Buffer.from([0x00, 0x05, 0x16, 0x07, 0, 2, 0, 0])); // macOS AppleDouble: a file like any other
  await writeFile(join(dir, 'ünïcode-名前.txt'), 'text\n');
  await mkdir(join(dir, 'emptydir'));
  // A path of 100..255 bytes (ustar prefix) and, unless ustar, one over 255 (pax path / GNU long name).
  const d90 = 'd'.repeat(90);
  await mkdir(join(dir, d90), { recursive: true });
  await writeFile(join(dir, d90, `${'f'.repeat(60)}.json`), '{"a":1}');
  if (long) {
    const deep = join(dir, 'x'.repeat(120), 'y'.repeat(100));
    await mkdir(deep, { recursive: true });
    await writeFile(join(deep, `${'z'.repeat(110)}.txt`), 'deep\n');
  }
}

async function bundleOf(k: VendorKey, out: string, o: Partial<PackOptions>): Promise<Buffer> {
  await pack({ ...FIXED, key: k, out, ...o });
  return readFile(out);
}

/** Packs the archive and (after GNU tar extracts it) the directory; the bundles must be identical. */
async function expectSameAsExtracted(k: VendorKey, archive: string, extractFlags: string[] = ['-xf']): Promise<Buffer> {
  const w = await tmp();
  const x = join(w, 'x');
  await mkdir(x);
  gnuTar([...extractFlags, archive, '-C', x]);
  const fromDir = await bundleOf(k, join(w, 'dir.mlb'), { input: x });
  const fromArchive = await bundleOf(k, join(w, 'archive.mlb'), { input: archive });
  const [a, b] = [await decryptAll(join(w, 'dir.mlb'), k), await decryptAll(join(w, 'archive.mlb'), k)];
  expect([...b.keys()]).toEqual([...a.keys()]);
  for (const [p, bytes] of a) expect(b.get(p)!.equals(bytes), p).toBe(true);
  expect(fromArchive.equals(fromDir)).toBe(true);
  return fromArchive;
}

describe('pack a tar archive as its extracted directory', () => {
  const k = key();
  let base: string;
  beforeAll(async () => {
    base = await tmp();
    await makeModel(join(base, 'model'));
    await makeModel(join(base, 'short'), { long: false });
  });

  it('GNU format .tar, .tar.gz and .tgz (names "model/...", GNU long names)', async () => {
    const w = await tmp();
    gnuTar(['-cf', join(w, 'm.tar'), '-C', base, 'model']);
    gnuTar(['-czf', join(w, 'm.tar.gz'), '-C', base, 'model']);
    await copyFile(join(w, 'm.tar.gz'), join(w, 'm.tgz'));
    const a = await expectSameAsExtracted(k, join(w, 'm.tar'));
    const b = await expectSameAsExtracted(k, join(w, 'm.tar.gz'), ['-xzf']);
    const c = await expectSameAsExtracted(k, join(w, 'm.tgz'), ['-xzf']);
    expect(b.equals(a) && c.equals(a)).toBe(true);
  });

  it('pax format (names "./...", pax paths over 255 bytes), plain and gzip', async () => {
    const w = await tmp();
    gnuTar(['--format=pax', '-cf', join(w, 'm.tar'), '-C', join(base, 'model'), '.']);
    gnuTar(['--format=pax', '-czf', join(w, 'm.tgz'), '-C', join(base, 'model'), '.']);
    await expectSameAsExtracted(k, join(w, 'm.tar'));
    await expectSameAsExtracted(k, join(w, 'm.tgz'), ['-xzf']);
  });

  it('ustar format (the prefix field), plain and gzip', async () => {
    const w = await tmp();
    gnuTar(['--format=ustar', '-cf', join(w, 'm.tar'), '-C', base, 'short']);
    gnuTar(['--format=ustar', '-czf', join(w, 'm.tgz'), '-C', base, 'short']);
    await expectSameAsExtracted(k, join(w, 'm.tar'));
    await expectSameAsExtracted(k, join(w, 'm.tgz'), ['-xzf']);
  });

  it('an archive as a component, next to a directory component', async () => {
    const w = await tmp();
    gnuTar(['-czf', join(w, 'm.tgz'), '-C', join(base, 'model'), '.']);
    const x = join(w, 'x');
    await mkdir(x);
    gnuTar(['-xzf', join(w, 'm.tgz'), '-C', x]);
    const other = join(base, 'short', 'onnx');
    const fromDir = await bundleOf(k, join(w, 'dir.mlb'), { components: [{ name: 'main', path: x }, { name: 'aux', path: other }] });
    const fromArchive = await bundleOf(k, join(w, 'archive.mlb'), { components: [{ name: 'main', path: join(w, 'm.tgz') }, { name: 'aux', path: other }] });
    expect(fromArchive.equals(fromDir)).toBe(true);
    const files = await decryptAll(join(w, 'archive.mlb'), k);
    expect(files.get('main/big.bin')!.equals(await readFile(join(base, 'model', 'big.bin')))).toBe(true);
  });

  it('a .tar with links inside it: packed with the target content, as a directory pack follows them', async () => {
    const w = await tmp();
    const m = join(w, 'm');
    await mkdir(join(m, 'blobs'), { recursive: true });
    await mkdir(join(m, 'snap'));
    await writeRandom(join(m, 'blobs', 'abc'), 5000, 9);
    await symlink('../blobs/abc', join(m, 'snap', 'model.safetensors.bin'));
    await symlink('snap/model.safetensors.bin', join(m, 'chain.bin'));
    await link(join(m, 'blobs', 'abc'), join(m, 'hard.bin'));
    gnuTar(['-cf', join(w, 'm.tar'), '-C', m, '.']);
    await expectSameAsExtracted(k, join(w, 'm.tar'));
  });

  it('a member the detector reads back from past its first 64 KiB (re-streamed from the .tgz)', async () => {
    const w = await tmp();
    const m = join(w, 'm');
    await mkdir(m);
    // Starts like a safetensors header of 70000 bytes, so detection reads that far, fails,
    // then (named .json) reads the whole file again from byte 0.
    const b = Buffer.alloc(8 + 70000, 'x');
    b.writeBigUInt64LE(70000n, 0);
    b[8] = 0x7b;
    await writeFile(join(m, 'weird.json'), b);
    await writeFile(join(m, 'after.json'), '{"ok":true}');
    gnuTar(['-czf', join(w, 'm.tgz'), '-C', m, '.']);
    const bundle = await expectSameAsExtracted(k, join(w, 'm.tgz'), ['-xzf']);
    expect(bundle.length).toBeGreaterThan(70000);
  });

  it('model checks across files: a missing ONNX external data file, a bad safetensors member (MODEL_INVALID)', async () => {
    const w = await tmp();
    gnuTar(['-czf', join(w, 'noext.tgz'), '-C', join(FIX, 'onnx-external'), 'model.onnx']);
    expect(await codeOf(pack({ ...FIXED, key: k, out: join(w, 'a.mlb'), input: join(w, 'noext.tgz') }))).toBe('MODEL_INVALID');
    gnuTar(['-cf', join(w, 'bad.tar'), '-C', join(FIX, 'bad'), 'truncated-header.safetensors']);
    expect(await codeOf(pack({ ...FIXED, key: k, out: join(w, 'b.mlb'), input: join(w, 'bad.tar') }))).toBe('MODEL_INVALID');
    gnuTar(['-czf', join(w, 'bad.tgz'), '-C', join(FIX, 'bad'), 'truncated-header.safetensors', 'bad-magic.gguf']);
    const e = await pack({ ...FIXED, key: k, out: join(w, 'c.mlb'), input: join(w, 'bad.tgz') }).catch((x: unknown) => x);
    expect((e as MlicError).code).toBe('MODEL_INVALID');
    // Reported in bundle (path) order, as for a directory, not archive order.
    expect((e as MlicError).message).toContain('bad-magic.gguf');
    expect((await readdir(w)).filter((n) => n.endsWith('.mlb'))).toEqual([]);
  });
});

describe('archive members read out of order: still the right bytes', () => {
  it('.tgz members opened in reverse archive order (each step back decompresses again)', async () => {
    const w = await tmp();
    const m = join(w, 'm');
    await mkdir(m);
    const want = new Map<string, Buffer>();
    for (let i = 0; i < 4; i++) want.set(`f${i}.bin`, await writeRandom(join(m, `f${i}.bin`), 100_000 + i, 20 + i));
    gnuTar(['-czf', join(w, 'm.tgz'), '-C', m, 'f0.bin', 'f1.bin', 'f2.bin', 'f3.bin']);
    const sources = await collectInputs([{ path: join(w, 'm.tgz'), prefix: '' }]);
    try {
      for (const f of [...sources].reverse()) {
        const got = await withSource(f, async (src) => {
          const b = Buffer.alloc(f.size);
          // Two reads in flight at once, as the encryptor issues them.
          const half = Math.floor(f.size / 2);
          const [r1, r2] = await Promise.all([src.read(b, 0, half, 0), src.read(b, half, f.size - half, half)]);
          expect(r1.bytesRead + r2.bytesRead).toBe(f.size);
          return b;
        });
        expect(got.equals(want.get(f.rel)!), f.rel).toBe(true);
      }
    } finally {
      for (const f of sources) await f.release?.();
    }
  });
});

describe('archives refused as a directory pack refuses (same codes), nothing written', () => {
  const k = key();
  const packArchive = async (bytes: Buffer, name = 'a.tar', compress = false): Promise<{ code: string; message: string }> => {
    const w = await tmp();
    const p = join(w, name);
    await writeFile(p, compress ? gzipSync(bytes) : bytes);
    const out = join(w, 'o.mlb');
    try {
      await pack({ ...FIXED, key: k, out, input: p });
      return { code: 'OK', message: '' };
    } catch (e) {
      if (!(e instanceof MlicError)) throw e;
      expect((await readdir(w)).sort(), 'no bundle or temp file left').toEqual([name]);
      return { code: e.code, message: e.message };
    }
  };
  const ok: TarSpec = { path: 'ok.bin', data: 'fine' };

  const unsafeNames: [string, TarSpec[]][] = [
    ['an absolute path', [ok, { path: '/etc/passwd', data: 'x' }]],
    ['..', [ok, { path: 'a/../../x', data: 'x' }]],
    ['.. alone', [ok, { path: '..', type: 'Directory' }]],
    ['a backslash', [ok, { path: 'a\\b.bin', data: 'x' }]],
    ['a control character', [ok, { path: 'a\nb.bin', data: 'x' }]],
    ['a drive letter', [ok, { path: 'C:/x.bin', data: 'x' }]],
    ['a duplicate after normalisation', [ok, { path: 'a//b/./c.bin', data: 'x' }, { path: './a/b/c.bin', data: 'y' }]],
    ['a plain duplicate', [ok, { path: 'ok.bin', data: 'again' }]],
    ['a file that is also a directory', [{ path: 'a', data: 'x' }, { path: 'a/b', data: 'y' }]],
    ['a directory that is also a file', [{ path: 'a/b', data: 'y' }, { path: 'a', data: 'x' }]],
    ['an unsafe pax path', [ok, { path: 'innocent.bin', data: 'x', pax: { path: '../escape.bin' } }]],
    ['a symbolic link outside the archive', [ok, { path: 'l.bin', type: 'SymbolicLink', linkpath: '../../etc/passwd' }]],
    ['an absolute symbolic link', [ok, { path: 'l.bin', type: 'SymbolicLink', linkpath: '/etc/passwd' }]],
    ['a dangling symbolic link', [ok, { path: 'l.bin', type: 'SymbolicLink', linkpath: 'missing.bin' }]],
    ['a symbolic link to a directory', [ok, { path: 'd/x.bin', data: 'x' }, { path: 'l', type: 'SymbolicLink', linkpath: 'd' }]],
    ['a symbolic link loop', [ok, { path: 'l1', type: 'SymbolicLink', linkpath: 'l2' }, { path: 'l2', type: 'SymbolicLink', linkpath: 'l1' }]],
    ['a member written through a symbolic link', [ok, { path: 'l', type: 'SymbolicLink', linkpath: '/tmp' }, { path: 'l/x.bin', data: 'x' }]],
    ['a hard link to a missing member', [ok, { path: 'h.bin', type: 'Link', linkpath: 'missing.bin' }]],
    ['a hard link outside', [ok, { path: 'h.bin', type: 'Link', linkpath: '../ok.bin' }]],
  ];
  for (const [what, entries] of unsafeNames) {
    it(`${what}: IO_UNSAFE_PATH (.tar and .tgz)`, async () => {
      expect(await packArchive(makeTar(entries))).toMatchObject({ code: 'IO_UNSAFE_PATH' });
      expect(await packArchive(makeTar(entries), 'a.tgz', true)).toMatchObject({ code: 'IO_UNSAFE_PATH' });
    });
  }

  it('a symbolic link or hard link inside a compressed archive: IO_UNSAFE_PATH with a hint (a plain .tar resolves it)', async () => {
    for (const l of [{ path: 'l.bin', type: 'SymbolicLink', linkpath: 'ok.bin' }, { path: 'h.bin', type: 'Link', linkpath: 'ok.bin' }]) {
      const r = await packArchive(makeTar([ok, l]), 'a.tgz', true);
      expect(r.code).toBe('IO_UNSAFE_PATH');
      expect(r.message).toContain('compressed archive');
      expect(await packArchive(makeTar([ok, l]))).toMatchObject({ code: 'OK' });
    }
  });

  it('the same symbolic links in an extracted directory get the same codes', async () => {
    const w = await tmp();
    const cases: [string, string][] = [['../../etc/passwd', 'IO_UNSAFE_PATH'], ['missing.bin', 'IO_UNSAFE_PATH'], ['d', 'IO_UNSAFE_PATH'], ['ok.bin', 'OK']];
    for (const [i, [target, code]] of cases.entries()) {
      const d = join(w, `d${i}`);
      await mkdir(join(d, 'd'), { recursive: true });
      await writeFile(join(d, 'ok.bin'), 'fine');
      await writeFile(join(d, 'd', 'x.bin'), 'x');
      await symlink(target, join(d, 'l.bin'));
      expect(await codeOf(pack({ ...FIXED, key: k, out: join(w, `d${i}.mlb`), input: d })), target).toBe(code);
      const entries: TarSpec[] = [ok, { path: 'd/x.bin', data: 'x' }, { path: 'l.bin', type: 'SymbolicLink', linkpath: target }];
      expect((await packArchive(makeTar(entries))).code, target).toBe(code);
    }
  });

  it('devices and FIFOs: IO_NOT_REGULAR, as in a directory', async () => {
    for (const type of ['FIFO', 'CharacterDevice', 'BlockDevice']) {
      expect((await packArchive(makeTar([ok, { path: 'dev', type }]))).code, type).toBe('IO_NOT_REGULAR');
      expect((await packArchive(makeTar([ok, { path: 'dev', type }]), 'a.tgz', true)).code, type).toBe('IO_NOT_REGULAR');
    }
    const w = await tmp();
    await mkdir(join(w, 'd'));
    await writeFile(join(w, 'd', 'ok.bin'), 'fine');
    expect(spawnSync('mkfifo', [join(w, 'd', 'fifo')]).status).toBe(0);
    expect(await codeOf(pack({ ...FIXED, key: k, out: join(w, 'o.mlb'), input: join(w, 'd') }))).toBe('IO_NOT_REGULAR');
  });

  it('no regular files (empty, or only directories): USAGE, as an empty directory', async () => {
    for (const entries of [[], [{ path: 'a/', type: 'Directory' }, { path: 'a/b/', type: 'Directory' }]] as TarSpec[][]) {
      const r = await packArchive(makeTar(entries));
      expect(r.code).toBe('USAGE');
      expect(r.message).toContain('no regular files');
      expect((await packArchive(makeTar(entries), 'a.tgz', true)).code).toBe('USAGE');
    }
  });

  it('pax and GNU long names, directories, git-archive comments are read; sparse and unknown members are not', async () => {
    const long = `${'p'.repeat(150)}/${'q'.repeat(150)}.bin`;
    expect((await packArchive(makeTar([{ path: 'pax', pax: { comment: 'x', mtime: '1.5' }, data: 'x' }, { path: 'short', pax: { path: long }, data: 'y' }, { path: 'dir/', type: 'Directory' }])))).toMatchObject({ code: 'OK' });
    const gnuLong = makeTar([{ path: '././@LongLink', type: 'NextFileHasLongPath', data: `${long}\0` }, { path: 'truncated', data: 'z' }]);
    expect(await packArchive(gnuLong)).toMatchObject({ code: 'OK' });
    expect((await packArchive(makeTar([{ path: 'p', type: 'GlobalExtendedHeader', data: '52 comment=0123456789012345678901234567890123456789\n' }, ok])))).toMatchObject({ code: 'OK' });
    expect((await packArchive(makeTar([{ path: 's.bin', data: 'x', pax: { 'GNU.sparse.major': '1' } }]))).code).toBe('FORMAT_INVALID');
    expect((await packArchive(makeTar([{ path: 's.bin', type: 'SparseFile', data: 'x' }]))).code).toBe('FORMAT_INVALID');
  });
});

describe('damaged archives: exit-2 codes, never a crash or a hang, nothing written', () => {
  const k = key();
  let good: Buffer;
  let goodGz: Buffer;
  beforeAll(async () => {
    good = makeTar([{ path: 'a.bin', data: prng(3 * 2 ** 20 + 17, 4) }, { path: 'b.json', data: '{"x":1}' }]);
    goodGz = gzipSync(good);
  });
  const attempt = async (bytes: Buffer, name: string): Promise<MlicError | 'OK'> => {
    const w = await tmp();
    await writeFile(join(w, name), bytes);
    try {
      await pack({ ...FIXED, key: k, out: join(w, 'o.mlb'), input: join(w, name) });
      return 'OK';
    } catch (e) {
      if (!(e instanceof MlicError)) throw e;
      expect((await readdir(w)).sort()).toEqual([name]);
      return e;
    }
  };
  const codeFor = async (bytes: Buffer, name: string) => {
    const r = await attempt(bytes, name);
    return r === 'OK' ? r : r.code;
  };

  it('the undamaged archives pack', async () => {
    expect(await codeFor(good, 'a.tar')).toBe('OK');
    expect(await codeFor(goodGz, 'a.tgz')).toBe('OK');
  });

  it('a truncated .tgz (cut anywhere, also inside the gzip trailer): FORMAT_INVALID', async () => {
    for (const cut of [10, 1000, Math.floor(goodGz.length / 2), goodGz.length - 4, goodGz.length - 1]) {
      const r = await attempt(goodGz.subarray(0, cut), 'a.tgz');
      expect(r === 'OK' ? r : r.code, `cut at ${cut}`).toBe('FORMAT_INVALID');
    }
  });

  it('a corrupt gzip stream (a flipped byte, a bad CRC): FORMAT_INVALID', async () => {
    const flipped = Buffer.from(goodGz);
    flipped[Math.floor(flipped.length / 2)]! ^= 0x55;
    expect(await codeFor(flipped, 'a.tgz')).toBe('FORMAT_INVALID');
    const badCrc = Buffer.from(goodGz);
    badCrc[badCrc.length - 8]! ^= 1;
    const e = await attempt(badCrc, 'a.tgz');
    expect(e !== 'OK' && e.code).toBe('FORMAT_INVALID');
    expect(e !== 'OK' && e.message).toMatch(/gzip/);
    expect(await codeFor(Buffer.concat([goodGz, Buffer.from('trailing garbage')]), 'a.tgz')).toBe('FORMAT_INVALID');
  });

  it('a truncated .tar (inside a header, inside data, at a member boundary without the end marker): FORMAT_INVALID', async () => {
    for (const cut of [100, 512 + 1000, 512 + 3 * 2 ** 20, good.length - 1024 - 512, good.length - 1024, good.length - 512]) {
      expect(await codeFor(good.subarray(0, cut), 'a.tar'), `cut at ${cut}`).toBe('FORMAT_INVALID');
    }
  });

  it('a damaged header (checksum), data after the end marker, a pax record that lies: FORMAT_INVALID', async () => {
    const bad = Buffer.from(good);
    bad[20]! ^= 1; // a name byte of the first header
    expect(await codeFor(bad, 'a.tar')).toBe('FORMAT_INVALID');
    expect(await codeFor(Buffer.concat([good, Buffer.from('more')]), 'a.tar')).toBe('FORMAT_INVALID');
    expect(await codeFor(Buffer.concat([good, good]), 'a.tar')).toBe('FORMAT_INVALID');
    expect(await codeFor(makeTar([{ path: 'x', pax: { size: '12abc' }, data: 'x' }]), 'a.tar')).toBe('FORMAT_INVALID');
    const lying = makeTar([{ path: 'x', data: 'x' }]);
    const paxData = Buffer.from('99 path=y\n');
    const withPax = Buffer.concat([makeTar([{ path: 'PaxHeader', type: 'ExtendedHeader', data: paxData }], { end: false }), lying]);
    expect(await codeFor(withPax, 'a.tar')).toBe('FORMAT_INVALID');
  });

  it('a file named .tar/.tgz that is not a tar archive: FORMAT_INVALID, not packed as a binary file', async () => {
    expect(await codeFor(Buffer.from('just text, not a tar archive\n'.repeat(40)), 'a.tar')).toBe('FORMAT_INVALID');
    expect(await codeFor(Buffer.alloc(0), 'a.tar')).toBe('FORMAT_INVALID');
    expect(await codeFor(gzipSync(Buffer.from('gzip of a text file\n'.repeat(100))), 'a.tgz')).toBe('FORMAT_INVALID');
    expect(await codeFor(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2, 3]), 'a.tar.gz')).toBe('FORMAT_INVALID');
    // By content: a gzip-compressed tar named .tar, and a plain one named .tgz, are read.
    expect(await codeFor(goodGz, 'a.tar')).toBe('OK');
    expect(await codeFor(good, 'a.tgz')).toBe('OK');
  });

  it('a member that says it is bigger than the archive: FORMAT_INVALID (plain and gzip)', async () => {
    const liar = makeTar([{ path: 'a.bin', data: 'short', size: 10 << 20 }]);
    expect(await codeFor(liar, 'a.tar')).toBe('FORMAT_INVALID');
    expect(await codeFor(gzipSync(liar), 'a.tgz')).toBe('FORMAT_INVALID');
  });
});

describe('bounded memory', () => {
  it('a .tgz with a 256 MiB member packs with a peak RSS under 200 MB', async () => {
    const w = await tmp();
    const m = join(w, 'm');
    await mkdir(m);
    // Zeros: gzip shrinks them ~1000x, the worst case for a decompressor that does not wait for its reader.
    await writeFile(join(m, 'zeros.bin'), '');
    await truncate(join(m, 'zeros.bin'), 256 << 20);
    await writeRandom(join(m, 'head.bin'), 1000);
    gnuTar(['-czf', join(w, 'm.tgz'), '-C', m, '.']);
    const { encodeSecretKey } = await import('../../src/keys/vendor.js');
    const { BIN } = await import('../cli/run.js');
    await writeFile(join(w, 'k.key'), await encodeSecretKey(key(), undefined), { mode: 0o600 });
    const r = spawnSync('/usr/bin/time', ['-f', 'MAXRSS %M', process.execPath, BIN, 'pack', join(w, 'm.tgz'), '--name', 'z', '--version', '1.0.0', '--key', join(w, 'k.key'), '-o', join(w, 'z.mlb'), '--json'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const rssMB = Number(/MAXRSS (\d+)/.exec(r.stderr)![1]) / 1024;
    expect(rssMB).toBeLessThan(200);
    expect(JSON.parse(r.stdout).result.files.map((f: { path: string }) => f.path)).toEqual(['head.bin', 'zeros.bin']);
  }, 120_000);
});
