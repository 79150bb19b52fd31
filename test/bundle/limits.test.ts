/** Bounds checked before the work: what readers refuse, pack refuses before writing; hostile manifests cost nothing. */
import { describe, it, expect } from 'vitest';
import { mkdir, writeFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import { pack } from '../../src/bundle/pack.js';
import { inspectBundle } from '../../src/bundle/inspect.js';
import { entryHeader, END_OF_ARCHIVE } from '../../src/format/tar.js';
import { MANIFEST_ENTRY, MAX_MANIFEST_BYTES } from '../../src/format/manifest.js';
import { key, tmp, codeOf } from '../helpers.js';

describe('limits', () => {
  it('pack refuses, before writing anything, a model whose manifest would pass the 16 MiB every reader enforces', async () => {
    const d = join(await tmp(), 'm');
    // One deep folder (names up to 250 bytes each) holding 5,000 small files: paths of ~3.3 KB each.
    const deep = join(d, ...Array.from({ length: 13 }, (_, i) => `${String(i).padStart(3, '0')}${'d'.repeat(247)}`));
    await mkdir(deep, { recursive: true });
    await Promise.all(Array.from({ length: 5000 }, (_, i) => writeFile(join(deep, `f${i}.txt`), 'x')));
    const out = join(await tmp(), 'too-big.mlb');
    const err = await pack({ input: d, name: 'm', version: '1.0.0', key: key(), out }).catch((e) => e);
    expect(err.code).toBe('USAGE');
    expect(err.message).toMatch(/manifest .* more than the 16777216/);
    await expect(access(out)).rejects.toThrow();
  }, 60_000);

  it('a 16 MiB manifest nested 8 million levels deep is refused at once (nesting is bounded before parsing)', async () => {
    const body = Buffer.alloc(MAX_MANIFEST_BYTES, '[');
    const sig = Buffer.from('x');
    const pad = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);
    const file = Buffer.concat([entryHeader(MANIFEST_ENTRY, body.length, 0), body, pad(body.length), entryHeader(`${MANIFEST_ENTRY}.minisig`, 1, 0), sig, pad(1), END_OF_ARCHIVE]);
    const p = join(await tmp(), 'nested.mlb');
    await writeFile(p, file);
    const t0 = Date.now();
    expect(await codeOf(inspectBundle(p))).toBe('MANIFEST_INVALID');
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});
