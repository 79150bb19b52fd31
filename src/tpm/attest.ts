/**
 * TPM-attested activation (docs/FORMAT.md §5.1, §6.1; docs/SECURITY.md "The TPM").
 *
 * The host's side: an attestation key (AK) under the TPM's endorsement key (EK), kept in the state
 * directory as blobs that only that TPM can load (tpm.json), and a request whose `tpm` section
 * carries the EK (and its certificate), the AK, the quoted PCR values, a fresh nonce, and the
 * AK's quote over tpmQualifyingData(payload): the quote covers every other field of the request.
 *
 * The vendor's side: verifyTpmRequest checks all of it (the EK certificate chains to a trusted
 * manufacturer CA and certifies this EK; the quote is by a restricted, TPM-resident AK over this
 * request's data; the PCR values are what was quoted, and what the vendor's policy allows; the
 * request is fresh), then sealForTpm makes the credential that releases the grants' mask W to
 * that TPM alone, for that AK alone (TPM2_MakeCredential, credential.ts).
 *
 * The host recovers W with TPM2_ActivateCredential when it first needs it, once per process.
 */
import { createHash, createPublicKey, randomBytes, timingSafeEqual, X509Certificate, type KeyObject } from 'node:crypto';
import { MlicError } from '../errors.js';
import { tpmQualifyingData, type ActivationRequestPayload, type TpmAttestation, type TpmBinding } from '../format/license.js';
import { makeCredential } from './credential.js';
import { verifyEkCertificate } from './ekcert.js';
import { activateCredential, quote } from './host.js';
import { ekHashOf, ensureTpmKey, loadTpmKey, spkiDer, type StatePlace } from './store.js';
import { checkPcrPolicy, checkQuotePcrs, DEFAULT_PCRS, readPcrs, type PcrPolicy } from './pcr.js';
import { verifyQuote } from './quote.js';
import { tctiOf, type TpmOptions } from './tools.js';

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');



/** A TPM operation with the stored AK: a TPM that cannot load it is not this host's TPM. */
async function withAk<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof MlicError && e.code === 'TPM_FAILED')
      throw new MlicError('TPM_KEY_UNAVAILABLE', `this TPM cannot use the host's attestation key (${e.message})`, {
        hint: 'the state directory comes from another machine, or the TPM was cleared; make a new activation request on this host (in a fresh state directory)',
      });
    throw e;
  }
}

/**
 * Adds the `tpm` section to a request payload: the AK (made on first use), a fresh nonce, the
 * PCR values, and the AK's quote over everything else in the payload.
 */
export async function attestRequest(state: StatePlace, payload: ActivationRequestPayload, o: TpmOptions & { pcrs?: string; now?: Date; nonce?: string } = {}): Promise<ActivationRequestPayload> {
  const opts: TpmOptions = { ...o, tcti: o.tcti ?? tctiOf() };
  const ak = await ensureTpmKey(state, opts, o.now ?? new Date());
  const pcrs = await readPcrs(o.pcrs ?? DEFAULT_PCRS, opts);
  const tpm: Omit<TpmAttestation, 'quote'> = {
    ekPublic: b64(spkiDer(ak.ekPublic)),
    ...(ak.ekCertificate ? { ekCertificate: b64(ak.ekCertificate) } : {}),
    akPublic: b64(ak.akPublic),
    nonce: o.nonce ?? randomBytes(16).toString('hex'),
    pcrs,
  };
  const unquoted = { ...payload, tpm: tpm as TpmAttestation };
  const q = await withAk(() => quote(ak, tpmQualifyingData(unquoted), o.pcrs ?? DEFAULT_PCRS, opts));
  return { ...payload, tpm: { ...tpm, quote: { attest: b64(q.attest), signature: b64(q.signature) } } };
}

// ---- the vendor's side ----

export interface TpmVerifyOptions {
  /** trusted TPM manufacturer CAs (--tpm-ca DIR): the EK certificate must chain to one */
  cas?: readonly X509Certificate[];
  /** refuse requests without a TPM attestation */
  require?: boolean;
  /** the PCR values the vendor allows */
  pcrPolicy?: PcrPolicy;
  /** a TPM request older than this is refused (default 7 days) */
  maxAgeSeconds?: number;
  now?: Date;
}

export interface VerifiedTpm {
  ek: KeyObject;
  ekHash: string;
  akName: Buffer;
  /** the EK certificate's chain, EK first, when it was checked against trusted CAs */
  chain?: string[];
  pcrs: number[];
}

export const DEFAULT_MAX_REQUEST_AGE = 7 * 86400;

