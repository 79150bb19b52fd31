import { describe, it, expect, beforeAll } from 'vitest';
import { mkdir, open, readFile, readdir, stat, truncate, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { BIN } from '../cli/run.js';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pack, type PackOptions } from '../../src/bundle/pack.js';
import { verifyBundle, openVerified } from '../../src/bundle/verify.js';
import { unpack } from '../../src/host/unpack.js';
import { openBundle } from '../../src/host/open.js';
import { decryptEngine, decryptFileToBuffer, decryptFileToHandle } from '../../src/bundle/decrypt.js';
import { bundleKeyFromMaster } from '../../src/keys/derive.js';
import { issueLicense } from '../../src/license/issue.js';
import { serializeLicense } from '../../src/format/license.js';
import { activateLicense } from '../../src/host/licences.js';
import { publicKeyFileText, vendorPublicKey, type VendorKey } from '../../src/keys/vendor.js';
import { MlicError } from '../../src/errors.js';
import { key, tmp } from '../helpers.js';
import { gnuTar } from '../archive-helpers.js';
import { fakeHost, type FakeHost } from '../license/hosts.js';

const MiB = 1 << 20;
const NOW = new Date('2026-11-01T00:00:00Z');

/** A sharded model plus a pipeline component: several multi-chunk files, small ones, an empty one. */
async function makeModel(root: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const put = async (rel: string, data: Buffer) => {
    await mkdir(join(root, rel, '..'), { recursive: true });
    await writeFile(join(root, rel), data);
    files.set(rel, data);
  };
  await put('model-00001-of-00003.bin', randomBytes(3 * MiB + 11));
  await put('model-00002-of-00003.bin', randomBytes(2 * MiB));
  await put('model-00003-of-00003.bin', randomBytes(MiB - 1));
  await put('index.json', Buffer.from('{"weight_map":{}}\n'));
  await put('empty.txt', Buffer.alloc(0));
  await put('vae/diffusion.bin', randomBytes(5 * MiB + 3));
  return files;
}

