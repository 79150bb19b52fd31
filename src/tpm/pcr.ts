/**
 * Platform Configuration Registers: what the host's TPM measured of its boot (firmware, boot
 * loader, Secure Boot settings), read on the host and checked by the vendor. Only the SHA-256 bank
 * is used (PCRs 0..23, 32 bytes each).
 *
 * The host reads its PCRs (tpm2_pcrread, raw digests) and sends them with a quote over the same
 * selection. The values alone prove nothing; what makes them the TPM's is the quote: its signed
 * pcrDigest is SHA-256 over the selected PCRs in ascending order, so checkQuotePcrs recomputes it
 * from the values the request carries and refuses any value, any PCR left out or added
 * (TPM_QUOTE_INVALID). Only then does the vendor's PCR policy (each PCR's allowed values) decide:
 * a value it does not list is TPM_PCR_MISMATCH, naming the PCR.
 *
 * Everything that comes from a request or a policy file is hostile input: exact shapes, decimal
 * indexes 0..23, 64 hex digits, caps on sizes; FORMAT_INVALID otherwise, never a crash.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MlicError } from '../errors.js';
import { TPM_ALG, type Attest } from './structures.js';
import { tpm2, tctiOf, type TpmOptions } from './tools.js';
import type { PcrValues } from '../format/license.js';

export type { PcrValues };
/** PCR index ("0".."23") -> the lowercase hex values the vendor allows for it. */
export type PcrPolicy = { sha256: Record<string, string[]> };

export const PCR_COUNT = 24;
export const DEFAULT_PCRS = 'sha256:0,1,2,3,7';
const MAX_SPEC = 256;
const MAX_POLICY_BYTES = 1 << 20;
const MAX_ALLOWED_PER_PCR = 256;
const INDEX = /^(0|[1-9][0-9]?)$/;
const HEX64 = /^[0-9a-f]{64}$/;

const plainObject = (v: unknown): v is Record<string, unknown> => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
};
const isIndex = (k: string) => INDEX.test(k) && Number(k) < PCR_COUNT;
const byIndex = (a: string, b: string) => Number(a) - Number(b);
const show = (s: string) => JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);

/** A tpm2-tools PCR selection of the sha256 bank ('sha256:0,1,2,3,7') -> its indexes, sorted and unique. USAGE otherwise. */
export function parsePcrSelection(spec: string): number[] {
  const hint = `give the sha256 bank and PCR indexes 0..${PCR_COUNT - 1}, as in ${DEFAULT_PCRS}`;
  const usage = (why: string) => new MlicError('USAGE', `PCR selection ${typeof spec === 'string' ? show(spec) : String(spec)}: ${why}`, { hint });
  if (typeof spec !== 'string') throw usage('not a string');
  if (spec.length > MAX_SPEC) throw usage(`longer than ${MAX_SPEC} characters`);
  const m = /^([A-Za-z0-9]+):(.*)$/s.exec(spec.trim());
  if (!m) throw usage('not of the form sha256:<indexes>');
  if (m[1]!.toLowerCase() !== 'sha256') throw usage(`the ${m[1]} bank (only sha256 is supported)`);
  const parts = m[2]!.split(',');
  const out = new Set<number>();
  for (const p of parts) {
    if (!isIndex(p)) throw usage(p === '' ? 'an empty PCR index' : `${show(p)} is not a PCR index 0..${PCR_COUNT - 1}`);
    out.add(Number(p));
  }
  return [...out].sort((a, b) => a - b);
}

/** Reads the selected PCRs of the sha256 bank (tpm2_pcrread -F values -o: the raw digests, ascending). */
export async function readPcrs(spec = DEFAULT_PCRS, o: TpmOptions = {}): Promise<PcrValues> {
  const indexes = parsePcrSelection(spec);
  const opts = { ...o, tcti: o.tcti ?? tctiOf() };
  const d = await mkdtemp(join(tmpdir(), 'mlic-pcr-'));
  try {
    const file = join(d, 'pcrs.bin');
    await tpm2('pcrread', ['-Q', `sha256:${indexes.join(',')}`, '-F', 'values', '-o', file], opts);
    const raw = await readFile(file);
    // a bank the TPM has not allocated comes back empty, with success
    if (raw.length !== 32 * indexes.length)
      throw new MlicError('TPM_FAILED', `tpm2_pcrread returned ${raw.length} bytes for ${indexes.length} sha256 PCRs (${32 * indexes.length} expected)`, {
        hint: "the TPM's sha256 PCR bank may not be active; check with tpm2_getcap pcrs",
      });
    const sha256: Record<string, string> = {};
    indexes.forEach((i, n) => (sha256[String(i)] = raw.subarray(32 * n, 32 * (n + 1)).toString('hex')));
    return { sha256 };
  } finally {
    await rm(d, { recursive: true, force: true });
  }
}

