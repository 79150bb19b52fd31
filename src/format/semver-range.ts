/**
 * Version ranges, npm style (a documented subset): comparator sets joined by `||`; each set is
 * space-separated comparators `<`, `<=`, `>`, `>=`, `=` (or bare), caret `^`, tilde `~`,
 * x-ranges (`2`, `2.x`, `2.1.*`, `*`) and hyphen ranges `1.2.3 - 2.3.4`. A prerelease version
 * satisfies a set only if some comparator in it names the same major.minor.patch with a
 * prerelease (npm's rule). Pure.
 */
import { compareSemver, parseSemver, type SemVer } from './semver.js';

type Op = '<' | '<=' | '>' | '>=' | '=';
interface Comparator {
  op: Op;
  v: SemVer;
}
export type Range = Comparator[][];

const PART = /^(?:0|[1-9]\d*|[xX*])$/;

function sv(major: number, minor: number, patch: number, pre: (string | number)[] = []): SemVer {
  return { major, minor, patch, prerelease: pre, build: [], raw: `${major}.${minor}.${patch}${pre.length ? '-' + pre.join('.') : ''}` };
}

interface Partial {
  major?: number;
  minor?: number;
  patch?: number;
  pre: (string | number)[];
}

function parsePartial(s: string): Partial | undefined {
  const full = parseSemver(s);
  if (full) return { major: full.major, minor: full.minor, patch: full.patch, pre: full.prerelease };
  const bits = s.split('.');
  if (bits.length > 3 || bits.some((b) => !PART.test(b))) return undefined;
  const nums = bits.map((b) => (/^[xX*]$/.test(b) ? undefined : Number(b)));
  // after a wildcard everything must be wildcard
  const firstWild = nums.findIndex((n) => n === undefined);
  if (firstWild >= 0 && nums.slice(firstWild).some((n) => n !== undefined)) return undefined;
  return { major: nums[0], minor: nums[1], patch: nums[2], pre: [] };
}

function expand(op: string, p: Partial): Comparator[] | undefined {
  const { major: M, minor: m, patch: pa } = p;
  if (M === undefined) return op === '' || op === '=' || op === '>=' || op === '<=' ? [] : op === '<' || op === '>' ? [{ op: '<', v: sv(0, 0, 0, [0]) }] : undefined;
  const lower = sv(M, m ?? 0, pa ?? 0, p.pre);
  const exactTriple = m !== undefined && pa !== undefined;
  switch (op) {
    case '^': {
      let upper: SemVer;
      if (M > 0 || m === undefined) upper = sv(M + 1, 0, 0, [0]);
      else if (m > 0 || pa === undefined) upper = sv(0, m + 1, 0, [0]);
      else upper = sv(0, 0, pa + 1, [0]);
      return [{ op: '>=', v: lower }, { op: '<', v: upper }];
    }
    case '~':
      return [{ op: '>=', v: lower }, { op: '<', v: m === undefined ? sv(M + 1, 0, 0, [0]) : sv(M, m + 1, 0, [0]) }];
    case '':
    case '=':
      if (exactTriple) return [{ op: '=', v: lower }];
      return [{ op: '>=', v: lower }, { op: '<', v: m === undefined ? sv(M + 1, 0, 0, [0]) : sv(M, m + 1, 0, [0]) }];
    case '>=':
      return [{ op: '>=', v: lower }];
    case '<':
      return [{ op: '<', v: exactTriple ? lower : sv(M, m ?? 0, 0, [0]) }];
    case '>':
      if (exactTriple) return [{ op: '>', v: lower }];
      return [{ op: '>=', v: m === undefined ? sv(M + 1, 0, 0, [0]) : sv(M, m + 1, 0, [0]) }];
    case '<=':
      if (exactTriple) return [{ op: '<=', v: lower }];
      return [{ op: '<', v: m === undefined ? sv(M + 1, 0, 0, [0]) : sv(M, m + 1, 0, [0]) }];
    default:
      return undefined;
  }
}

