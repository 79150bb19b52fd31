/**
 * Fuzz: minisign public keys and signatures, through what `mlic verify FILE --pub P [--sig S]`,
 * `mlic trust add`, `mlic license inspect --pub` and `mlic usage verify --pub` call:
 * parsePublicKey (loadPublicKey, trustAdd), parseSignature and verifyFileSignature.
 */
import { describe, it, beforeAll, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parsePublicKey, parseSignature, serializeSignature, type MinisignPublicKey, type MinisignSignature } from '../../src/format/minisign.js';
import { minisignSign } from '../../src/signing/minisign.js';
import { signFile, verifyFileSignature, blake2bFile } from '../../src/signing/files.js';
import type { VendorKey } from '../../src/keys/vendor.js';
import { WEIRD_STRINGS, cases, fuzz, mutateB64, mutateText, type Rng } from './lib.js';
import { VECTORS, fastTmp, vectorKey, vendorPublicKey } from './fixtures.js';

describe('fuzz: minisign keys and signatures', () => {
  let vendor: VendorKey;
  let pub: MinisignPublicKey;
  let pubText: string;
  let dir: string;
  let data: string;
  const sigs: string[] = [];

  beforeAll(async () => {
    vendor = await vectorKey();
    pub = vendorPublicKey(vendor);
    pubText = readFileSync(`${VECTORS}bundles/test-vendor.pub`, 'utf8');
    dir = await fastTmp('mlic-fuzz-minisign-');
    data = join(dir, 'data.bin');
    await writeFile(data, 'the signed file\n');
    const now = new Date('2026-11-01T00:00:00Z');
    for (const legacy of [false, true]) {
      const sigPath = join(dir, `data.${legacy ? 'legacy' : 'hashed'}.minisig`);
      await signFile(data, { signer: { seed: vendor.seed, keyId: vendor.keyId }, legacy, sigPath, now });
      sigs.push(readFileSync(sigPath, 'utf8'));
    }
    // signify's two-line form (legacy, no trusted comment)
    sigs.push(sigs[1]!.split('\n').slice(0, 2).join('\n') + '\n');
    for (const s of sigs) await verifyFileSignature(data, pub, await sigFile(s));
  });

  let n = 0;
  async function sigFile(text: string | Buffer): Promise<string> {
    const p = join(dir, `s${n++ % 8}.minisig`);
    await writeFile(p, text);
    return p;
  }

  /** Line-aware mutations: a base64 line re-encoded wrongly, comments changed, lines dropped or added. */
  function lineMutation(r: Rng, text: string): { desc: string; text: string } {
    const lines = text.split('\n');
    const i = r.int(lines.length);
    const line = lines[i]!;
    const op = r.int(6);
    if (op === 0 && /^[A-Za-z0-9+/]+=*$/.test(line)) lines[i] = mutateB64(r, line);
    else if (op === 1 && /^[A-Za-z0-9+/]+=*$/.test(line)) {
      // the algorithm or key id bytes of a key or signature line
      const b = Buffer.from(line, 'base64');
      const at = r.int(Math.min(10, b.length));
      b[at] = r.pick([0, 0x45, 0x64, 0x44, 0xff, b[at]! ^ 1]);
      lines[i] = b.toString('base64');
    } else if (op === 2) lines[i] = line.replace(/: ?/, r.pick([':', ': ', ':  ', ' : ', ''])) + r.pick(['', r.pick(WEIRD_STRINGS), '\r']);
    else if (op === 3) lines.splice(i, 1);
    else if (op === 4) lines.splice(i, 0, r.pick(['', 'untrusted comment: x', 'trusted comment: x', line]));
    else lines[i] = r.pick(WEIRD_STRINGS) + line;
    return { desc: `line ${i} op ${op}`, text: lines.join('\n') };
  }

  const anyMutation = (r: Rng, text: string) => {
    if (r.chance(0.5)) {
      const m = mutateText(r, text);
      return { desc: `text: ${m.desc}`, text: m.text };
    }
    return lineMutation(r, text);
  };

  it('parsePublicKey', async () => {
    const t = await fuzz('minisign public key', 0x9b01, cases(4000), 10_000, (r) => {
      const m = anyMutation(r, pubText);
      return { desc: m.desc, run: () => parsePublicKey(m.text, 'vendor.pub') };
    });
    t.report();
  }, 180_000);

  it('parseSignature', async () => {
    const t = await fuzz('minisign signature', 0x9b02, cases(4000), 10_000, (r) => {
      const m = anyMutation(r, r.pick(sigs));
      return { desc: m.desc, run: () => parseSignature(m.text, 'data.minisig') };
    });
    t.report();
  }, 180_000);

  it('verifyFileSignature: mutated signature files, and valid signatures with hostile trusted comments', async () => {
    const digest = await blake2bFile(data);
    const raw = readFileSync(data);
    const t = await fuzz('minisign verify', 0x9b03, cases(2000), 10_000, async (r) => {
      if (r.chance(0.3)) {
        // Signed for real, with a comment a parser may choke on (serializeSignature refuses line breaks).
        const legacy = r.chance(0.3);
        const comment = r.pick([...WEIRD_STRINGS, 'x'.repeat(r.pick([1000, 60_000, 70_000])), '\u202e'.repeat(100), 'a\u0000b']);
        const s: MinisignSignature = minisignSign({ seed: vendor.seed, keyId: vendor.keyId }, legacy ? raw : digest, legacy ? 'Ed' : 'ED', comment, r.pick([undefined, ...WEIRD_STRINGS]));
        let text: string;
        try {
          text = serializeSignature(s);
        } catch {
          text = `untrusted comment: x\n${Buffer.concat([Buffer.from(s.alg), s.keyId, s.signature]).toString('base64')}\ntrusted comment: ${comment}\n${s.globalSignature!.toString('base64')}\n`;
        }
        const p = await sigFile(text);
        return { desc: `signed, comment ${JSON.stringify(comment.slice(0, 20))} (${comment.length})`, run: () => verifyFileSignature(data, pub, p) };
      }
      const m = anyMutation(r, r.pick(sigs));
      const p = await sigFile(m.text);
      const key = r.chance(0.2) ? parsePublicKeyOr(pubText, r) : pub;
      return { desc: m.desc, run: () => verifyFileSignature(data, key, p) };
    });
    t.report();
    expect(t.counts.get('ok') ?? 0).toBeGreaterThan(0);
  }, 180_000);

  /** Now and then a key that differs from the signer's (another key id, another key). */
  function parsePublicKeyOr(text: string, r: Rng): MinisignPublicKey {
    const k = parsePublicKey(text);
    const b = Buffer.concat([k.keyId, k.publicKey]);
    const i = r.int(b.length);
    b[i] = b[i]! ^ 1;
    return { keyId: b.subarray(0, 8), publicKey: b.subarray(8) };
  }
});
