/**
 * A small, seeded, reproducible mutation fuzzer for mlic's parsers (test/fuzz/*.test.ts).
 *
 * Every case is (seed, index): `rng(seed ^ index)` decides the mutation, so a failure names the
 * case and `MLIC_FUZZ_ONLY=<parser>:<index>` replays it alone. `MLIC_FUZZ_SCALE=k` multiplies the
 * case counts (default 1). Outcomes are tallied per parser (ok / refused by code / internal) and
 * printed, so the figures can be quoted.
 *
 * Mutations work on three levels:
 *  - bytes: flips, truncation at every kind of boundary, insertions, deletions, duplicated ranges;
 *  - JSON structure (an ordered AST with raw number text, so that -0, 1e400, duplicated keys and
 *    invalid tokens can be written): removed / added / duplicated fields, type changes, extreme
 *    numbers, deep nesting, long strings, control / bidi / lone-surrogate text, base64 of wrong
 *    lengths or non-canonical spelling, hex case and length, values swapped in from a second valid
 *    input;
 *  - format envelopes (armour, line endings) in the tests themselves.
 */
import { expect } from 'vitest';
import { MlicError } from '../../src/errors.js';

// ---------------------------------------------------------------------------------------------
// PRNG (sfc32 seeded through splitmix32): tiny, fast, reproducible

export interface Rng {
  (): number;
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
}

export function rng(seed: number): Rng {
  let s = seed >>> 0;
  const split = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split();
  let b = split();
  let c = split();
  let d = split();
  const next = () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
  for (let i = 0; i < 12; i++) next();
  const r = next as Rng;
  r.int = (n) => Math.floor(next() * n);
  r.pick = (xs) => xs[Math.floor(next() * xs.length)]!;
  r.chance = (p) => next() < p;
  return r;
}

// ---------------------------------------------------------------------------------------------
// JSON as an ordered AST (raw tokens allowed)

export type Ast = { t: 'obj'; e: [string, Ast][] } | { t: 'arr'; a: Ast[] } | { t: 'raw'; s: string };

export function toAst(v: unknown): Ast {
  if (Array.isArray(v)) return { t: 'arr', a: v.map(toAst) };
  if (v !== null && typeof v === 'object') return { t: 'obj', e: Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).map(([k, x]) => [k, toAst(x)]) };
  return { t: 'raw', s: JSON.stringify(v) ?? 'null' };
}

export function clone(a: Ast): Ast {
  return a.t === 'obj' ? { t: 'obj', e: a.e.map(([k, v]) => [k, clone(v)]) } : a.t === 'arr' ? { t: 'arr', a: a.a.map(clone) } : { t: 'raw', s: a.s };
}

/** JSON text; `canonical` sorts keys (UTF-16 order) as canonical JSON does, keeping duplicates. */
export function serialize(a: Ast, o: { canonical?: boolean; indent?: boolean } = {}, depth = 0): string {
  const nl = o.indent ? '\n' + '  '.repeat(depth + 1) : '';
  const end = o.indent ? '\n' + '  '.repeat(depth) : '';
  const sep = o.indent ? ': ' : ':';
  if (a.t === 'raw') return a.s;
  if (a.t === 'arr') return a.a.length ? '[' + nl + a.a.map((x) => serialize(x, o, depth + 1)).join(',' + nl) + end + ']' : '[]';
  const e = o.canonical ? [...a.e].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0)) : a.e;
  return e.length ? '{' + nl + e.map(([k, v]) => JSON.stringify(k) + sep + serialize(v, o, depth + 1)).join(',' + nl) + end + '}' : '{}';
}

/** A short description of a node (never the whole subtree). */
function preview(a: Ast): string {
  if (a.t === 'raw') return a.s.length > 60 ? `${a.s.slice(0, 40)}... (${a.s.length} chars)` : a.s;
  return a.t === 'arr' ? `[${a.a.length} items]` : `{${a.e.map(([k]) => k).slice(0, 5).join(',')}}`;
}

