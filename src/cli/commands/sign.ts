import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { MlicError } from '../../errors.js';
import { makeProgress } from '../progress.js';
import { signFile } from '../../signing/files.js';
import { vendorKey } from '../keys.js';
import { printResult, type Ctx } from '../output.js';

export interface SignOpts {
  key?: string;
  passphraseFile?: string;
  comment?: string;
  legacy?: boolean;
  oms?: boolean;
  output?: string;
  ignore?: string[];
  force?: boolean;
}

export async function run(ctx: Ctx, files: string[], o: SignOpts): Promise<void> {
  if (o.oms) {
    const { signOms } = await import('./oms.js');
    return signOms(ctx, files, o);
  }
  if (files.length === 0) throw new MlicError('USAGE', 'nothing to sign');
  if (o.output !== undefined && files.length > 1) throw new MlicError('USAGE', '-o names one signature file; sign one file at a time with it');
  const key = await vendorKey(ctx, o);
  const signer = { seed: key.seed, keyId: key.keyId };
  const results = [];
  for (const f of files) {
    const size = await stat(f).then((s) => s.size, () => 0);
    const progress = makeProgress(`signing ${basename(f)}`, ctx.json);
    let done = 0;
    const r = await signFile(f, {
      signer,
      ...(o.comment !== undefined ? { trustedComment: o.comment } : {}),
      legacy: o.legacy ?? false,
      ...(o.output ? { sigPath: o.output } : {}),
      force: o.force ?? false,
      onBytes: (n) => progress.update((done += n), size),
    }).finally(() => progress.done());
    ctx.out(`signed ${f} -> ${r.sigPath}`);
    results.push({ file: f, signature: r.sigPath, alg: r.alg, trustedComment: r.trustedComment });
  }
  printResult(ctx, { signatures: results });
}
