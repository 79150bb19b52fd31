/**
 * The host's side of TPM binding: an attestation key (AK) made under the
 * TPM's endorsement key (EK) and kept as blobs that only this TPM can load (its private part is
 * encrypted by the EK, which never leaves the chip); quotes signed by it; and credential
 * activation, which recovers a secret the vendor sealed with makeCredential (credential.ts) for
 * this EK and this AK. A copy of the blobs in another machine's state directory, a cloned VM with
 * a fresh TPM, or another TPM recover nothing.
 *
 * Keys are made with tpm2-tools (tpm2_createak, tpm2_create); the quote and credential activation,
 * which need the EK's policy session from one command to the next, are sent as TPM commands over
 * one connection (wire.ts). Each operation recreates the EK from its standard template
 * (deterministic: the same key every time) and flushes the TPM's transient objects and sessions
 * before and after (a TPM without a resource manager, such as swtpm's socket, has only a few
 * slots).
 */
import { createPublicKey } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tpm2, tctiOf, type TpmOptions } from './tools.js';
import type { Credential } from './credential.js';
import { parsePcrSelection } from './pcr.js';
import { activateWith, quoteWith, withAkUnderEk, type TpmConnection } from './wire.js';
import { EK_CERT_INDEX } from './info.js';
import { MlicError } from '../errors.js';

export interface AttestationKey {
  /** TPM2B_PUBLIC */
  akPublic: Buffer;
  /** TPM2B_PRIVATE: loadable only under this TPM's EK */
  akPrivate: Buffer;
  /** the AK's name (nameAlg || SHA-256 of its TPMT_PUBLIC) */
  akName: Buffer;
  /** the EK's public key, PEM */
  ekPublic: string;
  /** the EK certificate from NV (DER), when there is one */
  ekCertificate?: Buffer;
}

async function inTemp<T>(fn: (f: (n: string) => string) => Promise<T>): Promise<T> {
  const d = await mkdtemp(join(tmpdir(), 'mlic-tpm-'));
  try {
    return await fn((n) => join(d, n));
  } finally {
    await rm(d, { recursive: true, force: true });
  }
}

/**
 * A resource manager (the kernel's /dev/tpmrm*, tpm2-abrmd) gives each connection its own objects
 * and sessions and flushes them when it closes; without one (swtpm's socket, a raw /dev/tpm0)
 * what a command loaded stays in the TPM's few slots until flushed.
 */
export function hasResourceManager(tcti: string): boolean {
  return /^device:\/dev\/tpmrm\d+$/.test(tcti) || tcti.startsWith('tabrmd');
}

/** Flushes everything loaded (transient objects, loaded and saved sessions), where nothing else will. */
async function flush(o: TpmOptions): Promise<void> {
  if (hasResourceManager(o.tcti ?? tctiOf())) return;
  for (const what of ['-t', '-l', '-s']) await tpm2('flushcontext', [what], o).catch(() => undefined);
}

/** Flushes the transient objects a step left loaded, to make room for the next (a TPM without a resource manager has about three slots). */
async function flushObjects(o: TpmOptions): Promise<void> {
  if (hasResourceManager(o.tcti ?? tctiOf())) return;
  await tpm2('flushcontext', ['-t'], o);
}

/** Makes a new attestation key in the TPM (a restricted RSA 2048 signing key under the EK). */
export async function createAttestationKey(o: TpmOptions = {}): Promise<AttestationKey> {
  const opts = { ...o, tcti: o.tcti ?? tctiOf() };
  await flush(opts);
  try {
    return await inTemp(async (f) => {
      await tpm2('createek', ['-c', f('ek.ctx'), '-G', 'rsa', '-u', f('ek.pub'), '-Q'], opts);
      await tpm2('readpublic', ['-c', f('ek.ctx'), '-o', f('ek.pem'), '-f', 'pem', '-Q'], opts);
      await flushObjects(opts);
      await tpm2('createak', ['-C', f('ek.ctx'), '-c', f('ak.ctx'), '-G', 'rsa', '-g', 'sha256', '-s', 'rsassa', '-u', f('ak.pub'), '-r', f('ak.priv'), '-n', f('ak.name'), '-Q'], opts);
      let ekCertificate: Buffer | undefined;
      for (const index of [EK_CERT_INDEX.rsa]) ekCertificate ??= await tpm2('nvread', ['-C', 'o', `0x${index.toString(16)}`], opts).catch(() => undefined);
      const ekPublic = await readFile(f('ek.pem'), 'utf8');
      createPublicKey(ekPublic); // a PEM the vendor can use
      return { akPublic: await readFile(f('ak.pub')), akPrivate: await readFile(f('ak.priv')), akName: await readFile(f('ak.name')), ekPublic, ...(ekCertificate ? { ekCertificate } : {}) };
    });
  } finally {
    await flush(opts);
  }
}

/** The EK's RSA modulus, from its PEM. */
function modulusOf(pem: string): Buffer {
  return Buffer.from(createPublicKey(pem).export({ format: 'jwk' }).n!, 'base64url');
}

