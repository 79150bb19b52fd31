/**
 * ECDSA on node:crypto (OpenSSL) for OpenSSF Model Signing's key method, plus streamed file hashing.
 *
 * Invariants:
 * - Only NIST P-256, P-384 and P-521 keys load; the signature hash follows the curve
 *   (SHA-256, SHA-384, SHA-512), as the reference `model_signing` does.
 * - Signatures are DER-encoded (X9.62 `ECDSA-Sig-Value`), the form a Sigstore bundle carries.
 * - `ecdsaVerify` never throws for a malformed signature: it returns false.
 * - Key material never appears in an error message.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { hashFile } from './hash.js';
import { MlicError } from '../errors.js';

export type EcCurve = 'P-256' | 'P-384' | 'P-521';
export type EcHash = 'sha256' | 'sha384' | 'sha512';

export const EC_CURVES: readonly EcCurve[] = ['P-256', 'P-384', 'P-521'];

/** OpenSSL curve names (KeyObject.asymmetricKeyDetails.namedCurve) to ours. */
const OPENSSL_CURVES: Record<string, EcCurve> = {
  prime256v1: 'P-256',
  secp384r1: 'P-384',
  secp521r1: 'P-521',
};

const CURVE_HASH: Record<EcCurve, EcHash> = { 'P-256': 'sha256', 'P-384': 'sha384', 'P-521': 'sha512' };

/** The hash ECDSA uses with a curve (the reference's get_ec_key_hash). */
export function ecHashFor(curve: EcCurve): EcHash {
  return CURVE_HASH[curve];
}

/** A loaded ECDSA private key. Opaque: only this module reads `key`. */
export interface EcPrivateKey {
  readonly kind: 'ec-private';
  readonly curve: EcCurve;
  /** @internal */
  readonly key: KeyObject;
}

/** A loaded ECDSA public key. Opaque: only this module reads `key`. */
export interface EcPublicKey {
  readonly kind: 'ec-public';
  readonly curve: EcCurve;
  /** @internal */
  readonly key: KeyObject;
}

export interface EcKeyPairPem {
  curve: EcCurve;
  /** PKCS#8, "-----BEGIN PRIVATE KEY-----" */
  privateKeyPem: string;
  /** SubjectPublicKeyInfo, "-----BEGIN PUBLIC KEY-----" */
  publicKeyPem: string;
}

/**
 * Generates an ECDSA key pair (default P-256) as PKCS#8 / SPKI PEM text. With a passphrase the
 * private key is an encrypted PKCS#8 ("ENCRYPTED PRIVATE KEY", PBES2 with AES-256-CBC), which
 * OpenSSL and the reference model_signing tool read.
 */
