/** The bundle manifest (docs/FORMAT.md §3): types, validation, serialization. Pure. */
import { MlicError } from '../errors.js';
import { chunkCount, MAX_CHUNK, MIN_CHUNK, TAG_LEN } from '../crypto/stream.js';
import { canonicalJson } from './canonical.js';
import { HEX32_RE, HEX64_RE, KEYID_RE, NAME_RE, isFormatVersion, isIso, isPlainObject, unknownKeys } from './fields.js';
import { parseJson } from './json.js';
import { unsafePathReason } from './paths.js';
import { parseSemver, versionLine } from './semver.js';
import { BLOCK, MAX_TAR_MTIME } from './tar.js';

export { NAME_RE } from './fields.js';
export { unsafePathReason } from './paths.js';

export const BUNDLE_FORMAT = 'mlic-bundle';
export const BUNDLE_FORMAT_VERSION = 2;
export const MAX_MANIFEST_BYTES = 16 << 20;
export const MAX_FILES = 100_000;
export const AEAD_ID = 'AES-256-GCM-STREAM-v1';
export const KDF_ID = 'HKDF-SHA256-v2';
/** The highest major (or 0.x minor) version the line trees can key (docs/FORMAT.md §4). */
export const MAX_LINE = 2 ** 32 - 1;
/** The formats pack records (src/format/models/). */
export const FILE_FORMATS = ['onnx', 'onnx-external-data', 'safetensors', 'safetensors-index', 'gguf', 'json', 'text', 'binary'] as const;
/** Manifest times are whole seconds: `YYYY-MM-DDTHH:MM:SSZ`. */
const isIsoSeconds = (v: unknown): v is string => isIso(v) && (v as string).length === 20;

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
  /** a bundle whose weights carry the fingerprint of one licence (mlic mark), keyed for that licence alone */
  marked?: { license: string };
}


export function entryName(index: number): string {
  return `mlic-bundle/files/${String(index).padStart(6, '0')}.enc`;
}
export const MANIFEST_ENTRY = 'mlic-bundle/manifest.json';
export const SIGNATURE_ENTRY = 'mlic-bundle/manifest.json.minisig';

