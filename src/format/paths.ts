/**
 * Path safety, in one place: which relative paths mlic accepts in a bundle, a packed directory or
 * archive, a model's references to its own files (ONNX external data, safetensors shards), an
 * OMS signature, and an unpack target. Pure.
 */

export const MAX_PATH_BYTES = 4096;

/**
 * Why a relative POSIX path is unsafe to write or read inside a model's folder, or undefined when
 * it is fine: non-empty, at most 4096 bytes, no leading `/`, no `\`, no control characters, no
 * empty, `.` or `..` segment, no drive letter.
 */
export function unsafePathReason(p: unknown): string | undefined {
  if (typeof p !== 'string' || p.length === 0) return 'empty path';
  if (Buffer.byteLength(p) > MAX_PATH_BYTES) return 'path too long';
  if (p.startsWith('/')) return 'absolute path';
  if (p.includes('\\')) return 'backslash in path';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(p)) return 'control character in path';
  if (/^[A-Za-z]:/.test(p)) return 'drive letter in path';
  const parts = p.split('/');
  if (parts.includes('..')) return "'..' in path";
  if (parts.some((s) => s === '' || s === '.')) return 'empty or "." path segment';
  return undefined;
}

/**
 * OpenSSF Model Signing's rule for resource names (what the reference implementation writes):
 * a normalised relative POSIX path (no empty, `.` or `..` segment, no NUL), or "." for a model
 * that is one file.
 */
export function isNormalRelativePath(name: string, allowDot = false): boolean {
  if (allowDot && name === '.') return true;
  if (name === '' || name.includes('\0') || name.startsWith('/')) return false;
  return name.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

/** `loc` resolved against the folder `dir` (both relative POSIX paths; `.` segments dropped). */
export function joinRelative(dir: string, loc: string): string {
  const parts = dir.split('/').filter((s) => s !== '');
  for (const s of loc.split('/')) if (s !== '' && s !== '.') parts.push(s);
  return parts.join('/');
}

export function posixDirname(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

/** A relative path that cannot leave its folder (no leading `/`, no `..` segment, no NUL), in any other spelling: OMS ignore paths. */
export function isContainedRelativePath(p: string): boolean {
  if (p === '' || p.includes('\0') || p.startsWith('/')) return false;
  return !p.split('/').includes('..');
}

/**
 * Why a location a model file names for a file beside it (ONNX external data, a safetensors shard)
 * is unsafe, or null when it is fine. Like unsafePathReason, but `.` and empty segments are allowed
 * (they resolve away: joinRelative), as the loaders allow them.
 */
export function relativeLocationProblem(loc: string): string | null {
  if (loc.length === 0) return 'is empty';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(loc)) return 'contains control characters';
  if (loc.includes('\\')) return 'contains a backslash';
  if (loc.startsWith('/')) return 'is an absolute path';
  if (/^[A-Za-z]:/.test(loc)) return 'starts with a drive letter';
  const segs = loc.split('/');
  if (segs.includes('..')) return "points outside the model's folder (contains '..')";
  if (segs.every((s) => s === '' || s === '.')) return 'does not name a file';
  if (segs[segs.length - 1] === '' || segs[segs.length - 1] === '.') return 'names a folder, not a file';
  return null;
}

