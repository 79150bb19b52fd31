import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { entryHeader, parseHeader, END_OF_ARCHIVE, padLength } from '../../src/format/tar.js';

/** Reads the size back from the one-record pax header mlic writes for entries of 8 GiB or more. */
/** Parses the pax records of an 'x' entry; returns its `size` if present. */
function parsePaxSize(data: Uint8Array): number | undefined {
  const s = Buffer.from(data).toString('utf8');
  const m = /^(\d+) size=(\d+)\n$/.exec(s.replace(/\0+$/, ''));
  if (!m) return undefined;
  if (Number(m[1]) !== Buffer.byteLength(m[0])) return undefined;
  const size = Number(m[2]);
  return Number.isSafeInteger(size) ? size : undefined;
}

import { tmp } from '../helpers.js';

describe('tar subset', () => {
  it('writes ustar headers that parse back and that GNU tar lists', async () => {
    const h = entryHeader('mlic-bundle/files/000000.enc', 12345, 1_700_000_000);
    expect(h.length).toBe(512);
    expect(parseHeader(h)).toEqual({ name: 'mlic-bundle/files/000000.enc', size: 12345, type: '0' });
    const d = await tmp();
    const data = Buffer.alloc(12345, 7);
    const p = join(d, 'a.tar');
    await writeFile(p, Buffer.concat([h, data, Buffer.alloc(padLength(12345)), END_OF_ARCHIVE]));
    const listing = execFileSync('tar', ['tvf', p], { encoding: 'utf8' });
    expect(listing).toContain('12345');
    expect(listing).toContain('mlic-bundle/files/000000.enc');
  });

  it('uses a pax size record for entries of 8 GiB and more', async () => {
    const size = 9 * 2 ** 30 + 3;
    const h = entryHeader('mlic-bundle/files/000001.enc', size, 0);
    expect(h.length).toBe(1536);
    const pax = parseHeader(h.subarray(0, 512))!;
    expect(pax.type).toBe('x');
    expect(parsePaxSize(h.subarray(512, 512 + pax.size))).toBe(size);
    // GNU tar reads the size from the pax record: list a truncated archive's first member.
    const d = await tmp();
    const p = join(d, 'big.tar');
    await writeFile(p, h);
    const out = (() => {
      try {
        return execFileSync('tar', ['tvf', p], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (e) {
        return String((e as { stdout?: string }).stdout ?? '');
      }
    })();
    expect(out).toContain(String(size));
  });

  it('rejects damaged headers', () => {
    const h = entryHeader('x', 1, 0);
    for (const off of [0, 124, 148, 257]) {
      const b = Buffer.from(h);
      b[off]! ^= 1;
      expect(parseHeader(b)).toBeUndefined();
    }
    expect(parseHeader(Buffer.alloc(512))).toBeUndefined();
    expect(parseHeader(Buffer.alloc(100))).toBeUndefined();
    expect(parsePaxSize(Buffer.from('12 size=1\n'))).toBeUndefined();
  });
});
