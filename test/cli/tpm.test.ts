/**
 * The TPM flow as a vendor and a customer run it, with the built binary and two real software
 * TPMs (MLIC_TPM names each host's): a TPM-attested request, a PCR policy made from it, a licence
 * issued only after the EK certificate chains to the manufacturer's CA, used on its host, and
 * refused on a host with another TPM even with the whole state directory copied across.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { cp, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mlic } from './run.js';
import { tmp, writeRandom } from '../helpers.js';
import { startSwtpm, type Swtpm } from '../tpm/swtpm.js';
import { tpm2 } from '../../src/tpm/tools.js';

describe('mlic CLI: a host bound to its TPM', () => {
  let a: Swtpm;
  let b: Swtpm;
  let v: string;
  let model: Buffer;
  const dead = 'swtpm:host=127.0.0.1,port=9';
  const home = async (name: string) => join(await tmp(`mlic-cli-tpm-${name}-`), 'home');

  beforeAll(async () => {
    [a, b] = await Promise.all([startSwtpm('cli-a'), startSwtpm('cli-b')]);
    v = await tmp('mlic-vendor-tpm-');
    expect((await mlic(['keygen', '-o', v, '--name', 'acme', '--unencrypted'])).code).toBe(0);
    await mkdir(join(v, 'model'));
    model = await writeRandom(join(v, 'model', 'weights.bin'), 200_000, 9);
    const p = await mlic(['pack', join(v, 'model'), '--name', 'm', '--version', '2.0.0', '--key', join(v, 'acme.key'), '-o', join(v, 'm.mlb')]);
    expect(p.code, p.stderr).toBe(0);
  }, 240_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  const issue = (request: string, out: string, ...more: string[]) =>
    mlic(['license', 'issue', '--key', join(v, 'acme.key'), '--request', request, '--model', 'm', '--versions', '^2', '--days', '30', '-o', out, '--json', ...more]);

  it('request, policy, issue with --require-tpm, activate and unpack on the TPM host; refused on another TPM with the state copied', async () => {
    const homeA = await home('a');
    const envA = { MLIC_HOME: homeA, MLIC_TPM: a.tcti };
    const req = join(v, 'req-a.json');
    const r = await mlic(['activate', '--request', '--tpm', '-o', req, '--json'], { env: envA });
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.result.tpm).toBe(true);
    expect(JSON.parse(await readFile(req, 'utf8')).payload.tpm.ekCertificate).toBeDefined();

    const pol = await mlic(['license', 'pcr-policy', '--request', req, '-o', join(v, 'pcr-policy.json'), '--json']);
    expect(pol.code, pol.stderr).toBe(0);
    expect(pol.json.result.pcrs).toEqual([0, 1, 2, 3, 7]);

    // the vendor: without the CA, with another manufacturer's CA, and as it should be
    const noCa = await issue(req, join(v, 'x.lic'), '--require-tpm');
    expect([noCa.code, noCa.json?.error?.code]).toEqual([2, 'USAGE']);
    const wrongCa = await issue(req, join(v, 'x.lic'), '--require-tpm', '--tpm-ca', b.caDir);
    expect([wrongCa.code, wrongCa.json?.error?.code]).toEqual([1, 'TPM_CERT_UNTRUSTED']);
    const lic = join(v, 'a.lic');
    const ok = await issue(req, lic, '--require-tpm', '--tpm-ca', a.caDir, '--pcr-policy', join(v, 'pcr-policy.json'));
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.json.result.tpm).toMatchObject({ ekCertificateVerified: true });
    const unchecked = await mlic(['license', 'issue', '--key', join(v, 'acme.key'), '--request', req, '--model', 'm', '--versions', '^2', '--days', '30', '-o', join(v, 'y.lic')]);
    expect(unchecked.code, unchecked.stderr).toBe(0);
    expect(unchecked.stderr).toMatch(/WARNING: its endorsement key certificate was not checked/);

    const insp = await mlic(['license', 'inspect', lic, '--pub', join(v, 'acme.pub')]);
    expect(insp.stdout).toMatch(/^tpm\s+bound: endorsement key [0-9a-f]{64}$/m);

    expect((await mlic(['trust', 'add', join(v, 'acme.pub')], { env: envA })).code).toBe(0);
    const act = await mlic(['activate', lic, '--json'], { env: envA });
    expect(act.code, act.stderr).toBe(0);
    const out = join(await tmp(), 'out');
    const u = await mlic(['unpack', join(v, 'm.mlb'), '-o', out, '--json'], { env: envA });
    expect(u.code, u.stderr).toBe(0);
    expect(await readFile(join(out, 'weights.bin'))).toEqual(model);

    // the whole state directory on a host whose TPM is B: the host's keys are in TPM A
    const copy = await home('copy');
    await cp(homeA, copy, { recursive: true });
    const onB = await mlic(['unpack', join(v, 'm.mlb'), '-o', join(out, 'b'), '--json'], { env: { MLIC_HOME: copy, MLIC_TPM: b.tcti } });
    expect([onB.code, onB.json?.error?.code]).toEqual([1, 'TPM_KEY_UNAVAILABLE']);
    expect(onB.json.error.hint).toMatch(/another machine/);
    // no key on disk: host.json names none
    expect(Object.keys(JSON.parse(await readFile(join(homeA, 'host.json'), 'utf8'))).sort()).toEqual(['createdAt', 'keys', 'salt', 'v']);
  }, 180_000);

  it('a licence that ignores the TPM fingerprint component is still bound to the TPM; the TPM key file lost, or the TPM gone: clear errors, no fallback', async () => {
    const homeA = await home('a2');
    const envA = { MLIC_HOME: homeA, MLIC_TPM: a.tcti };
    const req = join(v, 'req-a2.json');
    expect((await mlic(['activate', '--request', '--tpm', '-o', req], { env: envA })).code).toBe(0);
    const lic = join(v, 'a2.lic');
    const ok = await issue(req, lic, '--tpm-ca', a.caDir, '--match', 'any');
    expect(ok.code, ok.stderr).toBe(0);
    expect((await mlic(['trust', 'add', join(v, 'acme.pub')], { env: envA })).code).toBe(0);
    expect((await mlic(['activate', lic], { env: envA })).code).toBe(0);
    const copy = await home('copy2');
    await cp(homeA, copy, { recursive: true });
    const onB = await mlic(['unpack', join(v, 'm.mlb'), '-o', join(await tmp(), 'o'), '--json'], { env: { MLIC_HOME: copy, MLIC_TPM: b.tcti } });
    expect([onB.code, onB.json?.error?.code]).toEqual([1, 'TPM_KEY_UNAVAILABLE']);
    // on its own TPM, without tpm.json
    const { rm } = await import('node:fs/promises');
    await rm(join(copy, 'tpm.json'));
    const noFile = await mlic(['unpack', join(v, 'm.mlb'), '-o', join(await tmp(), 'o'), '--json'], { env: { MLIC_HOME: copy, MLIC_TPM: a.tcti } });
    expect([noFile.code, noFile.json?.error?.code]).toEqual([1, 'TPM_KEY_UNAVAILABLE']);
    expect(noFile.json.error.message).toMatch(/tpm\.json/);
    const back = await mlic(['unpack', join(v, 'm.mlb'), '-o', join(await tmp(), 'o'), '--json'], { env: envA });
    expect(back.code, back.stderr).toBe(0);
    // the bound host with its TPM gone: a clear error, no silent fallback
    const gone = await mlic(['activate', '--request', '--tpm', 'auto', '-o', join(v, 'r.json'), '--json'], { env: { MLIC_HOME: homeA, MLIC_TPM: dead } });
    expect([gone.code, gone.json?.error?.code]).toEqual([2, 'TPM_UNAVAILABLE']);
    expect(gone.json.error.hint).toMatch(/MLIC_TPM/);
    // what needs no key still works: the list of licences (each with the TPM's error) and the fingerprint
    const listed = await mlic(['licenses', '--json'], { env: { MLIC_HOME: homeA, MLIC_TPM: dead } });
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.json.result.licenses.map((l: { status: string }) => l.status)).toEqual(['TPM_UNAVAILABLE']);
    const fp = await mlic(['fingerprint', '--json'], { env: { MLIC_HOME: homeA, MLIC_TPM: dead } });
    expect([fp.code, fp.json?.result?.salted]).toEqual([0, true]);
  }, 180_000);

  it("the usage ledger's and audit log's MAC keys and the report signing key come from the TPM: reports verify with the licence; on another TPM nothing can be signed or checked", async () => {
    const homeA = await home('meter');
    const envA = { MLIC_HOME: homeA, MLIC_TPM: a.tcti };
    const req = join(v, 'req-meter.json');
    expect((await mlic(['activate', '--request', '--tpm', '-o', req], { env: envA })).code).toBe(0);
    const lic = join(v, 'meter.lic');
    expect((await issue(req, lic, '--tpm-ca', a.caDir, '--meter', 'inferences=100/month')).code).toBe(0);
    expect((await mlic(['trust', 'add', join(v, 'acme.pub')], { env: envA })).code).toBe(0);
    expect((await mlic(['activate', lic], { env: envA })).code).toBe(0);
    const c = await mlic(['meter', 'consume', '--model', 'm', '--metric', 'inferences', '--quantity', '7', '--json'], { env: envA });
    expect(c.code, c.stderr).toBe(0);
    const period = new Date().toISOString().slice(0, 7);
    const rep = join(v, 'meter-report.json');
    const r = await mlic(['usage', 'report', '--model', 'm', '--period', period, '-o', rep, '--json'], { env: envA });
    expect(r.code, r.stderr).toBe(0);
    const ver = await mlic(['usage', 'verify', rep, '--license', lic, '--pub', join(v, 'acme.pub'), '--json']);
    expect(ver.code, ver.stderr).toBe(0);
    expect(ver.json.result.totals.reduce((n: number, t: { quantity: number }) => n + t.quantity, 0)).toBe(7);
    expect((await mlic(['audit', 'verify'], { env: envA })).code).toBe(0);
    // the state directory on TPM B: no key to MAC the ledger or the audit log with, none to sign a report with
    const copy = await home('meter-copy');
    await cp(homeA, copy, { recursive: true });
    const envB = { MLIC_HOME: copy, MLIC_TPM: b.tcti };
    for (const args of [
      ['usage', 'report', '--model', 'm', '--period', period, '-o', join(v, 'forged.json'), '--json'],
      ['audit', 'verify', '--json'],
      ['meter', 'consume', '--model', 'm', '--metric', 'inferences', '--quantity', '1', '--json'],
    ]) {
      const x = await mlic(args, { env: envB });
      expect([args.slice(0, 2).join(' '), x.code, x.json?.error?.code]).toEqual([args.slice(0, 2).join(' '), 1, 'TPM_KEY_UNAVAILABLE']);
    }
  }, 180_000);

  it('--tpm auto without a working TPM says so and writes a plain request; a plain request is refused by --require-tpm', async () => {
    const h = await home('auto');
    const req = join(v, 'req-auto.json');
    const r = await mlic(['activate', '--request', '--tpm', 'auto', '-o', req, '--json'], { env: { MLIC_HOME: h, MLIC_TPM: dead } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.result).toMatchObject({ tpm: false, tpmFallback: expect.stringMatching(/TPM_UNAVAILABLE/) });
    expect(JSON.parse(await readFile(req, 'utf8')).payload.tpm).toBeUndefined();
    const said = await mlic(['activate', '--request', '--tpm', 'auto', '-o', req, '--force'], { env: { MLIC_HOME: h, MLIC_TPM: dead } });
    expect(said.stderr).toMatch(/no TPM attestation \(--tpm auto\): this host's key was made without the TPM/);
    const onTpm = await mlic(['activate', '--request', '--tpm', '-o', req, '--force', '--json'], { env: { MLIC_HOME: h, MLIC_TPM: a.tcti } });
    expect([onTpm.code, onTpm.json?.error?.code]).toEqual([2, 'USAGE']);
    const bound = await mlic(['activate', '--request', '--tpm', '-o', join(v, 'req-a3.json')], { env: { MLIC_HOME: await home('a3'), MLIC_TPM: a.tcti } });
    expect(bound.stderr).toMatch(/bound to this host's TPM/);
    const refused = await issue(req, join(v, 'z.lic'), '--require-tpm', '--tpm-ca', a.caDir);
    expect([refused.code, refused.json?.error?.code]).toEqual([1, 'TPM_REQUIRED']);
    const bad = await mlic(['activate', '--request', '--tpm', 'sometimes', '-o', join(v, 'q.json'), '--json'], { env: { MLIC_HOME: h } });
    expect([bad.code, bad.json?.error?.code]).toEqual([2, 'USAGE']);
  }, 120_000);

  it('a cleared TPM has lost the host key: TPM_KEY_UNAVAILABLE with a hint, no fallback (last: it clears TPM B)', async () => {
    const h = await home('cleared');
    const env = { MLIC_HOME: h, MLIC_TPM: b.tcti };
    const req = join(v, 'req-cleared.json');
    expect((await mlic(['activate', '--request', '--tpm', '-o', req], { env })).code).toBe(0);
    const lic = join(v, 'cleared.lic');
    expect((await issue(req, lic, '--tpm-ca', b.caDir)).code).toBe(0);
    expect((await mlic(['trust', 'add', join(v, 'acme.pub')], { env })).code).toBe(0);
    expect((await mlic(['activate', lic], { env })).code).toBe(0);
    await tpm2('clear', ['-c', 'p'], { tcti: b.tcti });
    const u = await mlic(['unpack', join(v, 'm.mlb'), '-o', join(await tmp(), 'o'), '--json'], { env });
    expect([u.code, u.json?.error?.code]).toEqual([1, 'TPM_KEY_UNAVAILABLE']);
    expect(u.json.error.hint).toMatch(/cleared/);
    const again = await mlic(['activate', '--request', '--tpm', 'auto', '-o', join(v, 'req-cleared2.json'), '--json'], { env });
    expect([again.code, again.json?.error?.code]).toEqual([1, 'TPM_KEY_UNAVAILABLE']);
  }, 120_000);
});
