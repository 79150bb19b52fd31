/**
 * Version ranges, npm style (a documented subset of npm `semver` ranges, evaluated exactly like
 * `semver.satisfies(version, range)` with default options): comparator sets joined by `||`; each
 * set is whitespace-separated comparators `<`, `<=`, `>`, `>=`, `=` (or bare), caret `^`, tilde
 * `~`, x-ranges (`2`, `2.x`, `2.1.*`, `*`) and hyphen ranges `1.2.3 - 2.3.4`. A version may carry
 * a leading `v`, an operator may be followed by whitespace, and a full version may carry a
 * prerelease and build metadata (ignored). A prerelease version satisfies a set only if some
 * comparator in it, after desugaring, names the same major.minor.patch with a prerelease (npm's
 * rule; the `-0` upper bounds desugaring adds can never admit one).
 *
 * Rejected (parseRange returns undefined) rather than guessed: whatever npm rejects, including any
 * number it cannot represent (a component, or a bound it derives such as `^N` -> `<N+1.0.0-0`,
 * beyond Number.MAX_SAFE_INTEGER); and npm-isms outside that grammar, such as `~>1`, `^=1`, `>==1`,
 * `vv1`, `^1.x.3`, `1.2.x-beta`, `1.2+build` or a lone `+build` token. Pure; input is bounded and
 * no regular expression here can backtrack badly.
 */
import { compareSemver, parseSemver, type SemVer } from './semver.js';

type Op = '<' | '<=' | '>' | '>=' | '=';
interface Comparator {
  op: Op;
  v: SemVer;
}
export type Range = Comparator[][];

function sv(major: number, minor: number, patch: number, pre: (string | number)[] = []): SemVer {
  return { major, minor, patch, prerelease: pre, build: [], raw: `${major}.${minor}.${patch}${pre.length ? '-' + pre.join('.') : ''}` };
}

/** Thrown (and caught by parseRange) when a range names or implies a number npm cannot represent. */
class Unrepresentable extends Error {}

/**
 * A comparator, or null for npm's "any" comparator. npm rewrites a comparator whose text is exactly
 * `>=0.0.0` to "any" (which, unlike `>=0.0.0`, also passes 0.0.0 prereleases); a literal written
 * with a `v` (`>=v0.0.0`) keeps its text and so stays a real comparator.
 */
function comp(op: Op, v: SemVer, literalV = false): Comparator | null {
  for (const n of [v.major, v.minor, v.patch]) if (!Number.isSafeInteger(n)) throw new Unrepresentable();
  if (op === '>=' && !literalV && v.major === 0 && v.minor === 0 && v.patch === 0 && v.prerelease.length === 0) return null;
  return { op, v };
}
const lower = (M: number, m: number, p: number, pre: (string | number)[] = []) => comp('>=', sv(M, m, p, pre));
/** An exclusive upper bound at the very bottom of a version: `<M.m.p-0`. */
const below = (M: number, m: number, p: number) => comp('<', sv(M, m, p, [0]));

/** A partial version: undefined components are wildcards (`x`, `X`, `*` or absent). */
interface Partial {
  M?: number;
  m?: number;
  p?: number;
  /** the full version (prerelease kept, build dropped) when all three components are numbers */
  full?: SemVer;
  /** written with a leading `v` */
  v: boolean;
}