/** Parses a range; returns undefined when it is malformed. */
export function parseRange(text: string): Range | undefined {
  if (typeof text !== 'string' || text.length > 1024) return undefined;
  const sets: Range = [];
  for (const alt of text.split('||')) {
    const s = alt.trim().replace(/(<=|>=|<|>|=|\^|~)\s+/g, '$1');
    const set: Comparator[] = [];
    const hy = /^(\S+)\s+-\s+(\S+)$/.exec(s);
    if (hy) {
      const a = parsePartial(hy[1]!);
      const b = parsePartial(hy[2]!);
      const lo = a && expand('>=', a);
      const hi = b && expand('<=', b);
      if (!lo || !hi) return undefined;
      set.push(...lo, ...hi);
    } else if (s !== '') {
      for (const tok of s.split(/\s+/)) {
        const m = /^(<=|>=|<|>|=|\^|~)?(.+)$/.exec(tok);
        if (!m) return undefined;
        const p = parsePartial(m[2]!.replace(/^v/, ''));
        if (!p) return undefined;
        const c = expand(m[1] ?? '', p);
        if (!c) return undefined;
        set.push(...c);
      }
    }
    sets.push(set);
  }
  return sets;
}

function test(c: Comparator, v: SemVer): boolean {
  const r = compareSemver(v, c.v);
  switch (c.op) {
    case '<':
      return r < 0;
    case '<=':
      return r <= 0;
    case '>':
      return r > 0;
    case '>=':
      return r >= 0;
    case '=':
      return r === 0;
  }
}

export function satisfies(v: SemVer, range: Range): boolean {
  return range.some((set) => {
    if (!set.every((c) => test(c, v))) return false;
    if (v.prerelease.length === 0) return true;
    return set.some((c) => c.v.prerelease.length > 0 && !(c.v.prerelease.length === 1 && c.v.prerelease[0] === 0 && c.op === '<') && c.v.major === v.major && c.v.minor === v.minor && c.v.patch === v.patch);
  });
}

/**
 * The key lines ("X" or "0.Y") a range can reach, or undefined when that set is unbounded or
 * too wide (more than 64 lines, or crossing from 0.x into 1.x): then only the model key covers it.
 */
export function linesOfRange(range: Range): string[] | undefined {
  const lines = new Set<string>();
  for (const set of range) {
    let lo = sv(0, 0, 0, [0]);
    let hi: SemVer | undefined;
    let hiInclusive = false;
    for (const c of set) {
      if ((c.op === '>=' || c.op === '>' || c.op === '=') && compareSemver(c.v, lo) > 0) lo = c.v;
      if ((c.op === '<' || c.op === '<=' || c.op === '=') && (!hi || compareSemver(c.v, hi) < 0)) {
        hi = c.v;
        hiInclusive = c.op !== '<';
      }
    }
    if (!hi) return undefined;
    // The last line reached: an exclusive bound at the very start of a line (X.0.0-0 or 0.Y.0-0) does not reach it.
    const atLineStart = !hiInclusive && hi.patch === 0 && (hi.major === 0 || hi.minor === 0) && hi.prerelease.length === 1 && hi.prerelease[0] === 0;
    let last = hi.major === 0 ? { major: 0, minor: hi.minor } : { major: hi.major, minor: 0 };
    if (atLineStart) {
      if (hi.major === 0) {
        if (hi.minor === 0) continue; // nothing below 0.0.0-0
        last = { major: 0, minor: hi.minor - 1 };
      } else if (hi.major === 1) return undefined; // the range reaches down into every 0.x line
      else last = { major: hi.major - 1, minor: 0 };
    }
    if (compareSemver(lo, hi) > 0) continue; // empty set
    if (lo.major === 0 && last.major > 0) return undefined;
    if (last.major === 0) {
      if (last.minor - lo.minor >= 64) return undefined;
      for (let m = lo.minor; m <= last.minor; m++) lines.add(`0.${m}`);
    } else {
      if (last.major - lo.major >= 64) return undefined;
      for (let M = lo.major; M <= last.major; M++) lines.add(String(M));
    }
  }
  return [...lines];
}