/** Checks PCR values from a request: exactly { sha256: { "<0..23>": "<64 lowercase hex>" } }, 1 to 24 entries. FORMAT_INVALID otherwise. */
export function assertPcrValues(v: unknown, what: string): asserts v is PcrValues {
  const bad = (why: string, field?: string) =>
    new MlicError('FORMAT_INVALID', `${what}: ${why}`, {
      hint: 'PCR values are {"sha256": {"<index 0..23>": "<64 lowercase hex digits>", ...}}',
      ...(field === undefined ? {} : { details: { field } }),
    });
  if (!plainObject(v)) throw bad('not an object');
  const top = Object.keys(v);
  for (const k of top) if (k !== 'sha256') throw bad(`unexpected field ${show(k)} (only the sha256 bank is supported)`, k);
  const bank = v.sha256;
  if (!plainObject(bank)) throw bad('sha256 is not an object', 'sha256');
  const keys = Object.keys(bank);
  if (keys.length === 0) throw bad('sha256 has no PCR values', 'sha256');
  if (keys.length > PCR_COUNT) throw bad(`sha256 has ${keys.length} entries, more than ${PCR_COUNT}`, 'sha256');
  for (const k of keys) {
    if (!isIndex(k)) throw bad(`sha256: ${show(k)} is not a PCR index 0..${PCR_COUNT - 1} (decimal, no leading zeros)`, `sha256.${k}`);
    const val = bank[k];
    if (typeof val !== 'string' || !HEX64.test(val)) throw bad(`sha256["${k}"] is not 64 lowercase hex digits`, `sha256.${k}`);
  }
}

function sortedIndexes(indexes: readonly number[]): number[] {
  for (const i of indexes) if (!Number.isInteger(i) || i < 0 || i >= PCR_COUNT) throw new MlicError('USAGE', `${String(i)} is not a PCR index 0..${PCR_COUNT - 1}`);
  return [...new Set(indexes)].sort((a, b) => a - b);
}

/** The pcrDigest a TPM puts in a quote over one sha256 bank selection: SHA-256 of the selected PCR values, concatenated in ascending index order. */
export function pcrDigest(values: PcrValues, indexes: number[]): Buffer {
  const h = createHash('sha256');
  for (const i of sortedIndexes(indexes)) {
    const v = Object.hasOwn(values.sha256, String(i)) ? values.sha256[String(i)] : undefined;
    if (typeof v !== 'string' || !HEX64.test(v)) throw new MlicError('FORMAT_INVALID', `the PCR values have no valid sha256 value for PCR ${i}`);
    h.update(Buffer.from(v, 'hex'));
  }
  return h.digest();
}

/**
 * Checks that PCR values are the ones a quote covers: the quote selects the sha256 bank only
 * (empty selections of other banks add nothing and are ignored), exactly the PCRs the values name,
 * and its pcrDigest is theirs. Returns the indexes, ascending. TPM_QUOTE_INVALID otherwise.
 */
export function checkQuotePcrs(attest: Attest, values: PcrValues): number[] {
  assertPcrValues(values, 'the PCR values');
  const invalid = (message: string) => new MlicError('TPM_QUOTE_INVALID', message, { hint: 'the PCR values must be read on the host together with the quote, over the same selection; make a new request on the host' });
  const banks = attest.pcrSelection.filter((s) => s.pcrs.length > 0);
  if (banks.length !== 1 || banks[0]!.hash !== TPM_ALG.SHA256) {
    const what = banks.length === 0 ? 'no PCRs' : banks.map((s) => (s.hash === TPM_ALG.SHA256 ? 'sha256' : `bank 0x${s.hash.toString(16).padStart(4, '0')}`)).join(' and ');
    throw invalid(`the quote covers ${what}; it must cover PCRs of the sha256 bank only`);
  }
  const quoted = [...banks[0]!.pcrs].sort((a, b) => a - b);
  const given = Object.keys(values.sha256).sort(byIndex).map(Number);
  if (quoted.length !== given.length || quoted.some((x, n) => x !== given[n]))
    throw invalid(`the quote covers sha256 PCRs ${quoted.join(',')} but the request's PCR values are for ${given.join(',')}`);
  const want = pcrDigest(values, quoted);
  if (attest.pcrDigest.length !== want.length || !timingSafeEqual(attest.pcrDigest, want))
    throw invalid(`the quote's PCR digest does not match the request's PCR values (sha256 PCRs ${quoted.join(',')}): they are not the values the TPM quoted`);
  return quoted;
}