type Slot = { get: () => Ast; set: (v: Ast) => void; path: string; parent?: Ast; key?: string };

/** Every node of the tree, with a setter, its path and its parent. */
export function slots(root: { v: Ast }): Slot[] {
  const out: Slot[] = [];
  const walk = (get: () => Ast, set: (v: Ast) => void, path: string, parent?: Ast, key?: string) => {
    out.push({ get, set, path, ...(parent ? { parent } : {}), ...(key !== undefined ? { key } : {}) });
    const n = get();
    if (n.t === 'obj') n.e.forEach((entry, i) => walk(() => n.e[i]![1], (v) => (n.e[i]![1] = v), `${path}.${entry[0]}`, n, entry[0]));
    else if (n.t === 'arr') n.a.forEach((_, i) => walk(() => n.a[i]!, (v) => (n.a[i] = v), `${path}[${i}]`, n));
  };
  walk(() => root.v, (v) => (root.v = v), '$');
  return out;
}

const raw = (s: string): Ast => ({ t: 'raw', s });
const str = (s: string): Ast => raw(JSON.stringify(s));

function nest(depth: number, inner: Ast, kind: 'arr' | 'obj'): Ast {
  // Deep nesting as one raw token (the AST helpers recurse).
  if (depth > 64) return raw(kind === 'arr' ? '['.repeat(depth) + serialize(inner) + ']'.repeat(depth) : '{"a":'.repeat(depth) + serialize(inner) + '}'.repeat(depth));
  let n = inner;
  for (let i = 0; i < depth; i++) n = kind === 'arr' ? { t: 'arr', a: [n] } : { t: 'obj', e: [['a', n]] };
  return n;
}

export const WEIRD_NUMBERS = ['0', '-0', '1', '-1', '0.5', '1.5', '-1.5', '1.0', '1e0', '1E2', '2.5e3', '1e400', '-1e400', '1e-400', '4294967295', '4294967296', '9007199254740991', '9007199254740992', '9007199254740993', '-9007199254740993', '18446744073709551616', '123456789012345678901234567890123456789', '0.1', '1e21', '5e-324'];
// Not JSON, on purpose.
export const BAD_TOKENS = ['NaN', 'Infinity', '-Infinity', '01', '+1', '.5', '0x10', 'undefined', "'x'", '1.', '--1', '1e', 'tru', 'nul', '"unterminated', '"\\u12"', '"\\x41"'];
export const WEIRD_STRINGS = [
  '', ' ', 'NaN', 'Infinity', '-0', '1e400', '0', 'null', 'true', '[]', '{}', '__proto__', 'constructor',
  '\u202e', 'abc\u202edef', '\u2066x\u2069', '\u200b', '\u061c', '\ufeff', '\u0000', 'a\u0000b', '\u001b[2J\u001b[H', '\r\n', '\n', '\t', '\u007f', '\u0085', '\u2028',
  '\ud800', '\udfff', '\ud83d\ude00', 'é', 'e\u0301', '\uffff', '../../etc/passwd', '/etc/passwd', 'C:\\x', 'a\\b', 'a//b', './a', 'a/./b', '.', '..',
  '2026-13-01T00:00:00Z', '2026-02-30T00:00:00Z', '0000-01-01T00:00:00Z', '9999-12-31T23:59:59Z', '1969-12-31T23:59:59Z', '2300-01-01T00:00:00Z', '2026-01-01T00:00:00.123Z', '2026-01-01T00:00:60Z', '2026-01-01',
  '0.0.0', '99999999999999999999.0.0', '4294967296.0.0', '1.2.3-', '1.2.3+', '^2', '>=1 <2 || x', '*', '=1.0.0',
];

/** A string of `n` characters from a small alphabet (fast to make, bounded). */
function longString(r: Rng, n: number): string {
  const alphabet = r.pick(['a', 'A', '0', '/', 'a/', 'é', '\u202e', '=', ' ']);
  return alphabet.repeat(Math.ceil(n / alphabet.length)).slice(0, n);
}

// ---------------------------------------------------------------------------------------------
// base64 and hex mutations

