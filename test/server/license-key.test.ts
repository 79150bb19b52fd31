import { describe, it, expect } from 'vitest';
import { generateLicenseKey, licenseKeyHash, normalizeLicenseKey } from '../../src/server/license-key.js';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

describe('licence keys', () => {
  it('look like MLIC-XXXXX-XXXXX-XXXXX-XXXXX, are unique, and read back as typed in any case, with O/0 and I/L/1 alike', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const k = generateLicenseKey();
      expect(k).toMatch(/^MLIC-[0-9A-HJKMNP-TV-Z]{5}(-[0-9A-HJKMNP-TV-Z]{5}){3}$/);
      expect(normalizeLicenseKey(k)).toBe(k);
      expect(normalizeLicenseKey(k.toLowerCase())).toBe(k);
      expect(normalizeLicenseKey(` ${k.replace(/-/g, ' ')} `)).toBe(k);
      expect(normalizeLicenseKey(k.replace(/0/g, 'o').replace(/1/g, 'l'))).toBe(k);
      seen.add(k);
    }
    expect(seen.size).toBe(2000);
    expect(licenseKeyHash(generateLicenseKey())).toMatch(/^[0-9a-f]{64}$/);
  });

  it('catch every single mistyped symbol and every swap of two different neighbours but 0 and Z (Luhn mod 32 cannot see that one)', () => {
    for (let n = 0; n < 200; n++) {
      const k = generateLicenseKey();
      const body = k.slice(5).replace(/-/g, '');
      const fmt = (b: string) => `MLIC-${b.slice(0, 5)}-${b.slice(5, 10)}-${b.slice(10, 15)}-${b.slice(15)}`;
      for (let i = 0; i < body.length; i++) {
        for (const c of ALPHABET) if (c !== body[i]) expect(normalizeLicenseKey(fmt(body.slice(0, i) + c + body.slice(i + 1))), `${k} @${i}=${c}`).toBeUndefined();
        const pair = [body[i], body[i + 1]].sort().join('');
        if (i + 1 < body.length && body[i] !== body[i + 1] && pair !== '0Z') expect(normalizeLicenseKey(fmt(body.slice(0, i) + body[i + 1] + body[i] + body.slice(i + 2)))).toBeUndefined();
      }
    }
  });

  it('refuse what is not a key', () => {
    const k = generateLicenseKey();
    for (const bad of ['', 'MLIC', k.slice(0, -1), k + 'A', k.replace('MLIC', 'MLIX'), k.slice(0, -1) + 'U', k.slice(0, -1) + '*']) expect(normalizeLicenseKey(bad)).toBeUndefined();
  });
});
