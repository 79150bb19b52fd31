/** The bundle manifest (docs/FORMAT.md §3): types, validation, serialization. Pure. */
import { MlicError } from '../errors.js';
import { canonicalJson } from './canonical.js';
import { parseSemver, versionLine } from './semver.js';

export const BUNDLE_FORMAT = 'mlic-bundle';
export const BUNDLE_FORMAT_VERSION = 1;
export const MAX_MANIFEST_BYTES = 16 << 20;
export const MAX_FILES = 100_000;
export const AEAD_ID = 'AES-256-GCM-STREAM-v1';
export const KDF_ID = 'HKDF-SHA256-v1';

export interface ManifestFile {
  /** position in the bundle; ciphertext entry name is files/<index, 6 digits>.enc */
  index: number;
  /** POSIX relative path inside the model directory */
  path: string;
  size: number;
  format: string;
  component?: string;
  /** SHA-256 of the plaintext, hex */
  sha256: string;
  chunkSize: number;
  ciphertextSize: number;
  /** SHA-256 over the SHA-256 of each sealed chunk (docs/FORMAT.md §3.3), hex */
  ciphertextDigest: string;
}

export interface Manifest {
  format: typeof BUNDLE_FORMAT;
  formatVersion: typeof BUNDLE_FORMAT_VERSION;
  bundleId: string;
  createdAt: string;
  model: { name: string; version: string; releaseDate: string };
  vendor: { keyId: string; name?: string };
  encryption: { aead: typeof AEAD_ID; kdf: typeof KDF_ID; line: string; keyCommitment: string };
  files: ManifestFile[];
  components?: { name: string; files: number[] }[];
}

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const HEX32 = /^[0-9a-f]{32}$/;
const KEYID = /^[0-9A-F]{16}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$/;

export function entryName(index: number): string {
  return `mlic-bundle/files/${String(index).padStart(6, '0')}.enc`;
}
export const MANIFEST_ENTRY = 'mlic-bundle/manifest.json';
export const SIGNATURE_ENTRY = 'mlic-bundle/manifest.json.minisig';

/** Why a relative path is unsafe, or undefined when it is fine. */
export function unsafePathReason(p: string): string | undefined {
  if (typeof p !== 'string' || p.length === 0) return 'empty path';
  if (Buffer.byteLength(p) > 4096) return 'path too long';
  if (p.startsWith('/')) return 'absolute path';
  if (p.includes('\\')) return 'backslash in path';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(p)) return 'control character in path';
  const parts = p.split('/');
  if (parts.some((s) => s === '..')) return "'..' in path";
  if (parts.some((s) => s === '' || s === '.')) return 'empty or "." path segment';
  if (/^[A-Za-z]:/.test(p)) return 'drive letter in path';
  return undefined;
}

function isIso(s: unknown): s is string {
  return typeof s === 'string' && ISO.test(s) && !Number.isNaN(Date.parse(s));
}

