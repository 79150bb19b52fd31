import { describe, it, expect, beforeAll } from 'vitest';
import { copyFile, readFile, writeFile, truncate, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pack } from '../../src/bundle/pack.js';
import { verifyBundle, openVerified } from '../../src/bundle/verify.js';
import { decryptChunks } from '../../src/bundle/decrypt.js';
import { BundleFile } from '../../src/bundle/reader.js';
import { layoutOf } from '../../src/bundle/layout.js';
import { bundleKeyFromMaster } from '../../src/keys/derive.js';
import { vendorPublicKey, type VendorKey } from '../../src/keys/vendor.js';
import { MlicError } from '../../src/errors.js';
import type { Manifest } from '../../src/format/manifest.js';
import { key, tmp, writeRandom, decryptAll, codeOf } from '../helpers.js';

const CS = 1 << 20;


describe('every tampering is detected with the right code', () => {
  let k: VendorKey;
  let dir: string;
  let good: string;
  let good2: string;
  let manifest: Manifest;
  let layout: ReturnType<typeof layoutOf>;
  let original: Buffer;
  let data: Buffer;

  beforeAll(async () => {
    k = key();
    dir = await tmp();
    const m = join(dir, 'model');
    await (await import('node:fs/promises')).mkdir(m);
    data = await writeRandom(join(m, 'big.bin'), 2 * CS + 500, 7);
    await writeRandom(join(m, 'small.bin'), 1000, 8);
    good = join(dir, 'good.mlb');
    await pack({ input: m, name: 'tm', version: '1.0.0', key: k, out: good });
    good2 = join(dir, 'good2.mlb');
    await writeRandom(join(m, 'big.bin'), 2 * CS + 500, 9);
    await pack({ input: m, name: 'tm', version: '1.0.1', key: k, out: good2 });
    original = await readFile(good);
    const b = await BundleFile.open(good);
    const head = await b.readHead();
    manifest = JSON.parse(head.manifestBytes.toString());
    layout = layoutOf(manifest, head.manifestBytes.length, head.signatureBytes.length);
    await b.close();
  });

  const variant = async (name: string, mutate: (buf: Buffer) => Buffer): Promise<string> => {
    const p = join(dir, `${name}.mlb`);
    await writeFile(p, mutate(Buffer.from(original)));
    return p;
  };
  const flipAt = (off: number) => (b: Buffer) => {
    b[off]! ^= 0x20;
    return b;
  };
  const verify = (p: string) => codeOf(verifyBundle(p, vendorPublicKey(k)));

  it('the untouched bundle verifies', async () => {
    expect(await verify(good)).toBe('OK');
  });

  it('tar headers: every byte of every header block', async () => {
    const spans = [layout.manifest, layout.signature, ...layout.files];
    for (const s of spans) {
      // A sample of offsets across the header block, including name, size, checksum, magic, padding.
      for (const rel of [0, 5, 100, 124, 130, 136, 148, 155, 156, 257, 263, 300, 511]) {
        const code = await verify(await variant(`h-${s.name.replace(/\W/g, '_')}-${rel}`, flipAt(s.headerOffset + rel)));
        expect(['BUNDLE_CORRUPT', 'BUNDLE_TRUNCATED', 'BUNDLE_TRAILING_DATA'], `${s.name} header +${rel}`).toContain(code);
      }
    }
  });

  it('manifest bytes', async () => {
    for (const rel of [0, 1, 50, layout.manifest.size - 1]) {
      expect(await verify(await variant(`m-${rel}`, flipAt(layout.manifest.dataOffset + rel))), `manifest +${rel}`).toBe('SIGNATURE_INVALID');
    }
  });

  it('signature bytes: every byte of the entry, the untrusted comment and newlines included', async () => {
    for (let rel = 0; rel < layout.signature.size; rel++) {
      const code = await verify(await variant('s', flipAt(layout.signature.dataOffset + rel)));
      expect(['SIGNATURE_INVALID', 'KEY_MISMATCH'], `signature byte ${rel}`).toContain(code);
    }
  });

  it('each chunk body and each tag, in every file', async () => {
    for (const f of manifest.files) {
      const span = layout.files[f.index]!;
      const n = Math.ceil(f.size / CS);
      for (let c = 0; c < n; c++) {
        const start = span.dataOffset + c * (CS + 16);
        const len = Math.min(CS + 16, span.size - c * (CS + 16));
        for (const rel of [0, Math.floor(len / 2), len - 17, len - 16, len - 1]) {
          expect(await verify(await variant(`c-${f.index}-${c}-${rel}`, flipAt(start + rel))), `${f.path} chunk ${c} +${rel}`).toBe('DIGEST_MISMATCH');
        }
      }
    }
  });

  it('padding and end-of-archive blocks', async () => {
    const s = layout.files[0]!;
    expect(await verify(await variant('pad', flipAt(s.dataOffset + s.size + 1)))).toBe('BUNDLE_CORRUPT');
    expect(await verify(await variant('eoa', flipAt(layout.endOffset + 700)))).toBe('BUNDLE_CORRUPT');
  });

  it('truncation anywhere and appending', async () => {
    for (const at of [2000, layout.files[0]!.dataOffset + 10, original.length - 1024, original.length - 1]) {
      const p = join(dir, `trunc-${at}.mlb`);
      await copyFile(good, p);
      await truncate(p, at);
      expect(await verify(p), `truncated at ${at}`).toBe('BUNDLE_TRUNCATED');
    }
    const p = join(dir, 'append.mlb');
    await copyFile(good, p);
    await appendFile(p, Buffer.alloc(512));
    expect(await verify(p)).toBe('BUNDLE_TRAILING_DATA');
  });

  it('swapping two chunks: verify says DIGEST_MISMATCH, decrypt says CHUNK_AUTH_FAILED and releases nothing of them', async () => {
    const f = manifest.files.find((x) => x.path === 'big.bin')!;
    const s = layout.files[f.index]!;
    const p = await variant('swap', (b) => {
      const a = Buffer.from(b.subarray(s.dataOffset, s.dataOffset + CS + 16));
      b.copy(b, s.dataOffset, s.dataOffset + CS + 16, s.dataOffset + 2 * (CS + 16));
      a.copy(b, s.dataOffset + CS + 16);
      return b;
    });
    expect(await verify(p)).toBe('DIGEST_MISMATCH');
    const released = await decryptReleased(p, f.index);
    expect(released.code).toBe('CHUNK_AUTH_FAILED');
    expect(released.bytes).toBe(0);
  });

  it('a damaged later chunk: decrypt releases only the intact chunks before it', async () => {
    const f = manifest.files.find((x) => x.path === 'big.bin')!;
    const s = layout.files[f.index]!;
    const p = await variant('late', flipAt(s.dataOffset + (CS + 16) + 100));
    const r = await decryptReleased(p, f.index);
    expect(r.code).toBe('CHUNK_AUTH_FAILED');
    expect(r.bytes).toBe(CS);
    expect(r.first.equals(data.subarray(0, CS))).toBe(true);
  });

  it('swapping a file between two bundles of the same vendor', async () => {
    const other = await readFile(good2);
    const f = manifest.files.find((x) => x.path === 'big.bin')!;
    const s = layout.files[f.index]!;
    // Same sizes, same position in both bundles.
    const p = await variant('xswap', (b) => {
      other.copy(b, s.dataOffset, s.dataOffset, s.dataOffset + s.size);
      return b;
    });
    expect(await verify(p)).toBe('DIGEST_MISMATCH');
    expect((await decryptReleased(p, f.index)).code).toBe('CHUNK_AUTH_FAILED');
  });

  it('a signature from another vendor key is KEY_MISMATCH; a valid bundle signed by another key fails under this key', async () => {
    expect(await codeOf(verifyBundle(good, vendorPublicKey(key())))).toBe('KEY_MISMATCH');
  });

  it('still decrypts the untouched bundle', async () => {
    expect((await decryptAll(good, k)).get('big.bin')!.equals(data)).toBe(true);
  });

  async function decryptReleased(p: string, index: number): Promise<{ code: string; bytes: number; first: Buffer }> {
    // Open with the layout check but skipping signature concerns: the bundle's manifest is intact here.
    const { bundle, manifest: m, spans } = await openVerified(p, vendorPublicKey(k));
    const bKey = bundleKeyFromMaster(k.master, m.model.name, m.encryption.line, m.bundleId);
    let bytes = 0;
    const parts: Buffer[] = [];
    try {
      for await (const c of decryptChunks(bundle, spans[index]!, m.files[index]!, bKey)) {
        bytes += c.length;
        parts.push(Buffer.from(c));
      }
      return { code: 'OK', bytes, first: Buffer.concat(parts) };
    } catch (e) {
      return { code: (e as MlicError).code, bytes, first: Buffer.concat(parts) };
    } finally {
      await bundle.close();
    }
  }
});

describe('exhaustive: every byte of a small bundle', () => {
  it('changing any single byte makes verify fail with exit-1 codes', async () => {
    const k = key();
    const d = await tmp();
    const src = join(d, 'w.bin');
    await writeRandom(src, 700, 3);
    const good = join(d, 'w.mlb');
    await pack({ input: src, name: 'w', version: '1.0.0', key: k, out: good });
    const orig = await readFile(good);
    const p = join(d, 'x.mlb');
    const seen = new Map<string, number>();
    for (let i = 0; i < orig.length; i++) {
      const b = Buffer.from(orig);
      b[i]! ^= 0x04;
      await writeFile(p, b);
      const code = await codeOf(verifyBundle(p, vendorPublicKey(k)));
      seen.set(code, (seen.get(code) ?? 0) + 1);
      expect(['SIGNATURE_INVALID', 'KEY_MISMATCH', 'BUNDLE_CORRUPT', 'DIGEST_MISMATCH', 'MANIFEST_INVALID'], `byte ${i}`).toContain(code);
    }
    expect(seen.get('OK')).toBeUndefined();
  }, 120_000);
});
