/**
 * The bundle key hierarchy, v2 (docs/FORMAT.md §4). Every step is HKDF-SHA256 and one-way:
 *
 *   master ──► model key ──► tree root ("major" | "zero") ──► 32 levels of nodes ──► line key ──► bundle key ──► file key
 *
 * A version line is a leaf of one of two binary trees of depth 32: line "X" (X >= 1) is leaf X of
 * the "major" tree, line "0.Y" is leaf Y of the "zero" tree. A node's key derives the keys of
 * every leaf below it and of nothing else, so any interval of lines, bounded or not, is granted
 * exactly by at most 64 node keys (a range cover), and no key a licence carries opens a line
 * outside what it grants. A pin carries a bundle key alone.
 */
import { createHash } from 'node:crypto';
import { hkdfSha256 } from '../crypto/kdf.js';

export const TREE_DEPTH = 32;
export const MAX_LINE_INDEX = 2 ** TREE_DEPTH - 1;
export type Tree = 'major' | 'zero';

const enc = (s: string) => Buffer.from(s, 'utf8');

/** A line's place in the trees: "X" -> major leaf X, "0.Y" -> zero leaf Y. */
export interface LinePos {
  tree: Tree;
  index: number;
}

export function linePos(line: string): LinePos | undefined {
  const m = /^(?:0\.(0|[1-9]\d*)|([1-9]\d*))$/.exec(line);
  if (!m) return undefined;
  const tree: Tree = m[1] !== undefined ? 'zero' : 'major';
  const index = Number(m[1] ?? m[2]);
  return Number.isSafeInteger(index) && index <= MAX_LINE_INDEX ? { tree, index } : undefined;
}

export function modelKey(master: Uint8Array, modelName: string): Buffer {
  return hkdfSha256(master, enc('mlic/v2/model'), enc(modelName));
}

/**
 * The model key of the bundles marked for one licence (docs/FORMAT.md §4.1): a tree of its own,
 * so that the keys of a licence for marked bundles open no other bundle, marked or common.
 */
export function markedModelKey(master: Uint8Array, modelName: string, licenseId: string): Buffer {
  return hkdfSha256(master, enc('mlic/v2/marked-model'), enc(`${modelName}\n${licenseId}`));
}

/** A licence's watermark key (docs/FORMAT.md §5.2): what marks its outputs, and what the vendor detects them with. */
export function watermarkKey(master: Uint8Array, licenseId: string): Buffer {
  return hkdfSha256(master, enc('mlic/v1/watermark'), enc(licenseId));
}

/** The model key of the common bundles, or of those marked for `markedFor` (a licence id). */
export function modelKeyFor(master: Uint8Array, modelName: string, markedFor?: string): Buffer {
  return markedFor === undefined ? modelKey(master, modelName) : markedModelKey(master, modelName, markedFor);
}

/** The key of node (depth, prefix) of a model's tree: it covers leaves [prefix << (32 - depth), (prefix + 1) << (32 - depth)). */
export function nodeKey(modelKeyBytes: Uint8Array, tree: Tree, depth: number, prefix: number): Buffer {
  return descend(hkdfSha256(modelKeyBytes, enc('mlic/v2/tree'), enc(tree)), 0, 0, depth, prefix);
}

/** From the key of node (d0, p0) down to node (d1, p1), which must lie below it. */
export function descend(key: Uint8Array, d0: number, p0: number, d1: number, p1: number): Buffer {
  if (!(d1 >= d0 && d1 <= TREE_DEPTH && Math.floor(p1 / 2 ** (d1 - d0)) === p0)) throw new RangeError('node is not below the given node');
  let k: Buffer = Buffer.from(key);
  for (let d = d0; d < d1; d++) {
    const bit = Math.floor(p1 / 2 ** (d1 - d - 1)) % 2;
    const next = hkdfSha256(k, enc('mlic/v2/node'), Buffer.from([bit]));
    k.fill(0);
    k = next;
  }
  return k;
}

/** Does node (depth, prefix) cover leaf `index`? */
export function covers(depth: number, prefix: number, index: number): boolean {
  return Math.floor(index / 2 ** (TREE_DEPTH - depth)) === prefix;
}

/** The line key from the leaf's node key. */
export function lineKeyFromLeaf(leaf: Uint8Array, line: string): Buffer {
  return hkdfSha256(leaf, enc('mlic/v2/line'), enc(line));
}

export function lineKey(modelKeyBytes: Uint8Array, line: string): Buffer {
  const pos = linePos(line);
  if (!pos) throw new RangeError(`not a version line: ${line}`);
  const leaf = nodeKey(modelKeyBytes, pos.tree, TREE_DEPTH, pos.index);
  try {
    return lineKeyFromLeaf(leaf, line);
  } finally {
    leaf.fill(0);
  }
}

export function bundleKey(lineKeyBytes: Uint8Array, bundleIdHex: string): Buffer {
  return hkdfSha256(lineKeyBytes, enc('mlic/v2/bundle'), Buffer.from(bundleIdHex, 'hex'));
}

/** The file key binds the file's index and path (as its SHA-256, so that paths of any length fit HKDF's info). */
export function fileKey(bundleKeyBytes: Uint8Array, index: number, path: string): Buffer {
  const info = Buffer.alloc(36);
  info.writeUInt32BE(index);
  createHash('sha256').update(path, 'utf8').digest().copy(info, 4);
  return hkdfSha256(bundleKeyBytes, enc('mlic/v2/file'), info);
}

/** Published in the manifest: lets a reader check a key before decrypting anything (and commits GCM to one key). */
export function keyCommitment(bundleKeyBytes: Uint8Array, bundleIdHex: string): Buffer {
  return hkdfSha256(bundleKeyBytes, enc('mlic/v2/commit'), Buffer.from(bundleIdHex, 'hex'));
}

export function bundleKeyFromMaster(master: Uint8Array, modelName: string, line: string, bundleIdHex: string, markedFor?: string): Buffer {
  const mk = modelKeyFor(master, modelName, markedFor);
  const lk = lineKey(mk, line);
  mk.fill(0);
  try {
    return bundleKey(lk, bundleIdHex);
  } finally {
    lk.fill(0);
  }
}

/**
 * The fewest aligned nodes whose leaves are exactly [a, b] (0 <= a <= b <= MAX_LINE_INDEX):
 * at most 2 * 32. Each is [depth, prefix].
 */
export function coverInterval(a: number, b: number): [number, number][] {
  const out: [number, number][] = [];
  let lo = a;
  while (lo <= b) {
    // The largest block starting at lo that is aligned and fits in [lo, b].
    let size = 1;
    let depth = TREE_DEPTH;
    while (depth > 0 && lo % (size * 2) === 0 && lo + size * 2 - 1 <= b) {
      size *= 2;
      depth--;
    }
    out.push([depth, lo / size]);
    lo += size;
  }
  return out;
}
