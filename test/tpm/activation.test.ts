/**
 * TPM-attested activation end to end, on two real software TPMs (two hosts): the host's request
 * carries its TPM's attestation; the vendor verifies it (EK certificate to the manufacturer's CA,
 * the quote over this request, the PCRs, freshness) and binds the licence's keys to that TPM; the
 * licence opens the bundle there, and nowhere else: not with the state directory copied to a host
 * with another TPM, not without the TPM key file. Every bad request is refused with its code.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { cp, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pack } from '../../src/bundle/pack.js';
import { inspectBundle } from '../../src/bundle/inspect.js';
import { checkBundleKey } from '../../src/bundle/decrypt.js';
import { issueLicense, type IssueOptions } from '../../src/license/issue.js';
import { activateLicense, authorizeBundle, createActivationRequest } from '../../src/host/licences.js';
import { unwrapGrant, bundleKeyFromLicense } from '../../src/license/keys.js';
import { signRequest, parseAndVerifyRequest } from '../../src/license/sign.js';
import { parseRequestText, serializeLicense, type ActivationRequest, type ActivationRequestPayload } from '../../src/format/license.js';
import { publicKeyFileText, type VendorKey } from '../../src/keys/vendor.js';
import { loadTpmCas } from '../../src/tpm/ekcert.js';
import { readPcrs } from '../../src/tpm/pcr.js';
import { tpm2 } from '../../src/tpm/tools.js';
import type { Manifest } from '../../src/format/manifest.js';
import { key, tmp, writeRandom, codeOf } from '../helpers.js';
import { fakeHost, type FakeHost } from '../license/hosts.js';
import { startSwtpm, type Swtpm } from './swtpm.js';

describe('TPM-attested activation', () => {
  let a: Swtpm;
  let b: Swtpm;
  let vendor: VendorKey;
  let bundle: string;
  let manifest: Manifest;
  let HA: FakeHost;
  let req: ActivationRequest;
  let seed: Uint8Array;

  beforeAll(async () => {
    [a, b] = await Promise.all([startSwtpm('act-a'), startSwtpm('act-b')]);
    vendor = key('acme');
    const dir = await tmp();
    await mkdir(join(dir, 'model'));
    await writeRandom(join(dir, 'model', 'weights.bin'), 100_000, 3);
    bundle = join(dir, 'm.mlb');
    await pack({ input: join(dir, 'model'), name: 'm', version: '2.0.0', key: vendor, out: bundle });
    manifest = (await inspectBundle(bundle)).manifest;
    HA = await fakeHost('tpmhosta');
    HA.state.tpm = { tcti: a.tcti };
    await HA.state.trustAdd(publicKeyFileText(vendor));
    const r = await createActivationRequest({ stateDir: HA.stateDir, hostProbe: HA.probe(), tpmMode: 'on', tpm: { tcti: a.tcti } });
    expect(r.tpm).toEqual({ attested: true });
    req = r.request;
    seed = (await HA.state.loadHost())!.signSeed;
  }, 240_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  const issue = async (r: ActivationRequest, o: Partial<IssueOptions> = {}) =>
    serializeLicense(issueLicense({ key: vendor, request: r, model: 'm', versions: { policy: 'range', range: '^2' }, perpetual: true, tpm: { cas: await loadTpmCas(a.caDir), require: true }, ...o }).license);
  const writeLicence = async (text: string) => {
    const { writeFile } = await import('node:fs/promises');
    const f = join(await tmp(), 'l.lic');
    await writeFile(f, text);
    return f;
  };
  /** the request with its payload changed and signed again by the host's own key (so only the TPM parts can be wrong) */
  const edited = (fn: (p: ActivationRequestPayload) => void): ActivationRequest => {
    const p = structuredClone(req.payload);
    fn(p);
    return parseAndVerifyRequest(JSON.stringify(signRequest(p, seed)));
  };

  it('the request carries the EK certificate, the attestation key, the PCRs and a quote; the TPM key file is 0600', async () => {
    const t = req.payload.tpm!;
    expect(t.ekCertificate).toBeDefined();
    expect(Object.keys(t.pcrs.sha256)).toEqual(['0', '1', '2', '3', '7']);
    expect(t.pcrs).toEqual(await readPcrs('sha256:0,1,2,3,7', { tcti: a.tcti }));
    const { stat } = await import('node:fs/promises');
    expect((await stat(HA.state.path('tpm.json'))).mode & 0o777).toBe(0o600);
    // the text form round-trips through the strict parser
    expect(parseRequestText(JSON.stringify(req))).toEqual(req);
    // a second request reuses the attestation key, with a new nonce and a new quote
    const again = (await createActivationRequest({ stateDir: HA.stateDir, hostProbe: HA.probe(), tpm: { tcti: a.tcti } })).request.payload.tpm!;
    expect(again.akPublic).toBe(t.akPublic);
    expect(again.nonce).not.toBe(t.nonce);
  }, 60_000);

  it('a licence bound to TPM A opens the bundle on A; copied to a host with TPM B, or without the TPM key file, it opens nothing', async () => {
    const text = await issue(req);
    const act = await activateLicense(text, { stateDir: HA.stateDir, hostProbe: HA.probe(), tpm: { tcti: a.tcti } });
    expect(act.license.host.binding === 'host' && act.license.host.tpm?.ekHash).toMatch(/^[0-9a-f]{64}$/);
    const auth = await authorizeBundle(bundle, { stateDir: HA.stateDir, hostProbe: HA.probe(), tpm: { tcti: a.tcti } });
    await auth.bundle.close();
    checkBundleKey(manifest, auth.bundleKey);

    // the same state directory on a host whose TPM is B (a copied disk, a cloned VM with a fresh TPM): same hardware fingerprint, other TPM
    const copy = join(await tmp(), 'state');
    await cp(HA.stateDir, copy, { recursive: true });
    expect(await codeOf(authorizeBundle(bundle, { stateDir: copy, hostProbe: HA.probe(), tpm: { tcti: b.tcti } }).then((x) => x.bundle.close()))).toBe('TPM_KEY_UNAVAILABLE');
    expect(await codeOf(activateLicense(text, { stateDir: copy, hostProbe: HA.probe(), tpm: { tcti: b.tcti } }))).toBe('TPM_KEY_UNAVAILABLE');
    // without the TPM key file
    await rm(join(copy, 'tpm.json'));
    expect(await codeOf(authorizeBundle(bundle, { stateDir: copy, hostProbe: HA.probe(), tpm: { tcti: a.tcti } }).then((x) => x.bundle.close()))).toBe('TPM_KEY_UNAVAILABLE');
    // the host key alone opens the masked key, which is not the bundle's
    const lic = act.license;
    const boxSecret = (await HA.state.loadHost())!.boxSecret;
    const masked = unwrapGrant(lic.keys[0]!, boxSecret);
    expect(masked).toHaveLength(32);
    expect(await codeOf(Promise.resolve().then(() => bundleKeyFromLicense(lic, manifest, boxSecret)))).toBe('TPM_KEY_UNAVAILABLE');
    const { randomBytes } = await import('node:crypto');
    expect(await codeOf(Promise.resolve().then(() => checkBundleKey(manifest, bundleKeyFromLicense(lic, manifest, boxSecret, randomBytes(32)))))).toBe('KEY_MISMATCH');
  }, 120_000);

  it("a TPM-bound licence's watermark key is masked like its grants: validate() gives a watermark that the vendor's key detects", async () => {
    const text = await issue(req, { requireWatermark: true });
    await activateLicense(text, { stateDir: HA.stateDir, hostProbe: HA.probe(), tpm: { tcti: a.tcti } });
    const { loadLicense } = await import('../../src/host/handle.js');
    const { watermarkKey } = await import('../../src/keys/derive.js');
    const { scoreText } = await import('../../src/watermark/text.js');
    const { lm } = await import('../watermark/lm.js');
    const h = await loadLicense({ stateDir: HA.stateDir, hostProbe: HA.probe(), tpm: { tcti: a.tcti }, licenseFile: await writeLicence(text) });
    try {
      const r = await h.validate();
      const id = r.watermark!.licenseId;
      expect(scoreText(lm(3).generate(r.watermark!.text()), watermarkKey(vendor.master, id)).pValue).toBeLessThan(1e-12);
    } finally {
      await h.close();
    }
  }, 60_000);

  it('the vendor refuses each bad attestation with its code', async () => {
    const casA = await loadTpmCas(a.caDir);
    const casB = await loadTpmCas(b.caDir);
    const reqB = (await createActivationRequest({ stateDir: (await fakeHost('tpmhostb')).stateDir, hostProbe: HA.probe(), tpmMode: 'on', tpm: { tcti: b.tcti } })).request;
    const cases: [string, () => Promise<unknown>, string][] = [
      ['EK certificate from a CA the vendor does not trust', () => issue(req, { tpm: { cas: casB } }), 'TPM_CERT_UNTRUSTED'],
      ["another TPM's EK certificate", () => issue(edited((p) => (p.tpm!.ekCertificate = reqB.payload.tpm!.ekCertificate))), 'TPM_CERT_UNTRUSTED'],
      ['no EK certificate while CAs are required', () => issue(edited((p) => delete p.tpm!.ekCertificate)), 'TPM_CERT_UNTRUSTED'],
      [
        'forged quote signature',
        () =>
          issue(
            edited((p) => {
              const s = Buffer.from(p.tpm!.quote.signature, 'base64');
              s[s.length - 1]! ^= 1;
              p.tpm!.quote.signature = s.toString('base64');
            }),
          ),
        'TPM_QUOTE_INVALID',
      ],
      ['a quote over another nonce', () => issue(edited((p) => (p.tpm!.nonce = '00'.repeat(16)))), 'TPM_QUOTE_INVALID'],
      ["another request's quote", () => issue(edited((p) => (p.tpm!.quote = reqB.payload.tpm!.quote))), 'TPM_QUOTE_INVALID'],
      ['another host key under the same quote', () => issue(edited((p) => (p.hostPublicKey = reqB.payload.hostPublicKey))), 'TPM_QUOTE_INVALID'],
      ['PCR values other than quoted', () => issue(edited((p) => (p.tpm!.pcrs.sha256['7'] = 'ab'.repeat(32)))), 'TPM_QUOTE_INVALID'],
      ['a truncated attestation key', () => issue(edited((p) => (p.tpm!.akPublic = Buffer.from(p.tpm!.akPublic, 'base64').subarray(0, 100).toString('base64')))), 'TPM_QUOTE_INVALID'],
      ['a truncated quote', () => issue(edited((p) => (p.tpm!.quote.attest = Buffer.from(p.tpm!.quote.attest, 'base64').subarray(0, 40).toString('base64')))), 'TPM_QUOTE_INVALID'],
      ['an endorsement key that is not a key', () => issue(edited((p) => (p.tpm!.ekPublic = Buffer.from('not a key').toString('base64')))), 'TPM_QUOTE_INVALID'],
      ['a request replayed after its freshness window', () => issue(req, { now: new Date(Date.now() + 8 * 86400_000) }), 'TPM_QUOTE_INVALID'],
      [
        'no attestation, TPM required',
        () =>
          issue(
            edited((p) => {
              delete p.tpm;
            }),
          ),
        'TPM_REQUIRED',
      ],
      ['PCR 7 outside the policy', () => issue(req, { tpm: { cas: casA, pcrPolicy: { sha256: { '7': ['cd'.repeat(32)] } } } }), 'TPM_PCR_MISMATCH'],
    ];
    for (const [what, f, want] of cases) expect(`${what}: ${await codeOf(f())}`).toBe(`${what}: ${want}`);
    // an oversized TPM structure does not even parse as a request
    const big = structuredClone(req) as { payload: ActivationRequestPayload };
    big.payload.tpm!.akPublic = Buffer.alloc(4096, 1).toString('base64');
    expect(await codeOf(Promise.resolve().then(() => parseRequestText(JSON.stringify(big))))).toBe('FORMAT_INVALID');
    // and what passes: the PCR policy of the host's own values, and no CA check (a warning in the CLI)
    const pcrs = req.payload.tpm!.pcrs.sha256;
    expect(await codeOf(issue(req, { tpm: { pcrPolicy: { sha256: Object.fromEntries(Object.entries(pcrs).map(([k, v]) => [k, [v]])) } } }))).toBe('OK');
  }, 180_000);

  it('--tpm auto falls back to the key file where no TPM answers, never for a host already bound to its TPM; off is refused there', async () => {
    const dead = 'swtpm:host=127.0.0.1,port=9';
    const H = await fakeHost('autohost');
    const r = await createActivationRequest({ stateDir: H.stateDir, hostProbe: H.probe(), tpmMode: 'auto', tpm: { tcti: dead } });
    expect(r.tpm.attested).toBe(false);
    expect(r.tpm.fallback).toMatch(/TPM_UNAVAILABLE/);
    expect(r.request.payload.tpm).toBeUndefined();
    // HA is bound: auto with no TPM is an error, and so is off
    expect(await codeOf(createActivationRequest({ stateDir: HA.stateDir, hostProbe: HA.probe(), tpmMode: 'auto', tpm: { tcti: dead } }))).toBe('TPM_UNAVAILABLE');
    expect(await codeOf(createActivationRequest({ stateDir: HA.stateDir, hostProbe: HA.probe(), tpmMode: 'off', tpm: { tcti: a.tcti } }))).toBe('USAGE');
    expect(await codeOf(createActivationRequest({ stateDir: HA.stateDir, hostProbe: HA.probe(), tpm: { tcti: dead } }))).toBe('TPM_UNAVAILABLE');
  }, 60_000);

  it('a PCR that changes after the request (another boot state) is caught by the policy made from the old one', async () => {
    const before = req.payload.tpm!.pcrs.sha256;
    const policy = { sha256: Object.fromEntries(Object.entries(before).map(([k, v]) => [k, [v]])) };
    await tpm2('pcrextend', [`7:sha256=${'11'.repeat(32)}`], { tcti: a.tcti });
    const after = (await createActivationRequest({ stateDir: HA.stateDir, hostProbe: HA.probe(), tpm: { tcti: a.tcti } })).request;
    expect(after.payload.tpm!.pcrs.sha256['7']).not.toBe(before['7']);
    expect(await codeOf(issue(after, { tpm: { pcrPolicy: policy } }))).toBe('TPM_PCR_MISMATCH');
  }, 60_000);
});