const NUM = /^(?:0|[1-9][0-9]*)$/;
const WILD = /^[xX*]$/;
const BUILD = /^[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*$/;

function parsePartial(tok: string): Partial | undefined {
  let s = tok;
  const v = s.startsWith('v');
  if (v) s = s.slice(1);
  const plus = s.indexOf('+');
  if (plus >= 0) {
    if (!BUILD.test(s.slice(plus + 1))) return undefined;
    s = s.slice(0, plus);
  }
  const full = parseSemver(s);
  if (full) {
    // npm limits a version's text (with its `v`, without build metadata) to 256 characters.
    if (s.length + (v ? 1 : 0) > 256) return undefined;
    return { M: full.major, m: full.minor, p: full.patch, full: { ...full, build: [], raw: s }, v };
  }
  if (plus >= 0) return undefined; // build metadata only after a full version
  const bits = s.split('.');
  if (bits.length > 3) return undefined;
  const nums: (number | undefined)[] = [];
  for (const b of bits) {
    if (WILD.test(b)) nums.push(undefined);
    else if (NUM.test(b) && nums.every((n) => n !== undefined)) {
      const n = Number(b);
      if (!Number.isSafeInteger(n)) return undefined;
      nums.push(n);
    } else return undefined; // not a component, or a number after a wildcard
  }
  if (nums.length === 3 && nums.every((n) => n !== undefined)) return undefined; // a full version parseSemver refused
  return { M: nums[0], m: nums[1], p: nums[2], v };
}

type Out = (Comparator | null)[];

/** npm's replaceXRange (and a plain comparator when nothing is a wildcard). */
function xrange(op: '' | Op, P: Partial): Out {
  const { M, m } = P;
  if (P.full) return [comp(op === '' ? '=' : op, P.full, P.v)];
  if (M === undefined) return op === '<' || op === '>' ? [below(0, 0, 0)] : [null];
  switch (op) {
    case '':
    case '=':
      return m === undefined ? [lower(M, 0, 0), below(M + 1, 0, 0)] : [lower(M, m, 0), below(M, m + 1, 0)];
    case '>':
      return [m === undefined ? lower(M + 1, 0, 0) : lower(M, m + 1, 0)];
    case '>=':
      return [lower(M, m ?? 0, 0)];
    case '<':
      return [below(M, m ?? 0, 0)];
    case '<=':
      return [m === undefined ? below(M + 1, 0, 0) : below(M, m + 1, 0)];
  }
}

/** npm's replaceCaret. */
function caret(P: Partial): Out {
  const { M, m, p } = P;
  if (M === undefined) return [null];
  if (m === undefined) return [lower(M, 0, 0), below(M + 1, 0, 0)];
  if (p === undefined) return M === 0 ? [lower(0, m, 0), below(0, m + 1, 0)] : [lower(M, m, 0), below(M + 1, 0, 0)];
  const lo = comp('>=', P.full!);
  if (M > 0) return [lo, below(M + 1, 0, 0)];
  return m > 0 ? [lo, below(0, m + 1, 0)] : [lo, below(0, 0, p + 1)];
}

/** npm's replaceTilde. */
function tilde(P: Partial): Out {
  const { M, m, p } = P;
  if (M === undefined) return [null];
  if (m === undefined) return [lower(M, 0, 0), below(M + 1, 0, 0)];
  return [p === undefined ? lower(M, m, 0) : comp('>=', P.full!), below(M, m + 1, 0)];
}

/** npm's hyphenReplace: `A - B`. */
function hyphen(A: Partial, B: Partial): Out {
  const out: Out = [];
  if (A.M !== undefined) out.push(A.full ? comp('>=', A.full, A.v) : lower(A.M, A.m ?? 0, 0));
  if (B.M !== undefined) out.push(B.full ? comp('<=', B.full) : B.m === undefined ? below(B.M + 1, 0, 0) : below(B.M, B.m + 1, 0));
  return out;
}

const OPS = ['<=', '>=', '<', '>', '=', '^', '~'] as const;

function parseSet(text: string): Comparator[] | undefined {
  const s = text.trim();
  if (s === '') return []; // npm: an empty set is "any"
  const toks = s.split(/\s+/);
  const out: Out = [];
  if (toks.length === 3 && toks[1] === '-') {
    const a = parsePartial(toks[0]!);
    const b = parsePartial(toks[2]!);
    if (!a || !b) return undefined;
    out.push(...hyphen(a, b));
  } else {
    for (let i = 0; i < toks.length; i++) {
      const tok = toks[i]!;
      const op = OPS.find((o) => tok.startsWith(o)) ?? '';
      // npm joins an operator to the version after it: `>= 1.2.3` is `>=1.2.3`.
      const rest = tok.length > op.length ? tok.slice(op.length) : op !== '' ? toks[++i] : undefined;
      const P = rest === undefined ? undefined : parsePartial(rest);
      if (!P) return undefined;
      out.push(...(op === '^' ? caret(P) : op === '~' ? tilde(P) : xrange(op, P)));
    }
  }
  return out.filter((c): c is Comparator => c !== null);
}

/** Parses a range; returns undefined when it is malformed or outside the supported grammar. */
export function parseRange(text: string): Range | undefined {
  if (typeof text !== 'string' || text.length > 1024) return undefined;
  const sets: Range = [];
  try {
    for (const alt of text.split('||')) {
      const set = parseSet(alt);
      if (!set) return undefined;
      sets.push(set);
    }
  } catch (e) {
    if (e instanceof Unrepresentable) return undefined;
    throw e;
  }
  // npm: when any set is "any" (no comparators left), the whole range is just that set, so
  // `* || >=3.0.0-alpha` admits no prerelease at all.
  if (sets.some((set) => set.length === 0)) return [[]];
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

/** npm's testSet for each set: all comparators pass, and a prerelease needs a comparator naming its tuple with a prerelease. */
export function satisfies(v: SemVer, range: Range): boolean {
  return range.some((set) => {
    if (!set.every((c) => test(c, v))) return false;
    if (v.prerelease.length === 0) return true;
    return set.some((c) => c.v.prerelease.length > 0 && c.v.major === v.major && c.v.minor === v.minor && c.v.patch === v.patch);
  });
}