const B64_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const looksB64 = (s: string) => s.length >= 4 && s.length % 4 === 0 && /^[A-Za-z0-9+/]+={0,2}$/.test(s) && !/^[0-9a-f]+$/.test(s);
const looksHex = (s: string) => /^[0-9a-fA-F]{8,}$/.test(s);

export function mutateB64(r: Rng, s: string): string {
  const bytes = Buffer.from(s, 'base64');
  switch (r.int(12)) {
    case 0: // a length off by one either way
      return Buffer.concat([bytes, Buffer.from([r.int(256)])]).toString('base64');
    case 1:
      return bytes.subarray(0, Math.max(0, bytes.length - 1 - r.int(3))).toString('base64');
    case 2: // padding removed or added
      return s.replace(/=+$/, '') || s + '=';
    case 3:
      return s + '==';
    case 4: { // non-canonical: the last character's unused bits set
      const m = /([A-Za-z0-9+/])(=+)$/.exec(s);
      if (!m) return s.slice(0, -1) + B64_CHARS[(B64_CHARS.indexOf(s.at(-1)!) + 1) % 64];
      const i = B64_CHARS.indexOf(m[1]!);
      return s.slice(0, s.length - m[0].length) + B64_CHARS[(i ^ (m[2]!.length === 1 ? 1 : 8)) % 64] + m[2];
    }
    case 5: // URL-safe alphabet
      return s.replace(/\+/g, '-').replace(/\//g, '_').replace(/A/, '-');
    case 6: // whitespace inside
      return s.slice(0, 4) + r.pick([' ', '\n', '\r\n', '\t']) + s.slice(4);
    case 7: // wrong lengths entirely
      return Buffer.alloc(r.pick([0, 1, 16, 24, 31, 33, 48, 63, 64, 65, 80, 81, 4096])).toString('base64');
    case 8: // an invalid character
      return s.slice(0, 2) + r.pick(['*', '.', '!', 'é', '\u0000', '=']) + s.slice(3);
    case 9: // one bit of the decoded bytes
      if (bytes.length) {
        const i = r.int(bytes.length);
        bytes[i] = bytes[i]! ^ (1 << r.int(8));
      }
      return bytes.toString('base64');
    case 10: // hex instead of base64
      return bytes.toString('hex');
    default: // padding in the middle
      return s.slice(0, 4) + '=' + s.slice(4);
  }
}

export function mutateHex(r: Rng, s: string): string {
  switch (r.int(6)) {
    case 0:
      return s.toUpperCase();
    case 1:
      return s.slice(0, -1);
    case 2:
      return s + r.pick(['0', 'a', 'g', '00']);
    case 3:
      return s.slice(0, 5) + r.pick(['g', 'G', ' ', 'x', '-']) + s.slice(6);
    case 4:
      return s.slice(0, s.length / 2);
    default:
      return s + s;
  }
}

// ---------------------------------------------------------------------------------------------
// value replacements

function weirdValue(r: Rng, old: Ast, other: Ast | undefined): Ast {
  const k = r.int(20);
  if (k === 0) return raw(r.pick(WEIRD_NUMBERS));
  if (k === 1) return str(r.pick(WEIRD_STRINGS));
  if (k === 2) return raw(r.pick(['null', 'true', 'false']));
  if (k === 3) return { t: 'arr', a: r.chance(0.5) ? [] : [clone(old)] };
  if (k === 4) return { t: 'obj', e: r.chance(0.5) ? [] : [['x', clone(old)]] };
  if (k === 5) return nest(r.pick([14, 15, 16, 17, 18, 40, 200, 5000]), r.chance(0.5) ? raw('1') : clone(old), r.chance(0.5) ? 'arr' : 'obj');
  if (k === 6) return str(longString(r, r.pick([100, 128, 129, 255, 256, 257, 1000, 1095, 4001, 4096, 4097, 70000, 300000])));
  if (k === 7 && other) return clone(other);
  if (k === 8 && old.t === 'raw') {
    // type change of the same value: string <-> number <-> array
    let v: unknown;
    try {
      v = JSON.parse(old.s);
    } catch {
      v = old.s;
    }
    if (typeof v === 'number') return r.pick([str(String(v)), raw(`${v}.5`), raw(`${v}e0`), raw(String(-v)), raw(String(v + 1)), raw(String(v * 2 ** 53)), raw(`${v}.0`)]);
    if (typeof v === 'string') {
      const n = Number(v);
      return r.pick([raw(Number.isFinite(n) && v !== '' ? String(n) : '0'), { t: 'arr', a: [str(v)] }, { t: 'obj', e: [[v.slice(0, 32) || 'k', str(v)]] }, raw('null')]);
    }
    return str(String(v));
  }
  if (k === 9 && old.t === 'raw' && old.s.startsWith('"')) {
    const s = JSON.parse(old.s) as string;
    if (looksB64(s)) return str(mutateB64(r, s));
    if (looksHex(s)) return str(mutateHex(r, s));
    const i = r.int(s.length + 1);
    return str(
      r.pick([
        s.slice(0, i),
        s.slice(0, i) + r.pick(WEIRD_STRINGS) + s.slice(i),
        s.toUpperCase(),
        s + s,
        ' ' + s,
        s + '\n',
        s.replace(/[0-9]/, (d) => String((Number(d) + 1) % 10)),
      ]),
    );
  }
  if (k === 10 && old.t === 'raw' && old.s.startsWith('"')) {
    const s = JSON.parse(old.s) as string;
    // an escape the serializer never writes: "\u0041" for "A", "\/" for "/"
    return raw(JSON.stringify(s).replace(/[A-Za-z/]/, (c) => (c === '/' ? '\\/' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)));
  }
  if (k === 11) return raw(r.pick(BAD_TOKENS));
  if (k === 12 && old.t === 'raw' && /^-?\d+$/.test(old.s)) {
    const n = Number(old.s);
    return raw(r.pick([String(n - 1), String(n + 1), '-1', String(2 ** 31), String(2 ** 32), String(2 ** 48), String(2 ** 53 - 1), String(n * 1000), `${n}.000001`, '1e3']));
  }
  return raw(r.pick([...WEIRD_NUMBERS, 'null', 'true', '""', '[]', '{}']));
}

export interface JsonMutation {
  ast: Ast;
  desc: string;
}

/**
 * One to three structural mutations of `doc` (a JSON value); `others` are other valid inputs of
 * the same kind whose values may be swapped in at the same path.
 */
export function mutateJson(r: Rng, doc: unknown, others: unknown[] = [], extraKeys: readonly string[] = []): JsonMutation {
  const root = { v: toAst(doc) };
  const otherSlots = others.map((o) => new Map(slots({ v: toAst(o) }).map((s) => [s.path, s.get()] as const)));
  const descs: string[] = [];
  const n = 1 + (r.chance(0.25) ? r.int(3) : 0);
  for (let m = 0; m < n; m++) {
    const all = slots(root);
    const s = r.pick(all);
    const objs = all.filter((x) => x.get().t === 'obj');
    const op = r.int(10);
    if (op === 0 && s.parent?.t === 'obj') {
      // remove a field
      s.parent.e = s.parent.e.filter(([k]) => k !== s.key);
      descs.push(`remove ${s.path}`);
    } else if (op === 1 && objs.length) {
      // add a field (unknown, or a known one in the wrong place)
      const o = r.pick(objs).get() as Extract<Ast, { t: 'obj' }>;
      const key = r.pick([...extraKeys, 'extra', '__proto__', 'constructor', 'toString', '', '\u202e', 'v', 'payload', 'signature', 'kind']);
      o.e.splice(r.int(o.e.length + 1), 0, [key, weirdValue(r, raw('1'), undefined)]);
      descs.push(`add ${key} in ${s.path}`);
    } else if (op === 2 && s.parent?.t === 'obj') {
      // duplicate a field, first or last wins depending on the order
      const p = s.parent;
      const dup: [string, Ast] = [s.key!, r.chance(0.5) ? weirdValue(r, s.get(), otherSlots[0]?.get(s.path)) : clone(s.get())];
      p.e.splice(r.chance(0.5) ? 0 : p.e.length, 0, dup);
      descs.push(`duplicate ${s.path}`);
    } else if (op === 3 && s.parent?.t === 'arr') {
      // duplicate, drop or reorder an array element
      const p = s.parent;
      const i = p.a.indexOf(s.get());
      const which = r.int(3);
      if (which === 0) p.a.splice(i, 0, clone(s.get()));
      else if (which === 1) p.a.splice(i, 1);
      else p.a.reverse();
      descs.push(`${['dup', 'drop', 'reverse'][which]} element ${s.path}`);
    } else if (op === 4 && otherSlots.length) {
      // swap in the value at the same path from another valid input
      const o = r.pick(otherSlots).get(s.path);
      if (o) {
        s.set(clone(o));
        descs.push(`swap ${s.path} from another input`);
      } else {
        s.set(weirdValue(r, s.get(), undefined));
        descs.push(`replace ${s.path}`);
      }
    } else if (op === 5) {
      // grow an array past bounds
      const arrs = all.filter((x) => x.get().t === 'arr');
      if (arrs.length) {
        const a = r.pick(arrs);
        const node = a.get() as Extract<Ast, { t: 'arr' }>;
        const count = r.pick([17, 64, 65, 256, 257, 1025, r.chance(0.2) ? 5000 : 65]);
        const item = node.a[0] ?? raw('1');
        a.set({ t: 'arr', a: Array.from({ length: count }, () => clone(item)) });
        descs.push(`grow ${a.path} to ${count}`);
      } else {
        s.set(weirdValue(r, s.get(), undefined));
        descs.push(`replace ${s.path}`);
      }
    } else {
      const before = preview(s.get());
      s.set(weirdValue(r, s.get(), otherSlots.length ? r.pick(otherSlots).get(s.path) : undefined));
      descs.push(`replace ${s.path} (${before}) with ${preview(s.get())}`);
    }
  }
  return { ast: root.v, desc: descs.join('; ') };
}

// ---------------------------------------------------------------------------------------------
// byte / text mutations

const BOUNDARY = new Set('{}[],:"\n=-'.split('').map((c) => c.charCodeAt(0)));

/** One to three byte-level mutations (flips, truncation at a boundary, insertion, deletion, duplication). */
export function mutateBytes(r: Rng, input: Uint8Array): { bytes: Buffer; desc: string } {
  let b = Buffer.from(input);
  const descs: string[] = [];
  const n = 1 + (r.chance(0.3) ? r.int(3) : 0);
  for (let m = 0; m < n; m++) {
    const at = r.int(b.length + 1);
    switch (r.int(9)) {
      case 0: {
        if (!b.length) break;
        const i = r.int(b.length);
        b[i] = b[i]! ^ (1 << r.int(8));
        descs.push(`flip bit at ${i}`);
        break;
      }
      case 1: {
        // truncate at a structural boundary (before or after it)
        const cuts: number[] = [];
        for (let i = 0; i < b.length; i++) if (BOUNDARY.has(b[i]!)) cuts.push(i, i + 1);
        const cut = cuts.length ? r.pick(cuts) : at;
        b = b.subarray(0, cut);
        descs.push(`truncate at boundary ${cut}`);
        break;
      }
      case 2:
        b = b.subarray(0, at);
        descs.push(`truncate at ${at}`);
        break;
      case 3: {
        const ins = r.pick([
          Buffer.from([r.int(256)]),
          Buffer.from(r.pick(['\n', '\r', ' ', '\u0000', '"', ',', '{', '[', ']', '}', ':', '\\', '=', '-----', '\ufeff', '\u202e', '\ud800'])),
          Buffer.from([0xc3]), // a lone UTF-8 lead byte
          Buffer.from([0xff, 0xfe]),
          Buffer.alloc(r.pick([16, 512, 4096]), r.int(256)),
        ]);
        b = Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
        descs.push(`insert ${ins.length} bytes at ${at}`);
        break;
      }
      case 4: {
        const len = 1 + r.int(Math.min(64, Math.max(1, b.length - at)));
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + len)]);
        descs.push(`delete ${len} at ${at}`);
        break;
      }
      case 5: {
        const len = 1 + r.int(64);
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + len), b.subarray(at)]);
        descs.push(`duplicate ${len} at ${at}`);
        break;
      }
      case 6: {
        if (!b.length) break;
        const i = r.int(b.length);
        b[i] = r.pick([0, 0x20, 0x22, 0x2c, 0x30, 0x39, 0x7b, 0x7d, 0x5b, 0x5d, 0x7f, 0x80, 0xff, r.int(256)]);
        descs.push(`set byte ${i}`);
        break;
      }
      case 7: {
        // swap two ranges
        if (b.length < 8) break;
        const len = 1 + r.int(Math.min(32, Math.floor(b.length / 2)));
        const i = r.int(b.length - len);
        const j = r.int(b.length - len);
        const x = Buffer.from(b.subarray(i, i + len));
        b.copy(b, i, j, j + len);
        x.copy(b, j);
        descs.push(`swap ${len} bytes ${i}<->${j}`);
        break;
      }
      default: {
        const ch = r.pick(['\r\n', '\n\n', '']);
        b = Buffer.from(b.toString('latin1').replace(/\n/g, ch === '' ? '' : ch), 'latin1');
        descs.push(`newlines -> ${JSON.stringify(ch)}`);
      }
    }
  }
  return { bytes: b, desc: descs.join('; ') || 'unchanged' };
}

