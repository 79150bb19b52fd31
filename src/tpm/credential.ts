/**
 * TPM2_MakeCredential, computed by the vendor without a TPM (TPM 2.0 Library, Part 1, §24
 * "Credential Protection"): a secret that only the TPM holding the endorsement key `ek` can
 * recover, and only for the object named `objectName` (an attestation key loaded in that TPM),
 * through TPM2_ActivateCredential. This is what binds a key to a TPM without a round trip: the
 * EK's private half never leaves the chip, so no copy of the host's files, no cloned VM and no
 * other TPM can activate the credential.
 *
 *   seed            = 32 random bytes (the EK's name algorithm is SHA-256)
 *   encryptedSecret = RSA-OAEP(EK, seed; SHA-256, label "IDENTITY\0")
 *   symKey          = KDFa(SHA-256, seed, "STORAGE", objectName, "", 128)      (the EK's AES-128)
 *   encIdentity     = AES-128-CFB(symKey, IV = 0, TPM2B_DIGEST(secret))
 *   hmacKey         = KDFa(SHA-256, seed, "INTEGRITY", "", "", 256)
 *   outerHmac       = HMAC-SHA-256(hmacKey, encIdentity || objectName)
 *   credentialBlob  = TPM2B_ID_OBJECT(TPM2B_DIGEST(outerHmac) || encIdentity)
 *
 * `credentialFile` writes both in tpm2-tools' file format (tpm2_makecredential -o, read by
 * tpm2_activatecredential -i): 0xBADCC0DE, version 1, the TPM2B_ID_OBJECT, the TPM2B_ENCRYPTED_SECRET.
 */
import { constants, createCipheriv, createHmac, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';

/** Big-endian TPM marshalling of integers and sized buffers (TPM2B). */
export const u8 = (n: number): Buffer => Buffer.from([n]);
export const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
export const tpm2b = (b: Uint8Array): Buffer => Buffer.concat([u16(b.length), b]);

/** KDFa (Part 1, §11.4.10.2) with HMAC-SHA-256: label is a NUL-terminated string. */
export function kdfa(key: Uint8Array, label: string, contextU: Uint8Array, contextV: Uint8Array, bits: number): Buffer {
  const out: Buffer[] = [];
  const bytes = Math.ceil(bits / 8);
  for (let i = 1, have = 0; have < bytes; i++) {
    const block = createHmac('sha256', key).update(u32(i)).update(label, 'latin1').update(Buffer.from([0])).update(contextU).update(contextV).update(u32(bits)).digest();
    out.push(block);
    have += block.length;
  }
  return Buffer.concat(out).subarray(0, bytes);
}

export interface Credential {
  /** TPM2B_ID_OBJECT */
  credentialBlob: Buffer;
  /** TPM2B_ENCRYPTED_SECRET */
  encryptedSecret: Buffer;
}

/** MakeCredential for an RSA 2048 EK (the TCG default template: SHA-256 names, AES-128-CFB). `secret`: at most 32 bytes. */
export function makeCredential(ek: KeyObject, objectName: Uint8Array, secret: Uint8Array, seed: Uint8Array = randomBytes(32)): Credential {
  if (ek.asymmetricKeyType !== 'rsa') throw new RangeError('only RSA endorsement keys are supported');
  if (secret.length === 0 || secret.length > 32) throw new RangeError('a credential is 1 to 32 bytes');
  const encSeed = publicEncrypt({ key: ek, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: Buffer.from('IDENTITY\0', 'latin1') }, seed);
  const symKey = kdfa(seed, 'STORAGE', objectName, new Uint8Array(0), 128);
  const c = createCipheriv('aes-128-cfb', symKey, Buffer.alloc(16));
  const encIdentity = Buffer.concat([c.update(tpm2b(secret)), c.final()]);
  const hmacKey = kdfa(seed, 'INTEGRITY', new Uint8Array(0), new Uint8Array(0), 256);
  const outerHmac = createHmac('sha256', hmacKey).update(encIdentity).update(objectName).digest();
  return { credentialBlob: tpm2b(Buffer.concat([tpm2b(outerHmac), encIdentity])), encryptedSecret: tpm2b(encSeed) };
}

/** The credential in tpm2-tools' file format (tpm2_activatecredential -i). */
export function credentialFile(c: Credential): Buffer {
  return Buffer.concat([u32(0xbadcc0de), u32(1), c.credentialBlob, c.encryptedSecret]);
}
