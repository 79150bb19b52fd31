/**
 * Quotes made by a real TPM (swtpm through tpm2_quote) and checked by mlic: RSA and ECC
 * attestation keys; a quote over another nonce, by another key, or changed, is
 * TPM_QUOTE_INVALID; and damaged or oversized TPM structures are refused with that code, never
 * a crash (a small mutation fuzz).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { verifyQuote, type QuoteInput } from '../../src/tpm/quote.js';
import { parsePublic, ATTR } from '../../src/tpm/structures.js';
import { tpm2 } from '../../src/tpm/tools.js';
import { MlicError } from '../../src/errors.js';
import { tmp } from '../helpers.js';
import { rng, mutateBytes } from '../fuzz/lib.js';
import { startSwtpm, type Swtpm } from './swtpm.js';

async function quote(tpm: Swtpm, alg: 'rsa' | 'ecc', nonce: Buffer): Promise<QuoteInput> {
  const d = await tmp();
  const f = (n: string) => join(d, n);
  const o = { tcti: tpm.tcti };
  await tpm2('flushcontext', ['-t'], o);
  await tpm2('createek', ['-c', f('ek.ctx'), '-G', 'rsa', '-u', f('ek.pub'), '-Q'], o);
  await tpm2('flushcontext', ['-t'], o);
  await tpm2('createak', ['-C', f('ek.ctx'), '-c', f('ak.ctx'), '-G', alg, '-g', 'sha256', '-s', alg === 'rsa' ? 'rsassa' : 'ecdsa', '-u', f('ak.pub'), '-n', f('ak.name'), '-Q'], o);
  await tpm2('flushcontext', ['-t'], o);
  await tpm2('quote', ['-c', f('ak.ctx'), '-l', 'sha256:0,1,2,3,7', '-q', nonce.toString('hex'), '-m', f('q.msg'), '-s', f('q.sig'), '-g', 'sha256', '-Q'], o);
  await tpm2('flushcontext', ['-t'], o);
  return { akPublic: await readFile(f('ak.pub')), attest: await readFile(f('q.msg')), signature: await readFile(f('q.sig')) };
}

describe('TPM quotes', () => {
  let a: Swtpm;
  beforeAll(async () => {
    a = await startSwtpm('quote');
  }, 120_000);
  afterAll(async () => {
    await a?.stop();
  });

  it('a quote by an RSA or an ECC attestation key verifies, over the nonce it was made for, and says what it covered', async () => {
    for (const alg of ['rsa', 'ecc'] as const) {
      const nonce = createHash('sha256').update(randomBytes(32)).digest();
      const q = await quote(a, alg, nonce);
      const r = verifyQuote(q, nonce);
      expect(r.ak.key.asymmetricKeyType).toBe(alg === 'rsa' ? 'rsa' : 'ec');
      expect(r.ak.attributes & ATTR.restricted).toBeTruthy();
      expect(r.attest.pcrSelection).toEqual([{ hash: 0x000b, pcrs: [0, 1, 2, 3, 7] }]);
      expect(r.attest.pcrDigest).toHaveLength(32);
      // another nonce: not this request's quote
      expect(() => verifyQuote(q, randomBytes(32))).toThrow(expect.objectContaining({ code: 'TPM_QUOTE_INVALID', message: expect.stringContaining('other qualifying data') }));
    }
  }, 60_000);

  it('another key, a changed quote or signature, or a key that may sign anything is TPM_QUOTE_INVALID', async () => {
    const nonce = randomBytes(32);
    const q = await quote(a, 'rsa', nonce);
    const other = await quote(a, 'rsa', nonce);
    expect(() => verifyQuote({ ...q, akPublic: other.akPublic }, nonce)).toThrow(expect.objectContaining({ code: 'TPM_QUOTE_INVALID', message: expect.stringContaining('not signed') }));
    const attest = Buffer.from(q.attest);
    attest[attest.length - 3]! ^= 1; // inside the PCR digest
    expect(() => verifyQuote({ ...q, attest }, nonce)).toThrow(expect.objectContaining({ code: 'TPM_QUOTE_INVALID' }));
    const signature = Buffer.from(q.signature);
    signature[20]! ^= 1;
    expect(() => verifyQuote({ ...q, signature }, nonce)).toThrow(expect.objectContaining({ code: 'TPM_QUOTE_INVALID' }));
    // the same key without `restricted` (such a key signs whatever it is given, a forged TPMS_ATTEST too)
    const pub = Buffer.from(q.akPublic);
    const attrsAt = 2 + 2 + 2; // TPM2B size, type, nameAlg
    pub.writeUInt32BE(pub.readUInt32BE(attrsAt) & ~ATTR.restricted, attrsAt);
    expect(parsePublic(pub).attributes & ATTR.restricted).toBe(0);
    expect(() => verifyQuote({ ...q, akPublic: pub }, nonce)).toThrow(expect.objectContaining({ code: 'TPM_QUOTE_INVALID', message: expect.stringContaining('restricted') }));
  }, 60_000);

  it('damaged, truncated or oversized structures: TPM_QUOTE_INVALID, never another error (1,500 mutations)', async () => {
    const nonce = randomBytes(32);
    const q = await quote(a, 'rsa', nonce);
    const counts = new Map<string, number>();
    const spki = (b: Uint8Array) => parsePublic(b).key.export({ type: 'spki', format: 'der' });
    for (let i = 0; i < 1500; i++) {
      const r = rng(0x7e57 + i);
      const which = (['akPublic', 'attest', 'signature'] as const)[i % 3]!;
      const m = mutateBytes(r, q[which]);
      let outcome: string;
      try {
        verifyQuote({ ...q, [which]: m.bytes }, nonce);
        outcome = 'ok';
        // what still verifies: the signed bytes unchanged, or a public area that names the same key
        // (a field such as an unchecked scheme or attribute bit changed; the AK's name, to which a
        // credential is bound, changes with it)
        if (which !== 'akPublic') expect(m.bytes.equals(Buffer.from(q[which])), m.desc).toBe(true);
        else expect(spki(m.bytes).equals(spki(q.akPublic)), m.desc).toBe(true);
      } catch (e) {
        outcome = e instanceof MlicError ? e.code : `INTERNAL ${(e as Error).name}: ${(e as Error).message} (${which}: ${m.desc})`;
      }
      counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
    }
    const internal = [...counts.keys()].filter((k) => k.startsWith('INTERNAL'));
    expect(internal).toEqual([]);
    expect([...counts.keys()].every((k) => k === 'ok' || k === 'TPM_QUOTE_INVALID')).toBe(true);
    const huge = Buffer.alloc(1 << 20);
    expect(() => verifyQuote({ ...q, attest: huge }, nonce)).toThrow(expect.objectContaining({ code: 'TPM_QUOTE_INVALID' }));
  }, 60_000);
});
