import { describe, it, expect } from 'vitest';
import nacl from 'tweetnacl';
import { decodeSecretKey, encodeSecretKey, generateVendorKey, publicKeyFileText } from '../../src/keys/vendor.js';
import { parsePublicKey, keyIdHex } from '../../src/format/minisign.js';
import { MlicError } from '../../src/errors.js';
import { ed25519Sign } from '../../src/crypto/ed25519.js';
import { bundleKeyFromMaster, lineKey, modelKey, bundleKey } from '../../src/keys/derive.js';

const FAST = { logN: 12, r: 8, p: 1 };

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (e) {
    return (e as MlicError).code;
  }
}

describe('vendor keys', () => {
  it('round-trips an encrypted key; wrong passphrase is PASSPHRASE_WRONG', async () => {
    const k = generateVendorKey('acme');
    const text = await encodeSecretKey(k, 'pass phrase', FAST);
    expect(await code(decodeSecretKey(text, () => Promise.reject(new MlicError('PASSPHRASE_REQUIRED', 'none'))))).toBe('PASSPHRASE_REQUIRED');
    expect(text).not.toContain(k.master.toString('base64'));
    const back = await decodeSecretKey(text, () => 'pass phrase');
    expect(back.seed.equals(k.seed) && back.master.equals(k.master) && back.keyId.equals(k.keyId)).toBe(true);
    expect(back.name).toBe('acme');
    expect(await code(decodeSecretKey(text, () => 'wrong'))).toBe('PASSPHRASE_WRONG');
  });

  it('the default cost is scrypt N=2^17 r=8', async () => {
    const text = await encodeSecretKey(generateVendorKey(), 'x');
    const body = JSON.parse(Buffer.from(text.split('\n').slice(1, -2).join(''), 'base64').toString());
    expect(body.protection).toMatchObject({ kdf: 'scrypt', logN: 17, r: 8, p: 1, aead: 'xchacha20poly1305' });
  });

  it('detects edits to the key file (public key, parameters, secret)', async () => {
    const k = generateVendorKey();
    const text = await encodeSecretKey(k, 'pw', FAST);
    const body = JSON.parse(Buffer.from(text.split('\n').slice(1, -2).join(''), 'base64').toString());
    const rewrap = (b: object) => `-----BEGIN MLIC SECRET KEY-----\n${Buffer.from(JSON.stringify(b)).toString('base64')}\n-----END MLIC SECRET KEY-----\n`;
    const other = generateVendorKey();
    expect(await code(decodeSecretKey(rewrap({ ...body, publicKey: other.publicKey.toString('base64') }), () => 'pw'))).toBe('PASSPHRASE_WRONG');
    expect(await code(decodeSecretKey(rewrap({ ...body, protection: { ...body.protection, logN: 13 } }), () => 'pw'))).toBe('PASSPHRASE_WRONG');
    // Costly or malformed parameters are refused before any work (KEY_INVALID), never an internal error.
    for (const protection of [{ ...body.protection, logN: 22 }, { ...body.protection, p: 16 }, { ...body.protection, r: 32 }, { ...body.protection, nonce: undefined }, { ...body.protection, nonce: 7 }, { ...body.protection, salt: 'x' }])
      expect(await code(decodeSecretKey(rewrap({ ...body, protection }), () => 'pw'))).toBe('KEY_INVALID');
    const s = Buffer.from(body.secret, 'base64');
    s[0]! ^= 1;
    expect(await code(decodeSecretKey(rewrap({ ...body, secret: s.toString('base64') }), () => 'pw'))).toBe('PASSPHRASE_WRONG');
    expect(await code(decodeSecretKey('garbage', () => 'pw'))).toBe('KEY_INVALID');
    expect(await code(decodeSecretKey(rewrap({ v: 2 }), () => 'pw'))).toBe('KEY_INVALID');
    // Unencrypted, with a public key that does not match the seed.
    const plain = JSON.parse(Buffer.from((await encodeSecretKey(k, undefined)).split('\n').slice(1, -2).join(''), 'base64').toString());
    expect(await code(decodeSecretKey(rewrap({ ...plain, publicKey: other.publicKey.toString('base64') }), () => ''))).toBe('KEY_INVALID');
  });

  it('the .pub file is a minisign public key, and signatures verify with tweetnacl (independent Ed25519)', () => {
    const k = generateVendorKey();
    const pub = parsePublicKey(publicKeyFileText(k));
    expect(pub.publicKey.equals(k.publicKey)).toBe(true);
    expect(publicKeyFileText(k)).toContain(`minisign public key ${keyIdHex(k.keyId)}`);
    const msg = Buffer.from('hello');
    expect(nacl.sign.detached.verify(msg, ed25519Sign(k.seed, msg), k.publicKey)).toBe(true);
    const naclPub = nacl.sign.keyPair.fromSeed(k.seed).publicKey;
    expect(Buffer.from(naclPub).equals(k.publicKey)).toBe(true);
  });

  it('key derivation: levels are distinct and deterministic; a pin cannot be turned into a line key', () => {
    const k = generateVendorKey();
    const id = 'ab'.repeat(16);
    const b1 = bundleKeyFromMaster(k.master, 'm', '2', id);
    expect(b1.equals(bundleKey(lineKey(modelKey(k.master, 'm'), '2'), id))).toBe(true);
    expect(b1.equals(bundleKeyFromMaster(k.master, 'm', '3', id))).toBe(false);
    expect(b1.equals(bundleKeyFromMaster(k.master, 'n', '2', id))).toBe(false);
    expect(b1.equals(bundleKeyFromMaster(k.master, 'm', '2', 'cd'.repeat(16)))).toBe(false);
  });

  it('rejects malformed public keys', () => {
    for (const t of ['', 'x', 'untrusted comment: x\nAAAA\n', 'a\nb\nc\n']) {
      expect(() => parsePublicKey(t)).toThrow(MlicError);
    }
  });
});
