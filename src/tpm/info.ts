/**
 * What identifies a TPM: its manufacturer, vendor string and firmware version (tpm2_getcap
 * properties-fixed), and its endorsement key: the EK certificate its manufacturer wrote into NV
 * (index 0x01c00002 for the RSA 2048 EK, 0x01c0000a for the ECC P-256 one; TCG EK Credential
 * Profile), and the SHA-256 of the EK's public key (SubjectPublicKeyInfo, DER), which names the
 * TPM for good: the EK is unique to the chip and never leaves it.
 */
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MlicError } from '../errors.js';
import { tpm2, tctiOf, type TpmOptions } from './tools.js';

export const EK_CERT_INDEX = { rsa: 0x01c00002, ecc: 0x01c0000a } as const;

export interface TpmInfo {
  tcti: string;
  manufacturer: string;
  vendor: string;
  /** TPM2_PT_FIRMWARE_VERSION_1 and _2, as "major.minor.x.y" */
  firmware: string;
  /** the EK certificate (DER) from NV, when the manufacturer wrote one */
  ekCertificate?: Buffer;
  ekKind: 'rsa' | 'ecc';
  /** SHA-256 of the EK public key (SubjectPublicKeyInfo DER), hex */
  ekHash: string;
}

/** tpm2_getcap's YAML: `NAME:\n  raw: 0x...` -> NAME -> raw number. */
export function parseFixedProperties(yaml: string): Map<string, number> {
  const out = new Map<string, number>();
  let name: string | undefined;
  for (const line of yaml.split('\n')) {
    const head = /^(TPM2?_PT_[A-Z0-9_]+):\s*$/.exec(line);
    if (head) {
      name = head[1];
      continue;
    }
    const raw = /^\s+raw:\s*(0x[0-9a-fA-F]+|\d+)\s*$/.exec(line);
    if (raw && name) out.set(name, Number(raw[1]));
  }
  return out;
}

const ascii4 = (n: number | undefined) =>
  n === undefined
    ? ''
    : Buffer.from([(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff])
        .toString('latin1')
        .replace(/[^\x20-\x7e]/g, '')
        .trim();

/** Reads an NV index whole (undefined when it is not defined). */
async function nvRead(index: number, o: TpmOptions): Promise<Buffer | undefined> {
  try {
    return await tpm2('nvread', ['-C', 'o', `0x${index.toString(16)}`], o);
  } catch (e) {
    if (e instanceof MlicError && e.code === 'TPM_FAILED') return undefined; // not defined, or not readable by the owner
    throw e;
  }
}

/** The TPM's identity, as `mlic fingerprint` shows it and a TPM activation request carries it. */
export async function readTpmInfo(o: TpmOptions = {}): Promise<TpmInfo> {
  const tcti = o.tcti ?? tctiOf();
  const opts = { ...o, tcti };
  const props = parseFixedProperties((await tpm2('getcap', ['properties-fixed'], opts)).toString('utf8'));
  const v1 = props.get('TPM2_PT_FIRMWARE_VERSION_1') ?? 0;
  const v2 = props.get('TPM2_PT_FIRMWARE_VERSION_2') ?? 0;
  const firmware = `${v1 >>> 16}.${v1 & 0xffff}.${v2 >>> 16}.${v2 & 0xffff}`;
  const manufacturer = ascii4(props.get('TPM2_PT_MANUFACTURER')) || 'unknown';
  const vendor = ['TPM2_PT_VENDOR_STRING_1', 'TPM2_PT_VENDOR_STRING_2', 'TPM2_PT_VENDOR_STRING_3', 'TPM2_PT_VENDOR_STRING_4'].map((k) => ascii4(props.get(k))).join('').trim();
  for (const kind of ['rsa', 'ecc'] as const) {
    const der = await nvRead(EK_CERT_INDEX[kind], opts);
    if (!der) continue;
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(der);
    } catch {
      continue; // not a certificate: treated as absent (the EK itself is read below)
    }
    const ekHash = createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
    return { tcti, manufacturer, vendor, firmware, ekCertificate: der, ekKind: kind, ekHash };
  }
  // no EK certificate: derive the EK from its standard template and hash its public key
  const dir = await mkdtemp(join(tmpdir(), 'mlic-tpm-'));
  try {
    await tpm2('createek', ['-G', 'rsa', '-u', join(dir, 'ek.pem'), '-f', 'pem', '-c', join(dir, 'ek.ctx')], opts);
    const pem = await readFile(join(dir, 'ek.pem'), 'utf8');
    const ekHash = createHash('sha256').update(createPublicKey(pem).export({ type: 'spki', format: 'der' })).digest('hex');
    return { tcti, manufacturer, vendor, firmware, ekKind: 'rsa', ekHash };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
