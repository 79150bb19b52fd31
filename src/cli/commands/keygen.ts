import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MlicError, fromFsError } from '../../errors.js';
import { NAME_RE } from '../../format/manifest.js';
import { keyIdHex } from '../../format/minisign.js';
import { encodeSecretKey, generateVendorKey, publicKeyFileText } from '../../keys/vendor.js';
import { writeSmallFileAtomic } from '../../util/atomic.js';
import { generateEcdsaKeyPair, type EcCurve } from '../../crypto/ecdsa.js';
import { omsKeyHint } from '../../oms/sign.js';
import { newPassphrase } from '../passphrase.js';
import { printResult, type Ctx } from '../output.js';

export interface KeygenOpts {
  type?: string;
  output?: string;
  name?: string;
  unencrypted?: boolean;
  force?: boolean;
  passphraseFile?: string;
}

export async function run(ctx: Ctx, o: KeygenOpts): Promise<void> {
  const name = o.name ?? 'vendor';
  if (!NAME_RE.test(name)) throw new MlicError('USAGE', `invalid key name '${name}'`);
  const dir = o.output ?? '.';
  try {
    const st = await stat(dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
      return undefined;
    });
    // A new directory for keys is private, as `mkdir -m 700`.
    if (!st) await mkdir(dir, { recursive: true, mode: 0o700 });
    else if (!st.isDirectory()) throw new MlicError('IO_NOT_REGULAR', `${dir}: not a directory`);
  } catch (e) {
    throw fromFsError(e, dir);
  }
  const type = o.type ?? 'ed25519';
  const curve = { 'ecdsa-p256': 'P-256', 'ecdsa-p384': 'P-384', 'ecdsa-p521': 'P-521' }[type] as EcCurve | undefined;
  if (type !== 'ed25519' && !curve) throw new MlicError('USAGE', `unknown key type '${type}'`, { hint: 'use ed25519 (the vendor key, default) or ecdsa-p256 (for OpenSSF Model Signing)' });
  const keyPath = join(dir, curve ? `${name}.pem` : `${name}.key`);
  const pubPath = join(dir, curve ? `${name}.pub.pem` : `${name}.pub`);
  if (!o.force) {
    for (const p of [keyPath, pubPath]) {
      const exists = await stat(p).then(
        () => true,
        () => false,
      );
      if (exists) throw new MlicError('IO_EXISTS', `${p}: already exists; refusing to overwrite a key`, { hint: 'use --force to replace it (the old key is lost)' });
    }
  }
  const passphrase = o.unencrypted ? undefined : await newPassphrase(o.passphraseFile, `the new key ${keyPath}`);
  if (curve) {
    const pair = generateEcdsaKeyPair(curve, passphrase);
    await writeSmallFileAtomic(keyPath, pair.privateKeyPem, { mode: 0o600, force: o.force ?? false });
    await writeSmallFileAtomic(pubPath, pair.publicKeyPem, { mode: 0o644, force: o.force ?? false });
    ctx.note(`wrote ${keyPath} (ECDSA ${curve} private key, PKCS#8${passphrase === undefined ? ', NOT encrypted' : ', encrypted'}; mode 0600)`);
    ctx.note(`wrote ${pubPath} (public key, for \`mlic verify --oms\` and \`model_signing verify key\`)`);
    const hint = omsKeyHint(pair.publicKeyPem);
    ctx.out(`key hint ${hint}`);
    printResult(ctx, { type, curve, secretKey: keyPath, publicKey: pubPath, encrypted: passphrase !== undefined, keyHint: hint });
    return;
  }
  const key = generateVendorKey(name);
  await writeSmallFileAtomic(keyPath, await encodeSecretKey(key, passphrase), { mode: 0o600, force: o.force ?? false });
  await writeSmallFileAtomic(pubPath, publicKeyFileText(key), { mode: 0o644, force: o.force ?? false });
  const keyId = keyIdHex(key.keyId);
  ctx.note(`wrote ${keyPath} (secret key${passphrase === undefined ? ', NOT encrypted' : ', encrypted'}; keep it safe, mode 0600)`);
  ctx.note(`wrote ${pubPath} (public key; a minisign public key file)`);
  ctx.out(`key id ${keyId}`);
  printResult(ctx, { keyId, secretKey: keyPath, publicKey: pubPath, encrypted: passphrase !== undefined });
}
