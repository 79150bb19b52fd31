/** Key derivation on node:crypto: HKDF-SHA256 for keys from keys, scrypt for passphrases. */
import { hkdfSync, scrypt } from 'node:crypto';

export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array | string, length = 32): Buffer {
  const infoBytes = typeof info === 'string' ? Buffer.from(info, 'utf8') : info;
  return Buffer.from(hkdfSync('sha256', ikm, salt, infoBytes, length));
}

export interface ScryptParams {
  logN: number;
  r: number;
  p: number;
}

/** Default passphrase cost: N=2^17, r=8 (128 MiB, about 0.3 s here), as age's default work factor class. */
export const DEFAULT_SCRYPT: ScryptParams = { logN: 17, r: 8, p: 1 };

/**
 * What a key file may ask for, checked before any work (a key file is input too): memory
 * 128·r·N at most 256 MiB, and work N·r·p at most twice the default's.
 */
export function scryptParamsProblem(params: unknown): string | undefined {
  const o = params as Partial<ScryptParams>;
  if (!Number.isInteger(o?.logN) || o.logN! < 10 || o.logN! > 20) return 'logN must be 10..20';
  if (!Number.isInteger(o.r) || o.r! < 1 || o.r! > 16) return 'r must be 1..16';
  if (!Number.isInteger(o.p) || o.p! < 1 || o.p! > 4) return 'p must be 1..4';
  const n = 2 ** o.logN!;
  if (128 * o.r! * n > 256 * 2 ** 20) return 'memory (128·r·N) above 256 MiB';
  if (n * o.r! * o.p! > 2 * 2 ** 17 * 8) return 'work (N·r·p) above twice the default';
  return undefined;
}

/** scrypt on the thread pool (the event loop stays free, e.g. for a spinner). Throws RangeError for parameters out of bounds. */
export function scryptKey(passphrase: string, salt: Uint8Array, params: ScryptParams): Promise<Buffer> {
  const why = scryptParamsProblem(params);
  if (why) return Promise.reject(new RangeError(`scrypt parameters: ${why}`));
  return new Promise((resolve, reject) => {
    scrypt(passphrase.normalize('NFKC'), salt, 32, { N: 2 ** params.logN, r: params.r, p: params.p, maxmem: 300 * 2 ** 20 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}
