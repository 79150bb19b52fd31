/**
 * The field patterns mlic's formats share (docs/FORMAT.md conventions), in one place: ids, key
 * ids, names, dates, base64. Pure.
 */

/** 16 random bytes as 32 lowercase hex digits: bundle, licence, request, report ids. */
export const HEX32_RE = /^[0-9a-f]{32}$/;
/** SHA-256 and other 32-byte values as 64 lowercase hex digits. */
export const HEX64_RE = /^[0-9a-f]{64}$/;
/** A minisign key id as printed: 16 uppercase hex digits. */
export const KEYID_RE = /^[0-9A-F]{16}$/;
/** Model, feature, component, tier and key names. */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Meter metrics. */
export const METRIC_RE = /^[a-z][a-z0-9_.-]{0,63}$/;
/** ISO 3166 alpha-2 countries and region codes such as EU. */
export const REGION_RE = /^[A-Z]{2}$|^[A-Z][A-Za-z0-9-]{1,31}$/;
/** Times as mlic writes them: `YYYY-MM-DDTHH:MM:SS(.mmm)Z`. */
export const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$/;

export function isIso(s: unknown): s is string {
  return typeof s === 'string' && ISO_RE.test(s) && !Number.isNaN(Date.parse(s));
}

/** An ISO time without milliseconds, as licences and manifests carry it. */
export function isoSeconds(d: Date): string {
  return new Date(Math.floor(d.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

const B64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Canonical standard base64 with padding (RFC 4648 §4): the only spelling of its bytes, so that
 * no signed or compared text can be re-encoded into a second form. Optionally of `len` bytes.
 */
export function isB64(s: unknown, len?: number): s is string {
  if (typeof s !== 'string' || s.length % 4 !== 0 || !B64_RE.test(s)) return false;
  const b = Buffer.from(s, 'base64');
  return b.toString('base64') === s && (len === undefined || b.length === len);
}

/**
 * A format version number that can be named in UNSUPPORTED_VERSION: a positive integer. Anything
 * else (2.5, -1, 1e400) is not a version at all, and the field is simply invalid.
 */
export function isFormatVersion(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 1;
}

export function isSafeUint(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The keys of `o` that are not in `allowed` (for "unknown field" errors). */
export function unknownKeys(o: Record<string, unknown>, allowed: readonly string[]): string[] {
  return Object.keys(o).filter((k) => !allowed.includes(k));
}
