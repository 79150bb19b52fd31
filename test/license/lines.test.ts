import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { parseRange, satisfies } from '../../src/format/semver-range.js';
import { parseSemver, versionLine } from '../../src/format/semver.js';
import { covers, coverInterval, linePos, MAX_LINE_INDEX } from '../../src/keys/derive.js';
import { grantNodes, lineIntervals } from '../../src/license/lines.js';
import { bundleKeyFromLicense } from '../../src/license/keys.js';
import { issueLicense } from '../../src/license/issue.js';
import { bundleKeyFromMaster } from '../../src/keys/derive.js';
import { generateVendorKey } from '../../src/keys/vendor.js';
import type { Manifest } from '../../src/format/manifest.js';

const M = MAX_LINE_INDEX;
const iv = (r: string) => lineIntervals(parseRange(r)!);
/** Does a licence for `range` carry a key that opens `version`'s line? */
const opens = (range: string, version: string) => {
  const pos = linePos(versionLine(parseSemver(version)!))!;
  return grantNodes(iv(range)).some((n) => n.tree === pos.tree && covers(n.depth, n.prefix, pos.index));
};

describe('version lines a range reaches (docs/FORMAT.md §4)', () => {
  it('bounded ranges reach exactly their lines', () => {
    expect(iv('^2')).toEqual({ major: [[2, 2]], zero: [] });
    expect(iv('>=2.1 <3')).toEqual({ major: [[2, 2]], zero: [] });
    expect(iv('>=2.1 <4')).toEqual({ major: [[2, 3]], zero: [] });
    expect(iv('>=2.1 <=4.0.0')).toEqual({ major: [[2, 4]], zero: [] });
    expect(iv('=2.1.0')).toEqual({ major: [[2, 2]], zero: [] });
    expect(iv('^0.3')).toEqual({ major: [], zero: [[3, 3]] });
    expect(iv('1.x || 3.x')).toEqual({ major: [[1, 1], [3, 3]], zero: [] });
    // The red team's examples: ranges that touch 0.x lines stay bounded.
    expect(iv('<2')).toEqual({ major: [[1, 1]], zero: [[0, M]] });
    expect(iv('>=0.9.0 <1.1.0')).toEqual({ major: [[1, 1]], zero: [[9, M]] });
    expect(iv('<1')).toEqual({ major: [], zero: [[0, M]] });
  });

  it('unbounded ranges reach every later line and no earlier one', () => {
    expect(iv('>=2')).toEqual({ major: [[2, M]], zero: [] });
    expect(iv('*')).toEqual({ major: [[1, M]], zero: [[0, M]] });
    expect(opens('>=2', '1.9.0')).toBe(false);
    expect(opens('>=2', '4000000.0.0')).toBe(true);
  });

  it('a bounded range never carries a key for 3.0.0 or any later major (the red team: <2 and >=0.9.0 <1.1.0 used to carry the model key)', () => {
    for (const r of ['<2', '>=0.9.0 <1.1.0', '<1', '^1', '~1.2', '1.x || 0.5.x'])
      for (const v of ['2.0.0', '3.0.0', '17.0.0', '4294967295.0.0']) expect(opens(r, v), `${r} must not open ${v}`).toBe(false);
    expect(opens('<2', '0.0.1')).toBe(true);
    expect(opens('<2', '1.99.0')).toBe(true);
    expect(opens('>=0.9.0 <1.1.0', '0.8.0')).toBe(false);
  });

  it('even with the policy check bypassed, a <2 licence cannot produce the key of a 3.0.0 bundle', () => {
    const vendor = generateVendorKey('acme');
    const { payload } = issueLicense({ key: vendor, model: 'm', versions: { policy: 'range', range: '<2' }, perpetual: true });
    const manifestOf = (version: string): Pick<Manifest, 'bundleId' | 'encryption' | 'model'> => ({
      bundleId: '0123456789abcdef0123456789abcdef',
      model: { name: 'm', version, releaseDate: '2026-01-01T00:00:00Z' },
      encryption: { aead: 'AES-256-GCM-STREAM-v1', kdf: 'HKDF-SHA256-v2', line: versionLine(parseSemver(version)!), keyCommitment: '0'.repeat(64) },
    });
    expect(() => bundleKeyFromLicense(payload, manifestOf('3.0.0'), undefined)).toThrow(/carries no key/);
    for (const v of ['0.1.0', '0.9.3', '1.4.0']) {
      const m = manifestOf(v);
      expect(bundleKeyFromLicense(payload, m, undefined).equals(bundleKeyFromMaster(vendor.master, 'm', m.encryption.line, m.bundleId))).toBe(true);
    }
  });

  it('range covers are exact and small', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: M }), fc.integer({ min: 0, max: M }), (x, y) => {
        const [a, b] = x <= y ? [x, y] : [y, x];
        const nodes = coverInterval(a, b);
        expect(nodes.length).toBeLessThanOrEqual(64);
        // Contiguous, aligned blocks that tile [a, b] exactly.
        let next = a;
        for (const [depth, prefix] of nodes) {
          const size = 2 ** (32 - depth);
          expect(prefix * size).toBe(next);
          next += size;
        }
        expect(next).toBe(b + 1);
      }),
      { numRuns: 2000 },
    );
  });

  it('every version a range admits is in a line its licence can open (completeness, random ranges)', () => {
    const part = fc.integer({ min: 0, max: 12 });
    const ver = fc.tuple(part, part, part, fc.constantFrom('', '-alpha', '-0', '-rc.1')).map(([a, b, c, pre]) => `${a}.${b}.${c}${pre}`);
    const op = fc.constantFrom('', '=', '<', '<=', '>', '>=', '^', '~');
    const partial = fc.oneof(ver, fc.tuple(part, part).map(([a, b]) => `${a}.${b}`), part.map(String), fc.constant('*'), part.map((a) => `${a}.x`));
    const set = fc.array(fc.tuple(op, partial).map(([o, p]) => `${o}${p}`), { minLength: 1, maxLength: 3 }).map((xs) => xs.join(' '));
    const range = fc.array(set, { minLength: 1, maxLength: 3 }).map((xs) => xs.join(' || '));
    fc.assert(
      fc.property(range, fc.array(ver, { minLength: 1, maxLength: 10 }), (r, vs) => {
        const parsed = parseRange(r);
        if (!parsed) return;
        const nodes = grantNodes(lineIntervals(parsed));
        for (const v of vs) {
          const sv = parseSemver(v)!;
          if (!satisfies(sv, parsed)) continue;
          const pos = linePos(versionLine(sv))!;
          expect(nodes.some((n) => n.tree === pos.tree && covers(n.depth, n.prefix, pos.index)), `${v} satisfies ${r}`).toBe(true);
        }
      }),
      { numRuns: 3000 },
    );
  });
});
