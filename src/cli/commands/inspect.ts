import { MlicError } from '../../errors.js';
import { inspectBundle } from '../../bundle/inspect.js';
import { printResult, type Ctx } from '../output.js';

const human = (n: number) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

export async function run(ctx: Ctx, path: string): Promise<void> {
  const r = await inspectBundle(path);
  const m = r.manifest;
  ctx.out(`bundle       ${path}`);
  ctx.out(`model        ${m.model.name}`);
  ctx.out(`version      ${m.model.version}`);
  ctx.out(`released     ${m.model.releaseDate}`);
  ctx.out(`bundle id    ${m.bundleId}`);
  ctx.out(`vendor key   ${m.vendor.keyId}${m.vendor.name ? ` (${m.vendor.name})` : ''}`);
  ctx.out(`created      ${m.createdAt}`);
  ctx.out(`format       ${m.format} v${m.formatVersion}, ${m.encryption.aead}, key line ${m.encryption.line}`);
  if (m.components?.length) ctx.out(`components   ${m.components.map((c) => c.name).join(', ')}`);
  ctx.out(`files        ${m.files.length}, ${human(m.files.reduce((a, f) => a + f.size, 0))}`);
  for (const f of m.files) ctx.out(`  ${human(f.size).padStart(10)}  ${f.format.padEnd(18)} ${f.path}`);
  ctx.note('signature not checked here: run `mlic verify <bundle> --pub vendor.pub`');
  // A damaged file is said so, even though nothing is verified here.
  if (r.size < r.expectedSize)
    throw new MlicError('BUNDLE_TRUNCATED', `${path} is truncated: ${r.size} of the ${r.expectedSize} bytes its manifest describes`, { details: { manifest: m, size: r.size, expectedSize: r.expectedSize } });
  if (r.size > r.expectedSize) throw new MlicError('BUNDLE_TRAILING_DATA', `${path} has ${r.size - r.expectedSize} bytes after the end its manifest describes`, { details: { manifest: m, size: r.size, expectedSize: r.expectedSize } });
  printResult(ctx, { manifest: m, signatureKeyId: r.signatureKeyId, size: r.size, verified: false });
}
