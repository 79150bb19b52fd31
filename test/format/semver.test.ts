import { describe, it, expect } from 'vitest';
import { parseSemver, compareSemver } from '../../src/format/semver.js';
import { parseRange, satisfies } from '../../src/format/semver-range.js';

const v = (s: string) => parseSemver(s)!;
const sat = (ver: string, range: string) => satisfies(v(ver), parseRange(range)!);

describe('semver', () => {
  it('parses strictly', () => {
    for (const ok of ['0.0.0', '1.2.3', '1.2.3-rc.1', '1.2.3+build.5', '10.20.30-alpha-1.0+x']) expect(parseSemver(ok), ok).toBeDefined();
    for (const bad of ['1.2', '01.2.3', '1.2.3-', 'v1.2.3', '1.2.3.4', '', ' 1.2.3', '1.2.3-01']) expect(parseSemver(bad), bad).toBeUndefined();
  });
  it('orders by the spec, prereleases first', () => {
    const order = ['1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2', '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0', '1.0.1', '1.1.0', '2.0.0'];
    for (let i = 0; i + 1 < order.length; i++) expect(compareSemver(v(order[i]!), v(order[i + 1]!)), `${order[i]} < ${order[i + 1]}`).toBe(-1);
    expect(compareSemver(v('1.0.0+a'), v('1.0.0+b'))).toBe(0);
  });
});

describe('ranges', () => {
  it.each([
    ['^2', ['2.0.0', '2.1.0', '2.5.0', '2.99.99'], ['1.9.9', '3.0.0', '3.0.0-rc.1', '2.1.0-rc.1']],
    ['>=2.1 <3', ['2.1.0', '2.5.0'], ['2.0.0', '3.0.0']],
    ['=2.1.0', ['2.1.0'], ['2.1.1', '2.0.0']],
    ['~2.1', ['2.1.0', '2.1.9'], ['2.2.0']],
    ['^0.3.1', ['0.3.1', '0.3.9'], ['0.4.0', '0.3.0']],
    ['1.x || >=3.1.0 <3.2', ['1.0.0', '1.9.0', '3.1.5'], ['2.0.0', '3.2.0']],
    ['1.2.3 - 2.3', ['1.2.3', '2.3.9'], ['2.4.0', '1.2.2']],
    ['*', ['0.0.1', '9.9.9'], ['1.0.0-rc.1']],
    ['>=2.0.0-rc.1 <3', ['2.0.0-rc.1', '2.0.0-rc.2', '2.0.0'], ['2.1.0-rc.1']],
  ])('%s', (range, yes, no) => {
    for (const y of yes) expect(sat(y, range), `${y} in ${range}`).toBe(true);
    for (const n of no) expect(sat(n, range), `${n} not in ${range}`).toBe(false);
  });
  it('rejects malformed ranges', () => {
    for (const bad of ['^', '>=x.1', '2.x.3', 'foo', '>>2']) expect(parseRange(bad), bad).toBeUndefined();
  });
});