/** Text mutations: bytes re-decoded as UTF-8 (what readTextFile does). */
export function mutateText(r: Rng, text: string): { text: string; desc: string } {
  const m = mutateBytes(r, Buffer.from(text, 'utf8'));
  return { text: m.bytes.toString('utf8'), desc: m.desc };
}

// ---------------------------------------------------------------------------------------------
// running and tallying

export type Outcome = 'ok' | string;

export interface Internal {
  index: number;
  desc: string;
  error: string;
}

/** Internal errors, hangs, and an accepted mutation that had to be refused. */
const isFailure = (o: string) => o.startsWith('INTERNAL') || o === 'HANG' || o === 'UNEXPECTED_OK';

export class Tally {
  readonly counts = new Map<string, number>();
  readonly internals: Internal[] = [];
  total = 0;
  slowest = 0;

  constructor(readonly name: string) {}

  add(outcome: string, index: number, desc: string, error?: unknown): void {
    this.total++;
    this.counts.set(outcome, (this.counts.get(outcome) ?? 0) + 1);
    if (isFailure(outcome)) {
      this.internals.push({ index, desc, error: error instanceof Error ? `${error.name}: ${error.message}\n${error.stack?.split('\n').slice(1, 6).join('\n')}` : String(error) });
    }
  }

