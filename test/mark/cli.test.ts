/**
 * Leak tracing through the built binary, as a vendor and a customer run it: pack, issue licences
 * for marked bundles, mark, activate and unpack on a host (the leak), trace; for a single
 * safetensors file, components, a sharded checkpoint with its index, and a GGUF file. And the
 * keys: a licence for marked bundles opens its own marked bundle only, whatever the manifest
 * claims. And trace's plaintext of the original: in TMPDIR, removed on success and on error.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { join } from 'node:path';
import { readFile, readdir, copyFile, mkdir, writeFile } from 'node:fs/promises';
import { mlic } from '../cli/run.js';
import { tmp } from '../helpers.js';
import { attacks, readModel, synthModel, writeSafetensors } from './synth.js';
import { parseLicenseText } from '../../src/format/license.js';
import { bundleKeyFromLicense } from '../../src/license/keys.js';
import { checkBundleKey } from '../../src/bundle/decrypt.js';
import { BundleFile } from '../../src/bundle/reader.js';
import { parseManifest } from '../../src/format/manifest.js';
import { indexModel } from '../../src/mark/model.js';
import { markable } from '../../src/mark/tensors.js';
import { ggufModel } from './gguf-file.js';
import { expectSameLayout } from './layout.js';

let dir: string;
let env: Record<string, string>;
const ids: Record<string, string> = {};

const run = (args: string[]) => mlic(args, { cwd: dir, env });

async function manifestOf(path: string) {
  const b = await BundleFile.open(path);
  try {
    return parseManifest((await b.readHead()).manifestBytes);
  } finally {
    await b.close();
  }
}

beforeAll(async () => {
  dir = await tmp();
  env = { MLIC_HOME: join(dir, 'home') };
  expect((await run(['keygen', '--unencrypted'])).code).toBe(0);
  await writeSafetensors(join(dir, 'model', 'model.safetensors'), synthModel(7, 160, 4));
  expect((await run(['pack', 'model', '--name', 'llm', '--version', '1.2.0', '--key', 'vendor.key'])).code).toBe(0);
  await mkdir(join(dir, 'issued'));
  for (const c of ['acme', 'globex']) {
    const r = await run(['license', 'issue', '--key', 'vendor.key', '--unbound', '--model', 'llm', '--versions', '^1', '--days', '30', '--marked', '--customer', c, '-o', `issued/${c}.lic`, '--json']);
    expect(r.code, r.stderr).toBe(0);
    ids[c] = r.json.result.licenseId;
  }
  const plain = await run(['license', 'issue', '--key', 'vendor.key', '--unbound', '--model', 'llm', '--versions', '^1', '--days', '30', '-o', 'issued/plain.lic']);
  expect(plain.code).toBe(0);
}, 120_000);

describe('mlic mark and mlic trace', () => {
  it('marks a bundle for a licence, which opens it on the customer’s host; the leak is traced to that licence, with exit 0', async () => {
    const m = await run(['mark', 'llm-1.2.0.mlb', '--license', 'issued/acme.lic', '--key', 'vendor.key', '-o', 'llm-acme.mlb', '--json']);
    expect(m.code, m.stderr).toBe(0);
    expect(m.json.result).toMatchObject({ licenseId: ids.acme, tensors: { marked: 24 }, model: { name: 'llm', version: '1.2.0' } });
    expect(m.json.result.share).toBeGreaterThan(0.8);
    expect((await manifestOf(join(dir, 'llm-acme.mlb'))).marked).toEqual({ license: ids.acme });
    expect((await run(['mark', 'llm-1.2.0.mlb', '--license', 'issued/globex.lic', '--key', 'vendor.key', '-o', 'llm-globex.mlb'])).code).toBe(0);
    // the customer
    expect((await run(['trust', 'add', 'vendor.pub'])).code).toBe(0);
    expect((await run(['activate', 'issued/acme.lic'])).code).toBe(0);
    const u = await run(['unpack', 'llm-acme.mlb', '-o', 'leak']);
    expect(u.code, u.stderr).toBe(0);
    // the vendor, on a leaked copy cast to float16 and renamed
    const leaked = attacks.rename(attacks.castF16(await readModel(join(dir, 'leak'))));
    await writeSafetensors(join(dir, 'leaked.safetensors'), leaked, { dtype: 'F16' });
    const t = await run(['trace', 'leaked.safetensors', '--original', 'llm-1.2.0.mlb', '--key', 'vendor.key', '--licenses', 'issued', '--json']);
    expect(t.code, t.stderr).toBe(0);
    expect(t.json.result.implicated).toEqual([{ licenseId: ids.acme, customer: 'acme' }]);
    expect(t.json.result.candidates).toHaveLength(2);
    expect(t.json.result.skipped).toEqual({ 'not for marked bundles': 1 });
    const human = await run(['trace', 'leaked.safetensors', '--original', 'llm-1.2.0.mlb', '--key', 'vendor.key', '--licenses', 'issued']);
    expect(human.stdout).toContain(`IMPLICATED: licence ${ids.acme} (customer acme)`);
    // no plaintext left behind by mark or trace
    expect((await readdir(dir)).filter((f) => f.startsWith('.mlic-'))).toEqual([]);
  }, 120_000);

  it('a licence for marked bundles opens neither the common bundle nor another customer’s; the friendly check aside, its keys cannot', async () => {
    const common = await run(['unpack', 'llm-1.2.0.mlb', '-o', 'x1']);
    expect(common.code).toBe(1);
    expect(common.stderr).toContain('KEY_MISMATCH');
    const other = await run(['unpack', 'llm-globex.mlb', '-o', 'x2']);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain(`marked for licence ${ids.globex!.slice(0, 8)}`);
    // the keys themselves: a manifest that claims to be acme's gets a key from acme's licence that fails the key commitment
    const acme = parseLicenseText(await readFile(join(dir, 'issued', 'acme.lic'), 'utf8')).payload;
    for (const b of ['llm-1.2.0.mlb', 'llm-globex.mlb']) {
      const m = await manifestOf(join(dir, b));
      const k = bundleKeyFromLicense(acme, { ...m, marked: { license: acme.licenseId } }, undefined);
      expect(() => checkBundleKey(m, k), b).toThrow(expect.objectContaining({ code: 'KEY_MISMATCH' }));
    }
    // and a plain licence's keys do not open a marked bundle
    const plain = parseLicenseText(await readFile(join(dir, 'issued', 'plain.lic'), 'utf8')).payload;
    const m = await manifestOf(join(dir, 'llm-acme.mlb'));
    const { marked: _drop, ...asCommon } = m;
    expect(() => checkBundleKey(m, bundleKeyFromLicense(plain, asCommon, undefined))).toThrow(expect.objectContaining({ code: 'KEY_MISMATCH' }));
  }, 60_000);

  it('says so when nobody is implicated (exit 1, NOT_IMPLICATED) or the suspect matches nothing (TRACE_NO_MATCH), and refuses what cannot be marked', async () => {
    await mkdir(join(dir, 'orig'));
    await copyFile(join(dir, 'model', 'model.safetensors'), join(dir, 'orig', 'model.safetensors'));
    const plain = await run(['trace', 'orig', '--original', 'llm-1.2.0.mlb', '--key', 'vendor.key', '--licenses', 'issued', '--json']);
    expect(plain.code).toBe(1);
    expect(plain.json.error).toMatchObject({ code: 'NOT_IMPLICATED', details: { implicated: [], differing: 0 } });
    await writeSafetensors(join(dir, 'other.safetensors'), synthModel(8, 96, 2));
    const other = await run(['trace', 'other.safetensors', '--original', 'llm-1.2.0.mlb', '--key', 'vendor.key', '--licenses', 'issued', '--json']);
    expect(other.code).toBe(1);
    expect(other.json.error.code).toBe('TRACE_NO_MATCH');
    const notModel = await run(['trace', 'vendor.pub', '--original', 'llm-1.2.0.mlb', '--key', 'vendor.key', '--licenses', 'issued']);
    expect(notModel.code).toBe(1);
    expect(notModel.stderr).toContain('TRACE_NO_MATCH');
    const noLic = await run(['mark', 'llm-1.2.0.mlb', '--license', 'issued/plain.lic', '--key', 'vendor.key', '-o', 'x.mlb']);
    expect(noLic.code).toBe(2);
    expect(noLic.stderr).toContain('was not issued for marked bundles');
    const twice = await run(['mark', 'llm-acme.mlb', '--license', 'issued/globex.lic', '--key', 'vendor.key', '-o', 'y.mlb']);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain('give the common bundle');
    const exists = await run(['mark', 'llm-1.2.0.mlb', '--license', 'issued/acme.lic', '--key', 'vendor.key', '-o', 'llm-acme.mlb']);
    expect(exists.code).toBe(2);
    expect(exists.stderr).toContain('IO_EXISTS');
    const strength = await run(['mark', 'llm-1.2.0.mlb', '--license', 'issued/acme.lic', '--key', 'vendor.key', '--strength', '2']);
    expect(strength.code).toBe(2);
    const none = await run(['trace', 'leaked.safetensors', '--original', 'llm-1.2.0.mlb', '--key', 'vendor.key', '--licenses', 'model']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('holds no licence for marked bundles');
    expect((await readdir(dir)).filter((f) => f.startsWith('.mlic-') || f.includes('.tmp-'))).toEqual([]);
  }, 120_000);

  it('marks a bundle of components (each stays a component); a leak of one component alone is traced', async () => {
    await writeSafetensors(join(dir, 'det', 'model.safetensors'), synthModel(11, 128, 3));
    await writeSafetensors(join(dir, 'rec', 'model.safetensors'), synthModel(12, 128, 3));
    expect((await run(['pack', '--component', 'det=det', '--component', 'rec=rec', '--name', 'pipe', '--version', '2.0.0', '--key', 'vendor.key'])).code).toBe(0);
    const lic = await run(['license', 'issue', '--key', 'vendor.key', '--unbound', '--model', 'pipe', '--versions', '^2', '--days', '30', '--marked', '--customer', 'acme', '-o', 'issued/pipe-acme.lic', '--json']);
    expect(lic.code).toBe(0);
    const m = await run(['mark', 'pipe-2.0.0.mlb', '--license', 'issued/pipe-acme.lic', '--key', 'vendor.key', '-o', 'pipe-acme.mlb', '--json']);
    expect(m.code, m.stderr).toBe(0);
    expect(m.json.result.tensors.marked).toBe(36);
    const before = await manifestOf(join(dir, 'pipe-2.0.0.mlb'));
    const after = await manifestOf(join(dir, 'pipe-acme.mlb'));
    expect(after.components).toEqual(before.components);
    expect(after.files.map((f) => [f.path, f.component, f.size])).toEqual(before.files.map((f) => [f.path, f.component, f.size]));
    expect((await run(['activate', 'issued/pipe-acme.lic'])).code).toBe(0);
    expect((await run(['unpack', 'pipe-acme.mlb', '-o', 'pipe-leak'])).code).toBe(0);
    const t = await run(['trace', 'pipe-leak/rec', '--original', 'pipe-2.0.0.mlb', '--key', 'vendor.key', '--licenses', 'issued', '--json']);
    expect(t.code, t.stderr).toBe(0);
    expect(t.json.result.implicated).toEqual([{ licenseId: lic.json.result.licenseId, customer: 'acme' }]);
    expect(t.json.result.matched).toHaveLength(18);
  }, 120_000);

  it('marks bundles of a sharded checkpoint (shards, index, config) and of a GGUF file: the unpacked copies keep their files and layout, and are traced', async () => {
    await writeSafetensors(join(dir, 'sharded'), synthModel(13, 128, 3), { shards: 3, index: true });
    await writeFile(join(dir, 'sharded', 'config.json'), JSON.stringify({ architectures: ['SyntheticForCausalLM'] }));
    await mkdir(join(dir, 'gg'));
    await writeFile(join(dir, 'gg', 'model.gguf'), ggufModel(synthModel(14, 128, 2), { quantized: true }).bytes);
    for (const [name, src, marked, other] of [
      ['shard', 'sharded', 18, {}],
      ['gg', 'gg', 12, { Q8_0: 1 }],
    ] as const) {
      expect((await run(['pack', src, '--name', name, '--version', '1.0.0', '--key', 'vendor.key'])).code).toBe(0);
      const lic = await run(['license', 'issue', '--key', 'vendor.key', '--unbound', '--model', name, '--versions', '^1', '--days', '30', '--marked', '--customer', 'acme', '-o', `issued/${name}-acme.lic`, '--json']);
      expect(lic.code).toBe(0);
      const innocent = await run(['license', 'issue', '--key', 'vendor.key', '--unbound', '--model', name, '--versions', '^1', '--days', '30', '--marked', '--customer', 'initech', '-o', `issued/${name}-initech.lic`]);
      expect(innocent.code).toBe(0);
      const m = await run(['mark', `${name}-1.0.0.mlb`, '--license', `issued/${name}-acme.lic`, '--key', 'vendor.key', '-o', `${name}-acme.mlb`, '--json']);
      expect(m.code, m.stderr).toBe(0);
      expect(m.json.result.tensors.marked, name).toBe(marked);
      expect(m.json.result.otherTypes, name).toEqual(other);
      const before = await manifestOf(join(dir, `${name}-1.0.0.mlb`));
      const after = await manifestOf(join(dir, `${name}-acme.mlb`));
      expect(after.files.map((f) => [f.path, f.size])).toEqual(before.files.map((f) => [f.path, f.size]));
      expect((await run(['activate', `issued/${name}-acme.lic`])).code).toBe(0);
      const u = await run(['unpack', `${name}-acme.mlb`, '-o', `${name}-leak`]);
      expect(u.code, u.stderr).toBe(0);
      // the same files, each a valid file of its format with the same tensors at the same offsets; only marked tensors' bytes differ
      const changed = await expectSameLayout(join(dir, src), join(dir, `${name}-leak`));
      const expected = (await indexModel(join(dir, src))).tensors.filter(markable).map((t) => t.name);
      expect(expected).toHaveLength(marked);
      expect([...changed].sort(), name).toEqual(expected.sort());
      const t = await run(['trace', `${name}-leak`, '--original', `${name}-1.0.0.mlb`, '--key', 'vendor.key', '--licenses', 'issued', '--json']);
      expect(t.code, t.stderr).toBe(0);
      expect(t.json.result.implicated).toEqual([{ licenseId: lic.json.result.licenseId, customer: 'acme' }]);
      expect(t.json.result.candidates).toHaveLength(2);
      expect(t.json.result.matched).toHaveLength(marked);
      if (name === 'shard') expect(new Set(t.json.result.matched.map((x: { file: string }) => x.file)).size).toBe(3);
    }
  }, 120_000);

  it('trace decrypts a bundle original into TMPDIR and leaves nothing there, when it names a licence, when it fails after decrypting, and when decrypting fails', async () => {
    const tmpd = join(dir, 'private-tmp');
    await mkdir(tmpd);
    const withTmp = (args: string[], t = tmpd) => mlic(args, { cwd: dir, env: { ...env, TMPDIR: t } });
    const ok = await withTmp(['trace', 'leaked.safetensors', '--original', 'llm-1.2.0.mlb', '--key', 'vendor.key', '--licenses', 'issued', '--top', '1']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(await readdir(tmpd)).toEqual([]);
    // --top 1: one row of the table (of 2 candidates), and the IMPLICATED line
    const rows = ok.stdout.split('\n').filter((l) => /^[0-9a-f]{32} {2}/.test(l));
    expect(rows).toHaveLength(1);
    expect(rows[0]).toContain(`${ids.acme}  acme`);
    expect(ok.stdout).toContain(`IMPLICATED: licence ${ids.acme} (customer acme)`);
    const badTop = await withTmp(['trace', 'leaked.safetensors', '--original', 'llm-1.2.0.mlb', '--key', 'vendor.key', '--licenses', 'issued', '--top', '0']);
    expect(badTop.code).toBe(2);
    expect(badTop.stderr).toContain('--top must be a positive whole number');
    // an error after the original was decrypted: the suspect is not a model
    const notModel = await withTmp(['trace', 'vendor.pub', '--original', 'llm-1.2.0.mlb', '--key', 'vendor.key', '--licenses', 'issued']);
    expect(notModel.code).toBe(1);
    expect(notModel.stderr).toContain('TRACE_NO_MATCH');
    expect(await readdir(tmpd)).toEqual([]);
    // an error while decrypting: a damaged chunk (the manifest's signature still verifies)
    const bytes = await readFile(join(dir, 'llm-1.2.0.mlb'));
    const bad = Buffer.from(bytes);
    const mid = Math.floor(bad.length / 2);
    bad[mid] = bad[mid]! ^ 0x40;
    await writeFile(join(dir, 'damaged.mlb'), bad);
    const damaged = await withTmp(['trace', 'leaked.safetensors', '--original', 'damaged.mlb', '--key', 'vendor.key', '--licenses', 'issued']);
    expect(damaged.code, damaged.stderr).toBe(1);
    expect(damaged.stderr).toContain('CHUNK_AUTH_FAILED');
    expect(await readdir(tmpd)).toEqual([]);
    // TMPDIR is where it goes: one that does not exist is an error naming it
    const missing = await withTmp(['trace', 'leaked.safetensors', '--original', 'llm-1.2.0.mlb', '--key', 'vendor.key', '--licenses', 'issued'], join(dir, 'no-such-tmp'));
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('no-such-tmp');
  }, 120_000);
});