describe('many files at a time, byte-identical to one at a time', () => {
  let k: VendorKey;
  let d: string;
  let model: string;
  let want: Map<string, Buffer>;
  let host: FakeHost;
  let serial: string;

  beforeAll(async () => {
    k = key('conc');
    d = await tmp();
    model = join(d, 'model');
    want = await makeModel(model);
    host = await fakeHost('conc');
    await host.state.trustAdd(publicKeyFileText(k));
    const lic = serializeLicense(issueLicense({ key: k, model: 'sharded', versions: { policy: 'rolling' }, perpetual: true }).license);
    await activateLicense(lic, { stateDir: host.stateDir, hostProbe: host.probe() });
  });

  const packWith = async (name: string, o: Partial<PackOptions>) => {
    const out = join(d, `${name}.mlb`);
    await pack({ input: model, name: 'sharded', version: '1.2.0', key: k, out, now: NOW, releaseDate: NOW, bundleId: '0123456789abcdef0123456789abcdef', ...o });
    return out;
  };

  it('pack: concurrency 1 on this thread, and concurrency 4 on 2 worker threads, give the same bytes', async () => {
    serial = await packWith('serial', { concurrency: 1, workers: 0 });
    const serialBytes = await readFile(serial);
    for (const [name, o] of [
      ['par-w2', { concurrency: 4, workers: 2 }],
      ['par-w1', { concurrency: 3, workers: 1 }],
      ['par-default', {}],
      ['serial-w1', { concurrency: 1, workers: 1 }],
    ] as const) {
      const p = await packWith(name, o);
      expect((await readFile(p)).equals(serialBytes), name).toBe(true);
    }
    const r = await verifyBundle(serial, vendorPublicKey(k));
    expect(r.manifest.files.map((f) => f.path)).toEqual([...want.keys()].sort());
  });

  it('a .tgz component (one forward-only stream) beside a directory: the same bytes at any concurrency', async () => {
    const tgz = join(d, 'vae.tgz');
    gnuTar(['-czf', tgz, '-C', model, 'model-00001-of-00003.bin', 'model-00002-of-00003.bin', 'vae', 'empty.txt']);
    const comps = { components: [{ name: 'unet', path: model }, { name: 'vae', path: tgz }] };
    const one = await readFile(await packWith('tgz-1', { ...comps, concurrency: 1, workers: 0 }));
    for (const [name, o] of [['tgz-4', { concurrency: 4, workers: 1 }], ['tgz-2', { concurrency: 2 }]] as const)
      expect((await readFile(await packWith(name, { ...comps, ...o }))).equals(one), name).toBe(true);
    const r = await verifyBundle(join(d, 'tgz-4.mlb'), vendorPublicKey(k));
    expect(r.manifest.files.filter((f) => f.component === 'vae').map((f) => f.path)).toEqual(['vae/empty.txt', 'vae/model-00001-of-00003.bin', 'vae/model-00002-of-00003.bin', 'vae/vae/diffusion.bin']);
  });

  it('a failing archive member stops the files beside it (the rest are not encrypted first)', async () => {
    const root = join(d, 'chainfail');
    await mkdir(join(root, 'dir'), { recursive: true });
    await mkdir(join(root, 'arc'), { recursive: true });
    for (let i = 0; i < 16; i++) await writeFile(join(root, 'dir', `w${String(i).padStart(2, '0')}.bin`), randomBytes(4 * MiB));
    for (let i = 0; i < 2; i++) await writeFile(join(root, 'arc', `m${i}.bin`), randomBytes(8 * MiB));
    const tgz = join(root, 'a.tgz');
    gnuTar(['-czf', tgz, '-C', join(root, 'arc'), '.']);
    let done = 0;
    let cut = false;
    const e = await pack({
      components: [{ name: 'w', path: join(root, 'dir') }, { name: 'a', path: tgz }],
      name: 'sharded', version: '1.0.0', key: k, out: join(root, 'out.mlb'), concurrency: 2, workers: 0,
      onProgress: (n) => {
        done = n;
        if (!cut) {
          cut = true;
          void truncate(tgz, 64 * 1024);
        }
      },
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(MlicError);
    expect(['FORMAT_INVALID', 'IO_ERROR']).toContain((e as MlicError).code);
    expect(done).toBeLessThan(32 * MiB); // of 64 MiB of plain files
    await expect(stat(join(root, 'out.mlb'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('unpack past the file-size limit (EFBIG) is IO_ERROR (exit 2) naming the file, and leaves nothing', () => {
    const out = join(d, 'efbig');
    // ulimit -f counts 1024-byte blocks in bash; the shards are 1..5 MiB
    const r = spawnSync('bash', ['-c', `ulimit -f 1536; exec "${process.execPath}" "${BIN}" unpack "${serial}" -o "${out}" --json`], { env: { PATH: process.env.PATH, MLIC_HOME: host.stateDir }, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(2);
    const j = JSON.parse(r.stdout) as { error: { code: string; message: string } };
    expect(j.error.code).toBe('IO_ERROR');
    expect(j.error.message).toMatch(/EFBIG/);
    return expect(stat(out)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('unpack with several files at a time round-trips every file (0600), whatever the concurrency', async () => {
    for (const concurrency of [1, 4]) {
      const out = join(d, `unpacked-${concurrency}`);
      const r = await unpack(serial, out, { stateDir: host.stateDir, hostProbe: host.probe(), concurrency });
      expect(r.files.map((f) => f.path)).toEqual([...want.keys()].sort());
      for (const [p, b] of want) {
        expect((await readFile(join(out, p))).equals(b), p).toBe(true);
        expect((await stat(join(out, p))).mode & 0o777).toBe(0o600);
      }
      expect((await readdir(out)).filter((n) => n.includes('.tmp-'))).toEqual([]);
    }
  });

  it('openBundle preloads several files at a time; readFile and streams agree', async () => {
    const m = await openBundle(serial, { stateDir: host.stateDir, hostProbe: host.probe() });
    try {
      for (const [p, b] of want) {
        expect(m.file(p).equals(b), p).toBe(true);
        expect((await m.readFile(p)).equals(b), p).toBe(true);
      }
      const parts: Buffer[] = [];
      for await (const c of m.createReadStream('vae/diffusion.bin')) parts.push(c as Buffer);
      expect(Buffer.concat(parts).equals(want.get('vae/diffusion.bin')!)).toBe(true);
    } finally {
      await m.close();
    }
  });

  it('decryptFileToHandle / decryptFileToBuffer, on workers or not; a damaged chunk releases nothing', async () => {
    const { bundle, manifest, spans } = await openVerified(serial, vendorPublicKey(k));
    const bKey = bundleKeyFromMaster(k.master, manifest.model.name, manifest.encryption.line, manifest.bundleId);
    try {
      for (const workers of [0, 2]) {
        const engine = decryptEngine(manifest.files, 2, workers);
        try {
          for (const f of manifest.files) {
            expect((await decryptFileToBuffer(bundle, spans[f.index]!, f, bKey, { engine })).equals(want.get(f.path)!), f.path).toBe(true);
            const p = join(d, `h-${workers}-${f.index}`);
            const fh = await open(p, 'w');
            await decryptFileToHandle(bundle, spans[f.index]!, f, bKey, fh, { engine });
            await fh.close();
            expect((await readFile(p)).equals(want.get(f.path)!), f.path).toBe(true);
          }
        } finally {
          await engine.close();
        }
      }
    } finally {
      await bundle.close();
    }

    // Flip one byte in the third chunk of the first shard.
    const bad = join(d, 'bad.mlb');
    const raw = await readFile(serial);
    const f0 = manifest.files.findIndex((f) => f.path === 'model-00001-of-00003.bin');
    raw[spans[f0]!.dataOffset + 2 * (MiB + 16) + 77]! ^= 1;
    await writeFile(bad, raw);
    const b2 = await openVerified(bad, vendorPublicKey(k));
    try {
      for (const workers of [0, 1]) {
        const engine = decryptEngine(manifest.files, 2, workers);
        try {
          const f = b2.manifest.files[f0]!;
          const e = await decryptFileToBuffer(b2.bundle, b2.spans[f0]!, f, bKey, { engine }).catch((x: unknown) => x);
          expect(e).toBeInstanceOf(MlicError);
          expect((e as MlicError).code).toBe('CHUNK_AUTH_FAILED');
          expect((e as MlicError).message).toMatch(/chunk 2 of model-00001/);
          const p = join(d, `bad-${workers}`);
          const fh = await open(p, 'w');
          const e2 = await decryptFileToHandle(b2.bundle, b2.spans[f0]!, f, bKey, fh, { engine }).catch((x: unknown) => x);
          await fh.close();
          expect((e2 as MlicError).code).toBe('CHUNK_AUTH_FAILED');
          // Nothing of the damaged chunk (bytes 2 MiB .. 3 MiB) was written.
          const written = await readFile(p);
          expect(written.subarray(2 * MiB, 3 * MiB).equals(want.get(f.path)!.subarray(2 * MiB, 3 * MiB))).toBe(false);
        } finally {
          await engine.close();
        }
      }
    } finally {
      await b2.bundle.close();
    }

    // unpack of the damaged bundle fails and leaves nothing behind, with several files in flight.
    const out = join(d, 'unpacked-bad');
    const e = await unpack(bad, out, { stateDir: host.stateDir, hostProbe: host.probe(), concurrency: 4 }).catch((x: unknown) => x);
    expect((e as MlicError).code).toBe('CHUNK_AUTH_FAILED');
    await expect(stat(out)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
