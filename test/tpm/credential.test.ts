/**
 * MakeCredential computed by mlic (the vendor, no TPM) and activated by a real TPM (swtpm,
 * through tpm2_activatecredential): the secret comes back only in the TPM that holds the
 * endorsement key, and only for the attestation key it was made for. tpm2_makecredential (the
 * reference, run without a TPM) and mlic's output are read by the same tool in the same way.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createPublicKey, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { credentialFile, kdfa, makeCredential } from '../../src/tpm/credential.js';
import { tpm2 } from '../../src/tpm/tools.js';
import { tmp } from '../helpers.js';
import { startSwtpm, type Swtpm } from './swtpm.js';

/** An EK and an AK under it in `tpm`, in `dir`: ek.ctx, ek.pem, ak.ctx, ak.name. */
async function keys(tpm: Swtpm, dir: string) {
  const o = { tcti: tpm.tcti };
  const f = (n: string) => join(dir, n);
  await tpm2('createek', ['-c', f('ek.ctx'), '-G', 'rsa', '-u', f('ek.pub'), '-Q'], o);
  await tpm2('readpublic', ['-c', f('ek.ctx'), '-o', f('ek.pem'), '-f', 'pem', '-Q'], o);
  await tpm2('flushcontext', ['-t'], o); // swtpm has no resource manager: free the transient slots
  await tpm2('createak', ['-C', f('ek.ctx'), '-c', f('ak.ctx'), '-G', 'rsa', '-g', 'sha256', '-s', 'rsassa', '-u', f('ak.pub'), '-n', f('ak.name'), '-Q'], o);
  await tpm2('flushcontext', ['-t'], o);
  return { ek: createPublicKey(await readFile(f('ek.pem'), 'utf8')), akName: await readFile(f('ak.name')), f };
}

/** tpm2_activatecredential with the EK's policy (PolicySecret of the endorsement hierarchy). */
async function activate(tpm: Swtpm, f: (n: string) => string, credPath: string): Promise<Buffer> {
  const o = { tcti: tpm.tcti };
  await tpm2('flushcontext', ['-t'], o);
  await tpm2('startauthsession', ['--policy-session', '-S', f('session.ctx')], o);
  try {
    await tpm2('policysecret', ['-S', f('session.ctx'), '-c', 'e', '-Q'], o);
    await tpm2('activatecredential', ['-c', f('ak.ctx'), '-C', f('ek.ctx'), '-i', credPath, '-o', f('out.bin'), '-P', `session:${f('session.ctx')}`, '-Q'], o);
    return await readFile(f('out.bin'));
  } finally {
    await tpm2('flushcontext', [f('session.ctx')], o).catch(() => undefined);
    await tpm2('flushcontext', ['-t'], o).catch(() => undefined);
  }
}

describe('MakeCredential (mlic) → ActivateCredential (swtpm)', () => {
  let a: Swtpm;
  let b: Swtpm;
  beforeAll(async () => {
    [a, b] = await Promise.all([startSwtpm('cred-a'), startSwtpm('cred-b')]);
  }, 180_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('KDFa gives the bytes asked for, and other bytes for another size (the size is part of its input)', () => {
    const k = kdfa(Buffer.alloc(32, 1), 'STORAGE', Buffer.from('name'), Buffer.alloc(0), 128);
    expect(k).toHaveLength(16);
    expect(kdfa(Buffer.alloc(32, 1), 'STORAGE', Buffer.from('name'), Buffer.alloc(0), 384)).toHaveLength(48);
    // the output depends on the requested size (it is hashed in), as the spec says
    expect(kdfa(Buffer.alloc(32, 1), 'STORAGE', Buffer.from('name'), Buffer.alloc(0), 256).subarray(0, 16).equals(k)).toBe(false);
  });

  it('the TPM that holds the EK recovers the secret, for its AK; another TPM, another AK or a changed byte recover nothing', async () => {
    const da = await tmp();
    const ka = await keys(a, da);
    const secret = randomBytes(32);
    const cred = credentialFile(makeCredential(ka.ek, ka.akName, secret));
    await writeFile(ka.f('mlic.cred'), cred);
    expect(await activate(a, ka.f, ka.f('mlic.cred'))).toEqual(secret);

    // the reference tool's credential, for comparison: same file layout, same result
    await writeFile(ka.f('secret.bin'), secret);
    await tpm2('makecredential', ['-T', 'none', '-u', ka.f('ek.pub'), '-s', ka.f('secret.bin'), '-n', ka.akName.toString('hex'), '-o', ka.f('ref.cred')], { tcti: a.tcti });
    const ref = await readFile(ka.f('ref.cred'));
    expect(ref.length).toBe(cred.length);
    expect(ref.subarray(0, 10)).toEqual(cred.subarray(0, 10)); // magic, version, TPM2B_ID_OBJECT size
    expect(await activate(a, ka.f, ka.f('ref.cred'))).toEqual(secret);

    // another TPM (its own EK and an AK of the same kind) cannot activate it
    const db = await tmp();
    const kb = await keys(b, db);
    await writeFile(kb.f('foreign.cred'), cred);
    await expect(activate(b, kb.f, kb.f('foreign.cred'))).rejects.toMatchObject({ code: 'TPM_FAILED' });
    // nor the same TPM for another AK (the credential names the AK it is for)
    await writeFile(ka.f('other-ak.cred'), credentialFile(makeCredential(ka.ek, kb.akName, secret)));
    await expect(activate(a, ka.f, ka.f('other-ak.cred'))).rejects.toMatchObject({ code: 'TPM_FAILED' });
    // any changed byte of the blob or the encrypted seed is refused by the TPM (its integrity HMAC or the OAEP check)
    for (const at of [12, 40, cred.length - 5]) {
      const bad = Buffer.from(cred);
      bad[at]! ^= 0x40;
      await writeFile(ka.f('bad.cred'), bad);
      await expect(activate(a, ka.f, ka.f('bad.cred')), `byte ${at}`).rejects.toMatchObject({ code: 'TPM_FAILED' });
    }
  }, 120_000);
});
