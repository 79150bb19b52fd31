/** Signing and verifying any file with minisign-compatible signatures (prehashed ED, or legacy Ed). */
import { access, readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { MlicError, fromFsError } from '../errors.js';
import { MAX_INPUT, readTextFile } from '../util/files.js';
import { hashFile } from '../crypto/hash.js';
import { keyIdHex, parseSignature, serializeSignature, type MinisignPublicKey, type SigAlg } from '../format/minisign.js';
import { writeSmallFileAtomic } from '../util/atomic.js';
import { minisignSign, minisignVerify, type Signer } from './minisign.js';

/** Legacy (non-prehashed) signatures need the whole file in memory, as minisign itself does. */
export const LEGACY_MAX_BYTES = 1 << 30;

export function blake2bFile(path: string, onBytes?: (n: number) => void): Promise<Buffer> {
  return hashFile(path, 'blake2b512', onBytes);
}

async function messageFor(path: string, alg: SigAlg, onBytes?: (n: number) => void): Promise<Buffer> {
  if (alg === 'ED') return blake2bFile(path, onBytes);
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (e) {
    throw fromFsError(e, path);
  }
  if (size > LEGACY_MAX_BYTES) throw new MlicError('USAGE', `${path}: too large for a legacy (non-prehashed) signature`, { hint: 'use the default prehashed signature' });
  try {
    return await readFile(path);
  } catch (e) {
    throw fromFsError(e, path);
  }
}

export function defaultTrustedComment(file: string, keyId: Buffer, alg: SigAlg, now = new Date()): string {
  return `timestamp:${Math.floor(now.getTime() / 1000)}\tfile:${basename(file)}${alg === 'ED' ? '\thashed' : ''}\tkeyid:${keyIdHex(keyId)}`;
}

export interface SignFileOptions {
  signer: Signer;
  trustedComment?: string;
  legacy?: boolean;
  sigPath?: string;
  /** replace an existing signature file (default: refuse, IO_EXISTS) */
  force?: boolean;
  now?: Date;
  onBytes?: (n: number) => void;
}

export async function signFile(path: string, o: SignFileOptions): Promise<{ sigPath: string; trustedComment: string; alg: SigAlg }> {
  const alg: SigAlg = o.legacy ? 'Ed' : 'ED';
  const trustedComment = o.trustedComment ?? defaultTrustedComment(path, o.signer.keyId, alg, o.now);
  if (/[\r\n]/.test(trustedComment)) throw new MlicError('USAGE', 'the trusted comment must be one line');
  const sigPath = o.sigPath ?? `${path}.minisig`;
  if (!o.force && (await access(sigPath).then(() => true, () => false)))
    throw new MlicError('IO_EXISTS', `${sigPath}: already exists; refusing to replace a signature`, { hint: 'use --force to replace it' });
  const sig = minisignSign(o.signer, await messageFor(path, alg, o.onBytes), alg, trustedComment);
  await writeSmallFileAtomic(sigPath, serializeSignature(sig), { mode: 0o644, force: o.force ?? false });
  return { sigPath, trustedComment, alg };
}

export interface VerifyFileResult {
  file: string;
  sigPath: string;
  alg: SigAlg;
  keyId: string;
  /** undefined for signify's two-line signatures */
  trustedComment: string | undefined;
}

export async function verifyFileSignature(path: string, pub: MinisignPublicKey, sigPath = `${path}.minisig`, onBytes?: (n: number) => void): Promise<VerifyFileResult> {
  const text = await readTextFile(sigPath, { maxBytes: MAX_INPUT.signature, what: 'signature' });
  const sig = parseSignature(text, sigPath);
  if (keyIdHex(sig.keyId) !== keyIdHex(pub.keyId)) minisignVerify(pub, sig, Buffer.alloc(0), sigPath); // throws KEY_MISMATCH
  minisignVerify(pub, sig, await messageFor(path, sig.alg, onBytes), `signature of ${path}`);
  return { file: path, sigPath, alg: sig.alg, keyId: keyIdHex(sig.keyId), trustedComment: sig.trustedComment };
}
