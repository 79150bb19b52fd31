/**
 * The vendor's side of marking and tracing bundles: opening a common bundle with the vendor's own
 * keys (into a private temporary directory beside the output, removed afterwards and on a signal),
 * and `mark` on a bundle: a new bundle of the same model and version whose weights carry the
 * licence's fingerprint, keyed from that licence's own tree (docs/FORMAT.md §4.1).
 */
import { mkdir, mkdtemp, open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { MlicError, fromFsError } from '../errors.js';
import { wipe } from '../crypto/random.js';
import type { LicensePayload } from '../format/license.js';
import type { Manifest } from '../format/manifest.js';
import { keyIdHex } from '../format/minisign.js';
import { bundleKeyFromMaster } from '../keys/derive.js';
import { vendorPublicKey, type VendorKey } from '../keys/vendor.js';
import { openVerified } from '../bundle/verify.js';
import { checkBundleKey } from '../bundle/decrypt.js';
import { pack } from '../bundle/pack.js';
import { unpackAuthorized } from '../host/unpack.js';
import { SafeDir, removeTree } from '../util/safedir.js';
import { registerTempDir } from '../util/atomic.js';
import { markInPlace, type MarkedTensor } from './embed.js';
import { indexModel } from './model.js';
import { licenceMarkKey } from './pattern.js';
import { markable } from './tensors.js';
import { reportOf, type MarkReport } from './mark.js';

export interface OpenedOriginal {
  /** the model's files, as the manifest names them */
  dir: string;
  /** an empty private directory beside `dir`, removed with it */
  spare: string;
  manifest: Manifest;
  close(): Promise<void>;
}

/** Decrypts a common bundle signed and keyed by `key` into a private temporary directory in `near`. */
export async function decryptOwnBundle(path: string, key: VendorKey, near: string): Promise<OpenedOriginal> {
  const v = await openVerified(path, vendorPublicKey(key));
  let bKey: Buffer | undefined;
  let dir: string | undefined;
  let untrack: (() => void) | undefined;
  try {
    const m = v.manifest;
    if (m.marked) throw new MlicError('USAGE', `${path} is a bundle marked for licence ${m.marked.license.slice(0, 8)}; give the common bundle`, { hint: 'mark and trace start from the bundle every licence was packed from' });
    bKey = bundleKeyFromMaster(key.master, m.model.name, m.encryption.line, m.bundleId);
    checkBundleKey(m, bKey);
    const d = await mkdtemp(join(near, '.mlic-original-')).catch((e: unknown) => Promise.reject(fromFsError(e, near)));
    dir = d;
    const u = registerTempDir(d);
    untrack = u;
    await mkdir(join(d, 'model'), { mode: 0o700 });
    await mkdir(join(d, 'spare'), { mode: 0o700 });
    const root = await SafeDir.open(join(d, 'model'));
    try {
      await unpackAuthorized({ bundle: v.bundle, manifest: m, spans: v.spans, bundleKey: bKey, files: m.files.map((f) => f.index) }, root);
    } finally {
      await root.close();
    }
    return {
      dir: join(d, 'model'),
      spare: join(d, 'spare'),
      manifest: m,
      close: async () => {
        await removeTree(d);
        u();
      },
    };
  } catch (e) {
    if (dir) await removeTree(dir).catch(() => undefined);
    untrack?.();
    throw e;
  } finally {
    wipe(bKey);
    await v.bundle.close();
  }
}

export interface MarkBundleOptions {
  bundle: string;
  /** the licence, its signature verified with `key` */
  license: LicensePayload;
  key: VendorKey;
  out: string;
  /** where the temporary plaintext goes (default: the output's directory) */
  workDir: string;
  strength?: number;
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export async function markBundle(o: MarkBundleOptions): Promise<{ out: string; manifest: Manifest; report: MarkReport }> {
  const l = o.license;
  if (!l.marked)
    throw new MlicError('USAGE', `licence ${l.licenseId.slice(0, 8)} was not issued for marked bundles: its keys open the common bundle, so a marked one would gain nothing`, {
      hint: 'issue the licence with mlic license issue --marked',
    });
  if (l.vendor.keyId !== keyIdHex(o.key.keyId)) throw new MlicError('USAGE', `licence ${l.licenseId.slice(0, 8)} was issued with vendor key ${l.vendor.keyId}, not with this key`);
  const orig = await decryptOwnBundle(o.bundle, o.key, o.workDir);
  try {
    const m = orig.manifest;
    if (m.model.name !== l.model) throw new MlicError('USAGE', `${o.bundle} holds model ${m.model.name}, but licence ${l.licenseId.slice(0, 8)} is for ${l.model}`);
    const idx = await indexModel(orig.dir);
    const markKey = licenceMarkKey(o.key.master, l.licenseId);
    const marked: MarkedTensor[] = [];
    try {
      for (const f of idx.files) {
        const mine = idx.tensors.filter((t) => t.file === f.rel).filter(markable);
        if (mine.length === 0) continue;
        const fh = await open(join(orig.dir, ...f.rel.split('/')), 'r+');
        try {
          marked.push(...(await markInPlace(fh, mine, markKey, { ...(o.strength !== undefined ? { strength: o.strength } : {}), label: f.rel })));
        } finally {
          await fh.close();
        }
      }
    } finally {
      markKey.fill(0);
    }
    // components go back as components: each one's directory moved beside the rest
    const components = (m.components ?? []).map((c) => ({ name: c.name, path: join(orig.spare, c.name) }));
    for (const c of components) await rename(join(orig.dir, c.name), c.path);
    const loose = m.files.some((f) => f.component === undefined);
    const r = await pack({
      ...(loose ? { input: orig.dir } : {}),
      ...(components.length ? { components } : {}),
      name: m.model.name,
      version: m.model.version,
      releaseDate: new Date(m.model.releaseDate),
      key: o.key,
      out: o.out,
      force: o.force ?? false,
      ...(m.files[0] ? { chunkSize: m.files[0].chunkSize } : {}),
      markedFor: l.licenseId,
      ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    });
    return { out: r.out, manifest: r.manifest, report: reportOf(idx, marked) };
  } finally {
    await orig.close();
  }
}
