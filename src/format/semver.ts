/** Semantic Versioning 2.0.0: parse and compare (pure). */
export interface SemVer {
  major: number;
  minor: number;
  patch: number;
  prerelease: (string | number)[];
  build: string[];
  raw: string;
}

const RE =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

export function parseSemver(s: string): SemVer | undefined {
  if (typeof s !== 'string' || s.length > 256) return undefined;
  const m = RE.exec(s);
  if (!m) return undefined;
  const nums = [m[1], m[2], m[3]].map(Number);
  if (nums.some((n) => !Number.isSafeInteger(n))) return undefined;
  return {
    major: nums[0]!,
    minor: nums[1]!,
    patch: nums[2]!,
    // npm semver's representation: a numeric identifier below MAX_SAFE_INTEGER becomes a number,
    // a larger one stays a string (and still compares numerically, see compareIdentifiers).
    prerelease: m[4] ? m[4].split('.').map((p) => (/^\d+$/.test(p) && Number(p) < Number.MAX_SAFE_INTEGER ? Number(p) : p)) : [],
    build: m[5] ? m[5].split('.') : [],
    raw: s,
  };
}

const NUMERIC = /^[0-9]+$/;

/** npm semver's compareIdentifiers: numeric identifiers (numbers, or digit strings too large for one) compare as numbers and sort before alphanumeric ones. */
function compareIdentifiers(a: string | number, b: string | number): number {
  if (typeof a === 'number' && typeof b === 'number') return a === b ? 0 : a < b ? -1 : 1;
  const as = String(a);
  const bs = String(b);
  const anum = NUMERIC.test(as);
  const bnum = NUMERIC.test(bs);
  if (anum && bnum) {
    const x = Number(as);
    const y = Number(bs);
    return x === y ? 0 : x < y ? -1 : 1;
  }
  if (anum) return -1;
  if (bnum) return 1;
  return as === bs ? 0 : as < bs ? -1 : 1;
}

/**
 * Orders two versions exactly like npm semver's `compare` (build metadata ignored). One npm quirk is
 * kept on purpose: two different digit strings beyond 2^53 that convert to the same number compare
 * equal and end the comparison there.
 */
export function compareSemver(a: SemVer, b: SemVer): number {
  for (const k of ['major', 'minor', 'patch'] as const) if (a[k] !== b[k]) return a[k] < b[k] ? -1 : 1;
  const pa = a.prerelease;
  const pb = b.prerelease;
  if (pa.length === 0 || pb.length === 0) return pa.length === pb.length ? 0 : pa.length === 0 ? 1 : -1;
  for (let i = 0; ; i++) {
    const x = pa[i];
    const y = pb[i];
    if (x === undefined && y === undefined) return 0;
    if (y === undefined) return 1;
    if (x === undefined) return -1;
    if (x === y) continue;
    return compareIdentifiers(x, y);
  }
}

/**
 * The key line a version belongs to (docs/FORMAT.md §4): "X" for X >= 1, "0.Y" for 0.Y.Z,
 * following semver's rule that 0.x minors are incompatible.
 */
export function versionLine(v: SemVer): string {
  return v.major === 0 ? `0.${v.minor}` : String(v.major);
}
