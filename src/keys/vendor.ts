/**
 * The vendor's identity (docs/FORMAT.md §1): an Ed25519 signing key, a 32-byte master secret
 * from which every bundle key is derived, and an 8-byte key id (minisign's). The public half is
 * a minisign public key file.
 */
import { MlicError } from '../errors.js';
import { ed25519Generate, ed25519PublicFromSeed } from '../crypto/ed25519.js';
import { DEFAULT_SCRYPT, scryptKey, scryptParamsProblem, type ScryptParams } from '../crypto/kdf.js';
import { constantTimeEqual, randomBytes, wipe } from '../crypto/random.js';
import { xsealDecrypt, xsealEncrypt } from '../crypto/seal.js';
import { canonicalJson } from '../format/canonical.js';
import { KEYID_RE, NAME_RE, isB64, isFormatVersion, isPlainObject, unknownKeys } from '../format/fields.js';
import { parseJson } from '../format/json.js';
import { keyIdHex, serializePublicKey, type MinisignPublicKey } from '../format/minisign.js';

export interface VendorKey {
  keyId: Buffer;
  seed: Buffer;
  publicKey: Buffer;
  master: Buffer;
  name?: string;
}

export const SECRET_KEY_BEGIN = '-----BEGIN MLIC SECRET KEY-----';
export const SECRET_KEY_END = '-----END MLIC SECRET KEY-----';

export function generateVendorKey(name?: string): VendorKey {
  const { seed, publicKey } = ed25519Generate();
  return { keyId: randomBytes(8), seed, publicKey, master: randomBytes(32), ...(name ? { name } : {}) };
}

export function vendorPublicKey(k: Pick<VendorKey, 'keyId' | 'publicKey'>): MinisignPublicKey {
  return { keyId: k.keyId, publicKey: k.publicKey };
}

export function publicKeyFileText(k: Pick<VendorKey, 'keyId' | 'publicKey'>): string {
  return serializePublicKey(vendorPublicKey(k));
}

interface KeyFileBody {
  v: 1;
  kind: 'mlic-vendor-secret-key';
  keyId: string;
  name?: string;
  publicKey: string;
  protection: { kdf: 'none' } | { kdf: 'scrypt'; logN: number; r: number; p: number; salt: string; aead: 'xchacha20poly1305'; nonce: string };
  secret: string;
}

function aadOf(body: Omit<KeyFileBody, 'secret'>): Buffer {
  return Buffer.from(canonicalJson(body), 'utf8');
}

/** The key file's text: armored base64 of canonical JSON; the secret sealed under the passphrase unless it is undefined. */
export async function encodeSecretKey(k: VendorKey, passphrase: string | undefined, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const secret = Buffer.concat([k.seed, k.master]);
  const head: Omit<KeyFileBody, 'secret'> = {
    v: 1,
    kind: 'mlic-vendor-secret-key',
    keyId: keyIdHex(k.keyId),
    ...(k.name ? { name: k.name } : {}),
    publicKey: k.publicKey.toString('base64'),
    protection: { kdf: 'none' },
  };
  let sealed: Uint8Array = secret;
  if (passphrase !== undefined) {
    const salt = randomBytes(32);
    const nonce = randomBytes(24);
    head.protection = { kdf: 'scrypt', ...params, salt: salt.toString('base64'), aead: 'xchacha20poly1305', nonce: nonce.toString('base64') };
    const kek = await scryptKey(passphrase, salt, params);
    sealed = xsealEncrypt(kek, nonce, secret, aadOf(head));
    wipe(kek);
    wipe(secret);
  }
  const body = canonicalJson({ ...head, secret: Buffer.from(sealed).toString('base64') });
  const b64 = Buffer.from(body, 'utf8').toString('base64');
  return `${SECRET_KEY_BEGIN}\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n${SECRET_KEY_END}\n`;
}

