/**
 * Licence keys: what a vendor hands a customer for online activation, `MLIC-XXXXX-XXXXX-XXXXX-XXXXX`.
 * Nineteen random symbols (95 bits) of Crockford's base32 and a check symbol (Luhn mod 32), so a
 * mistyped symbol, or two swapped neighbours (all but 0 and Z, Luhn mod N's one blind pair), is
 * caught before any request. Read case-insensitively,
 * with O as 0 and I and L as 1; the server stores only the SHA-256 of the normalized key.
 */
import { createHash, randomBytes } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const N = 32;
const SYMBOLS = 20;

function checkSymbol(values: number[]): number {
  // Luhn mod N over the symbols' values, from the right
  let sum = 0;
  let factor = 2;
  for (let i = values.length - 1; i >= 0; i--) {
    let addend = factor * values[i]!;
    factor = factor === 2 ? 1 : 2;
    addend = Math.floor(addend / N) + (addend % N);
    sum += addend;
  }
  return (N - (sum % N)) % N;
}

export function generateLicenseKey(): string {
  const bytes = randomBytes(SYMBOLS - 1);
  const values = [...bytes].map((b) => b & 31);
  values.push(checkSymbol(values));
  const s = values.map((v) => ALPHABET[v]).join('');
  return `MLIC-${s.slice(0, 5)}-${s.slice(5, 10)}-${s.slice(10, 15)}-${s.slice(15)}`;
}

/** The canonical form of a key as typed, or undefined when it is not one (wrong length, symbol or check). */
export function normalizeLicenseKey(typed: string): string | undefined {
  const t = typed.trim().toUpperCase().replace(/[\s-]/g, '');
  if (!t.startsWith('MLIC')) return undefined;
  const body = t.slice(4).replace(/O/g, '0').replace(/[IL]/g, '1');
  if (body.length !== SYMBOLS) return undefined;
  const values: number[] = [];
  for (const c of body) {
    const v = ALPHABET.indexOf(c);
    if (v < 0) return undefined;
    values.push(v);
  }
  if (checkSymbol(values.slice(0, -1)) !== values[SYMBOLS - 1]) return undefined;
  return `MLIC-${body.slice(0, 5)}-${body.slice(5, 10)}-${body.slice(10, 15)}-${body.slice(15)}`;
}

/** What the server stores and looks keys up by. */
export function licenseKeyHash(normalized: string): string {
  return createHash('sha256').update(normalized, 'utf8').digest('hex');
}