/** Verifies a request's TPM attestation (undefined: the request has none and none is required). Each failure has its code. */
export function verifyTpmRequest(p: ActivationRequestPayload, o: TpmVerifyOptions = {}): VerifiedTpm | undefined {
  const t = p.tpm;
  if (!t) {
    if (o.require)
      throw new MlicError('TPM_REQUIRED', 'this activation request has no TPM attestation, and the licence requires one', {
        hint: 'on the host: mlic activate --request --tpm (the host needs a TPM 2.0 and tpm2-tools)',
      });
    return undefined;
  }
  const now = o.now ?? new Date();
  const age = (now.getTime() - Date.parse(p.createdAt)) / 1000;
  const maxAge = o.maxAgeSeconds ?? DEFAULT_MAX_REQUEST_AGE;
  if (age > maxAge || age < -600)
    throw new MlicError('TPM_QUOTE_INVALID', `the TPM attestation was made at ${p.createdAt}, ${age < 0 ? 'in the future' : `more than ${Math.round(maxAge / 3600)} hours ago`}: a quote is evidence of the host's state only when it is fresh`, {
      hint: 'make a new activation request on the host',
    });
  const ekDer = Buffer.from(t.ekPublic, 'base64');
  let ek: KeyObject;
  try {
    ek = createPublicKey({ key: ekDer, format: 'der', type: 'spki' });
  } catch {
    throw new MlicError('TPM_QUOTE_INVALID', 'the request\'s endorsement key is not a public key');
  }
  if (ek.asymmetricKeyType !== 'rsa' || (ek.asymmetricKeyDetails?.modulusLength ?? 0) < 2048)
    throw new MlicError('TPM_QUOTE_INVALID', `the request's endorsement key is ${ek.asymmetricKeyType} ${ek.asymmetricKeyDetails?.modulusLength ?? ''}; mlic binds to RSA 2048 (or larger) endorsement keys`);
  let chain: string[] | undefined;
  if (t.ekCertificate !== undefined) {
    const certDer = Buffer.from(t.ekCertificate, 'base64');
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(certDer);
    } catch {
      throw new MlicError('TPM_CERT_UNTRUSTED', 'the endorsement key certificate is not a valid X.509 certificate');
    }
    const certKey = cert.publicKey.export({ type: 'spki', format: 'der' });
    if (certKey.length !== ekDer.length || !timingSafeEqual(certKey, ekDer))
      throw new MlicError('TPM_CERT_UNTRUSTED', 'the endorsement key certificate certifies another key than the request\'s endorsement key');
    if (o.cas) chain = verifyEkCertificate(certDer, o.cas, now);
  } else if (o.cas)
    throw new MlicError('TPM_CERT_UNTRUSTED', "the request carries no endorsement key certificate (the TPM's NV holds none), so nothing shows it is a real TPM", {
      hint: 'TPMs from the major manufacturers carry one; for others, the vendor must decide without --tpm-ca',
    });
  const { ak, attest } = verifyQuote(
    { akPublic: Buffer.from(t.akPublic, 'base64'), attest: Buffer.from(t.quote.attest, 'base64'), signature: Buffer.from(t.quote.signature, 'base64') },
    tpmQualifyingData(p),
  );
  const pcrs = checkQuotePcrs(attest, t.pcrs);
  if (o.pcrPolicy) checkPcrPolicy(t.pcrs, o.pcrPolicy);
  return { ek, ekHash: ekHashOf(ekDer), akName: ak.name, ...(chain ? { chain } : {}), pcrs };
}

/** A new mask secret W and the credential that releases it to the verified TPM, for its AK. */
export function sealForTpm(v: VerifiedTpm): { secret: Buffer; binding: TpmBinding } {
  const secret = randomBytes(32);
  const c = makeCredential(v.ek, v.akName, secret);
  return { secret, binding: { ekHash: v.ekHash, akName: v.akName.toString('hex'), credential: { blob: b64(c.credentialBlob), secret: b64(c.encryptedSecret) } } };
}

// ---- the host recovers W ----

const recovered = new Map<string, Buffer>();

/** W for a TPM-bound licence, from this host's TPM (once per process). TPM_KEY_UNAVAILABLE when this TPM or this state directory cannot. */
export async function recoverTpmSecret(state: StatePlace, b: TpmBinding, o: TpmOptions = {}): Promise<Buffer> {
  const id = createHash('sha256').update(state.dir).update('\0').update(b.akName).update(b.credential.blob).update(b.credential.secret).digest('hex');
  const have = recovered.get(id);
  if (have) return Buffer.from(have);
  const hint = 'a TPM-bound licence works only on the host whose TPM it was issued for, with that host\'s state directory';
  const ak = await loadTpmKey(state);
  if (!ak) throw new MlicError('TPM_KEY_UNAVAILABLE', `the licence is bound to a TPM, and this state directory (${state.dir}) has no TPM key`, { hint });
  if (ak.akName.toString('hex') !== b.akName || ak.ekHash !== b.ekHash)
    throw new MlicError('TPM_KEY_UNAVAILABLE', "the licence is bound to another TPM attestation key than this host's", { hint });
  const w = await activateCredential(ak, { credentialBlob: Buffer.from(b.credential.blob, 'base64'), encryptedSecret: Buffer.from(b.credential.secret, 'base64') }, { ...o, tcti: o.tcti ?? tctiOf() });
  if (w.length !== 32) throw new MlicError('TPM_KEY_UNAVAILABLE', 'the TPM released a secret of the wrong size', { hint });
  recovered.set(id, Buffer.from(w));
  return w;
}
