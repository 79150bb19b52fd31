import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { open, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { BIN } from '../cli/run.js';
import { tmp, key } from '../helpers.js';
import { encodeSecretKey, publicKeyFileText } from '../../src/keys/vendor.js';
import { openVerified } from '../../src/bundle/verify.js';
import { decryptChunks } from '../../src/bundle/decrypt.js';
import { bundleKeyFromMaster } from '../../src/keys/derive.js';
import { writeFile } from 'node:fs/promises';

/** Runs the built CLI under /usr/bin/time and returns its peak RSS in MB. */
function timedCli(args: string[]): { code: number | null; rssMB: number; stderr: string } {
  const r = spawnSync('/usr/bin/time', ['-f', 'MAXRSS %M', process.execPath, BIN, ...args], { encoding: 'utf8' });
  const m = /MAXRSS (\d+)/.exec(r.stderr);
  return { code: r.status, rssMB: m ? Number(m[1]) / 1024 : NaN, stderr: r.stderr };
}

describe('files over 4 GiB (sparse), bounded memory', () => {
  it('packs, verifies and decrypts a 4 GiB + 1 MiB + 7 byte file with peak RSS under 150 MB', async () => {
    const d = await tmp();
    const src = join(d, 'huge.bin');
    const size = 4 * 2 ** 30 + 2 ** 20 + 7;
    const fh = await open(src, 'w');
    await fh.truncate(size);
    // A few non-zero marks across the 4 GiB boundary, so that the content is not trivially all zeros.
    for (const at of [0, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, size - 1]) await fh.write(Buffer.from([0xa5]), 0, 1, at);
    await fh.close();
    const k = key('big');
    await writeFile(join(d, 'k.key'), await encodeSecretKey(k, undefined), { mode: 0o600 });
    await writeFile(join(d, 'k.pub'), publicKeyFileText(k));
    const out = join(d, 'huge.mlb');
    const p = timedCli(['pack', src, '--name', 'huge', '--version', '1.0.0', '--key', join(d, 'k.key'), '-o', out, '--json']);
    expect(p.code, p.stderr).toBe(0);
    expect(p.rssMB).toBeLessThan(150);
    expect((await stat(out)).size).toBeGreaterThan(size);
    const v = timedCli(['verify', out, '--pub', join(d, 'k.pub'), '--json']);
    expect(v.code, v.stderr).toBe(0);
    expect(v.rssMB).toBeLessThan(150);

    // Decrypt by streaming and compare with an independent SHA-256 of the source.
    const expected = createHash('sha256');
    const rf = await open(src, 'r');
    const buf = Buffer.alloc(8 << 20);
    for (;;) {
      const { bytesRead } = await rf.read(buf, 0, buf.length, null);
      if (!bytesRead) break;
      expected.update(buf.subarray(0, bytesRead));
    }
    await rf.close();
    const { bundle, manifest, spans } = await openVerified(out, { keyId: k.keyId, publicKey: k.publicKey });
    try {
      const f = manifest.files[0]!;
      expect(f.size).toBe(size);
      const bKey = bundleKeyFromMaster(k.master, 'huge', manifest.encryption.line, manifest.bundleId);
      const got = createHash('sha256');
      let n = 0;
      for await (const c of decryptChunks(bundle, spans[0]!, f, bKey)) {
        got.update(c);
        n += c.length;
      }
      expect(n).toBe(size);
      expect(got.digest('hex')).toBe(expected.digest('hex'));
    } finally {
      await bundle.close();
    }
  }, 240_000);
});