/** Validates a parsed manifest, collecting every bad field; throws MANIFEST_INVALID listing them. */
export function assertManifest(v: unknown): asserts v is Manifest {
  const bad: string[] = [];
  const o = v as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new MlicError('MANIFEST_INVALID', 'manifest is not a JSON object');
  const allowed = new Set(['format', 'formatVersion', 'bundleId', 'createdAt', 'model', 'vendor', 'encryption', 'files', 'components']);
  for (const k of Object.keys(o)) if (!allowed.has(k)) bad.push(`${k} (unknown field)`);
  if (o.format !== BUNDLE_FORMAT) bad.push('format');
  if (o.formatVersion !== BUNDLE_FORMAT_VERSION) {
    if (typeof o.formatVersion === 'number' && o.format === BUNDLE_FORMAT)
      throw new MlicError('UNSUPPORTED_VERSION', `bundle format version ${o.formatVersion} is not supported (this mlic reads version ${BUNDLE_FORMAT_VERSION})`, { hint: 'upgrade mlic' });
    bad.push('formatVersion');
  }
  if (typeof o.bundleId !== 'string' || !HEX32.test(o.bundleId)) bad.push('bundleId');
  if (!isIso(o.createdAt)) bad.push('createdAt');
  const m = o.model;
  let line: string | undefined;
  if (typeof m !== 'object' || m === null) bad.push('model');
  else {
    if (typeof m.name !== 'string' || !NAME_RE.test(m.name)) bad.push('model.name');
    const sv = typeof m.version === 'string' ? parseSemver(m.version) : undefined;
    if (!sv) bad.push('model.version');
    else line = versionLine(sv);
    if (!isIso(m.releaseDate)) bad.push('model.releaseDate');
  }
  if (typeof o.vendor !== 'object' || o.vendor === null || typeof o.vendor.keyId !== 'string' || !KEYID.test(o.vendor.keyId)) bad.push('vendor.keyId');
  else if (o.vendor.name !== undefined && (typeof o.vendor.name !== 'string' || o.vendor.name.length > 128)) bad.push('vendor.name');
  const e = o.encryption;
  if (typeof e !== 'object' || e === null) bad.push('encryption');
  else {
    if (e.aead !== AEAD_ID) bad.push('encryption.aead');
    if (e.kdf !== KDF_ID) bad.push('encryption.kdf');
    if (typeof e.line !== 'string' || (line !== undefined && e.line !== line)) bad.push('encryption.line');
    if (typeof e.keyCommitment !== 'string' || !HEX64.test(e.keyCommitment)) bad.push('encryption.keyCommitment');
  }
  if (!Array.isArray(o.files) || o.files.length === 0 || o.files.length > MAX_FILES) bad.push('files');
  else {
    const seen = new Set<string>();
    o.files.forEach((f: Record<string, unknown>, i: number) => {
      const p = `files[${i}]`;
      if (typeof f !== 'object' || f === null) return bad.push(p);
      if (f.index !== i) bad.push(`${p}.index`);
      const why = unsafePathReason(f.path as string);
      if (why) bad.push(`${p}.path (${why})`);
      else if (seen.has(f.path as string)) bad.push(`${p}.path (duplicate)`);
      else seen.add(f.path as string);
      if (!Number.isSafeInteger(f.size) || (f.size as number) < 0) bad.push(`${p}.size`);
      if (typeof f.format !== 'string' || !/^[a-z0-9-]{1,32}$/.test(f.format)) bad.push(`${p}.format`);
      if (f.component !== undefined && (typeof f.component !== 'string' || !NAME_RE.test(f.component))) bad.push(`${p}.component`);
      if (typeof f.sha256 !== 'string' || !HEX64.test(f.sha256)) bad.push(`${p}.sha256`);
      if (!Number.isSafeInteger(f.chunkSize) || (f.chunkSize as number) < 1 << 20 || (f.chunkSize as number) > 64 << 20) bad.push(`${p}.chunkSize`);
      if (typeof f.ciphertextDigest !== 'string' || !HEX64.test(f.ciphertextDigest)) bad.push(`${p}.ciphertextDigest`);
      if (Number.isSafeInteger(f.size) && Number.isSafeInteger(f.chunkSize) && (f.chunkSize as number) > 0) {
        const n = (f.size as number) === 0 ? 1 : Math.ceil((f.size as number) / (f.chunkSize as number));
        if (f.ciphertextSize !== (f.size as number) + 16 * n) bad.push(`${p}.ciphertextSize`);
      } else bad.push(`${p}.ciphertextSize`);
      for (const k of Object.keys(f))
        if (!['index', 'path', 'size', 'format', 'component', 'sha256', 'chunkSize', 'ciphertextSize', 'ciphertextDigest'].includes(k)) bad.push(`${p}.${k} (unknown field)`);
      return undefined;
    });
  }
  if (o.components !== undefined) {
    if (!Array.isArray(o.components)) bad.push('components');
    else
      o.components.forEach((c: Record<string, unknown>, i: number) => {
        if (typeof c?.name !== 'string' || !NAME_RE.test(c.name)) bad.push(`components[${i}].name`);
        if (!Array.isArray(c?.files) || !(c.files as unknown[]).every((x) => Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) < (o.files?.length ?? 0)))
          bad.push(`components[${i}].files`);
      });
  }
  if (bad.length > 0) throw new MlicError('MANIFEST_INVALID', `manifest has invalid fields: ${bad.join(', ')}`, { details: { fields: bad } });
}

export function serializeManifest(m: Manifest): Buffer {
  return Buffer.from(canonicalJson(m), 'utf8');
}