/** Validates a parsed manifest, collecting every bad field; throws MANIFEST_INVALID listing them. */
export function assertManifest(v: unknown): asserts v is Manifest {
  const bad: string[] = [];
  if (!isPlainObject(v)) throw new MlicError('MANIFEST_INVALID', 'manifest is not a JSON object');
  const o = v as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  for (const k of unknownKeys(o, ['format', 'formatVersion', 'bundleId', 'createdAt', 'model', 'vendor', 'encryption', 'files', 'components', 'marked'])) bad.push(`${k} (unknown field)`);
  if (o.format !== BUNDLE_FORMAT) bad.push('format');
  if (o.formatVersion !== BUNDLE_FORMAT_VERSION) {
    if (isFormatVersion(o.formatVersion) && o.format === BUNDLE_FORMAT)
      throw new MlicError('UNSUPPORTED_VERSION', `bundle format version ${o.formatVersion} is not supported (this mlic reads version ${BUNDLE_FORMAT_VERSION})`, {
        hint: o.formatVersion < BUNDLE_FORMAT_VERSION ? 'ask the vendor to repack the model with a current mlic' : 'upgrade mlic',
      });
    bad.push('formatVersion');
  }
  if (typeof o.bundleId !== 'string' || !HEX32_RE.test(o.bundleId)) bad.push('bundleId');
  if (!isIsoSeconds(o.createdAt)) bad.push('createdAt');
  // createdAt is every tar header's mtime (docs/FORMAT.md §2): 11 octal digits, from 1970 to 2242.
  else if (!(Date.parse(o.createdAt) >= 0 && Math.floor(Date.parse(o.createdAt) / 1000) <= MAX_TAR_MTIME)) bad.push('createdAt (a tar mtime must lie between 1970 and 2242)');
  const m = o.model;
  let line: string | undefined;
  if (!isPlainObject(m)) bad.push('model');
  else {
    for (const k of unknownKeys(m, ['name', 'version', 'releaseDate'])) bad.push(`model.${k} (unknown field)`);
    if (typeof m.name !== 'string' || !NAME_RE.test(m.name)) bad.push('model.name');
    const sv = typeof m.version === 'string' ? parseSemver(m.version) : undefined;
    if (!sv || (sv.major === 0 ? sv.minor : sv.major) > MAX_LINE) bad.push('model.version');
    else line = versionLine(sv);
    if (!isIsoSeconds(m.releaseDate)) bad.push('model.releaseDate');
  }
  if (!isPlainObject(o.vendor) || typeof o.vendor.keyId !== 'string' || !KEYID_RE.test(o.vendor.keyId)) bad.push('vendor.keyId');
  else {
    if (o.vendor.name !== undefined && (typeof o.vendor.name !== 'string' || !NAME_RE.test(o.vendor.name))) bad.push('vendor.name');
    for (const k of unknownKeys(o.vendor, ['keyId', 'name'])) bad.push(`vendor.${k} (unknown field)`);
  }
  const e = o.encryption;
  if (!isPlainObject(e)) bad.push('encryption');
  else {
    for (const k of unknownKeys(e, ['aead', 'kdf', 'line', 'keyCommitment'])) bad.push(`encryption.${k} (unknown field)`);
    if (e.aead !== AEAD_ID) bad.push('encryption.aead');
    if (e.kdf !== KDF_ID) bad.push('encryption.kdf');
    if (typeof e.line !== 'string' || (line !== undefined && e.line !== line)) bad.push('encryption.line');
    if (typeof e.keyCommitment !== 'string' || !HEX64_RE.test(e.keyCommitment)) bad.push('encryption.keyCommitment');
  }
  if (!Array.isArray(o.files) || o.files.length === 0 || o.files.length > MAX_FILES) bad.push('files');
  else {
    const seen = new Set<string>();
    let total = 0;
    o.files.forEach((f: Record<string, unknown>, i: number) => {
      const p = `files[${i}]`;
      if (!isPlainObject(f)) return bad.push(p);
      if (f.index !== i) bad.push(`${p}.index`);
      const why = unsafePathReason(f.path as string);
      if (why) bad.push(`${p}.path (${why})`);
      else if (seen.has(f.path as string)) bad.push(`${p}.path (duplicate)`);
      else {
        if (i > 0 && typeof o.files[i - 1]?.path === 'string' && Buffer.compare(Buffer.from(o.files[i - 1].path as string), Buffer.from(f.path as string)) >= 0) bad.push(`${p}.path (not in bytewise order)`);
        seen.add(f.path as string);
      }
      if (!Number.isSafeInteger(f.size) || (f.size as number) < 0) bad.push(`${p}.size`);
      if (!(FILE_FORMATS as readonly unknown[]).includes(f.format)) bad.push(`${p}.format`);
      if (f.component !== undefined && (typeof f.component !== 'string' || !NAME_RE.test(f.component))) bad.push(`${p}.component`);
      if (typeof f.sha256 !== 'string' || !HEX64_RE.test(f.sha256)) bad.push(`${p}.sha256`);
      const chunkOk = Number.isSafeInteger(f.chunkSize) && (f.chunkSize as number) >= MIN_CHUNK && (f.chunkSize as number) <= MAX_CHUNK;
      if (!chunkOk) bad.push(`${p}.chunkSize`);
      if (typeof f.ciphertextDigest !== 'string' || !HEX64_RE.test(f.ciphertextDigest)) bad.push(`${p}.ciphertextDigest`);
      // A safe integer too: near 2^53 the equation holds in floating point for sizes no file has.
      if (!(chunkOk && Number.isSafeInteger(f.size) && (f.size as number) >= 0 && Number.isSafeInteger(f.ciphertextSize) && f.ciphertextSize === (f.size as number) + TAG_LEN * chunkCount(f.size as number, f.chunkSize as number)))
        bad.push(`${p}.ciphertextSize`);
      else total += f.ciphertextSize as number;
      for (const k of Object.keys(f))
        if (!['index', 'path', 'size', 'format', 'component', 'sha256', 'chunkSize', 'ciphertextSize', 'ciphertextDigest'].includes(k)) bad.push(`${p}.${k} (unknown field)`);
      return undefined;
    });
    // Every offset of the layout (§2) must be exact: the entries and their headers add up to a safe integer.
    if (total + (o.files.length + 8) * 3 * BLOCK > Number.MAX_SAFE_INTEGER) bad.push('files (the bundle would be larger than 2^53 bytes)');
  }
  if (o.marked !== undefined) {
    const mk = o.marked as Record<string, unknown>;
    if (!isPlainObject(mk) || unknownKeys(mk, ['license']).length > 0 || typeof mk.license !== 'string' || !HEX32_RE.test(mk.license)) bad.push('marked');
  }
  if (o.components !== undefined) {
    if (!Array.isArray(o.components)) bad.push('components');
    else
      o.components.forEach((c: Record<string, unknown>, i: number) => {
        if (!isPlainObject(c)) return bad.push(`components[${i}]`);
        for (const k of unknownKeys(c, ['name', 'files'])) bad.push(`components[${i}].${k} (unknown field)`);
        if (typeof c?.name !== 'string' || !NAME_RE.test(c.name)) bad.push(`components[${i}].name`);
        if (!Array.isArray(c?.files) || !(c.files as unknown[]).every((x) => Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) < (o.files?.length ?? 0)))
          bad.push(`components[${i}].files`);
        return undefined;
      });
  }
  if (bad.length > 0) throw new MlicError('MANIFEST_INVALID', `manifest has invalid fields: ${bad.slice(0, 20).join(', ')}${bad.length > 20 ? ', ...' : ''}`, { details: { fields: bad.slice(0, 100) } });
}

/** Parses manifest bytes (bounded nesting) and validates them. */
export function parseManifest(bytes: Uint8Array): Manifest {
  const v = parseJson(Buffer.from(bytes).toString('utf8'), 'manifest', 'MANIFEST_INVALID');
  assertManifest(v);
  return v;
}

export function serializeManifest(m: Manifest): Buffer {
  return Buffer.from(canonicalJson(m), 'utf8');
}
