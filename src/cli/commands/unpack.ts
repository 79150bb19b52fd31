import { unpack } from '../../host/unpack.js';
import { makeProgress } from '../progress.js';
import { printResult, type Ctx } from '../output.js';
import { probeWithSpinner } from '../spinner.js';

export interface UnpackOpts {
  output: string;
  feature?: string;
  component?: string[];
  force?: boolean;
  home?: string;
}

export async function run(ctx: Ctx, bundle: string, o: UnpackOpts): Promise<void> {
  const progress = makeProgress('decrypting', ctx.json);
  try {
    const hostProbe = await probeWithSpinner(ctx.json);
    const r = await unpack(bundle, o.output, {
      hostProbe,
      ...(o.home ? { stateDir: o.home } : {}),
      ...(o.feature ? { feature: o.feature } : {}),
      ...(o.component?.length ? { components: o.component } : {}),
      force: o.force ?? false,
      onProgress: (d, t) => progress.update(d, t),
    });
    progress.done();
    if (r.inGrace) ctx.note('warning: the licence has expired and is in its grace period');
    for (const f of r.files) ctx.out(`${f.path}`);
    ctx.note(`unpacked ${r.files.length} file(s) into ${r.outDir} under licence ${r.licenseId}`);
    printResult(ctx, r);
  } finally {
    progress.done();
  }
}
