/** Loading the vendor's keys from files or the environment (MLIC_SECRET_KEY, MLIC_PASSPHRASE). */
import { MlicError } from '../errors.js';
import { MAX_INPUT, readTextFile } from '../util/files.js';
import { parsePublicKey, type MinisignPublicKey } from '../format/minisign.js';
import { decodeSecretKey, type VendorKey } from './vendor.js';

/** Where a passphrase comes from; `tries` > 1 asks again after a wrong one (at a terminal), calling `onWrong` first. */
export type PassphraseSource = (() => Promise<string> | string) & { tries?: number; onWrong?: () => void };

export interface LoadSecretKeyOptions {
  /** path of the key file; when absent, MLIC_SECRET_KEY (the file's contents) is used */
  keyFile?: string;
  passphrase: PassphraseSource;
  env?: NodeJS.ProcessEnv;
}

export async function loadSecretKey(opts: LoadSecretKeyOptions): Promise<VendorKey> {
  const env = opts.env ?? process.env;
  let text: string;
  if (opts.keyFile !== undefined) {
    text = await readTextFile(opts.keyFile, { maxBytes: MAX_INPUT.secretKey, what: 'secret key' });
  } else if (env.MLIC_SECRET_KEY) {
    text = env.MLIC_SECRET_KEY;
  } else {
    throw new MlicError('USAGE', 'no secret key given', { hint: 'pass --key FILE or set MLIC_SECRET_KEY to the key file contents' });
  }
  return decodeSecretKey(text, opts.passphrase);
}

export async function loadPublicKey(file: string): Promise<MinisignPublicKey> {
  const text = await readTextFile(file, { maxBytes: MAX_INPUT.publicKey, what: 'public key' });
  return parsePublicKey(text, file);
}
