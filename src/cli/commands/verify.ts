import { open, stat } from 'node:fs/promises';
import { MlicError } from '../../errors.js';
import { verifyBundle } from '../../bundle/verify.js';
import { sniffBundle } from '../../bundle/reader.js';
import { loadPublicKey } from '../../keys/load.js';
import { verifyFileSignature } from '../../signing/files.js';
import { makeProgress } from '../progress.js';
import { printResult, type Ctx } from '../output.js';

export interface VerifyOpts {
  pub: string;
  sig?: string;
  oms?: boolean;
  ignore?: string[];
}

async function isBundle(path: string): Promise<boolean> {
  const s = await sniffBundle(path);
  if (!s.regular) throw new MlicError('IO_NOT_REGULAR', `${path}: not a regular file`);
  return s.bundle;
}

async function exists(path: string): Promise<boolean> {
  try {
    await (await open(path, 'r')).close();
    return true;
  } catch {
    return false;
  }
}

export async function run(ctx: Ctx, files: string[], o: VerifyOpts): Promise<void> {
  if (o.oms) {
    const { verifyOms } = await import('./oms.js');
    return verifyOms(ctx, files, o);
  }
  if (o.sig !== undefined && files.length > 1) throw new MlicError('USAGE', '--sig names one signature; verify one file at a time with it');
  const pub = await loadPublicKey(o.pub);
  const results: Record<string, unknown>[] = [];
  for (const file of files) {
    const sigPath = o.sig ?? `${file}.minisig`;
    const hasSig = o.sig !== undefined || (await exists(sigPath));
    if (await isBundle(file)) {
      const progress = makeProgress('verifying', ctx.json);
      let r;
      try {
        r = await verifyBundle(file, pub, (d, t) => progress.update(d, t));
      } finally {
        progress.done();
      }
      const m = r.manifest;
      const detached = hasSig ? await verifyFileSignature(file, pub, sigPath) : undefined;
      ctx.out(`ok: ${file} is intact and signed by ${m.vendor.keyId} (${m.model.name}@${m.model.version}, ${m.files.length} file(s))`);
      if (detached) ctx.out(`ok: detached signature ${detached.sigPath}; trusted comment: ${detached.trustedComment}`);
      results.push({ file, kind: 'bundle', valid: true, bundleId: m.bundleId, model: m.model, keyId: m.vendor.keyId, files: r.files, bytesChecked: r.bytesChecked, ...(detached ? { signature: detached } : {}) });
    } else {
      if (!hasSig)
        throw new MlicError('NOT_A_BUNDLE', `${file} is not an mlic bundle and has no signature ${sigPath}`, { hint: 'sign files with `mlic sign`, or pass --sig FILE' });
      const size = await stat(file).then((s) => s.size, () => 0);
      const progress = makeProgress('verifying', ctx.json);
      let done = 0;
      const r = await verifyFileSignature(file, pub, sigPath, (n) => progress.update((done += n), size)).finally(() => progress.done());
      ctx.out(`ok: ${file} signature verified (${r.alg === 'ED' ? 'prehashed' : 'legacy'}, key ${r.keyId})`);
      ctx.out(r.trustedComment === undefined ? 'no trusted comment (signify signature)' : `trusted comment: ${r.trustedComment}`);
      results.push({ kind: 'file', valid: true, ...r });
    }
  }
  printResult(ctx, files.length === 1 ? results[0] : { results });
}
