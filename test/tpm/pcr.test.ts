/**
 * PCRs on a real TPM (swtpm): read with tpm2_pcrread, changed by tpm2_pcrextend exactly as the
 * TPM 2.0 spec says (new = SHA-256(old || digest)); a quote's pcrDigest recomputed from the values
 * (and any changed, dropped or added value refused, TPM_QUOTE_INVALID); a PCR policy that allows
 * a known-good state and names the PCR that differs (TPM_PCR_MISMATCH); and hostile PCR values,
 * policies and selections refused with their codes, never a crash.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { assertPcrValues, checkPcrPolicy, checkQuotePcrs, parsePcrPolicy, parsePcrSelection, pcrDigest, policyFromValues, readPcrs, type PcrValues } from '../../src/tpm/pcr.js';
import { createAttestationKey, quote, type AttestationKey } from '../../src/tpm/host.js';
import { verifyQuote } from '../../src/tpm/quote.js';
import { parseQuoteAttest, TPM_ALG, type Attest } from '../../src/tpm/structures.js';
import { tpm2 } from '../../src/tpm/tools.js';
import { MlicError } from '../../src/errors.js';
import { mutateJson, rng, serialize } from '../fuzz/lib.js';
import { startSwtpm, type Swtpm } from './swtpm.js';

const sha256 = (...b: Buffer[]) => createHash('sha256').update(Buffer.concat(b)).digest();
const HEX64 = /^[0-9a-f]{64}$/;
const hex = (c: string) => c.repeat(64);

function codeOfSync(fn: () => unknown): string {
  try {
    fn();
    return 'OK';
  } catch (e) {
    if (e instanceof MlicError) return e.code;
    throw e;
  }
}

describe('PCRs', () => {
  let t: Swtpm;
  let o: { tcti: string };
  let ak: AttestationKey;
  const extend = (pcr: number, digest: Buffer) => tpm2('pcrextend', [`${pcr}:sha256=${digest.toString('hex')}`], o);
  const quoteOver = async (pcrs: string) => {
    const nonce = randomBytes(32);
    const q = await quote(ak, nonce, pcrs, o);
    // the quote is the TPM's (signed by the AK, over this nonce) before its PCR digest means anything
    return verifyQuote({ akPublic: ak.akPublic, ...q }, nonce).attest;
  };

  beforeAll(async () => {
    t = await startSwtpm('pcr');
    o = { tcti: t.tcti };
    ak = await createAttestationKey(o);
  }, 120_000);
  afterAll(async () => {
    await t?.stop();
  });

  it('reads the sha256 bank, and an extend changes PCR 7 to SHA-256(old || digest), no other', async () => {
    const before = await readPcrs('sha256:0,1,2,3,7', o);
    expect(Object.keys(before.sha256)).toEqual(['0', '1', '2', '3', '7']);
    for (const v of Object.values(before.sha256)) expect(v).toMatch(HEX64);
    expect(() => assertPcrValues(before, 'read')).not.toThrow();
    // a fresh swtpm measured nothing; PCRs 17..22 start as all ones (PC Client profile), 23 as zeros
    expect(before.sha256['7']).toBe(hex('0'));
    expect((await readPcrs('sha256:16,17,22,23', o)).sha256).toEqual({ '16': hex('0'), '17': hex('f'), '22': hex('f'), '23': hex('0') });

    const digest = randomBytes(32);
    await extend(7, digest);
    const after = await readPcrs(undefined, o);
    expect(after.sha256['7']).toBe(sha256(Buffer.from(before.sha256['7']!, 'hex'), digest).toString('hex'));
    expect(after.sha256['7']).not.toBe(before.sha256['7']);
    expect({ ...after.sha256, '7': 'x' }).toEqual({ ...before.sha256, '7': 'x' });
    // once more, from the new value
    const d2 = randomBytes(32);
    await extend(7, d2);
    expect((await readPcrs('sha256:7', o)).sha256['7']).toBe(sha256(Buffer.from(after.sha256['7']!, 'hex'), d2).toString('hex'));

    // the selection's order and repeats do not matter; the values come back in index order
    const any = await readPcrs('sha256:7,0,3,0', o);
    expect(Object.keys(any.sha256)).toEqual(['0', '3', '7']);
    // a bad selection is refused before the TPM is asked
    await expect(readPcrs('sha1:0', o)).rejects.toMatchObject({ code: 'USAGE' });
    await expect(readPcrs('sha256:24', o)).rejects.toMatchObject({ code: 'USAGE' });
  }, 120_000);

  it("a quote's pcrDigest is SHA-256 of the selected values in index order, and any other values are TPM_QUOTE_INVALID", async () => {
    // distinct values in each PCR, so that order and each value matter
    for (const i of [0, 1, 2, 3, 7]) await extend(i, sha256(Buffer.from(`pcr ${i} ${Date.now()}`)));
    const attest = await quoteOver('sha256:0,1,2,3,7');
    const values = await readPcrs('sha256:0,1,2,3,7', o);
    expect(new Set(Object.values(values.sha256)).size).toBe(5);
    expect(attest.pcrSelection).toEqual([{ hash: TPM_ALG.SHA256, pcrs: [0, 1, 2, 3, 7] }]);

    // what the TPM signed, computed here independently of pcr.ts
    const ascending = [0, 1, 2, 3, 7].map((i) => Buffer.from(values.sha256[String(i)]!, 'hex'));
    expect(attest.pcrDigest).toEqual(sha256(...ascending));
    expect(attest.pcrDigest).not.toEqual(sha256(...ascending.toReversed()));
    expect(pcrDigest(values, [0, 1, 2, 3, 7])).toEqual(attest.pcrDigest);
    expect(pcrDigest(values, [7, 3, 2, 1, 0, 7])).toEqual(attest.pcrDigest);

    expect(checkQuotePcrs(attest, values)).toEqual([0, 1, 2, 3, 7]);
    // the same through the bytes the host sends
    expect(checkQuotePcrs(parseQuoteAttest(Buffer.from(await quote(ak, randomBytes(16), 'sha256:0,1,2,3,7', o).then((q) => q.attest))), values)).toEqual([0, 1, 2, 3, 7]);

    const invalid = (v: PcrValues, a: Attest = attest) => {
      try {
        checkQuotePcrs(a, v);
      } catch (e) {
        expect(e).toBeInstanceOf(MlicError);
        return `${(e as MlicError).code}: ${(e as MlicError).message}`;
      }
      return 'OK';
    };
    // one value changed (each PCR in turn, one bit)
    for (const k of Object.keys(values.sha256)) {
      const b = Buffer.from(values.sha256[k]!, 'hex');
      b[31]! ^= 1;
      expect(invalid({ sha256: { ...values.sha256, [k]: b.toString('hex') } })).toMatch(/^TPM_QUOTE_INVALID: .*PCR digest does not match/);
    }
    // two values swapped
    expect(invalid({ sha256: { ...values.sha256, '0': values.sha256['7']!, '7': values.sha256['0']! } })).toMatch(/^TPM_QUOTE_INVALID/);
    // a PCR dropped, or one added (with its real value)
    const { '3': _dropped, ...without3 } = values.sha256;
    expect(invalid({ sha256: without3 })).toMatch(/^TPM_QUOTE_INVALID: .*covers sha256 PCRs 0,1,2,3,7 but .* for 0,1,2,7$/);
    const pcr8 = (await readPcrs('sha256:8', o)).sha256['8']!;
    expect(invalid({ sha256: { ...values.sha256, '8': pcr8 } })).toMatch(/^TPM_QUOTE_INVALID: .*for 0,1,2,3,7,8$/);
    // values read after the PCRs moved on: stale
    await extend(7, randomBytes(32));
    const later = await readPcrs('sha256:0,1,2,3,7', o);
    expect(invalid(later)).toMatch(/^TPM_QUOTE_INVALID: .*PCR digest/);
    expect(checkQuotePcrs(await quoteOver('sha256:0,1,2,3,7'), later)).toEqual([0, 1, 2, 3, 7]);

    // a quote over a smaller selection goes with exactly those values
    const small = await quoteOver('sha256:0,7');
    expect(checkQuotePcrs(small, { sha256: { '0': later.sha256['0']!, '7': later.sha256['7']! } })).toEqual([0, 7]);
    expect(invalid(later, small)).toMatch(/^TPM_QUOTE_INVALID: .*covers sha256 PCRs 0,7 but/);

    // selections a quote could carry: another bank, two banks, none, PCRs past 23, a short digest
    expect(invalid(values, { ...attest, pcrSelection: [{ hash: 0x0004, pcrs: [0, 1, 2, 3, 7] }] })).toMatch(/^TPM_QUOTE_INVALID: .*bank 0x0004/);
    expect(invalid(values, { ...attest, pcrSelection: [...attest.pcrSelection, { hash: 0x0004, pcrs: [0] }] })).toMatch(/^TPM_QUOTE_INVALID: .*sha256 and bank 0x0004/);
    expect(invalid(values, { ...attest, pcrSelection: [...attest.pcrSelection, { hash: TPM_ALG.SHA256, pcrs: [8] }] })).toMatch(/^TPM_QUOTE_INVALID/);
    expect(invalid(values, { ...attest, pcrSelection: [] })).toMatch(/^TPM_QUOTE_INVALID: .*no PCRs/);
    expect(invalid(values, { ...attest, pcrSelection: [{ hash: TPM_ALG.SHA256, pcrs: [0, 1, 2, 3, 7, 40] }] })).toMatch(/^TPM_QUOTE_INVALID/);
    expect(invalid(values, { ...attest, pcrDigest: attest.pcrDigest.subarray(0, 20) })).toMatch(/^TPM_QUOTE_INVALID/);
    // an empty selection of another bank adds nothing to the digest
    expect(invalid(values, { ...attest, pcrSelection: [{ hash: 0x0004, pcrs: [] }, ...attest.pcrSelection] })).toBe('OK');
    // malformed values are FORMAT_INVALID, before any comparison
    expect(invalid({ sha256: { ...values.sha256, '7': values.sha256['7']!.toUpperCase() } })).toMatch(/^FORMAT_INVALID/);
  }, 120_000);

  it('a PCR policy from a known-good host accepts it, names the PCR that changed, and may allow several values', async () => {
    const good = await readPcrs('sha256:0,1,2,3,7', o);
    const policy = policyFromValues(good);
    expect(Object.keys(policy.sha256)).toEqual(['0', '1', '2', '3', '7']);
    expect(() => checkPcrPolicy(good, policy)).not.toThrow();
    // the policy survives being written and read back
    const reread = parsePcrPolicy(JSON.stringify(policy), 'policy.json');
    expect(reread).toEqual(policy);
    expect(() => checkPcrPolicy(good, reread)).not.toThrow();

    await extend(7, randomBytes(32));
    const changed = await readPcrs('sha256:0,1,2,3,7', o);
    let err: MlicError | undefined;
    try {
      checkPcrPolicy(changed, policy);
    } catch (e) {
      err = e as MlicError;
    }
    expect(err).toBeInstanceOf(MlicError);
    expect(err!.code).toBe('TPM_PCR_MISMATCH');
    expect(err!.message).toBe(`PCR 7 (sha256) is ${changed.sha256['7']}, which the PCR policy does not allow`);
    expect(err!.hint).toMatch(/boot state/);
    expect(err!.details).toEqual({ pcr: 7, value: changed.sha256['7'] });

    // two allowed values for PCR 7 (one written in uppercase): both states pass, a third does not
    const text = JSON.stringify({ sha256: { ...Object.fromEntries(Object.entries(good.sha256).filter(([k]) => k !== '7')), '7': [good.sha256['7']!.toUpperCase(), changed.sha256['7']] } });
    const two = parsePcrPolicy(text, 'policy.json');
    expect(two.sha256['7']).toEqual([good.sha256['7'], changed.sha256['7']]);
    expect(() => checkPcrPolicy(good, two)).not.toThrow();
    expect(() => checkPcrPolicy(changed, two)).not.toThrow();
    await extend(7, randomBytes(32));
    const third = await readPcrs('sha256:0,1,2,3,7', o);
    expect(() => checkPcrPolicy(third, two)).toThrow(expect.objectContaining({ code: 'TPM_PCR_MISMATCH', details: { pcr: 7, value: third.sha256['7'] } }));

    // the first PCR that differs is named; a PCR the policy wants but the request lacks; extra PCRs are not the policy's business
    const both = { sha256: { ...third.sha256, '1': hex('e') } };
    expect(() => checkPcrPolicy(both, two)).toThrow(expect.objectContaining({ code: 'TPM_PCR_MISMATCH', message: expect.stringMatching(/^PCR 1 \(sha256\) is e{64}, /) }));
    const { '2': _gone, ...no2 } = changed.sha256;
    expect(() => checkPcrPolicy({ sha256: no2 }, two)).toThrow(expect.objectContaining({ code: 'TPM_PCR_MISMATCH', message: expect.stringContaining('PCR 2 (sha256) is not in the request'), details: { pcr: 2, value: null } }));
    expect(() => checkPcrPolicy({ sha256: { ...changed.sha256, '9': hex('9') } }, two)).not.toThrow();
    // a single-string form
    expect(() => checkPcrPolicy(changed, parsePcrPolicy(JSON.stringify({ sha256: { '7': changed.sha256['7'] } }), 'p'))).not.toThrow();
    expect(() => checkPcrPolicy(good, parsePcrPolicy(JSON.stringify({ sha256: { '7': changed.sha256['7'] } }), 'p'))).toThrow(expect.objectContaining({ code: 'TPM_PCR_MISMATCH' }));
  }, 120_000);
});

describe('hostile PCR input', () => {
  const v = (sha256: unknown) => ({ sha256 });
  const good = { '0': hex('a'), '7': hex('b') };

  it('PCR selections: sha256 and indexes 0..23 only (USAGE)', () => {
    expect(parsePcrSelection('sha256:0,1,2,3,7')).toEqual([0, 1, 2, 3, 7]);
    expect(parsePcrSelection('sha256:7,0,7')).toEqual([0, 7]);
    expect(parsePcrSelection('SHA256:23')).toEqual([23]);
    const bad: unknown[] = ['', 'sha256', 'sha256:', 'sha256:,', 'sha256:0,', 'sha256:0,,1', 'sha256:24', 'sha256:-1', 'sha256:07', 'sha256:0x7', 'sha256:1.5', 'sha256: 1', 'sha256:1 2', 'sha1:0', 'sha384:0', 'sha256:0+sha1:0', 'sha256:all', ':0', '0,1', 'sha256:' + '1,'.repeat(200) + '1', 'sha256:9999999999999999999', 'sha256:1e1', 'sha256:\n1', undefined, 7, null];
    for (const s of bad) {
      let e: unknown;
      try {
        parsePcrSelection(s as string);
      } catch (x) {
        e = x;
      }
      expect(e, String(s)).toBeInstanceOf(MlicError);
      expect((e as MlicError).code, String(s)).toBe('USAGE');
      expect((e as MlicError).hint, String(s)).toContain('sha256:0,1,2,3,7');
    }
  });

  it('PCR values from a request: exactly {sha256: {index: 64 lowercase hex}} (FORMAT_INVALID)', () => {
    expect(codeOfSync(() => assertPcrValues(v(good), 'request'))).toBe('OK');
    expect(codeOfSync(() => assertPcrValues(v(Object.fromEntries(Array.from({ length: 24 }, (_, i) => [String(i), hex('0')]))), 'request'))).toBe('OK');
    const cases: [string, unknown][] = [
      ['null', null],
      ['a string', 'sha256'],
      ['an array', [good]],
      ['no bank', {}],
      ['another bank', { sha1: good }],
      ['an extra bank', { sha256: good, sha1: good }],
      ['an extra field', { sha256: good, note: 'x' }],
      ['bank is an array', v([hex('a')])],
      ['bank is null', v(null)],
      ['bank is a string', v('x')],
      ['empty bank', v({})],
      ['index 24', v({ '24': hex('a') })],
      ['index -1', v({ '-1': hex('a') })],
      ['leading zero', v({ '07': hex('a') })],
      ['hex index', v({ '0x7': hex('a') })],
      ['name as index', v({ pcr7: hex('a') })],
      ['__proto__ as index', JSON.parse(`{"sha256": {"__proto__": "${hex('a')}"}}`)],
      ['uppercase hex', v({ '7': hex('A') })],
      ['short hex', v({ '7': 'ab'.repeat(31) })],
      ['long hex', v({ '7': 'ab'.repeat(33) })],
      ['not hex', v({ '7': hex('g') })],
      ['0x prefix', v({ '7': '0x' + 'a'.repeat(62) })],
      ['a number', v({ '7': 7 })],
      ['a list', v({ '7': [hex('a')] })],
      ['null value', v({ '7': null })],
      ['a buffer', v({ '7': Buffer.alloc(32) })],
      ['a class instance', new (class {
        sha256 = good;
      })()],
      ['too many entries', v(Object.fromEntries(Array.from({ length: 25 }, (_, i) => [String(i), hex('0')])))],
    ];
    for (const [name, input] of cases) expect(codeOfSync(() => assertPcrValues(input, 'request')), name).toBe('FORMAT_INVALID');
    // the message says which value and where it came from
    expect(() => assertPcrValues(v({ '7': hex('A') }), 'the request')).toThrow(expect.objectContaining({ message: expect.stringMatching(/^the request: sha256\["7"\]/), details: { field: 'sha256.7' } }));
  });

  it('PCR policies: strict JSON, naming the bad field (FORMAT_INVALID)', () => {
    expect(parsePcrPolicy(`{"sha256": {"7": "${hex('A')}", "0": ["${hex('b')}", "${hex('c')}", "${hex('B')}"]}}`, 'p')).toEqual({ sha256: { '0': [hex('b'), hex('c')], '7': [hex('a')] } });
    const cases: [string, string, string | undefined][] = [
      ['empty', '', undefined],
      ['not JSON', '{sha256: {}}', undefined],
      ['trailing garbage', `{"sha256": {"7": "${hex('a')}"}} x`, undefined],
      ['a list', `[{"sha256": {}}]`, undefined],
      ['null', 'null', undefined],
      ['a string', '"sha256"', undefined],
      ['no bank', '{}', 'sha256'],
      ['another bank', `{"sha1": {"7": "${hex('a')}"}}`, 'sha1'],
      ['an extra field', `{"sha256": {"7": "${hex('a')}"}, "comment": "x"}`, 'comment'],
      ['bank is a list', `{"sha256": ["${hex('a')}"]}`, 'sha256'],
      ['empty bank', '{"sha256": {}}', 'sha256'],
      ['index 24', `{"sha256": {"24": "${hex('a')}"}}`, 'sha256.24'],
      ['leading zero', `{"sha256": {"07": "${hex('a')}"}}`, 'sha256.07'],
      ['__proto__', `{"sha256": {"__proto__": "${hex('a')}"}}`, 'sha256.__proto__'],
      ['empty list', '{"sha256": {"7": []}}', 'sha256.7'],
      ['a number', '{"sha256": {"7": 7}}', 'sha256.7'],
      ['null', '{"sha256": {"7": null}}', 'sha256.7'],
      ['an object', `{"sha256": {"7": {"v": "${hex('a')}"}}}`, 'sha256.7'],
      ['short hex', `{"sha256": {"7": "${'a'.repeat(63)}"}}`, 'sha256.7'],
      ['0x prefix', `{"sha256": {"7": "0x${'a'.repeat(64)}"}}`, 'sha256.7'],
      ['spaces', `{"sha256": {"7": " ${hex('a')}"}}`, 'sha256.7'],
      ['bad list entry', `{"sha256": {"0": "${hex('a')}", "7": ["${hex('a')}", "nope"]}}`, 'sha256.7[1]'],
      ['nested list', `{"sha256": {"7": [["${hex('a')}"]]}}`, 'sha256.7[0]'],
      ['too many values', `{"sha256": {"7": [${Array.from({ length: 257 }, () => `"${hex('a')}"`).join(',')}]}}`, 'sha256.7'],
      ['huge', `{"sha256": {"7": "${'a'.repeat(2 << 20)}"}}`, undefined],
    ];
    for (const [name, text, field] of cases) {
      let e: unknown;
      try {
        parsePcrPolicy(text, 'pcr-policy.json');
      } catch (x) {
        e = x;
      }
      expect(e, name).toBeInstanceOf(MlicError);
      expect((e as MlicError).code, name).toBe('FORMAT_INVALID');
      expect((e as MlicError).message, name).toMatch(/^pcr-policy\.json: /);
      if (field) expect((e as MlicError).details, name).toEqual({ field });
    }
  });

  it('mutated policies and values: FORMAT_INVALID or a valid result, never another error (1,000 each)', () => {
    const policyDoc = { sha256: { '0': hex('a'), '7': [hex('b'), hex('c')] } };
    const counts = new Map<string, number>();
    for (let i = 0; i < 1000; i++) {
      const r = rng(0x9c12 + i);
      const m = mutateJson(r, policyDoc, [], ['sha1', '23', '24']);
      const text = serialize(m.ast);
      let outcome: string;
      try {
        const p = parsePcrPolicy(text, 'p');
        outcome = 'ok';
        // what is accepted is well formed
        expect(Object.keys(p)).toEqual(['sha256']);
        for (const [k, list] of Object.entries(p.sha256)) {
          expect(Number(k), m.desc).toBeLessThan(24);
          expect(list.length, m.desc).toBeGreaterThan(0);
          for (const x of list) expect(x, m.desc).toMatch(HEX64);
        }
      } catch (e) {
        outcome = e instanceof MlicError ? e.code : `INTERNAL ${(e as Error).message} (${m.desc})`;
      }
      counts.set(outcome, (counts.get(outcome) ?? 0) + 1);

      const mv = mutateJson(r, v(good), [], ['sha1', '23', '24']);
      let parsed: unknown;
      try {
        parsed = JSON.parse(serialize(mv.ast));
      } catch {
        continue;
      }
      const code = (() => {
        try {
          assertPcrValues(parsed, 'v');
          policyFromValues(parsed);
          return 'ok';
        } catch (e) {
          return e instanceof MlicError ? e.code : `INTERNAL ${(e as Error).message} (${mv.desc})`;
        }
      })();
      counts.set(`values ${code}`, (counts.get(`values ${code}`) ?? 0) + 1);
    }
    expect([...counts.keys()].filter((k) => k.includes('INTERNAL'))).toEqual([]);
    expect([...counts.keys()].every((k) => /^(values )?(ok|FORMAT_INVALID)$/.test(k))).toBe(true);
    // both outcomes happen, or the fuzz tests nothing
    expect(counts.get('FORMAT_INVALID')).toBeGreaterThan(100);
    expect(counts.get('values FORMAT_INVALID')).toBeGreaterThan(100);
  });

  it('pcrDigest refuses what it cannot hash', () => {
    expect(pcrDigest(v(good) as PcrValues, [0, 7])).toEqual(sha256(Buffer.from(hex('a'), 'hex'), Buffer.from(hex('b'), 'hex')));
    expect(codeOfSync(() => pcrDigest(v(good) as PcrValues, [0, 1]))).toBe('FORMAT_INVALID');
    expect(codeOfSync(() => pcrDigest(v(good) as PcrValues, [24]))).toBe('USAGE');
    expect(codeOfSync(() => pcrDigest(v(good) as PcrValues, [0.5]))).toBe('USAGE');
  });
});