  get internal(): number {
    return this.internals.length;
  }

  summary(): string {
    const ok = this.counts.get('ok') ?? 0;
    const codes = [...this.counts.entries()].filter(([k]) => k !== 'ok' && !isFailure(k)).sort((a, b) => b[1] - a[1]);
    const refused = codes.reduce((a, [, n]) => a + n, 0);
    return `[fuzz] ${this.name}: ${this.total} mutations, ${ok} ok, ${refused} refused (${codes.map(([k, n]) => `${k} ${n}`).join(', ') || '-'}), ${this.internal} internal; slowest case ${this.slowest.toFixed(0)} ms`;
  }

  /** Prints the figures and fails on any internal error, naming the first few cases. */
  report(): void {
    console.log(this.summary());
    // one example per distinct failure (error and where it was thrown), with how often it happened
    const groups = new Map<string, { n: number; first: Internal }>();
    for (const i of this.internals) {
      const lines = i.error.split('\n');
      const sig = `${lines[0]!.replace(/\d+/g, 'N').slice(0, 120)} @ ${(lines[1] ?? '').trim().replace(/:\d+:\d+\)?$/, '')}`;
      const g = groups.get(sig);
      if (g) g.n++;
      else groups.set(sig, { n: 1, first: i });
    }
    const shown = [...groups.values()].slice(0, 10).map(({ n, first: i }) => `  ${n}x, e.g. #${i.index}: ${i.desc.slice(0, 300)}\n    ${i.error.replace(/\n/g, '\n    ')}`);
    expect(this.internal, `${this.name}: internal errors, hangs or wrongly accepted inputs\n${shown.join('\n')}`).toBe(0);
  }
}

