/**
 * The plaintext of a common bundle that mark and trace work from (decryptOwnBundle): a private
 * directory (0700, as are its two subdirectories) inside the place given (mark: beside the
 * output; trace: os.tmpdir(), that is TMPDIR), removed by close(), and removed when decrypting
 * fails half-way.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { join } from 'node:path';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { pack } from '../../src/bundle/pack.js';
import { openVerified } from '../../src/bundle/verify.js';
import { decryptOwnBundle } from '../../src/mark/bundle.js';
import { vendorPublicKey, type VendorKey } from '../../src/keys/vendor.js';
import { key, tmp } from '../helpers.js';
import { synthModel, writeSafetensors } from './synth.js';

let dir: string;
let k: VendorKey;
let bundle: string;

beforeAll(async () => {
  dir = await tmp();
  k = key();
  await writeSafetensors(join(dir, 'model'), synthModel(31, 64, 2), { shards: 2, index: true });
  bundle = join(dir, 'm.mlb');
  await pack({ input: join(dir, 'model'), name: 'm', version: '1.0.0', key: k, out: bundle });
});

describe('decryptOwnBundle', () => {
  it('decrypts into a private 0700 directory inside the place given, which close() removes', async () => {
    const near = join(dir, 'near');
    await mkdir(near);
    const o = await decryptOwnBundle(bundle, k, near);
    const entries = await readdir(near);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatch(/^\.mlic-original-/);
    const root = join(near, entries[0]!);
    expect(o.dir).toBe(join(root, 'model'));
    expect(o.spare).toBe(join(root, 'spare'));
    for (const p of [root, o.dir, o.spare]) expect((await stat(p)).mode & 0o777, p).toBe(0o700);
    for (const f of ['model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'])
      expect((await readFile(join(o.dir, f))).equals(await readFile(join(dir, 'model', f))), f).toBe(true);
    await o.close();
    expect(await readdir(near)).toEqual([]);
  });

  it('leaves nothing behind when decrypting fails half-way (a damaged chunk of the second file)', async () => {
    const { bundle: b, manifest, spans } = await openVerified(bundle, vendorPublicKey(k));
    await b.close();
    const last = manifest.files.find((f) => f.path === 'model-00002-of-00002.safetensors')!;
    const span = spans[last.index]!;
    const bytes = Buffer.from(await readFile(bundle));
    // a byte of the second shard's ciphertext: it fails after the private directory was made
    const at = span.dataOffset + span.size - 20;
    bytes[at] = bytes[at]! ^ 0x01;
    const damaged = join(dir, 'damaged.mlb');
    await writeFile(damaged, bytes);
    const near = join(dir, 'near-damaged');
    await mkdir(near);
    await expect(decryptOwnBundle(damaged, k, near)).rejects.toMatchObject({ code: 'CHUNK_AUTH_FAILED' });
    expect(await readdir(near)).toEqual([]);
  });
});
