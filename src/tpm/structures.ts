/**
 * The TPM 2.0 structures a vendor reads from a host (TPM 2.0 Library, Part 2), parsed as hostile
 * input: every size is checked against the bytes left and against a cap, unknown algorithms are
 * refused, and nothing is left over. A malformed structure is TPM_QUOTE_INVALID, never a crash.
 *
 *   TPM2B_PUBLIC / TPMT_PUBLIC   the attestation key (RSA 2048+ or ECC P-256, SHA-256 names)
 *   TPMS_ATTEST (quote)          what the TPM signed: magic, type, signer, extraData, clock, firmware, PCR selection and digest
 *   TPMT_SIGNATURE               RSASSA or ECDSA with SHA-256
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { MlicError } from '../errors.js';

export const TPM_ALG = { RSA: 0x0001, SHA256: 0x000b, NULL: 0x0010, RSASSA: 0x0014, ECDSA: 0x0018, ECC: 0x0023, AES: 0x0006, CFB: 0x0043 } as const;
export const TPM_GENERATED_VALUE = 0xff544347;
export const TPM_ST_ATTEST_QUOTE = 0x8018;
/** TPMA_OBJECT bits */
export const ATTR = { fixedTPM: 1 << 1, fixedParent: 1 << 4, sensitiveDataOrigin: 1 << 5, userWithAuth: 1 << 6, restricted: 1 << 16, decrypt: 1 << 17, sign: 1 << 18 } as const;
const MAX_STRUCT = 4096;

const bad = (what: string) => new MlicError('TPM_QUOTE_INVALID', `malformed TPM structure: ${what}`);

