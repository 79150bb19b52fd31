/** Cross-file rules of a model set: ONNX external data and safetensors shards (pure). */
import { MlicError } from '../../errors.js';
import type { ModelFileInfo, ModelFormat } from './reader.js';
import { q } from './reader.js';
import { joinRelative as joinRel, posixDirname, relativeLocationProblem } from '../paths.js';

export { relativeLocationProblem } from '../paths.js';

/**
 * Pure: given all relative (POSIX) paths in a packed directory and each file's info, checks the
 * cross-file rules: every ONNX external-data location is a relative path without `..`, absolute
 * paths, drive letters, backslashes or control characters, and resolves (relative to the ONNX
 * file's own folder) to a file present in the set that is not itself an ONNX model; every shard
 * of a safetensors index is present (relative to the index's folder) and is a safetensors file.
 * Throws MlicError('MODEL_INVALID') listing every problem. Returns path -> format overrides:
 * files named as ONNX external data that were detected as plain binary/text/json become
 * 'onnx-external-data'.
 */
export function checkModelSet(files: Map<string, ModelFileInfo>): Map<string, ModelFormat> {
  const overrides = new Map<string, ModelFormat>();
  const problems: string[] = [];
  for (const [path, info] of files) {
    const dir = posixDirname(path);
    for (const loc of info.externalData ?? []) {
      const why = relativeLocationProblem(loc);
      if (why) {
        problems.push(`${path}: external data location ${q(loc)} ${why}`);
        continue;
      }
      const target = joinRel(dir, loc);
      const t = files.get(target);
      if (!t) problems.push(`${path}: external data file ${q(loc)} is missing (expected ${q(target)} among the packed files)`);
      else if (target === path || t.format === 'onnx') problems.push(`${path}: external data location ${q(loc)} names an ONNX model, not a data file`);
      else if (t.format === 'binary' || t.format === 'text' || t.format === 'json' || t.format === 'onnx-external-data') overrides.set(target, 'onnx-external-data');
    }
    for (const shard of info.shards ?? []) {
      const why = relativeLocationProblem(shard);
      if (why) {
        problems.push(`${path}: shard ${q(shard)} ${why}`);
        continue;
      }
      const target = joinRel(dir, shard);
      const t = files.get(target);
      if (!t) problems.push(`${path}: shard ${q(shard)} is missing (expected ${q(target)} among the packed files)`);
      else if (t.format !== 'safetensors') problems.push(`${path}: shard ${q(shard)} is not a safetensors file (detected ${t.format})`);
    }
  }
  if (problems.length > 0) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : '';
    throw new MlicError('MODEL_INVALID', `${problems[0]}${more}`, {
      details: { problems: problems.slice(0, 100) },
      hint: "pack a model together with the files it names (external data, shards), at the same relative paths inside the model's folder",
    });
  }
  return overrides;
}