/** Parses and validates the key file's body, every field, before any work (docs/FORMAT.md §1.1). */
function parseBody(text: string): KeyFileBody {
  const t = text.trim();
  if (t.length > 64 * 1024 || !t.startsWith(SECRET_KEY_BEGIN) || !t.endsWith(SECRET_KEY_END))
    throw new MlicError('KEY_INVALID', 'not an mlic secret key (missing BEGIN/END MLIC SECRET KEY lines)');
  const b64 = t.slice(SECRET_KEY_BEGIN.length, t.length - SECRET_KEY_END.length).replace(/\s+/g, '');
  if (!isB64(b64)) throw new MlicError('KEY_INVALID', 'secret key file is corrupt (bad base64)');
  let body: unknown;
  try {
    body = parseJson(Buffer.from(b64, 'base64').toString('utf8'), 'secret key file', 'KEY_INVALID');
  } catch {
    throw new MlicError('KEY_INVALID', 'secret key file is corrupt (not JSON)');
  }
  const bad = (what: string) => new MlicError('KEY_INVALID', `secret key file is corrupt or of an unknown version (${what})`);
  if (!isPlainObject(body)) throw bad('not an object');
  if (body.kind === 'mlic-vendor-secret-key' && isFormatVersion(body.v) && body.v !== 1) throw new MlicError('UNSUPPORTED_VERSION', `secret key file version ${body.v} is not supported`, { hint: 'upgrade mlic' });
  if (body.v !== 1 || body.kind !== 'mlic-vendor-secret-key') throw bad('kind');
  const extra = unknownKeys(body, ['v', 'kind', 'keyId', 'name', 'publicKey', 'protection', 'secret']);
  if (extra.length) throw bad(`unknown field ${extra[0]}`);
  if (typeof body.keyId !== 'string' || !KEYID_RE.test(body.keyId)) throw bad('keyId');
  if (body.name !== undefined && (typeof body.name !== 'string' || !NAME_RE.test(body.name))) throw bad('name');
  if (!isB64(body.publicKey, 32)) throw bad('publicKey');
  const prot = body.protection;
  if (!isPlainObject(prot)) throw bad('protection');
  if (prot.kdf === 'none') {
    if (unknownKeys(prot, ['kdf']).length) throw bad('protection');
    if (!isB64(body.secret, 64)) throw bad('secret');
  } else if (prot.kdf === 'scrypt') {
    if (unknownKeys(prot, ['kdf', 'logN', 'r', 'p', 'salt', 'aead', 'nonce']).length) throw bad('protection');
    const why = scryptParamsProblem(prot);
    if (why) throw new MlicError('KEY_INVALID', `secret key file asks for scrypt parameters mlic refuses (${why})`);
    if (prot.aead !== 'xchacha20poly1305' || !isB64(prot.salt, 32) || !isB64(prot.nonce, 24)) throw bad('protection');
    if (!isB64(body.secret, 80)) throw bad('secret');
  } else throw new MlicError('KEY_INVALID', `secret key file uses unsupported protection ${JSON.stringify(prot.kdf)?.slice(0, 40)}`);
  return body as unknown as KeyFileBody;
}

/** Decodes a key file; `passphrase` is asked for only when the key is encrypted. */
export async function decodeSecretKey(text: string, passphrase: (() => Promise<string> | string) & { tries?: number; onWrong?: () => void }): Promise<VendorKey> {
  const body = parseBody(text);
  const { secret: sealedB64, ...head } = body;
  const sealed = Buffer.from(sealedB64, 'base64');
  let secret: Uint8Array;
  const prot = body.protection;
  if (prot.kdf === 'none') {
    secret = sealed;
  } else if (prot.kdf === 'scrypt' && prot.aead === 'xchacha20poly1305') {
    let opened: Uint8Array | undefined;
    for (let attempt = 1; ; attempt++) {
      const kek = await scryptKey(await passphrase(), Buffer.from(prot.salt, 'base64'), prot);
      opened = xsealDecrypt(kek, Buffer.from(prot.nonce, 'base64'), sealed, aadOf(head));
      wipe(kek);
      if (opened || attempt >= (passphrase.tries ?? 1)) break;
      passphrase.onWrong?.();
    }
    if (!opened) throw new MlicError('PASSPHRASE_WRONG', 'wrong passphrase for the secret key (or the key file was modified)');
    secret = opened;
  } else {
    throw new MlicError('KEY_INVALID', `secret key file uses unsupported protection ${String((prot as { kdf: unknown }).kdf)}`);
  }
  if (secret.length !== 64) throw new MlicError('KEY_INVALID', 'secret key file is corrupt (bad secret length)');
  const seed = Buffer.from(secret.subarray(0, 32));
  const master = Buffer.from(secret.subarray(32, 64));
  wipe(secret);
  const publicKey = Buffer.from(body.publicKey, 'base64');
  if (!constantTimeEqual(ed25519PublicFromSeed(seed), publicKey)) throw new MlicError('KEY_INVALID', 'secret key file is corrupt (public key does not match)');
  return { keyId: Buffer.from(body.keyId, 'hex').reverse(), seed, publicKey, master, ...(body.name ? { name: body.name } : {}) };
}
