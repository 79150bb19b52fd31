/**
 * Building bundles with any manifest, signed for real: the fuzzers' way to put hostile but signed
 * values (paths of 4001 bytes, sizes at the bounds, dates the tar header cannot hold) in front of
 * the manifest parser, the layout check, decryption and unpack. Follows docs/FORMAT.md §2-§4 and
 * src/bundle/pack.ts, without any of pack's checks.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { sealChunk, TAG_LEN } from '../../src/crypto/stream.js';
import { END_OF_ARCHIVE, entryHeader, padLength } from '../../src/format/tar.js';
import { entryName, MANIFEST_ENTRY, SIGNATURE_ENTRY } from '../../src/format/manifest.js';
import { MANIFEST_UNTRUSTED_COMMENT, manifestTrustedComment } from '../../src/bundle/signature.js';
import { blake2b512 } from '../../src/crypto/hash.js';
import { serializeSignature } from '../../src/format/minisign.js';
import { sign } from './fixtures.js';
import { bundleKeyFromMaster, fileKey, keyCommitment, linePos } from '../../src/keys/derive.js';
import { ciphertextDigestInit } from '../../src/bundle/digest.js';
import { parseSemver, versionLine } from '../../src/format/semver.js';
import type { VendorKey } from '../../src/keys/vendor.js';
import { jsonDepth } from '../../src/format/json.js';
import { serialize, toAst, type Ast } from './lib.js';

/** A file of a hostile manifest as far as it can be read: any field may be anything. */
type LooseFile = Record<string, unknown>;
type Loose = Record<string, unknown> & { files?: unknown };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const uint = (v: unknown, max = Number.MAX_SAFE_INTEGER): v is number => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= max;

/** Deterministic plaintext of `size` bytes for file `i`. */
export function plaintext(i: number, size: number): Buffer {
  const b = Buffer.alloc(size, i & 0xff);
  createHash('sha256').update(`file ${i}`).digest().copy(b, 0, 0, Math.min(32, size));
  return b;
}

const bundleKeys = new Map<string, Buffer>();
function bundleKeyOf(key: VendorKey, name: string, line: string, bundleId: string): Buffer {
  const id = JSON.stringify([key.keyId.toString('hex'), name, line, bundleId]);
  let k = bundleKeys.get(id);
  if (!k) bundleKeys.set(id, (k = bundleKeyFromMaster(key.master, name, line, bundleId)));
  return k;
}

/** The largest plaintext the builder makes (bigger sizes keep the original ciphertext: the layout check refuses). */
export const MAX_BUILT_SIZE = 3 << 20;

/**
 * Encrypts what can be encrypted and, with `fixup`, rewrites every derived field (sha256,
 * ciphertextSize, ciphertextDigest, keyCommitment, encryption.line) to agree with the hostile
 * primary fields, so that the bundle passes every check that a careful vendor's would.
 */
export function materialize(manifest: unknown, key: VendorKey, fixup: boolean, reserialize = true): { manifest: unknown; manifestBytes: Buffer; entries: Buffer[]; createdAt: unknown; bundleId: unknown } {
  const entries: Buffer[] = [];
  if (isObj(manifest)) {
    const m = manifest as Loose;
    const model = isObj(m.model) ? m.model : {};
    const sv = typeof model.version === 'string' ? parseSemver(model.version) : undefined;
    const line = sv ? versionLine(sv) : undefined;
    const name = typeof model.name === 'string' ? model.name : 'x';
    const bundleId = typeof m.bundleId === 'string' && /^[0-9a-f]{32}$/.test(m.bundleId) ? m.bundleId : undefined;
    const bKey = line && linePos(line) && bundleId ? bundleKeyOf(key, name, line, bundleId) : undefined;
    if (fixup && bKey && bundleId && isObj(m.encryption)) {
      m.encryption.keyCommitment = keyCommitment(bKey, bundleId).toString('hex');
      m.encryption.line = line;
    }
    const files = Array.isArray(m.files) ? (m.files as unknown[]) : [];
    files.forEach((f0, i) => {
      if (!isObj(f0)) return;
      const f = f0 as LooseFile;
      const cs = uint(f.chunkSize) && f.chunkSize >= 1 << 20 && f.chunkSize <= 64 << 20 ? f.chunkSize : 1 << 20;
      if (!uint(f.size, MAX_BUILT_SIZE)) {
        if (fixup && uint(f.size)) f.ciphertextSize = f.size + TAG_LEN * Math.max(1, Math.ceil(f.size / cs));
        entries.push(Buffer.alloc(Math.min(1024, uint(f.ciphertextSize) ? f.ciphertextSize : 0)));
        return;
      }
      const plain = plaintext(i, f.size);
      const n = Math.max(1, Math.ceil(f.size / cs));
      const fk = bKey ? fileKey(bKey, typeof f.index === 'number' && uint(f.index, 2 ** 32 - 1) ? f.index : i, typeof f.path === 'string' ? f.path : '') : Buffer.alloc(32);
      const d = ciphertextDigestInit();
      const parts: Buffer[] = [];
      for (let c = 0; c < n; c++) {
        const sealed = sealChunk(fk, c, c === n - 1, plain.subarray(c * cs, Math.min(f.size, (c + 1) * cs)));
        d.update(createHash('sha256').update(sealed.subarray(0, sealed.length - TAG_LEN)).digest(), sealed.subarray(sealed.length - TAG_LEN));
        parts.push(sealed);
      }
      const ct = Buffer.concat(parts);
      if (fixup) {
        f.sha256 = createHash('sha256').update(plain).digest('hex');
        f.ciphertextSize = ct.length;
        f.ciphertextDigest = d.digest();
        if (f.chunkSize === undefined) f.chunkSize = cs;
      }
      entries.push(ct);
    });
  }
  return { manifest, manifestBytes: reserialize ? Buffer.from(serialize(toAst(manifest), { canonical: true }), 'utf8') : Buffer.alloc(0), entries, createdAt: isObj(manifest) ? manifest.createdAt : undefined, bundleId: isObj(manifest) ? manifest.bundleId : undefined };
}