export function generateEcdsaKeyPair(curve: EcCurve = 'P-256', passphrase?: string): EcKeyPairPem {
  if (!EC_CURVES.includes(curve)) throw new MlicError('USAGE', `unsupported ECDSA curve ${String(curve)}: use P-256, P-384 or P-521`);
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
  return {
    curve,
    privateKeyPem: privateKey
      .export(passphrase === undefined ? { type: 'pkcs8', format: 'pem' } : { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase })
      .toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

const OMS_NEEDS_EC = 'OpenSSF Model Signing key signatures use ECDSA keys (P-256, P-384 or P-521)';
const KEYGEN_HINT = 'make one with `openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt` or `mlic keygen --type ecdsa-p256`';

const KEY_TYPE_NAMES: Record<string, string> = {
  ed25519: 'an Ed25519',
  ed448: 'an Ed448',
  x25519: 'an X25519',
  x448: 'an X448',
  rsa: 'an RSA',
  'rsa-pss': 'an RSA-PSS',
  dsa: 'a DSA',
  dh: 'a DH',
};

function curveOf(k: KeyObject, what: string): EcCurve {
  const type = k.asymmetricKeyType;
  if (type !== 'ec') {
    const name = KEY_TYPE_NAMES[String(type)] ?? `a ${String(type)}`;
    throw new MlicError('KEY_INVALID', `${what} is ${name} key, but ${OMS_NEEDS_EC}`, { hint: KEYGEN_HINT });
  }
  const named = k.asymmetricKeyDetails?.namedCurve ?? 'unknown';
  const curve = OPENSSL_CURVES[named];
  if (curve === undefined) {
    throw new MlicError('KEY_INVALID', `${what} is an EC key on curve ${named}, but ${OMS_NEEDS_EC}`, { hint: KEYGEN_HINT });
  }
  return curve;
}

function pemLabels(text: string): string[] {
  return [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----/g)].map((m) => m[1]!);
}

/**
 * Loads a PEM private key: PKCS#8 ("PRIVATE KEY"), SEC1 ("EC PRIVATE KEY"), or an encrypted PKCS#8
 * ("ENCRYPTED PRIVATE KEY") when a passphrase is given. Anything else is KEY_INVALID.
 */
export function loadEcPrivateKey(pem: string, passphrase?: string): EcPrivateKey {
  const what = 'the private key';
  if (typeof pem !== 'string' || pem.trim() === '') throw new MlicError('KEY_INVALID', `${what} is empty`, { hint: KEYGEN_HINT });
  const labels = pemLabels(pem);
  if (labels.length === 0) throw new MlicError('KEY_INVALID', `${what} is not PEM text (no "-----BEGIN ...-----" line)`, { hint: KEYGEN_HINT });
  if (labels.includes('PUBLIC KEY') && !labels.some((l) => l.endsWith('PRIVATE KEY'))) {
    throw new MlicError('KEY_INVALID', `${what} is a public key; signing needs the private key`);
  }
  const encrypted = labels.includes('ENCRYPTED PRIVATE KEY') || /Proc-Type:\s*4,ENCRYPTED/.test(pem);
  if (encrypted && (passphrase === undefined || passphrase === '')) {
    throw new MlicError('PASSPHRASE_REQUIRED', `${what} is encrypted and no passphrase was given`, { hint: 'pass its passphrase, or decrypt it with `openssl pkey -in key.pem -out plain.pem`' });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(encrypted ? { key: pem, format: 'pem', passphrase: passphrase! } : { key: pem, format: 'pem' });
  } catch (e) {
    if (encrypted) throw new MlicError('PASSPHRASE_WRONG', `${what} could not be decrypted: wrong passphrase or unsupported encryption`);
    throw new MlicError('KEY_INVALID', `${what} could not be read as a PEM private key (${shortOpenSslReason(e)})`, { hint: KEYGEN_HINT });
  }
  if (key.type !== 'private') throw new MlicError('KEY_INVALID', `${what} is not a private key`);
  return { kind: 'ec-private', curve: curveOf(key, what), key };
}

/**
 * Loads a PEM SubjectPublicKeyInfo public key ("-----BEGIN PUBLIC KEY-----"). Text before and after
 * the PEM block (e.g. certtool's key description) is ignored, as OpenSSL does. A private key, a
 * certificate or a non-EC key is KEY_INVALID.
 */
export function loadEcPublicKey(pem: string): EcPublicKey {
  const what = 'the public key';
  if (typeof pem !== 'string' || pem.trim() === '') throw new MlicError('KEY_INVALID', `${what} is empty`);
  const labels = pemLabels(pem);
  if (labels.length === 0) throw new MlicError('KEY_INVALID', `${what} is not PEM text (no "-----BEGIN PUBLIC KEY-----" line)`);
  if (!labels.includes('PUBLIC KEY')) {
    if (labels.some((l) => l.endsWith('PRIVATE KEY'))) {
      throw new MlicError('KEY_INVALID', `${what} is a private key; verification takes the public key`, { hint: 'extract it with `openssl pkey -in key.pem -pubout`' });
    }
    throw new MlicError('KEY_INVALID', `${what} is a PEM "${labels[0]}", not a "PUBLIC KEY"`, { hint: 'extract the key with `openssl x509 -pubkey -noout -in cert.pem`' });
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw new MlicError('KEY_INVALID', `${what} could not be read as a PEM public key (${shortOpenSslReason(e)})`);
  }
  if (key.type !== 'public') throw new MlicError('KEY_INVALID', `${what} is not a public key`);
  return { kind: 'ec-public', curve: curveOf(key, what), key };
}

export function ecPublicFromPrivate(priv: EcPrivateKey): EcPublicKey {
  return { kind: 'ec-public', curve: priv.curve, key: createPublicKey(priv.key) };
}

/** The public key as canonical SPKI PEM text (64-column base64, trailing newline), like OpenSSL and pyca/cryptography write it. */
export function ecPublicKeyPem(pub: EcPublicKey): string {
  return pub.key.export({ type: 'spki', format: 'pem' }).toString();
}

/**
 * OMS key hint: hex sha256 of the canonical SPKI PEM text (what model_signing >= 1.1 writes in
 * verificationMaterial.publicKey.hint). The PEM is re-encoded first, so text around the PEM block or
 * different line wrapping in the key file does not change the hint.
 */
export function ecPublicKeyHint(pub: EcPublicKey): string {
  return createHash('sha256').update(ecPublicKeyPem(pub), 'utf8').digest('hex');
}

/** DER ECDSA signature over `data`, hashed with the curve's hash. */
export function ecdsaSign(priv: EcPrivateKey, data: Uint8Array): Buffer {
  return nodeSign(ecHashFor(priv.curve), data, { key: priv.key, dsaEncoding: 'der' });
}

/** Verifies a DER ECDSA signature over `data` (hash from the curve). False for any bad or malformed signature. */
export function ecdsaVerify(pub: EcPublicKey, data: Uint8Array, signatureDer: Uint8Array): boolean {
  if (signatureDer.length < 8 || signatureDer.length > 160) return false;
  try {
    return nodeVerify(ecHashFor(pub.curve), data, { key: pub.key, dsaEncoding: 'der' }, signatureDer);
  } catch {
    return false;
  }
}

function shortOpenSslReason(e: unknown): string {
  const code = (e as { code?: unknown })?.code;
  if (code === 'ERR_OSSL_UNSUPPORTED') return 'unsupported or malformed key data';
  return typeof code === 'string' ? code : 'malformed key data';
}

/** SHA-256 of a file, streamed with bounded memory (see hashFile). */
export function sha256File(path: string): Promise<Buffer> {
  return hashFile(path, 'sha256');
}
