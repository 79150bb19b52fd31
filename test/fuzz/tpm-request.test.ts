/**
 * Fuzz: the TPM attestation in activation requests, through what `mlic license issue --request
 * --tpm-ca` calls (parseAndVerifyRequest, then issueLicense with the vendor's TPM checks). The
 * requests are real, made on two software TPMs; their `tpm` section is mutated (JSON structure,
 * base64 and hex, values swapped in from the other TPM's request) and signed again with the
 * host's key, so that the TPM checks, not the request signature, must refuse. Every mutation is
 * refused with an MlicError, and whatever is accepted is the original request, unchanged.
 */
import { describe, it, beforeAll, afterAll } from 'vitest';
import { parseAndVerifyRequest } from '../../src/license/sign.js';
import { issueLicense } from '../../src/license/issue.js';
import { createActivationRequest } from '../../src/host/licences.js';
import { canonicalJson } from '../../src/format/canonical.js';
import { REQUEST_SIG_DOMAIN, type ActivationRequest } from '../../src/format/license.js';
import { loadTpmCas } from '../../src/tpm/ekcert.js';
import type { X509Certificate } from 'node:crypto';
import { key } from '../helpers.js';
import { fakeHost } from '../license/hosts.js';
import { startSwtpm, type Swtpm } from '../tpm/swtpm.js';
import { cases, fuzz, mutateJson, serialize, toAst, type Ast } from './lib.js';
import { signOver } from './fixtures.js';

const TPM_KEYS = ['tpm', 'ekPublic', 'ekCertificate', 'akPublic', 'nonce', 'pcrs', 'sha256', 'quote', 'attest', 'signature', '0', '7', '23', '24'];

describe('fuzz: TPM attestation in activation requests', () => {
  let a: Swtpm;
  let b: Swtpm;
  let cas: X509Certificate[];
  const hosts: { request: ActivationRequest; seed: Uint8Array }[] = [];
  const vendor = key('acme');

  beforeAll(async () => {
    [a, b] = await Promise.all([startSwtpm('fz-a'), startSwtpm('fz-b')]);
    cas = [...(await loadTpmCas(a.caDir)), ...(await loadTpmCas(b.caDir))];
    for (const [name, t] of [
      ['fza', a],
      ['fzb', b],
    ] as const) {
      const h = await fakeHost(name);
      h.state.tpm = { tcti: t.tcti };
      const request = (await createActivationRequest({ stateDir: h.stateDir, hostProbe: h.probe(), tpmMode: 'on', tpm: { tcti: t.tcti } })).request;
      hosts.push({ request, seed: (await h.state.loadHost())!.signSeed });
    }
  }, 240_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('mutated tpm sections, signed again by the host: refused with a code, or the original accepted', async () => {
    const t = await fuzz('TPM request', 0x7e01, cases(600), 10_000, (r) => {
      const i = r.int(2);
      const h = hosts[i]!;
      const other = hosts[1 - i]!;
      const m = mutateJson(r, h.request.payload.tpm, [other.request.payload.tpm], TPM_KEYS);
      const payload: Ast = toAst(h.request.payload);
      if (payload.t !== 'obj') throw new Error('not an object');
      const e = payload.e.map(([k, v]) => [k, k === 'tpm' ? m.ast : v] as [string, Ast]);
      const mutated: Ast = { t: 'obj', e };
      const sig = signOver(h.seed, REQUEST_SIG_DOMAIN, mutated);
      const text = serialize({ t: 'obj', e: [['payload', mutated], ['signature', { t: 'raw', s: JSON.stringify(sig) }]] });
      return {
        desc: m.desc,
        run: () => {
          const req = parseAndVerifyRequest(text, 'request.json');
          issueLicense({ key: vendor, request: req, model: 'm', versions: { policy: 'range', range: '^2' }, perpetual: true, tpm: { cas, require: true } });
          if (canonicalJson(req.payload) !== canonicalJson(h.request.payload)) throw new Error(`a changed TPM attestation was accepted: ${m.desc}`);
        },
      };
    });
    t.report();
  }, 240_000);
});
