/**
 * minisign's public key and signature files (jedisct1/minisign, src/minisign.h). Pure.
 * Key id: 8 bytes as stored; printed as uppercase hex of the little-endian u64 (bytes reversed).
 */
import { createHash } from 'node:crypto';
import { MlicError } from '../errors.js';

export type SigAlg = 'ED' | 'Ed';

export interface MinisignPublicKey {
  keyId: Buffer; // 8 bytes as stored in the file
  publicKey: Buffer; // 32 bytes
}

export interface MinisignSignature {
  untrustedComment: string;
  alg: SigAlg;
  keyId: Buffer;
  signature: Buffer;
  /** absent in signify's two-line signatures */
  trustedComment: string | undefined;
  globalSignature: Buffer | undefined;
}

export function keyIdHex(keyId: Uint8Array): string {
  return Buffer.from(keyId).reverse().toString('hex').toUpperCase();
}

/**
 * A key's fingerprint for people to compare (OpenSSH's style): "SHA256:" and the unpadded base64
 * of the SHA-256 of the Ed25519 public key. Key ids are chosen by a key's owner; fingerprints are not.
 */
export function keyFingerprint(pk: Pick<MinisignPublicKey, 'publicKey'>): string {
  return `SHA256:${createHash('sha256').update(pk.publicKey).digest('base64').replace(/=+$/, '')}`;
}

const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

function b64(line: string, what: string, len: number): Buffer {
  const s = line.trim();
  const b = B64.test(s) ? Buffer.from(s, 'base64') : Buffer.alloc(0);
  if (b.length !== len || b.toString('base64') !== s) throw new MlicError('FORMAT_INVALID', `${what}: malformed base64 line`);
  return b;
}

function lines(text: string): string[] {
  return text.replace(/\r\n/g, '\n').split('\n');
}

export function serializePublicKey(pk: MinisignPublicKey): string {
  return `untrusted comment: minisign public key ${keyIdHex(pk.keyId)}\n${Buffer.concat([Buffer.from('Ed'), pk.keyId, pk.publicKey]).toString('base64')}\n`;
}

/** Parses a minisign public key file, or a bare base64 key line (as `minisign -P`). */
export function parsePublicKey(text: string, what = 'public key'): MinisignPublicKey {
  if (text.length > 4096) throw new MlicError('KEY_INVALID', `${what}: file too large for a minisign public key`);
  const ls = lines(text).filter((l) => l.trim() !== '');
  let keyLine: string | undefined;
  if (ls.length === 1) keyLine = ls[0];
  else if (ls.length === 2 && ls[0]!.startsWith('untrusted comment:')) keyLine = ls[1];
  if (keyLine === undefined) throw new MlicError('KEY_INVALID', `${what}: not a minisign public key file`, { hint: 'expected two lines: an untrusted comment and a base64 key' });
  let raw: Buffer;
  try {
    raw = b64(keyLine, what, 42);
  } catch {
    throw new MlicError('KEY_INVALID', `${what}: not a minisign public key (bad base64 or length)`);
  }
  if (raw.toString('latin1', 0, 2) !== 'Ed') throw new MlicError('KEY_INVALID', `${what}: unsupported key algorithm`);
  return { keyId: raw.subarray(2, 10), publicKey: raw.subarray(10, 42) };
}

export function serializeSignature(s: MinisignSignature): string {
  if (s.trustedComment === undefined || s.globalSignature === undefined) {
    return `untrusted comment: ${s.untrustedComment}\n${Buffer.concat([Buffer.from(s.alg, 'latin1'), s.keyId, s.signature]).toString('base64')}\n`;
  }
  if (/[\r\n]/.test(s.untrustedComment) || /[\r\n]/.test(s.trustedComment)) throw new RangeError('comments must be single lines');
  return (
    `untrusted comment: ${s.untrustedComment}\n` +
    `${Buffer.concat([Buffer.from(s.alg, 'latin1'), s.keyId, s.signature]).toString('base64')}\n` +
    `trusted comment: ${s.trustedComment}\n` +
    `${s.globalSignature.toString('base64')}\n`
  );
}

/**
 * Parses a minisign signature (four lines), or signify's two-line form (legacy `Ed` only, no
 * trusted comment).
 */
export function parseSignature(text: string, what = 'signature'): MinisignSignature {
  if (text.length > 64 * 1024) throw new MlicError('FORMAT_INVALID', `${what}: too large for a minisign signature`);
  const ls = lines(text);
  if (ls.length === 2 || (ls.length === 3 && ls[2] === '')) {
    const [uc, sigLine] = ls as [string, string];
    if (!uc.startsWith('untrusted comment:')) throw new MlicError('FORMAT_INVALID', `${what}: missing untrusted comment`);
    const raw = b64(sigLine, what, 74);
    if (raw.toString('latin1', 0, 2) !== 'Ed') throw new MlicError('FORMAT_INVALID', `${what}: a two-line (signify) signature must be a legacy Ed signature`);
    return { untrustedComment: uc.replace(/^untrusted comment: ?/, ''), alg: 'Ed', keyId: raw.subarray(2, 10), signature: raw.subarray(10, 74), trustedComment: undefined, globalSignature: undefined };
  }
  if (ls.length > 5 || (ls.length === 5 && ls[4] !== '') || ls.length < 4)
    throw new MlicError('FORMAT_INVALID', `${what}: not a minisign signature (expected 4 lines)`);
  const [uc, sigLine, tc, gsLine] = ls as [string, string, string, string];
  if (!uc.startsWith('untrusted comment: ') && uc !== 'untrusted comment:') throw new MlicError('FORMAT_INVALID', `${what}: missing untrusted comment`);
  if (!tc.startsWith('trusted comment: ')) throw new MlicError('FORMAT_INVALID', `${what}: missing trusted comment`);
  const raw = b64(sigLine, what, 74);
  const alg = raw.toString('latin1', 0, 2);
  if (alg !== 'ED' && alg !== 'Ed') throw new MlicError('FORMAT_INVALID', `${what}: unsupported signature algorithm`);
  return {
    untrustedComment: uc.slice('untrusted comment: '.length),
    alg,
    keyId: raw.subarray(2, 10),
    signature: raw.subarray(10, 74),
    trustedComment: tc.slice('trusted comment: '.length),
    globalSignature: b64(gsLine, what, 64),
  };
}
