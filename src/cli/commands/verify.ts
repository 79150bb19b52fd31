import { verifyBundle } from '../../bundle/verify.js';
import { loadPublicKey } from '../../keys/load.js';
import { makeProgress } from '../progress.js';
import { printResult, type Ctx } from '../output.js';

export interface VerifyOpts {
  pub: string;
}

export async function run(ctx: Ctx, path: string, o: VerifyOpts): Promise<void> {
  const pub = await loadPublicKey(o.pub);
  const progress = makeProgress('verifying', ctx.json);
  try {
    const r = await verifyBundle(path, pub, (d, t) => progress.update(d, t));
    const m = r.manifest;
    ctx.out(`ok: ${path} is intact and signed by ${m.vendor.keyId} (${m.model.name}@${m.model.version}, ${m.files.length} file(s))`);
    printResult(ctx, { valid: true, bundleId: m.bundleId, model: m.model, keyId: m.vendor.keyId, files: r.files, bytesChecked: r.bytesChecked });
  } finally {
    progress.done();
  }
}
