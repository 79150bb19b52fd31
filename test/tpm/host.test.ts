/**
 * A key bound to a TPM, end to end on two real software TPMs: the host makes an attestation key
 * in TPM A and quotes with it; the vendor checks the quote and seals a secret to A's EK for that
 * key (MakeCredential); A recovers it. The same AK blobs copied to TPM B (a copied state
 * directory, a cloned VM with a fresh TPM), B's own key, or a credential for B: nothing.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { activateCredential, createAttestationKey, quote } from '../../src/tpm/host.js';
import { makeCredential } from '../../src/tpm/credential.js';
import { verifyQuote } from '../../src/tpm/quote.js';
import { parsePublic } from '../../src/tpm/structures.js';
import { loadTpmCas, verifyEkCertificate } from '../../src/tpm/ekcert.js';
import { startSwtpm, type Swtpm } from './swtpm.js';

describe('a secret bound to one TPM', () => {
  let a: Swtpm;
  let b: Swtpm;
  beforeAll(async () => {
    [a, b] = await Promise.all([startSwtpm('host-a'), startSwtpm('host-b')]);
  }, 180_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('is recovered by the TPM it was sealed to, and by no other, even with the same key files', async () => {
    const ka = await createAttestationKey({ tcti: a.tcti });
    // what the vendor checks before sealing: the EK certificate, the EK it names, and a quote by the AK
    expect(verifyEkCertificate(ka.ekCertificate!, await loadTpmCas(a.caDir), new Date())).toHaveLength(3);
    const { X509Certificate } = await import('node:crypto');
    expect(new X509Certificate(ka.ekCertificate!).publicKey.export({ type: 'spki', format: 'der' })).toEqual(createPublicKey(ka.ekPublic).export({ type: 'spki', format: 'der' }));
    const digest = createHash('sha256').update('the request this quote vouches for').digest();
    const q = await quote(ka, digest, 'sha256:0,7', { tcti: a.tcti });
    const checked = verifyQuote({ akPublic: ka.akPublic, ...q }, digest);
    expect(checked.ak.name).toEqual(ka.akName);
    expect(parsePublic(ka.akPublic).name).toEqual(ka.akName);

    const secret = randomBytes(32);
    const credential = makeCredential(createPublicKey(ka.ekPublic), ka.akName, secret);
    expect(await activateCredential(ka, credential, { tcti: a.tcti })).toEqual(secret);
    // again (the AK is loaded anew each time)
    expect(await activateCredential(ka, credential, { tcti: a.tcti })).toEqual(secret);

    // A's key files on B: B cannot even load them (they are A's EK's), let alone activate
    await expect(activateCredential(ka, credential, { tcti: b.tcti })).rejects.toMatchObject({ code: 'TPM_KEY_UNAVAILABLE' });
    // B's own key with A's credential: the credential names A's EK and AK
    const kb = await createAttestationKey({ tcti: b.tcti });
    expect(kb.akName).not.toEqual(ka.akName);
    await expect(activateCredential(kb, credential, { tcti: b.tcti })).rejects.toMatchObject({ code: 'TPM_KEY_UNAVAILABLE' });
    // and a credential made for B opens on B only
    const forB = makeCredential(createPublicKey(kb.ekPublic), kb.akName, secret);
    expect(await activateCredential(kb, forB, { tcti: b.tcti })).toEqual(secret);
    await expect(activateCredential(ka, forB, { tcti: a.tcti })).rejects.toMatchObject({ code: 'TPM_KEY_UNAVAILABLE' });
  }, 120_000);
});
