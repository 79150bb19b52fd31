import { basename } from 'node:path';
import { MlicError } from '../../errors.js';
import { pack } from '../../bundle/pack.js';
import { vendorKey } from '../keys.js';
import { makeProgress } from '../progress.js';
import { printResult, type Ctx } from '../output.js';

export interface PackOpts {
  name: string;
  version: string;
  key?: string;
  output?: string;
  force?: boolean;
  releaseDate?: string;
  chunkSize?: string;
  component?: string[];
  passphraseFile?: string;
}

export async function run(ctx: Ctx, input: string | undefined, o: PackOpts): Promise<void> {
  const components = (o.component ?? []).map((spec) => {
    const i = spec.indexOf('=');
    if (i <= 0 || i === spec.length - 1) throw new MlicError('USAGE', `--component expects NAME=PATH, got '${spec}'`);
    return { name: spec.slice(0, i), path: spec.slice(i + 1) };
  });
  let releaseDate: Date | undefined;
  if (o.releaseDate !== undefined) {
    releaseDate = new Date(o.releaseDate);
    if (Number.isNaN(releaseDate.getTime())) throw new MlicError('USAGE', `--release-date: '${o.releaseDate}' is not a date`, { hint: 'use ISO 8601, e.g. 2026-11-01 or 2026-11-01T12:00:00Z' });
  }
  let chunkSize: number | undefined;
  if (o.chunkSize !== undefined) {
    chunkSize = parseSize(o.chunkSize);
  }
  const out = o.output ?? `${o.name}-${o.version}.mlb`;
  if (input === undefined && components.length === 0) throw new MlicError('USAGE', 'nothing to pack: give a model path or --component NAME=PATH');
  const key = await vendorKey(ctx, o);
  const progress = makeProgress(`packing ${basename(out)}`, ctx.json);
  const t0 = Date.now();
  const r = await pack({
    ...(input !== undefined ? { input } : {}),
    components,
    name: o.name,
    version: o.version,
    key,
    out,
    force: o.force ?? false,
    ...(releaseDate ? { releaseDate } : {}),
    ...(chunkSize ? { chunkSize } : {}),
    onProgress: (d, t) => progress.update(d, t),
  });
  progress.done();
  const secs = (Date.now() - t0) / 1000;
  const m = r.manifest;
  ctx.note(`packed ${m.files.length} file(s), ${r.bytesIn} bytes in ${secs.toFixed(2)} s`);
  ctx.out(`${r.out}  ${m.model.name}@${m.model.version}  bundle ${m.bundleId}  key ${m.vendor.keyId}`);
  printResult(ctx, { out: r.out, bundleId: m.bundleId, model: m.model, files: m.files.map((f) => ({ path: f.path, size: f.size, format: f.format, sha256: f.sha256 })), bytesIn: r.bytesIn, bytesOut: r.bytesOut, seconds: secs });
}

export function parseSize(s: string): number {
  const m = /^(\d+)([KMG]i?B?)?$/i.exec(s.trim());
  if (!m) throw new MlicError('USAGE', `'${s}' is not a size (e.g. 1048576, 4MiB)`);
  const mult: Record<string, number> = { '': 1, K: 1024, M: 1 << 20, G: 1 << 30 };
  return Number(m[1]) * (mult[(m[2] ?? '').charAt(0).toUpperCase()] ?? 1);
}
