import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll } from 'vitest';
import { MlicError } from '../src/errors.js';
import { generateVendorKey, type VendorKey } from '../src/keys/vendor.js';
import { BundleFile } from '../src/bundle/reader.js';
import { openVerified } from '../src/bundle/verify.js';
import { decryptChunks } from '../src/bundle/decrypt.js';
import { bundleKeyFromMaster } from '../src/keys/derive.js';
import { vendorPublicKey } from '../src/keys/vendor.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

export async function tmp(prefix = 'mlic-test-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

export function key(name = 'acme'): VendorKey {
  return generateVendorKey(name);
}

/** Deterministic pseudo-random bytes (so failures reproduce). */
export function prng(n: number, seed = 1): Buffer {
  const out = Buffer.alloc(n);
  let block = createHash('sha256').update(`seed:${seed}`).digest();
  for (let off = 0; off < n; off += 32) {
    block.copy(out, off, 0, Math.min(32, n - off));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

export async function writeRandom(path: string, n: number, seed = 1): Promise<Buffer> {
  const b = n > 4 << 20 ? randomBytes(n) : prng(n, seed);
  await writeFile(path, b);
  return b;
}

/** Decrypts every file of a bundle with the vendor's master secret; returns path -> bytes. */
export async function decryptAll(bundlePath: string, k: VendorKey): Promise<Map<string, Buffer>> {
  const { bundle, manifest, spans } = await openVerified(bundlePath, vendorPublicKey(k));
  try {
    const bKey = bundleKeyFromMaster(k.master, manifest.model.name, manifest.encryption.line, manifest.bundleId);
    const out = new Map<string, Buffer>();
    for (const f of manifest.files) {
      const parts: Buffer[] = [];
      for await (const c of decryptChunks(bundle, spans[f.index]!, f, bKey)) parts.push(Buffer.from(c));
      out.set(f.path, Buffer.concat(parts));
    }
    return out;
  } finally {
    await bundle.close();
  }
}

export { BundleFile };

/** The MlicError code a promise rejects with, or 'OK'; any other error is rethrown. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (e) {
    if (e instanceof MlicError) return e.code;
    throw e;
  }
}
