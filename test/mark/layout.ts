/**
 * Checks for a marked copy of a model directory: the same files of the same sizes, every byte
 * outside the tensors' data the original's (headers, a safetensors index, configs), each model
 * file still parsing to the same tensors at the same offsets, and a safetensors index whose every
 * tensor is in the shard it names. Returns the names of the tensors whose bytes changed.
 */
import { expect } from 'vitest';
import { open, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { listTensors, type TensorRef } from '../../src/mark/tensors.js';

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) if (e.isFile()) out.push(join(e.parentPath, e.name).slice(dir.length + 1).split('\\').join('/'));
  return out.sort();
}

async function tensorsOf(path: string, rel: string): Promise<TensorRef[]> {
  const fh = await open(path, 'r');
  try {
    return await listTensors(fh, (await fh.stat()).size, rel);
  } finally {
    await fh.close();
  }
}

export async function expectSameLayout(original: string, marked: string): Promise<Set<string>> {
  const names = await files(original);
  expect(await files(marked)).toEqual(names);
  const changed = new Set<string>();
  const byFile = new Map<string, TensorRef[]>();
  for (const rel of names) {
    const a = await readFile(join(original, rel));
    const b = await readFile(join(marked, rel));
    expect(b.length, rel).toBe(a.length);
    const ta = await tensorsOf(join(original, rel), rel);
    const tb = await tensorsOf(join(marked, rel), rel);
    // the marked file parses (the model-format checks pack uses), to the same tensors at the same places
    expect(tb, rel).toEqual(ta);
    byFile.set(rel, tb);
    const inside = new Uint8Array(a.length);
    for (const t of tb) {
      expect(t.offset + t.length, `${rel}: ${t.name}`).toBeLessThanOrEqual(b.length);
      inside.fill(1, t.offset, t.offset + t.length);
      if (!a.subarray(t.offset, t.offset + t.length).equals(b.subarray(t.offset, t.offset + t.length))) changed.add(t.name);
    }
    let outside = 0;
    for (let i = 0; i < a.length; i++) if (!inside[i] && a[i] !== b[i]) outside++;
    expect(outside, `${rel}: bytes changed outside the tensors' data`).toBe(0);
  }
  // a safetensors index still names, for each tensor, the shard that holds it
  for (const rel of names.filter((n) => n.endsWith('.safetensors.index.json'))) {
    const idx = JSON.parse(await readFile(join(marked, rel), 'utf8')) as { weight_map: Record<string, string> };
    const wm = Object.entries(idx.weight_map);
    expect(wm.length, rel).toBeGreaterThan(0);
    for (const [tensor, shard] of wm) expect(byFile.get(shard)?.some((t) => t.name === tensor), `${rel}: ${tensor} -> ${shard}`).toBe(true);
  }
  return changed;
}