/** Assembles the tar container around manifest bytes, a signature and entries (headers as pack writes them, when they can be written). */
export function assemble(manifestBytes: Buffer, sig: Buffer, entries: Buffer[], createdAt: unknown): Buffer {
  const t = typeof createdAt === 'string' ? Math.floor(Date.parse(createdAt) / 1000) : 0;
  const mtime = Number.isSafeInteger(t) && t >= 0 && t < 8 ** 11 ? t : 0;
  const out: Buffer[] = [];
  const entry = (name: string, data: Buffer) => {
    out.push(entryHeader(name, data.length, mtime), data, Buffer.alloc(padLength(data.length)));
  };
  entry(MANIFEST_ENTRY, manifestBytes);
  entry(SIGNATURE_ENTRY, sig);
  entries.forEach((e, i) => entry(entryName(i), e));
  out.push(END_OF_ARCHIVE);
  return Buffer.concat(out);
}

/** signManifest (src/bundle/signature.ts) with a cached signing key: the fuzzers sign thousands of manifests. */
export function manifestSignature(key: VendorKey, manifestBytes: Buffer, bundleId: string, createdAt: string): Buffer {
  let tc = manifestTrustedComment(bundleId, createdAt);
  if (/[\r\n]/.test(tc)) tc = manifestTrustedComment('0'.repeat(32), createdAt);
  const signature = sign(key.seed, blake2b512(manifestBytes));
  const globalSignature = sign(key.seed, Buffer.concat([signature, Buffer.from(tc, 'utf8')]));
  return Buffer.from(serializeSignature({ untrustedComment: MANIFEST_UNTRUSTED_COMMENT, alg: 'ED', keyId: key.keyId, signature, trustedComment: tc, globalSignature }), 'utf8');
}

/**
 * A bundle for `manifest` (any JSON value, or an AST with raw tokens), signed with `key` over
 * exactly the manifest bytes it carries; the trusted comment names its bundleId and createdAt.
 */
export function signedBundle(manifest: unknown | { ast: Ast }, key: VendorKey, fixup: boolean): Buffer {
  let mat: ReturnType<typeof materialize>;
  if (isObj(manifest) && 'ast' in manifest) {
    const text = serialize(manifest.ast as Ast, { canonical: true });
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    // keep the raw spelling (duplicate keys, 1e400, -0) unless the fix-up changes the values
    const keep = !fixup || parsed === undefined || jsonDepth(text) > 48;
    mat = materialize(parsed, key, fixup && !keep, !keep);
    if (keep) mat.manifestBytes = Buffer.from(text, 'utf8');
  } else mat = materialize(manifest, key, fixup);
  const createdAt = typeof mat.createdAt === 'string' ? mat.createdAt : '2026-11-01T00:00:00Z';
  const bundleId = typeof mat.bundleId === 'string' ? mat.bundleId : '0'.repeat(32);
  return assemble(mat.manifestBytes, manifestSignature(key, mat.manifestBytes, bundleId, createdAt), mat.entries, createdAt);
}

/** Relative paths of `bytes` UTF-8 bytes, segments of at most `seg` bytes (NAME_MAX is 255). */
export function longPath(bytes: number, seg = 200, ch = 'a'): string {
  const parts: string[] = [];
  let left = bytes;
  while (left > 0) {
    const n = Math.min(seg, left - (parts.length ? 1 : 0));
    if (n <= 0) break;
    parts.push(ch.repeat(n));
    left -= n + (parts.length > 1 ? 1 : 0);
  }
  const p = parts.join('/');
  return p + 'b'.repeat(bytes - Buffer.byteLength(p));
}

/** Paths at and past the bounds (4096 bytes, NAME_MAX 255, PATH_MAX), and names unpack must handle. */
export const HOSTILE_PATHS = [
  longPath(1095),
  longPath(4001),
  longPath(4096),
  longPath(4097),
  longPath(4001, 1), // 2000 nested directories
  longPath(4096, 3),
  'a'.repeat(255),
  'a'.repeat(256),
  `d/${'a'.repeat(255)}`,
  'é'.repeat(2048), // 4096 bytes in one segment
  `${'é'.repeat(100)}/x`,
  '.hidden',
  '.config.json.tmp-000000000000',
  'config.json/x',
  'CON',
  'a:b',
  'x\u202ey.txt',
  'tab\tname',
];

/** Removes a directory tree of any depth (fs.rm walks full paths, which fail past PATH_MAX; rm -rf does not). */
export async function removeTree(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
  } catch {
    execFileSync('rm', ['-rf', '--', dir]);
  }
}
