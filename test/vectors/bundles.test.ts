import { describe, it, expect } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { verifyBundle, openVerified } from '../../src/bundle/verify.js';
import { decryptChunks } from '../../src/bundle/decrypt.js';
import { parsePublicKey } from '../../src/format/minisign.js';
import { decodeSecretKey } from '../../src/keys/vendor.js';
import { bundleKeyFromMaster } from '../../src/keys/derive.js';
import { MlicError } from '../../src/errors.js';
import { tmp } from '../helpers.js';

const DIR = fileURLToPath(new URL('../../fixtures/vectors/bundles/', import.meta.url));

type Damage = { op: 'flip'; offset: number; mask: number } | { op: 'swap'; a: number; b: number; length: number } | { op: 'truncate'; length: number } | { op: 'append'; zeros: number } | { op: 'replace-head'; text: string; length: number };
interface Vector {
  name: string;
  expect: 'success' | 'signature failure' | 'format failure' | 'payload failure' | 'not a bundle';
  code?: string;
  description: string;
  damage?: Damage;
}

function damage(b: Buffer, d: Damage | undefined): Buffer {
  if (!d) return b;
  switch (d.op) {
    case 'flip':
      b[d.offset]! ^= d.mask;
      return b;
    case 'swap': {
      const x = Buffer.from(b.subarray(d.a, d.a + d.length));
      b.copy(b, d.a, d.b, d.b + d.length);
      x.copy(b, d.b);
      return b;
    }
    case 'truncate':
      return b.subarray(0, d.length);
    case 'append':
      return Buffer.concat([b, Buffer.alloc(d.zeros)]);
    case 'replace-head':
      Buffer.from(d.text.repeat(Math.ceil(d.length / d.text.length)).slice(0, d.length)).copy(b, 0);
      return b;
  }
}

async function decryptAll(path: string, pubText: string, keyText: string): Promise<Map<string, string>> {
  const key = await decodeSecretKey(keyText, () => '');
  const { bundle, manifest, spans } = await openVerified(path, parsePublicKey(pubText));
  try {
    const bKey = bundleKeyFromMaster(key.master, manifest.model.name, manifest.encryption.line, manifest.bundleId);
    const out = new Map<string, string>();
    for (const f of manifest.files) {
      const h = createHash('sha256');
      for await (const c of decryptChunks(bundle, spans[f.index]!, f, bKey)) h.update(c);
      out.set(f.path, h.digest('hex'));
    }
    return out;
  } finally {
    await bundle.close();
  }
}

describe('bundle test vectors (fixtures/vectors/bundles)', async () => {
  const spec = JSON.parse(await readFile(join(DIR, 'vectors.json'), 'utf8')) as { bundle: string; publicKey: string; secretKey: string; plaintextSha256: Record<string, string>; vectors: Vector[] };
  const good = await readFile(join(DIR, spec.bundle));
  const pubText = await readFile(join(DIR, spec.publicKey), 'utf8');
  const keyText = await readFile(join(DIR, spec.secretKey), 'utf8');

  it('covers every kind of outcome', () => {
    expect(new Set(spec.vectors.map((v) => v.expect))).toEqual(new Set(['success', 'signature failure', 'format failure', 'payload failure', 'not a bundle']));
  });

  for (const v of spec.vectors) {
    it(`${v.name}: ${v.expect} (${v.description})`, async () => {
      const p = join(await tmp(), `${v.name}.mlb`);
      await writeFile(p, damage(Buffer.from(good), v.damage));
      let code = 'OK';
      try {
        await verifyBundle(p, parsePublicKey(pubText));
      } catch (e) {
        if (!(e instanceof MlicError)) throw e;
        code = e.code;
      }
      if (v.expect === 'success') {
        expect(code).toBe('OK');
        expect(Object.fromEntries(await decryptAll(p, pubText, keyText))).toEqual(spec.plaintextSha256);
      } else {
        expect(code).toBe(v.code);
      }
      if (v.expect === 'payload failure') {
        // Decryption refuses the damaged chunk too.
        await expect(decryptAll(p, pubText, keyText)).rejects.toMatchObject({ code: 'CHUNK_AUTH_FAILED' });
      }
    });
  }
});
