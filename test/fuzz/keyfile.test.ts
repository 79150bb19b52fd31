/**
 * Fuzz: vendor secret key files, through what `mlic pack`, `mlic sign`, `mlic license issue`
 * call (loadSecretKey -> decodeSecretKey), unencrypted and encrypted (scrypt, small parameters
 * as in test/keys/vendor.test.ts).
 */
import { describe, it, beforeAll, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { decodeSecretKey, SECRET_KEY_BEGIN, SECRET_KEY_END, type VendorKey } from '../../src/keys/vendor.js';
import { scryptKey } from '../../src/crypto/kdf.js';
import { xsealEncrypt } from '../../src/crypto/seal.js';
import { canonicalJson } from '../../src/format/canonical.js';
import { keyIdHex } from '../../src/format/minisign.js';
import { cases, fuzz, mutateJson, mutateText, serialize, type Ast, type Rng } from './lib.js';
import { VECTORS, armor, canonicalOf, det, vectorKey } from './fixtures.js';

const FAST = { logN: 12, r: 8, p: 1 };
const PASS = 'pass phrase';
const KEYS = ['v', 'kind', 'keyId', 'name', 'publicKey', 'protection', 'secret', 'kdf', 'logN', 'r', 'p', 'salt', 'aead', 'nonce'];

/** The key's body, encrypted with fixed salt and nonce (encodeSecretKey draws random ones). */
async function encryptedBody(k: VendorKey): Promise<{ head: Record<string, unknown>; kek: Buffer; secret: Buffer }> {
  const salt = det('key salt');
  const nonce = det('key nonce', 24);
  const head = { v: 1, kind: 'mlic-vendor-secret-key', keyId: keyIdHex(k.keyId), name: 'test-vectors', publicKey: k.publicKey.toString('base64'), protection: { kdf: 'scrypt', ...FAST, salt: salt.toString('base64'), aead: 'xchacha20poly1305', nonce: nonce.toString('base64') } };
  const kek = await scryptKey(PASS, salt, FAST);
  return { head, kek, secret: Buffer.concat([k.seed, k.master]) };
}

const bodyOf = (text: string) => JSON.parse(Buffer.from(text.trim().split('\n').slice(1, -1).join(''), 'base64').toString('utf8')) as Record<string, unknown>;

describe('fuzz: vendor secret key files', () => {
  let plainText: string;
  let encText: string;
  let enc: Awaited<ReturnType<typeof encryptedBody>>;

  beforeAll(async () => {
    const k = await vectorKey();
    plainText = readFileSync(`${VECTORS}bundles/test-vendor.key`, 'utf8');
    enc = await encryptedBody(k);
    const sealed = xsealEncrypt(enc.kek, det('key nonce', 24), enc.secret, Buffer.from(canonicalJson(enc.head)));
    encText = armor(SECRET_KEY_BEGIN, SECRET_KEY_END, canonicalJson({ ...enc.head, secret: Buffer.from(sealed).toString('base64') }));
    expect((await decodeSecretKey(encText, () => PASS)).master.equals(k.master)).toBe(true);
  });

  /** Armour-level damage: wrapping, line endings, text around, lowercase markers. */
  function armourMutation(r: Rng, text: string): { desc: string; text: string } {
    const lines = text.trim().split('\n');
    const body = lines.slice(1, -1).join('');
    switch (r.int(8)) {
      case 0:
        return { desc: 'rewrapped', text: `${lines[0]}\n${body.replace(new RegExp(`(.{${1 + r.int(100)}})`, 'g'), '$1\n')}\n${lines.at(-1)}\n` };
      case 1:
        return { desc: 'CRLF', text: text.replace(/\n/g, '\r\n') };
      case 2:
        return { desc: 'text before', text: `junk\n${text}` };
      case 3:
        return { desc: 'text after', text: `${text}junk\n` };
      case 4:
        return { desc: 'no END', text: lines.slice(0, -1).join('\n') };
      case 5:
        return { desc: 'END twice', text: `${text}${lines.at(-1)}\n` };
      case 6:
        return { desc: 'two keys', text: text + text };
      default:
        return { desc: 'body only', text: body };
    }
  }

  function mutant(r: Rng, encrypted: boolean): { desc: string; text: string } {
    const text = encrypted ? encText : plainText;
    const level = r.int(10);
    if (level < 3) {
      const m = mutateText(r, text);
      return { desc: `text: ${m.desc}`, text: m.text };
    }
    if (level < 4) return armourMutation(r, text);
    if (level < 7 || !encrypted) {
      const m = mutateJson(r, bodyOf(text), [bodyOf(encrypted ? plainText : encText)], KEYS);
      return { desc: `body: ${m.desc}`, text: armor(SECRET_KEY_BEGIN, SECRET_KEY_END, r.chance(0.7) ? canonicalOf(m.ast) : serialize(m.ast)) };
    }
    // Encrypted and sealed again over the mutated head: the AEAD opens, so every later check runs.
    const m = mutateJson(r, enc.head, [], KEYS);
    const headText = canonicalOf(m.ast);
    let secret: Ast = { t: 'raw', s: '"AAAA"' };
    try {
      const h = JSON.parse(headText) as { protection?: { nonce?: unknown } };
      const nonce = typeof h.protection?.nonce === 'string' ? Buffer.from(h.protection.nonce, 'base64') : Buffer.alloc(0);
      if (nonce.length === 24) secret = { t: 'raw', s: JSON.stringify(Buffer.from(xsealEncrypt(enc.kek, nonce, enc.secret, Buffer.from(headText))).toString('base64')) };
    } catch {
      // a head that is not JSON any more: the placeholder secret stays
    }
    const all: Ast = m.ast.t === 'obj' ? { t: 'obj', e: [...m.ast.e, ['secret', secret]] } : m.ast;
    return { desc: `resealed: ${m.desc}`, text: armor(SECRET_KEY_BEGIN, SECRET_KEY_END, canonicalOf(all)) };
  }

  it('decodeSecretKey: unencrypted key files', async () => {
    const t = await fuzz('secret key (unencrypted)', 0x6e71, cases(3000), 10_000, (r) => {
      const m = mutant(r, false);
      return { desc: m.desc, run: () => decodeSecretKey(m.text, () => PASS) };
    });
    t.report();
  }, 180_000);

  it('decodeSecretKey: encrypted key files (scrypt logN 12)', async () => {
    const t = await fuzz('secret key (encrypted)', 0x6e72, cases(2000), 30_000, (r) => {
      const m = mutant(r, true);
      return { desc: m.desc, run: () => decodeSecretKey(m.text, Object.assign(() => PASS, { tries: 1 })) };
    });
    t.report();
  }, 180_000);
});