class Cursor {
  pos = 0;
  constructor(
    readonly b: Buffer,
    readonly what: string,
  ) {
    if (b.length > MAX_STRUCT) throw bad(`${what} is ${b.length} bytes, more than ${MAX_STRUCT}`);
  }
  need(n: number, field: string) {
    if (n > this.b.length - this.pos) throw bad(`${this.what}: ${field} needs ${n} bytes, ${this.b.length - this.pos} left`);
  }
  u8(f: string) {
    this.need(1, f);
    return this.b[this.pos++]!;
  }
  u16(f: string) {
    this.need(2, f);
    const v = this.b.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(f: string) {
    this.need(4, f);
    const v = this.b.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(f: string) {
    this.need(8, f);
    const v = this.b.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  bytes(n: number, f: string) {
    this.need(n, f);
    const v = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  tpm2b(f: string, max = 1024) {
    const n = this.u16(`${f} size`);
    if (n > max) throw bad(`${this.what}: ${f} is ${n} bytes, more than ${max}`);
    return this.bytes(n, f);
  }
  end() {
    if (this.pos !== this.b.length) throw bad(`${this.what}: ${this.b.length - this.pos} bytes left over`);
  }
}

export interface TpmPublic {
  key: KeyObject;
  /** TPMT_PUBLIC's name: nameAlg || SHA-256(TPMT_PUBLIC) */
  name: Buffer;
  attributes: number;
}

const b64url = (b: Uint8Array) => Buffer.from(b).toString('base64url');

/** TPM2B_PUBLIC (as tpm2_createak -u writes it) or a bare TPMT_PUBLIC. */
export function parsePublic(buf: Uint8Array, sized = true): TpmPublic {
  const outer = new Cursor(Buffer.from(buf), 'TPM2B_PUBLIC');
  const body = sized ? outer.tpm2b('publicArea', MAX_STRUCT) : outer.bytes(outer.b.length, 'publicArea');
  outer.end();
  const c = new Cursor(Buffer.from(body), 'TPMT_PUBLIC');
  const type = c.u16('type');
  const nameAlg = c.u16('nameAlg');
  if (nameAlg !== TPM_ALG.SHA256) throw bad(`TPMT_PUBLIC: nameAlg 0x${nameAlg.toString(16)} (only SHA-256)`);
  const attributes = c.u32('objectAttributes');
  c.tpm2b('authPolicy', 64);
  let key: KeyObject;
  const symmetric = () => {
    const alg = c.u16('symmetric.algorithm');
    if (alg !== TPM_ALG.NULL) {
      c.u16('symmetric.keyBits');
      c.u16('symmetric.mode');
    }
  };
  const scheme = () => {
    const s = c.u16('scheme');
    if (s !== TPM_ALG.NULL) c.u16('scheme.hashAlg');
  };
  try {
    if (type === TPM_ALG.RSA) {
      symmetric();
      scheme();
      const bits = c.u16('keyBits');
      if (bits < 2048 || bits > 4096) throw bad(`TPMT_PUBLIC: RSA key of ${bits} bits`);
      const exp = c.u32('exponent') || 65537;
      const n = c.tpm2b('unique.rsa', 512);
      if (n.length * 8 !== bits) throw bad('TPMT_PUBLIC: modulus size does not match keyBits');
      const e = Buffer.alloc(4);
      e.writeUInt32BE(exp);
      key = createPublicKey({ key: { kty: 'RSA', n: b64url(n), e: b64url(e.subarray(e.findIndex((x) => x !== 0))) }, format: 'jwk' });
    } else if (type === TPM_ALG.ECC) {
      symmetric();
      scheme();
      const curve = c.u16('curveID');
      if (curve !== 0x0003) throw bad(`TPMT_PUBLIC: ECC curve 0x${curve.toString(16)} (only NIST P-256)`);
      const kdf = c.u16('kdf');
      if (kdf !== TPM_ALG.NULL) c.u16('kdf.hashAlg');
      const x = c.tpm2b('unique.x', 32);
      const y = c.tpm2b('unique.y', 32);
      key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: b64url(x), y: b64url(y) }, format: 'jwk' });
    } else throw bad(`TPMT_PUBLIC: key type 0x${type.toString(16)} (only RSA and ECC)`);
  } catch (e) {
    if (e instanceof MlicError) throw e;
    throw bad(`TPMT_PUBLIC: the key is not a valid public key (${(e as Error).message.slice(0, 100)})`);
  }
  c.end();
  const name = Buffer.concat([Buffer.from([0x00, 0x0b]), createHash('sha256').update(body).digest()]);
  return { key, name, attributes };
}

export interface Attest {
  qualifiedSigner: Buffer;
  extraData: Buffer;
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: boolean;
  firmwareVersion: bigint;
  /** hash algorithm -> selected PCR indexes */
  pcrSelection: { hash: number; pcrs: number[] }[];
  pcrDigest: Buffer;
}

/** TPMS_ATTEST of a quote (tpm2_quote -m). */
export function parseQuoteAttest(buf: Uint8Array): Attest {
  const c = new Cursor(Buffer.from(buf), 'TPMS_ATTEST');
  if (c.u32('magic') !== TPM_GENERATED_VALUE) throw bad('TPMS_ATTEST: not TPM_GENERATED (magic)');
  if (c.u16('type') !== TPM_ST_ATTEST_QUOTE) throw bad('TPMS_ATTEST: not a quote');
  const qualifiedSigner = c.tpm2b('qualifiedSigner', 66);
  const extraData = c.tpm2b('extraData', 64);
  const clock = c.u64('clock');
  const resetCount = c.u32('resetCount');
  const restartCount = c.u32('restartCount');
  const safe = c.u8('safe') === 1;
  const firmwareVersion = c.u64('firmwareVersion');
  const count = c.u32('pcrSelect count');
  if (count > 16) throw bad(`TPMS_ATTEST: ${count} PCR banks`);
  const pcrSelection: Attest['pcrSelection'] = [];
  for (let i = 0; i < count; i++) {
    const hash = c.u16('pcrSelect hash');
    const size = c.u8('sizeofSelect');
    if (size > 8) throw bad(`TPMS_ATTEST: a PCR selection of ${size} bytes`);
    const sel = c.bytes(size, 'pcrSelect');
    const pcrs: number[] = [];
    for (let byte = 0; byte < size; byte++) for (let bit = 0; bit < 8; bit++) if (sel[byte]! & (1 << bit)) pcrs.push(byte * 8 + bit);
    pcrSelection.push({ hash, pcrs });
  }
  const pcrDigest = c.tpm2b('pcrDigest', 64);
  c.end();
  return { qualifiedSigner, extraData, clock, resetCount, restartCount, safe, firmwareVersion, pcrSelection, pcrDigest };
}

/** TPMT_SIGNATURE (tpm2_quote -s, format tss): RSASSA or ECDSA over SHA-256; returns what node:crypto verifies. */
export function parseSignature(buf: Uint8Array): { alg: 'rsassa' | 'ecdsa'; signature: Buffer } {
  const c = new Cursor(Buffer.from(buf), 'TPMT_SIGNATURE');
  const alg = c.u16('sigAlg');
  const hash = c.u16('hash');
  if (hash !== TPM_ALG.SHA256) throw bad(`TPMT_SIGNATURE: hash 0x${hash.toString(16)} (only SHA-256)`);
  if (alg === TPM_ALG.RSASSA) {
    const sig = c.tpm2b('signature', 512);
    c.end();
    return { alg: 'rsassa', signature: Buffer.from(sig) };
  }
  if (alg === TPM_ALG.ECDSA) {
    const r = c.tpm2b('signatureR', 32);
    const s = c.tpm2b('signatureS', 32);
    c.end();
    const pad = (x: Buffer) => Buffer.concat([Buffer.alloc(32 - x.length), x]);
    return { alg: 'ecdsa', signature: Buffer.concat([pad(Buffer.from(r)), pad(Buffer.from(s))]) };
  }
  throw bad(`TPMT_SIGNATURE: algorithm 0x${alg.toString(16)} (only RSASSA and ECDSA)`);
}
