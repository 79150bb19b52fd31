/**
 * Fuzz: activation requests, through what `mlic license issue --request` and
 * `mlic fingerprint --compare request.json` call (parseAndVerifyRequest, then issueLicense, or
 * fingerprintOf + matchFingerprint). Every mutation is accepted or refused with an MlicError.
 */
import { describe, it, beforeAll } from 'vitest';
import { parseAndVerifyRequest } from '../../src/license/sign.js';
import { issueLicense } from '../../src/license/issue.js';
import { fingerprintOf, matchFingerprint } from '../../src/hardware/fingerprint.js';
import { REQUEST_SIG_DOMAIN } from '../../src/format/license.js';
import type { VendorKey } from '../../src/keys/vendor.js';
import { cases, fuzz, mutateJson, mutateText, serialize, type Ast } from './lib.js';
import { NOW, host, signOver, vectorKey, type Host } from './fixtures.js';

const PAYLOAD_KEYS = ['v', 'kind', 'requestId', 'createdAt', 'hostPublicKey', 'signingPublicKey', 'hostname', 'region', 'customer', 'fingerprint', 'salt', 'components', 'container', 'vm', 'hash', 'label'];

describe('fuzz: activation requests', () => {
  let vendor: VendorKey;
  let A: Host;
  let B: Host;

  beforeAll(async () => {
    vendor = await vectorKey();
    A = await host('fuzzreqa', vendor, { region: 'DE', customer: 'acme corp' });
    B = await host('fuzzreqb', vendor);
  });

  /** The work the CLI does with a request: both commands that read one. */
  const use = (h: Host, text: string) => () => {
    const req = parseAndVerifyRequest(text, 'request.json');
    const current = fingerprintOf(h.fake.probe(), Buffer.from(req.payload.fingerprint.salt, 'hex'));
    matchFingerprint(req.payload.fingerprint.components, current.components, { policy: 'all' });
    issueLicense({ key: vendor, request: req, model: 'vector-model', versions: { policy: 'range', range: '^2' }, perpetual: true, now: NOW });
  };

  it('parseAndVerifyRequest + issue + fingerprint compare: text, JSON and re-signed payload mutations', async () => {
    const t = await fuzz('activation request', 0x5e01, cases(3000), 10_000, (r) => {
      const [h, other] = r.chance(0.5) ? [A, B] : [B, A];
      const level = r.int(10);
      if (level < 3) {
        const m = mutateText(r, h.requestText);
        return { desc: `text: ${m.desc}`, run: use(h, m.text) };
      }
      if (level < 6) {
        const m = mutateJson(r, h.request, [other.request], PAYLOAD_KEYS);
        return { desc: `json: ${m.desc}`, run: use(h, serialize(m.ast, { indent: r.chance(0.5) })) };
      }
      // The payload mutated and signed again with the host's key: the validator, not the signature, must refuse.
      const m = mutateJson(r, h.request.payload, [other.request.payload], PAYLOAD_KEYS);
      const sig = signOver(h.id.signSeed, REQUEST_SIG_DOMAIN, m.ast);
      const doc: Ast = { t: 'obj', e: [['payload', m.ast], ['signature', { t: 'raw', s: JSON.stringify(sig) }]] };
      return { desc: `signed: ${m.desc}`, run: use(h, serialize(doc, { indent: r.chance(0.5) })) };
    });
    t.report();
  }, 180_000);
});
