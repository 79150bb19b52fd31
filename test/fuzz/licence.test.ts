/**
 * Fuzz: licence text, through what `mlic license inspect`, `mlic fingerprint --compare`,
 * `mlic usage verify --license`, `mlic meter --license` and `mlic activate` call:
 * parseLicenseText, verifyLicenseText, and activateLicense on a fake host.
 */
import { describe, it, beforeAll } from 'vitest';
import { parseLicenseText, redactedPayload, LICENSE_BEGIN, LICENSE_END, LICENSE_SIG_DOMAIN } from '../../src/format/license.js';
import { verifyLicenseText } from '../../src/license/sign.js';
import { checkTime, describeVersions } from '../../src/license/policy.js';
import { fingerprintOf, matchFingerprint } from '../../src/hardware/fingerprint.js';
import { activateLicense } from '../../src/host/licences.js';
import { keyIdHex } from '../../src/format/minisign.js';
import type { VendorKey } from '../../src/keys/vendor.js';
import type { MinisignPublicKey } from '../../src/format/minisign.js';
import { cases, fuzz, mutateJson, mutateText, serialize, type Ast, type Rng } from './lib.js';
import { NOW, armor, canonicalOf, deterministicNacl, host, licence, resetHost, signOver, vectorKey, vendorPublicKey, type Host } from './fixtures.js';

const KEYS = ['v', 'kind', 'licenseId', 'issuedAt', 'vendor', 'customer', 'model', 'versions', 'notBefore', 'expires', 'graceSeconds', 'clockToleranceSeconds', 'tier', 'features', 'components', 'host', 'meters', 'regions', 'keys', 'requireWatermark', 'policy', 'range', 'until', 'bundleId', 'scope', 'tree', 'depth', 'prefix', 'sealed', 'clear', 'overage', 'percent', 'mode', 'k', 'match'];

describe('fuzz: licences', () => {
  let vendor: VendorKey;
  let pub: MinisignPublicKey;
  let A: Host;
  let texts: { text: string; payload: unknown }[];

  beforeAll(async () => {
    vendor = await vectorKey();
    pub = vendorPublicKey(vendor);
    A = await host('fuzzlica', vendor, { region: 'DE' });
    const B = await host('fuzzlicb', vendor);
    texts = await deterministicNacl('licences', () => [
      licence(
        vendor,
        {
          request: A.request,
          features: ['batch', 'x'],
          components: ['det'],
          meters: [{ metric: 'inferences', limit: 1000, period: 'month', overage: { mode: 'allow', percent: 10 } }, { metric: 'tokens', limit: 5, period: 'term' }],
          regions: ['DE', 'EU'],
          tier: 'pro',
          customer: 'acme corp',
          match: { policy: 'k', k: 2 },
          graceSeconds: 3600,
          expires: new Date('2027-01-01T00:00:00Z'),
          requireWatermark: true,
        },
        'bound',
      ),
      licence(vendor, { versions: { policy: 'maintenance', until: '2027-01-01T00:00:00Z', range: '>=2.1 <3' } }, 'unbound'),
      licence(vendor, { request: B.request, versions: { policy: 'rolling' }, match: { policy: 'most' } }, 'rolling'),
    ]);
  });

  /** A mutated licence: the armoured text, its JSON body re-armoured, or its payload re-signed by the vendor. */
  function mutant(r: Rng): { desc: string; text: string } {
    const i = r.int(texts.length);
    const { text, payload } = texts[i]!;
    const others = texts.filter((_, j) => j !== i).map((x) => x.payload);
    const level = r.int(10);
    if (level < 3) {
      const m = mutateText(r, text);
      return { desc: `text: ${m.desc}`, text: m.text };
    }
    if (level < 5) {
      const body = JSON.parse(Buffer.from(text.split('\n').slice(1, -2).join(''), 'base64').toString('utf8')) as unknown;
      const m = mutateJson(r, body, [], KEYS);
      return { desc: `body: ${m.desc}`, text: armor(LICENSE_BEGIN, LICENSE_END, r.chance(0.7) ? canonicalOf(m.ast) : serialize(m.ast)) };
    }
    // Signed by the vendor: only the validator and the policy stand in the way.
    const m = mutateJson(r, payload, others, KEYS);
    const sig: Ast = { t: 'obj', e: [['alg', { t: 'raw', s: '"ed25519"' }], ['keyId', { t: 'raw', s: JSON.stringify(keyIdHex(vendor.keyId)) }], ['sig', { t: 'raw', s: JSON.stringify(signOver(vendor.seed, LICENSE_SIG_DOMAIN, m.ast)) }]] };
    return { desc: `signed: ${m.desc}`, text: armor(LICENSE_BEGIN, LICENSE_END, canonicalOf({ t: 'obj', e: [['payload', m.ast], ['signature', sig]] })) };
  }

  it('parseLicenseText, verifyLicenseText, inspect and fingerprint --compare', async () => {
    const t = await fuzz('licence', 0x11c0, cases(3000), 10_000, (r) => {
      const m = mutant(r);
      return {
        desc: m.desc,
        run: async () => {
          // license inspect: parse, then verify; the fields it prints
          const l = parseLicenseText(m.text, 'customer.lic');
          checkTime(l.payload, NOW);
          describeVersions(l.payload.versions);
          redactedPayload(l.payload);
          // fingerprint --compare customer.lic
          if (l.payload.host.binding === 'host') {
            const current = fingerprintOf(A.fake.probe(), Buffer.from(l.payload.host.fingerprint.salt, 'hex'));
            matchFingerprint(l.payload.host.fingerprint.components, current.components, l.payload.host.match);
          }
          await verifyLicenseText(m.text, async (id) => (keyIdHex(pub.keyId) === id ? pub : undefined), 'customer.lic');
        },
      };
    });
    t.report();
  }, 180_000);

  it('activateLicense on a fake host (the decision path: trust, host key, hardware, time, install)', async () => {
    await resetHost(A);
    let n = 0;
    const t = await fuzz('licence activation', 0xac71, cases(400), 30_000, async (r) => {
      // Start from a fresh state now and then, so that installed licences do not pile up.
      if (n++ % 100 === 0) await resetHost(A);
      const m = mutant(r);
      return { desc: m.desc, run: () => activateLicense(m.text, { stateDir: A.fake.stateDir, hostProbe: A.fake.probe(), now: NOW }) };
    });
    t.report();
  }, 180_000);
});
