/** The installed licences and each one's status now: what `mlic licenses` shows (not a decision: nothing is recorded). */
import { MlicError } from '../errors.js';
import type { SignedLicense } from '../format/license.js';
import { checkHost, checkTime } from '../license/policy.js';
import { verifyLicenseText } from '../license/sign.js';
import { HostContext, type HostOptions } from './context.js';
import { loadRevoked } from './revocations.js';

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');

export interface InstalledLicense {
  path: string;
  license?: SignedLicense;
  /** why it does not verify, if it does not */
  error?: { code: string; message: string };
  /** its status now: ok, or the code of what it refuses */
  status: string;
}

export async function listLicenses(o: HostOptions = {}): Promise<InstalledLicense[]> {
  const ctx = new HostContext(o);
  const now = ctx.now();
  const out: InstalledLicense[] = [];
  // a TPM host's keys need its TPM: without it, its licences are listed with the TPM's error as their status
  let tpmError: MlicError | undefined;
  const h = await ctx.state.loadHost().catch((e: unknown) => {
    if (e instanceof MlicError && e.code.startsWith('TPM_')) {
      tpmError = e;
      return undefined;
    }
    throw e;
  });
  const hostKey = h ? b64(h.boxPublic) : undefined;
  const revoked = await loadRevoked(ctx.state);
  for (const { path, text } of await ctx.state.licenseTexts()) {
    try {
      const l = await verifyLicenseText(text, (id) => ctx.state.trusted(id), path);
      const time = checkTime(l.payload, now);
      const host = l.payload.host.binding === 'host' && hostKey !== l.payload.host.publicKey ? checkHost(l.payload, hostKey, undefined) : undefined;
      const isRevoked = revoked.get(l.payload.vendor.keyId)?.licenses.has(l.payload.licenseId) ?? false;
      const bound = l.payload.host.binding === 'host';
      out.push({ path, license: l, status: isRevoked ? 'LICENSE_REVOKED' : !time.ok ? time.code : bound && tpmError ? tpmError.code : host ? host.code : 'ok' });
    } catch (e) {
      const err = e as MlicError;
      if (!(e instanceof MlicError)) throw e;
      out.push({ path, error: { code: err.code, message: err.message }, status: err.code });
    }
  }
  return out;
}

