/**
 * Checking a TPM quote the way a vendor does before it trusts a host's attestation key: the
 * attestation key must be a restricted signing key that never leaves its TPM (fixedTPM,
 * fixedParent, sensitiveDataOrigin: a TPM signs with such a key only what it generated itself,
 * TPM_GENERATED), the signature over the TPMS_ATTEST must verify with it, and the quote's
 * extraData must be exactly the qualifying data the request committed to (a fresh nonce bound to
 * the request's contents), so a quote cannot be replayed for another request.
 *
 * What a quote does not prove by itself: that the attestation key lives in the TPM whose EK
 * certificate the request carries. That binding is made by credential activation
 * (credential.ts): the licence's keys are sealed to the EK for this attestation key's name.
 */
import { timingSafeEqual, verify } from 'node:crypto';
import { MlicError } from '../errors.js';
import { ATTR, parsePublic, parseQuoteAttest, parseSignature, type Attest, type TpmPublic } from './structures.js';

export interface QuoteInput {
  /** TPM2B_PUBLIC of the attestation key */
  akPublic: Uint8Array;
  /** TPMS_ATTEST (tpm2_quote -m) */
  attest: Uint8Array;
  /** TPMT_SIGNATURE (tpm2_quote -s) */
  signature: Uint8Array;
}

const REQUIRED = ATTR.fixedTPM | ATTR.fixedParent | ATTR.sensitiveDataOrigin | ATTR.restricted | ATTR.sign;

export function verifyQuote(q: QuoteInput, expectedExtraData: Uint8Array): { ak: TpmPublic; attest: Attest } {
  const ak = parsePublic(q.akPublic);
  if ((ak.attributes & REQUIRED) !== REQUIRED || ak.attributes & ATTR.decrypt)
    throw new MlicError('TPM_QUOTE_INVALID', 'the attestation key is not a restricted signing key that stays in its TPM (fixedTPM, fixedParent, sensitiveDataOrigin, restricted, sign)');
  const attest = parseQuoteAttest(q.attest);
  const sig = parseSignature(q.signature);
  const ok =
    sig.alg === 'rsassa'
      ? ak.key.asymmetricKeyType === 'rsa' && verify('sha256', q.attest, ak.key, sig.signature)
      : ak.key.asymmetricKeyType === 'ec' && verify('sha256', q.attest, { key: ak.key, dsaEncoding: 'ieee-p1363' }, sig.signature);
  if (!ok) throw new MlicError('TPM_QUOTE_INVALID', 'the quote is not signed by the attestation key');
  const want = Buffer.from(expectedExtraData);
  if (attest.extraData.length !== want.length || !timingSafeEqual(attest.extraData, want))
    throw new MlicError('TPM_QUOTE_INVALID', "the quote was made for other qualifying data (another request, or another nonce): it is not this request's", { hint: 'make a new activation request on the host' });
  return { ak, attest };
}
