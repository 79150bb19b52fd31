import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { canonicalJson } from '../../src/format/canonical.js';

/** The reading side of canonical JSON: parsing then re-serializing gives the same text. */
function parseCanonicalJson(text: string): unknown {
  const v: unknown = JSON.parse(text);
  if (canonicalJson(v) !== text) throw new SyntaxError('not canonical JSON');
  return v;
}
import { parseSemver, compareSemver } from '../../src/format/semver.js';
import { parseRange } from '../../src/format/semver-range.js';
import { parseSignature, serializeSignature, parsePublicKey, serializePublicKey } from '../../src/format/minisign.js';
import { parseLicenseText } from '../../src/format/license.js';
import { parseHeader, entryHeader } from '../../src/format/tar.js';
import { assertManifest } from '../../src/format/manifest.js';
import { MlicError } from '../../src/errors.js';

const onlyMlicErrors = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    if (!(e instanceof MlicError)) throw e;
  }
};

describe('parsers: properties (fast-check)', () => {
  it('canonical JSON: parse(serialize(x)) == x, and serialize is stable under key order', () => {
    const json = fc.letrec((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, fc.constant(null), fc.boolean(), fc.integer(), fc.string(), fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(fc.string({ maxLength: 6 }), tie('v'), { maxKeys: 4 })),
    })).v;
    fc.assert(
      fc.property(json, (x) => {
        const s = canonicalJson(x);
        expect(parseCanonicalJson(s)).toEqual(JSON.parse(s));
        expect(canonicalJson(JSON.parse(s))).toBe(s);
      }),
      { numRuns: 300 },
    );
  });

  it('semver: every generated version parses back to itself and compares equal to itself', () => {
    const ident = fc.oneof(fc.integer({ min: 0, max: 999 }).map(String), fc.stringMatching(/^[a-z][a-z0-9-]{0,5}$/));
    const ver = fc.tuple(fc.nat(99), fc.nat(99), fc.nat(99), fc.array(ident, { maxLength: 3 })).map(([a, b, c, pre]) => `${a}.${b}.${c}${pre.length ? '-' + pre.join('.') : ''}`);
    fc.assert(
      fc.property(ver, (v) => {
        const p = parseSemver(v);
        expect(p?.raw).toBe(v);
        expect(compareSemver(p!, parseSemver(v)!)).toBe(0);
        expect(parseRange(`=${v}`)).toBeDefined();
      }),
      { numRuns: 300 },
    );
  });

  it('minisign files: serialize/parse round trip; garbage never throws anything but MlicError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 8, maxLength: 8 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 64, maxLength: 64 }), fc.stringMatching(/^[ -~]{0,40}$/), (kid, pk, sig, comment) => {
        const k = { keyId: Buffer.from(kid), publicKey: Buffer.from(pk) };
        expect(parsePublicKey(serializePublicKey(k))).toEqual(k);
        const s = { untrustedComment: 'u', alg: 'ED' as const, keyId: Buffer.from(kid), signature: Buffer.from(sig), trustedComment: comment, globalSignature: Buffer.from(sig) };
        expect(parseSignature(serializeSignature(s))).toEqual(s);
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), (t) => {
        onlyMlicErrors(() => parseSignature(t));
        onlyMlicErrors(() => parsePublicKey(t));
        onlyMlicErrors(() => parseLicenseText(t));
        onlyMlicErrors(() => parseLicenseText(`-----BEGIN MLIC LICENSE-----\n${Buffer.from(t).toString('base64')}\n-----END MLIC LICENSE-----\n`));
        onlyMlicErrors(() => {
          let v: unknown;
          try {
            v = JSON.parse(t);
          } catch {
            return;
          }
          assertManifest(v);
        });
      }),
      { numRuns: 500 },
    );
  });

  it('tar headers: every header we write parses back; random blocks never parse as valid by accident', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z0-9/._-]{1,60}$/), fc.integer({ min: 0, max: 8 ** 11 - 1 }), fc.integer({ min: 0, max: 8 ** 11 - 1 }), (name, size, mtime) => {
        expect(parseHeader(entryHeader(name, size, mtime))).toEqual({ name, size, type: '0' });
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 512, maxLength: 512 }), (b) => {
        expect(parseHeader(b)).toBeUndefined();
      }),
      { numRuns: 300 },
    );
  });
});
