/**
 * A licence issued with --require-watermark carries its watermark key (sealed to the host, or
 * clear in an unbound licence); validate() hands the caller the watermark to use, and text marked
 * with it names the licence when the vendor detects with the key it derives from its master
 * secret. Licences without the requirement carry no key.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { issueLicense } from '../../src/license/issue.js';
import { activateLicense, createActivationRequest } from '../../src/host/licences.js';
import { loadLicense } from '../../src/host/handle.js';
import { assertLicensePayload, redactedPayload, serializeLicense, type LicensePayload } from '../../src/format/license.js';
import { watermarkKey } from '../../src/keys/derive.js';
import { detectTextWatermark } from '../../src/watermark/text.js';
import { publicKeyFileText, type VendorKey } from '../../src/keys/vendor.js';
import { key } from '../helpers.js';
import { fakeHost, type FakeHost } from '../license/hosts.js';
import { lm } from './lm.js';

describe('licences that require watermarked outputs', () => {
  let vendor: VendorKey;
  let H: FakeHost;
  beforeAll(async () => {
    vendor = key('acme');
    H = await fakeHost('wmhost');
    await H.state.trustAdd(publicKeyFileText(vendor));
  });

  const issue = async (o: { requireWatermark?: boolean; unbound?: boolean }) => {
    const request = o.unbound ? undefined : (await createActivationRequest({ stateDir: H.stateDir, hostProbe: H.probe() })).request;
    return issueLicense({ key: vendor, ...(request ? { request } : {}), model: 'llm', versions: { policy: 'range', range: '^1' }, perpetual: true, ...(o.requireWatermark ? { requireWatermark: true } : {}) });
  };

  it('validate() gives the watermark; text generated with it names the licence among 1,000 the vendor tests', async () => {
    const { license, payload } = await issue({ requireWatermark: true });
    expect(payload.watermark?.sealed).toBeDefined();
    expect(redactedPayload(payload).watermark).toBe('sealed to host');
    expect(JSON.stringify(redactedPayload(payload))).not.toContain(payload.watermark!.sealed!.box);
    await activateLicense(serializeLicense(license), { stateDir: H.stateDir, hostProbe: H.probe() });
    const h = await loadLicense({ stateDir: H.stateDir, hostProbe: H.probe(), model: 'llm' });
    try {
      const r = await h.validate();
      expect(r).toMatchObject({ valid: true, watermarkRequired: true, watermark: { licenseId: payload.licenseId } });
      expect(() => JSON.stringify(r)).not.toThrow();
      const text = lm(7).generate(r.watermark!.text());
      // the vendor: the keys of 1,000 issued licences, derived again from the master secret
      const ids = [payload.licenseId, ...Array.from({ length: 999 }, (_, i) => i.toString(16).padStart(32, '0'))];
      const d = detectTextWatermark(
        text,
        ids.map((id) => ({ id, key: watermarkKey(vendor.master, id) })),
      );
      expect(d.named).toBe(payload.licenseId);
      // the same model without the watermark: nobody
      expect(detectTextWatermark(lm(7).generate(undefined), ids.map((id) => ({ id, key: watermarkKey(vendor.master, id) }))).named).toBeUndefined();
    } finally {
      await h.close();
    }
  }, 60_000);

  it('an unbound licence carries the key in the clear; a licence without the requirement carries none; a key without the requirement is refused', async () => {
    const unbound = await issue({ requireWatermark: true, unbound: true });
    expect(unbound.payload.watermark?.clear).toBe(watermarkKey(vendor.master, unbound.payload.licenseId).toString('base64'));
    const plain = await issue({});
    expect(plain.payload.watermark).toBeUndefined();
    const { requireWatermark: _r, ...forged } = unbound.payload;
    expect(() => assertLicensePayload(forged as LicensePayload)).toThrow(/watermark/);
    const bound = await issue({ requireWatermark: true });
    expect(() => assertLicensePayload({ ...bound.payload, watermark: { clear: unbound.payload.watermark!.clear! } })).toThrow(/host-bound licence must seal/);
  });
});