class Hang extends Error {}

/**
 * Runs one case under a time bound: 'ok', the MlicError code, 'HANG' past `ms`, or
 * 'INTERNAL:<name>' for any other error. A synchronous parser cannot be interrupted, so its
 * elapsed time is checked after the fact (a case over the bound is a HANG too).
 */
export async function outcomeOf(fn: () => unknown, ms: number, t: Tally): Promise<{ outcome: string; error?: unknown }> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(fn),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Hang(`no answer within ${ms} ms`)), ms);
      }),
    ]);
    const dt = performance.now() - t0;
    t.slowest = Math.max(t.slowest, dt);
    return dt > ms ? { outcome: 'HANG', error: new Hang(`took ${dt.toFixed(0)} ms`) } : { outcome: 'ok' };
  } catch (e) {
    const dt = performance.now() - t0;
    t.slowest = Math.max(t.slowest, dt);
    if (e instanceof Hang) return { outcome: 'HANG', error: e };
    if (dt > ms) return { outcome: 'HANG', error: new Hang(`took ${dt.toFixed(0)} ms`) };
    if (e instanceof MlicError) {
      if (e.code === 'INTERNAL') return { outcome: 'INTERNAL:MlicError', error: e };
      return { outcome: e.code };
    }
    return { outcome: `INTERNAL:${(e as Error)?.name ?? typeof e}`, error: e };
  } finally {
    clearTimeout(timer);
  }
}

