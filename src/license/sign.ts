/** Signing and verifying licences and activation requests. */
import { MlicError } from '../errors.js';
import { ed25519Sign, ed25519Verify } from '../crypto/ed25519.js';
import { keyIdHex, type MinisignPublicKey } from '../format/minisign.js';
import {
  licenseSigningBytes,
  parseLicenseText,
  parseRequestText,
  requestSigningBytes,
  type ActivationRequest,
  type ActivationRequestPayload,
  type LicensePayload,
  type SignedLicense,
} from '../format/license.js';

export function signLicense(payload: LicensePayload, seed: Uint8Array, keyId: Uint8Array): SignedLicense {
  return { payload, signature: { alg: 'ed25519', keyId: keyIdHex(keyId), sig: ed25519Sign(seed, licenseSigningBytes(payload)).toString('base64') } };
}

/** Parses and verifies licence text against a vendor key lookup. */
export async function verifyLicenseText(
  text: string,
  lookup: (keyId: string) => Promise<MinisignPublicKey | undefined>,
  what = 'licence',
): Promise<SignedLicense> {
  const l = parseLicenseText(text, what);
  if (l.signature.keyId !== l.payload.vendor.keyId) throw new MlicError('SIGNATURE_INVALID', `${what}: signature key id does not match the licence's vendor`);
  const pk = await lookup(l.signature.keyId);
  if (!pk)
    throw new MlicError('UNTRUSTED_VENDOR', `${what} is signed by vendor key ${l.signature.keyId}, which this host does not trust`, {
      hint: "add the vendor's public key with `mlic trust add vendor.pub` (check it with the vendor first)",
    });
  if (!ed25519Verify(pk.publicKey, licenseSigningBytes(l.payload), Buffer.from(l.signature.sig, 'base64')))
    throw new MlicError('SIGNATURE_INVALID', `${what}: the vendor signature does not verify; the licence was modified or is not from this vendor`);
  return l;
}

export function signRequest(payload: ActivationRequestPayload, seed: Uint8Array): ActivationRequest {
  return { payload, signature: ed25519Sign(seed, requestSigningBytes(payload)).toString('base64') };
}

/** Parses an activation request strictly and checks the host's own signature over it (it proves the request is whole, not who sent it). */
export function parseAndVerifyRequest(text: string, what = 'activation request'): ActivationRequest {
  const v = parseRequestText(text, what);
  const pub = Buffer.from(v.payload.signingPublicKey, 'base64');
  if (!ed25519Verify(pub, requestSigningBytes(v.payload), Buffer.from(v.signature, 'base64')))
    throw new MlicError('SIGNATURE_INVALID', `${what}: the host's signature does not verify (the request was modified)`);
  return v;
}
