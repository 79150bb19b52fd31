/**
 * The TPM as mlic reads it, on real software TPMs (swtpm, each with its own state and local CA):
 * its identity (manufacturer, firmware, endorsement key and its certificate), the EK
 * certificate's chain to a trusted CA, the errors a missing TPM gives, and `mlic fingerprint`.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { readTpmInfo } from '../../src/tpm/info.js';
import { tpm2 } from '../../src/tpm/tools.js';
import { loadTpmCas, verifyEkCertificate } from '../../src/tpm/ekcert.js';
import { probeHost } from '../../src/hardware/probe.js';
import { mlic } from '../cli/run.js';
import { tmp } from '../helpers.js';
import { startSwtpm, type Swtpm } from './swtpm.js';

describe('the TPM, on swtpm', () => {
  let a: Swtpm;
  let b: Swtpm;
  beforeAll(async () => {
    [a, b] = await Promise.all([startSwtpm('a'), startSwtpm('b')]);
  }, 180_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('reads its manufacturer, firmware and endorsement key (with the certificate swtpm_setup wrote); two TPMs have two EKs', async () => {
    const ia = await readTpmInfo({ tcti: a.tcti });
    const ib = await readTpmInfo({ tcti: b.tcti });
    expect(ia).toMatchObject({ manufacturer: 'IBM', ekKind: 'rsa', tcti: a.tcti });
    expect(ia.firmware).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(ia.ekHash).toMatch(/^[0-9a-f]{64}$/);
    expect(ia.ekCertificate).toBeInstanceOf(Buffer);
    expect(ib.ekHash).not.toBe(ia.ekHash);
    // the same TPM, read again: the same identity
    expect((await readTpmInfo({ tcti: a.tcti })).ekHash).toBe(ia.ekHash);
  }, 60_000);

  it("chains the EK certificate to its CA's root; another CA, a damaged certificate or another date are TPM_CERT_UNTRUSTED", async () => {
    const ia = await readTpmInfo({ tcti: a.tcti });
    const now = new Date();
    const chain = verifyEkCertificate(ia.ekCertificate!, await loadTpmCas(a.caDir), now);
    expect(chain).toHaveLength(3); // EK, swtpm_localca's intermediate, its root
    await expect(async () => verifyEkCertificate(ia.ekCertificate!, await loadTpmCas(b.caDir), now)).rejects.toMatchObject({ code: 'TPM_CERT_UNTRUSTED' });
    const damaged = Buffer.from(ia.ekCertificate!);
    damaged[damaged.length - 10]! ^= 0x01; // inside the signature
    expect(() => verifyEkCertificate(damaged, [], now)).toThrow(expect.objectContaining({ code: 'TPM_CERT_UNTRUSTED' }));
    expect(() => verifyEkCertificate(Buffer.from('not a certificate'), [], now)).toThrow(expect.objectContaining({ code: 'TPM_CERT_UNTRUSTED' }));
    expect(() => verifyEkCertificate(ia.ekCertificate!, [], new Date('2400-01-01T00:00:00Z'))).toThrow(expect.objectContaining({ code: 'TPM_CERT_UNTRUSTED' }));
    await expect(loadTpmCas(await tmp())).rejects.toMatchObject({ code: 'USAGE' });
  }, 60_000);

  it('a TPM that is not there is TPM_UNAVAILABLE with a hint; the fingerprint then notes it and goes on', async () => {
    const closed = 'swtpm:host=127.0.0.1,port=1';
    await expect(readTpmInfo({ tcti: closed, timeoutMs: 10_000 })).rejects.toMatchObject({ code: 'TPM_UNAVAILABLE', hint: expect.stringContaining('MLIC_TPM') });
    const p = await probeHost({ tpm: { tcti: closed } });
    expect(p.tpm).toBeUndefined();
    expect(p.components.some((c) => c.kind === 'tpm')).toBe(false);
    expect(p.missing.tpm).toMatch(/no TPM at/);
  }, 60_000);

  it('mlic fingerprint shows the TPM as a component (MLIC_TPM names it)', async () => {
    const home = await tmp();
    const r = await mlic(['fingerprint', '--json'], { env: { MLIC_HOME: home, MLIC_TPM: a.tcti } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.result.tpm).toMatchObject({ manufacturer: 'IBM', ekCertificate: true, tcti: a.tcti });
    expect(r.json.result.components.filter((c: { kind: string }) => c.kind === 'tpm')).toHaveLength(1);
    const human = await mlic(['fingerprint'], { env: { MLIC_HOME: home, MLIC_TPM: a.tcti } });
    expect(human.stdout).toMatch(/TPM +IBM.*firmware .*endorsement key sha256:[0-9a-f]{16}/);
  }, 60_000);

  it('a TPM in dictionary-attack lockout is TPM_LOCKOUT with a hint (one wrong password with a tolerance of one)', async () => {
    const c = await startSwtpm('lockout');
    try {
      const d = await tmp();
      const o = { tcti: c.tcti };
      const f = (n: string) => join(d, n);
      await tpm2('dictionarylockout', ['-s', '-n', '1', '-t', '600', '-l', '600'], o);
      await tpm2('createprimary', ['-C', 'o', '-c', f('p.ctx'), '-Q'], o);
      await tpm2('flushcontext', ['-t'], o); // swtpm has no resource manager: free the transient slots
      await tpm2('create', ['-C', f('p.ctx'), '-p', 'right', '-G', 'aes', '-u', f('k.pub'), '-r', f('k.priv'), '-Q'], o);
      await tpm2('flushcontext', ['-t'], o);
      await tpm2('load', ['-C', f('p.ctx'), '-u', f('k.pub'), '-r', f('k.priv'), '-c', f('k.ctx'), '-Q'], o);
      await writeFile(f('in'), 'x');
      const use = (pass: string) => tpm2('encryptdecrypt', ['-c', f('k.ctx'), '-p', pass, '-o', f('out'), f('in')], o);
      await expect(use('wrong')).rejects.toMatchObject({ code: 'TPM_FAILED' }); // the failure that counts
      await tpm2('flushcontext', ['-t'], o);
      // now even loading the key under its (DA-protected) parent is refused
      await expect(tpm2('load', ['-C', f('p.ctx'), '-u', f('k.pub'), '-r', f('k.priv'), '-c', f('k.ctx'), '-Q'], o)).rejects.toMatchObject({
        code: 'TPM_LOCKOUT',
        hint: expect.stringContaining('lockout'),
      });
    } finally {
      await c.stop();
    }
  }, 60_000);
});