export const SCALE = Number(process.env.MLIC_FUZZ_SCALE ?? '1') || 1;
const ONLY = process.env.MLIC_FUZZ_ONLY; // "<parser>:<index>"
const VERBOSE = Boolean(process.env.MLIC_FUZZ_VERBOSE);

/** Case count for a parser, scaled. */
export function cases(n: number): number {
  return Math.max(1, Math.round(n * SCALE));
}

/**
 * Runs `n` cases of `make(r, i)` -> { desc, run } for one parser, tallying outcomes; `check`
 * (optional) may add assertions per outcome (e.g. a mutation that must not be accepted).
 */
export async function fuzz(
  name: string,
  seed: number,
  n: number,
  ms: number,
  make: (r: Rng, i: number) => Promise<{ desc: string; run: () => unknown; mustRefuse?: boolean }> | { desc: string; run: () => unknown; mustRefuse?: boolean },
): Promise<Tally> {
  const t = new Tally(name);
  const only = ONLY?.startsWith(`${name}:`) ? Number(ONLY.slice(name.length + 1)) : undefined;
  for (let i = 0; i < n; i++) {
    if (only !== undefined && i !== only) continue;
    const c = await make(rng((seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0), i);
    const t0 = performance.now();
    const { outcome, error } = await outcomeOf(c.run, ms, t);
    if (VERBOSE && performance.now() - t0 > 200) console.log(`[fuzz] ${name}:${i} took ${(performance.now() - t0).toFixed(0)} ms: ${c.desc.slice(0, 200)} -> ${outcome}`);
    if (only !== undefined) console.log(`[fuzz] ${name}:${i}: ${c.desc} -> ${outcome}`, error ?? '');
    if (c.mustRefuse && outcome === 'ok') t.add('UNEXPECTED_OK', i, c.desc, new Error('a mutation that must be refused was accepted'));
    else t.add(outcome, i, c.desc, error);
  }
  return t;
}