/**
 * A PCR policy (a vendor's file): {"sha256": {"0": "<hex>", "7": ["<hex>", "<hex>"]}}, each PCR
 * with one allowed value or a non-empty list of them; hex in either case, kept lowercase.
 * FORMAT_INVALID naming the bad field otherwise.
 */
export function parsePcrPolicy(text: string, what: string): PcrPolicy {
  const bad = (why: string, field?: string) =>
    new MlicError('FORMAT_INVALID', `${what}: ${why}`, {
      hint: 'a PCR policy is JSON: {"sha256": {"<index 0..23>": "<64 hex digits>" or ["<64 hex digits>", ...], ...}}',
      ...(field === undefined ? {} : { details: { field } }),
    });
  if (typeof text !== 'string') throw bad('not text');
  if (text.length > MAX_POLICY_BYTES) throw bad(`larger than ${MAX_POLICY_BYTES} bytes`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw bad(`not JSON (${(e as Error).message.slice(0, 120)})`);
  }
  if (!plainObject(doc)) throw bad('not a JSON object');
  for (const k of Object.keys(doc)) if (k !== 'sha256') throw bad(`unexpected field ${show(k)} (only the sha256 bank is supported)`, k);
  const bank = doc.sha256;
  if (!plainObject(bank)) throw bad('"sha256" is missing or not an object', 'sha256');
  const keys = Object.keys(bank);
  if (keys.length === 0) throw bad('"sha256" names no PCR', 'sha256');
  if (keys.length > PCR_COUNT) throw bad(`"sha256" has ${keys.length} entries, more than ${PCR_COUNT}`, 'sha256');
  for (const k of keys) if (!isIndex(k)) throw bad(`sha256: ${show(k)} is not a PCR index 0..${PCR_COUNT - 1} (decimal, no leading zeros)`, `sha256.${k}`);
  const sha256: Record<string, string[]> = {};
  for (const k of keys.sort(byIndex)) {
    const field = `sha256.${k}`;
    const raw = bank[k];
    const list = typeof raw === 'string' ? [raw] : raw;
    if (!Array.isArray(list)) throw bad(`${field} is neither a hex string nor a list of them`, field);
    if (list.length === 0) throw bad(`${field} is an empty list (it would allow nothing)`, field);
    if (list.length > MAX_ALLOWED_PER_PCR) throw bad(`${field} lists ${list.length} values, more than ${MAX_ALLOWED_PER_PCR}`, field);
    const allowed = new Set<string>();
    list.forEach((x: unknown, n: number) => {
      const f = typeof raw === 'string' ? field : `${field}[${n}]`;
      if (typeof x !== 'string' || !/^[0-9a-fA-F]{64}$/.test(x)) throw bad(`${f} is not 64 hex digits (a SHA-256 PCR value)`, f);
      allowed.add(x.toLowerCase());
    });
    sha256[k] = [...allowed];
  }
  return { sha256 };
}

/** Checks PCR values (already matched to a quote) against a PCR policy: every PCR the policy names must be present, with an allowed value. TPM_PCR_MISMATCH naming the first that is not. */
export function checkPcrPolicy(values: PcrValues, policy: PcrPolicy): void {
  const hint = "the host's boot state (firmware, boot loader, Secure Boot settings) differs from the policy; update the policy if this state is trusted";
  for (const k of Object.keys(policy.sha256).sort(byIndex)) {
    const allowed = policy.sha256[k] ?? [];
    const value = Object.hasOwn(values.sha256, k) ? values.sha256[k] : undefined;
    if (value === undefined)
      throw new MlicError('TPM_PCR_MISMATCH', `PCR ${k} (sha256) is not in the request, and the PCR policy requires it`, {
        hint: `the host must quote every PCR the policy names (${Object.keys(policy.sha256).sort(byIndex).join(',')})`,
        details: { pcr: Number(k), value: null },
      });
    if (!allowed.includes(value))
      throw new MlicError('TPM_PCR_MISMATCH', `PCR ${k} (sha256) is ${value}, which the PCR policy does not allow`, { hint, details: { pcr: Number(k), value } });
  }
}

/** A PCR policy that allows exactly these values (from a host known to be good). */
export function policyFromValues(values: PcrValues): PcrPolicy {
  assertPcrValues(values, 'the PCR values');
  const sha256: Record<string, string[]> = {};
  for (const k of Object.keys(values.sha256).sort(byIndex)) sha256[k] = [values.sha256[k]!];
  return { sha256 };
}
