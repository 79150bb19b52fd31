/**
 * Which version lines a version range reaches, as intervals of the two line trees
 * (docs/FORMAT.md §4): line "X" is leaf X of the "major" tree, line "0.Y" leaf Y of the "zero"
 * tree. A licence for a range is granted exactly the node keys covering these intervals, so a
 * bounded range never carries a key that opens a line it does not reach, and an unbounded one
 * (`>=2`) opens every later line but no earlier one. Pure.
 */
import { compareSemver, type SemVer } from '../format/semver.js';
import type { Range } from '../format/semver-range.js';
import { coverInterval, MAX_LINE_INDEX, type Tree } from '../keys/derive.js';

export type Interval = [number, number];

export interface LineIntervals {
  major: Interval[];
  zero: Interval[];
}

const MIN: SemVer = { major: 0, minor: 0, patch: 0, prerelease: [0], build: [], raw: '0.0.0-0' };

/** The smallest version of the line that `v` is in: X.0.0-0, or 0.Y.0-0. */
function lineStart(v: SemVer): boolean {
  return v.patch === 0 && (v.major === 0 || v.minor === 0);
}

/** Intervals of lines that some version satisfying `range` can be in (an over-approximation only where a set is empty in ways not visible from its bounds). */
export function lineIntervals(range: Range): LineIntervals {
  const out: LineIntervals = { major: [], zero: [] };
  for (const set of range) {
    let lo = MIN;
    let hi: SemVer | undefined;
    let hiInclusive = false;
    for (const c of set) {
      if ((c.op === '>=' || c.op === '>' || c.op === '=') && compareSemver(c.v, lo) > 0) lo = c.v;
      if ((c.op === '<' || c.op === '<=' || c.op === '=') && (!hi || compareSemver(c.v, hi) < 0 || (compareSemver(c.v, hi) === 0 && c.op === '<'))) {
        hi = c.v;
        hiInclusive = c.op !== '<';
      }
    }
    if (hi && (compareSemver(lo, hi) > 0 || (compareSemver(lo, hi) === 0 && !hiInclusive))) continue; // empty set
    // The last line reached. An exclusive bound at the start of a line (X.0.0-0, 0.Y.0-0, or
    // X.0.0 / 0.Y.0 when no comparator of the set admits that tuple's prereleases) reaches only
    // the line before it.
    let last: { major: number; minor: number } | undefined; // undefined: unbounded
    if (hi) {
      last = { major: hi.major, minor: hi.major === 0 ? hi.minor : 0 };
      const prereleasesAdmitted = set.some((c) => c.v.prerelease.length > 0 && c.v.major === hi!.major && c.v.minor === hi!.minor && c.v.patch === hi!.patch && !(c.v.prerelease.length === 1 && c.v.prerelease[0] === 0));
      const startsLine = lineStart(hi) && ((hi.prerelease.length === 1 && hi.prerelease[0] === 0) || (hi.prerelease.length === 0 && !prereleasesAdmitted));
      if (!hiInclusive && startsLine) {
        if (hi.major === 0) {
          if (hi.minor === 0) continue; // nothing below 0.0.0
          last = { major: 0, minor: hi.minor - 1 };
        } else if (hi.major === 1) last = { major: 0, minor: Infinity }; // every 0.x line
        else last = { major: hi.major - 1, minor: 0 };
      }
    }
    if (lo.major === 0) {
      const zeroEnd = last === undefined || last.major > 0 ? MAX_LINE_INDEX : last.minor;
      out.zero.push([lo.minor, Math.min(zeroEnd, MAX_LINE_INDEX)]);
      if (last === undefined || last.major >= 1) out.major.push([1, last === undefined ? MAX_LINE_INDEX : Math.min(last.major, MAX_LINE_INDEX)]);
    } else if (lo.major <= MAX_LINE_INDEX) out.major.push([lo.major, last === undefined ? MAX_LINE_INDEX : Math.min(last.major, MAX_LINE_INDEX)]);
  }
  return { major: merge(out.major), zero: merge(out.zero) };
}

/** Every line, for rolling access and maintenance windows without a range. */
export const ALL_LINES: LineIntervals = { major: [[0, MAX_LINE_INDEX]], zero: [[0, MAX_LINE_INDEX]] };

function merge(xs: Interval[]): Interval[] {
  const s = xs.filter(([a, b]) => a <= b).sort((x, y) => x[0] - y[0]);
  const out: Interval[] = [];
  for (const [a, b] of s) {
    const prev = out[out.length - 1];
    if (prev && a <= prev[1] + 1) prev[1] = Math.max(prev[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** The tree nodes a licence grants for these intervals. Leaf 0 of the major tree is no line, so [1, b] may be widened to [0, b]. */
export function grantNodes(iv: LineIntervals): { tree: Tree; depth: number; prefix: number }[] {
  const nodes: { tree: Tree; depth: number; prefix: number }[] = [];
  for (const [a, b] of iv.major) for (const [depth, prefix] of coverInterval(a === 1 ? 0 : a, b)) nodes.push({ tree: 'major', depth, prefix });
  for (const [a, b] of iv.zero) for (const [depth, prefix] of coverInterval(a, b)) nodes.push({ tree: 'zero', depth, prefix });
  return nodes;
}