/**
 * Loads the AK under the EK and runs `fn`, over one connection (wire.ts: the EK's policy session
 * must live from one command to the next, which the kernel's resource manager allows only within
 * a connection). A TPM that cannot load the AK, or whose EK is not the one recorded, is
 * TPM_KEY_UNAVAILABLE.
 */
async function withAk<T>(ak: AttestationKey, o: TpmOptions, fn: (c: TpmConnection, h: { ek: number; ak: number }) => Promise<T>): Promise<T> {
  const opts = { ...o, tcti: o.tcti ?? tctiOf() };
  await flush(opts);
  try {
    return await withAkUnderEk(opts.tcti, ak, modulusOf(ak.ekPublic), fn);
  } catch (e) {
    if (e instanceof MlicError && e.code === 'TPM_FAILED')
      throw new MlicError('TPM_KEY_UNAVAILABLE', `this TPM cannot use the host's attestation key: ${e.message}`, {
        hint: 'the licence is bound to another TPM (or the host key was copied from another machine); make an activation request on this host',
      });
    throw e;
  } finally {
    await flush(opts);
  }
}

/** A quote by the AK over `qualifyingData` and the given PCRs (tpm2-tools' syntax, e.g. sha256:0,1,2,3,7). */
export async function quote(ak: AttestationKey, qualifyingData: Buffer, pcrs = 'sha256:0,1,2,3,7', o: TpmOptions = {}): Promise<{ attest: Buffer; signature: Buffer }> {
  const selection = parsePcrSelection(pcrs);
  return withAk(ak, o, (c, h) => quoteWith(c, h.ak, qualifyingData, selection));
}

/** Recovers a credential's secret (TPM2_ActivateCredential). TPM_KEY_UNAVAILABLE when this TPM cannot: another EK, another AK, or a changed credential. */
export async function activateCredential(ak: AttestationKey, credential: Credential, o: TpmOptions = {}): Promise<Buffer> {
  return withAk(ak, o, (c, h) => activateWith(c, h, credential.credentialBlob, credential.encryptedSecret));
}

/**
 * The storage root key (SRK): the owner hierarchy's primary key from the TCG template (ECC P-256,
 * AES-128-CFB, restricted decryption), the same key each time it is made from the TPM's storage
 * seed. Clearing the TPM (tpm2_clear) changes that seed, and with it every key under the SRK.
 */
async function srk(f: (n: string) => string, o: TpmOptions): Promise<void> {
  await tpm2('createprimary', ['-C', 'o', '-G', 'ecc', '-g', 'sha256', '-c', f('srk.ctx'), '-Q'], o);
  await flushObjects(o);
}

/** A keyed-hash (HMAC) key made in the TPM under its storage root key, kept as blobs only that TPM can load. */
export interface SealedHmacKey {
  /** TPM2B_PUBLIC */
  public: Buffer;
  /** TPM2B_PRIVATE, encrypted by the EK's storage seed */
  private: Buffer;
}

/** A new HMAC key (SHA-256) in the TPM: fixedTPM, fixedParent, sensitiveDataOrigin; it never leaves the chip in the clear. */
export async function createHmacKey(o: TpmOptions = {}): Promise<SealedHmacKey> {
  const opts = { ...o, tcti: o.tcti ?? tctiOf() };
  await flush(opts);
  try {
    return await inTemp(async (f) => {
      await srk(f, opts);
      await tpm2('create', ['-C', f('srk.ctx'), '-G', 'hmac', '-g', 'sha256', '-u', f('h.pub'), '-r', f('h.priv'), '-Q'], opts);
      return { public: await readFile(f('h.pub')), private: await readFile(f('h.priv')) };
    });
  } finally {
    await flush(opts);
  }
}

/** HMAC-SHA-256(key, data) computed by the TPM with a key from createHmacKey; TPM_KEY_UNAVAILABLE when this TPM cannot load it. */
export async function tpmHmac(k: SealedHmacKey, data: Uint8Array, o: TpmOptions = {}): Promise<Buffer> {
  const opts = { ...o, tcti: o.tcti ?? tctiOf() };
  await flush(opts);
  try {
    return await inTemp(async (f) => {
      try {
        await srk(f, opts);
        await writeFile(f('h.pub'), k.public);
        await writeFile(f('h.priv'), k.private);
        await tpm2('load', ['-C', f('srk.ctx'), '-u', f('h.pub'), '-r', f('h.priv'), '-c', f('h.ctx'), '-Q'], opts);
        await flushObjects(opts);
        await writeFile(f('msg'), data);
        await tpm2('hmac', ['-c', f('h.ctx'), '-g', 'sha256', '-o', f('mac'), f('msg')], opts);
      } catch (e) {
        if (e instanceof MlicError && e.code === 'TPM_FAILED')
          throw new MlicError('TPM_KEY_UNAVAILABLE', `this TPM cannot use the host's key: ${e.message}`, {
            hint: 'the state directory comes from another machine, or the TPM was cleared; make a new activation request on this host, in a new state directory',
          });
        throw e;
      }
      const mac = await readFile(f('mac'));
      if (mac.length !== 32) throw new MlicError('TPM_FAILED', `tpm2_hmac gave ${mac.length} bytes, not 32`);
      return mac;
    });
  } finally {
    await flush(opts);
  }
}
