/**
 * Leak tracing through the built binary, as a vendor and a customer run it: pack, issue licences
 * for marked bundles, mark, activate and unpack on a host (the leak), trace. And the keys: a
 * licence for marked bundles opens its own marked bundle only, whatever the manifest claims.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { join } from 'node:path';
import { readFile, readdir, copyFile, mkdir } from 'node:fs/promises';
import { mlic } from '../cli/run.js';
import { tmp } from '../helpers.js';
import { attacks, readModel, synthModel, writeSafetensors } from './synth.js';
import { parseLicenseText } from '../../src/format/license.js';
import { bundleKeyFromLicense } from '../../src/license/keys.js';
import { checkBundleKey } from '../../src/bundle/decrypt.js';
import { BundleFile } from '../../src/bundle/reader.js';
import { parseManifest } from '../../src/format/manifest.js';

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
});
