import { describe, it, expect } from 'vitest';
import { mkdir, writeFile, readFile, stat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { pack } from '../../src/bundle/pack.js';
import { verifyBundle } from '../../src/bundle/verify.js';
import { inspectBundle } from '../../src/bundle/inspect.js';
import { vendorPublicKey } from '../../src/keys/vendor.js';
import { decryptAll, key, tmp, writeRandom } from '../helpers.js';

const CS = 1 << 20;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('pack -> verify -> decrypt round trips', () => {
  const k = key();
  for (const n of [0, 1, CS - 1, CS, CS + 1, 2 * CS + 500]) {
    it(`a single file of ${n} bytes`, async () => {
      const d = await tmp();
      const src = join(d, 'weights.bin');
      const data = await writeRandom(src, n, n);
      const out = join(d, 'm.mlb');
      const r = await pack({ input: src, name: 'm', version: '1.0.0', key: k, out });
      expect(r.manifest.files).toHaveLength(1);
      expect(r.manifest.files[0]).toMatchObject({ path: 'weights.bin', size: n, sha256: sha(data), chunkSize: CS });
      expect((await stat(out)).size).toBe(r.bytesOut);
      await verifyBundle(out, vendorPublicKey(k));
      const files = await decryptAll(out, k);
      expect(files.get('weights.bin')!.equals(data)).toBe(true);
    });
  }

  it('a multi-file model directory with nested folders and companions', async () => {
    const d = await tmp();
    const m = join(d, 'model');
    await mkdir(join(m, 'tokenizer'), { recursive: true });
    const want = new Map<string, Buffer>();
    want.set('a.bin', await writeRandom(join(m, 'a.bin'), 3 * CS + 7, 1));
    want.set('tokenizer/vocab.txt', Buffer.from('hello\nworld\n'));
    await writeFile(join(m, 'tokenizer/vocab.txt'), want.get('tokenizer/vocab.txt')!);
    want.set('config.json', Buffer.from('{"hidden":4}'));
    await writeFile(join(m, 'config.json'), want.get('config.json')!);
    want.set('empty', Buffer.alloc(0));
    await writeFile(join(m, 'empty'), '');
    const out = join(d, 'model.mlb');
    const r = await pack({ input: m, name: 'dir-model', version: '2.3.4-rc.1', key: k, out, chunkSize: 2 * CS });
    expect(r.manifest.files.map((f) => f.path)).toEqual(['a.bin', 'config.json', 'empty', 'tokenizer/vocab.txt']);
    expect(r.manifest.files.find((f) => f.path === 'config.json')!.format).toBe('json');
    expect(r.manifest.encryption.line).toBe('2');
    await verifyBundle(out, vendorPublicKey(k));
    const files = await decryptAll(out, k);
    for (const [p, b] of want) expect(files.get(p)!.equals(b), p).toBe(true);
    const ins = await inspectBundle(out);
    expect(ins.manifest.model).toMatchObject({ name: 'dir-model', version: '2.3.4-rc.1' });
    expect(ins.signatureKeyId).toBe(ins.manifest.vendor.keyId);
    // Nothing but the bundle is left in the output directory (no temp files).
    expect((await readdir(d)).sort()).toEqual(['model', 'model.mlb']);
  });

  it('is deterministic in layout: every header is recomputable and the bundle is a standard tar', async () => {
    const d = await tmp();
    const src = join(d, 'x.bin');
    await writeRandom(src, 5000);
    const out = join(d, 'x.mlb');
    await pack({ input: src, name: 'x', version: '0.3.1', key: k, out });
    const raw = await readFile(out);
    expect(raw.toString('latin1', 0, 25)).toBe('mlic-bundle/manifest.json');
    expect(raw.toString('latin1', 257, 263)).toBe('ustar\0');
    const m = (await inspectBundle(out)).manifest;
    expect(m.encryption.line).toBe('0.3');
  });
});
