import { describe, it, expect, beforeAll } from 'vitest';
import { chmod, mkdir, readdir, readFile, stat, symlink, writeFile, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mlic } from './run.js';
import { tmp, writeRandom } from '../helpers.js';

const FIX = new URL('../../fixtures/models/', import.meta.url).pathname;

describe('mlic CLI: keygen, pack, inspect, verify', () => {
  let d: string;
  beforeAll(async () => {
    d = await tmp();
    const r = await mlic(['keygen', '-o', d, '--name', 'acme', '--unencrypted', '--json']);
    expect(r.code, r.stderr).toBe(0);
  });

  it('--help, per-command --help with examples, --version', async () => {
    const h = await mlic(['--help']);
    expect(h.code).toBe(0);
    for (const c of ['keygen', 'pack', 'inspect', 'verify']) expect(h.stdout).toContain(c);
    const p = await mlic(['pack', '--help']);
    expect(p.code).toBe(0);
    expect(p.stdout).toContain('Examples:');
    const v = await mlic(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('keygen writes a 0600 secret key and a minisign public key; refuses to overwrite', async () => {
    expect((await stat(join(d, 'acme.key'))).mode & 0o777).toBe(0o600);
    const pub = await readFile(join(d, 'acme.pub'), 'utf8');
    expect(pub).toMatch(/^untrusted comment: minisign public key [0-9A-F]{16}\n[A-Za-z0-9+/]{56}\n$/);
    const again = await mlic(['keygen', '-o', d, '--name', 'acme', '--unencrypted', '--json']);
    expect(again.code).toBe(2);
    expect(again.json.error.code).toBe('IO_EXISTS');
  });

  it('keygen without a passphrase source and without a TTY refuses (never prompts)', async () => {
    const r = await mlic(['keygen', '-o', d, '--name', 'nopw']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('PASSPHRASE_REQUIRED');
    expect(await readdir(d)).not.toContain('nopw.key');
  });

  it('an encrypted key: MLIC_PASSPHRASE unlocks, a wrong passphrase has its own code, MLIC_SECRET_KEY works', async () => {
    const k = await mlic(['keygen', '-o', d, '--name', 'enc', '--json'], { env: { MLIC_PASSPHRASE: 'correct horse' } });
    expect(k.code, k.stderr).toBe(0);
    expect(k.json.result.encrypted).toBe(true);
    const keyText = await readFile(join(d, 'enc.key'), 'utf8');
    expect(keyText).not.toContain('correct horse');
    const src = join(FIX, 'tiny.safetensors');
    const ok = await mlic(['pack', src, '--name', 'st', '--version', '1.0.0', '--key', join(d, 'enc.key'), '-o', join(d, 'st.mlb'), '--json'], { env: { MLIC_PASSPHRASE: 'correct horse' } });
    expect(ok.code, ok.stderr).toBe(0);
    const bad = await mlic(['pack', src, '--name', 'st', '--version', '1.0.0', '--key', join(d, 'enc.key'), '-o', join(d, 'st2.mlb'), '--json'], { env: { MLIC_PASSPHRASE: 'wrong' } });
    expect(bad.code).toBe(1);
    expect(bad.json.error.code).toBe('PASSPHRASE_WRONG');
    const pwFile = join(d, 'pw.txt');
    await writeFile(pwFile, 'correct horse\n');
    const env = await mlic(['pack', src, '--name', 'st', '--version', '1.0.1', '--passphrase-file', pwFile, '-o', join(d, 'st3.mlb'), '--json'], { env: { MLIC_SECRET_KEY: keyText } });
    expect(env.code, env.stderr).toBe(0);
    const nopw = await mlic(['pack', src, '--name', 'st', '--version', '1.0.2', '-o', join(d, 'st4.mlb')], { env: { MLIC_SECRET_KEY: keyText } });
    expect(nopw.code).toBe(2);
    expect(nopw.stderr).toContain('PASSPHRASE_REQUIRED');
    expect(await readdir(d)).not.toContain('st2.mlb');
  });

  it('packs the ONNX fixture directory, inspects and verifies it', async () => {
    const out = join(d, 'tiny-1.0.0.mlb');
    const p = await mlic(['pack', join(FIX, 'onnx-external'), '--name', 'tiny', '--version', '1.0.0', '--key', join(d, 'acme.key'), '-o', out, '--json']);
    expect(p.code, p.stderr).toBe(0);
    expect(p.json.ok).toBe(true);
    const formats = Object.fromEntries(p.json.result.files.map((f: { path: string; format: string }) => [f.path, f.format]));
    expect(formats['model.onnx']).toBe('onnx');
    expect(formats['weights.data']).toBe('onnx-external-data');
    const i = await mlic(['inspect', out, '--json']);
    expect(i.code).toBe(0);
    expect(i.json.result.manifest.model).toMatchObject({ name: 'tiny', version: '1.0.0' });
    const ih = await mlic(['inspect', out]);
    expect(ih.stdout).toContain('model.onnx');
    const v = await mlic(['verify', out, '--pub', join(d, 'acme.pub'), '--json']);
    expect(v.code).toBe(0);
    expect(v.json.result.valid).toBe(true);
    const vh = await mlic(['verify', out, '--pub', join(d, 'acme.pub')]);
    expect(vh.code).toBe(0);
    expect(vh.stdout).toMatch(/^ok: /);
  });

  it('verify: a changed byte exits 1 with a code, something not a bundle exits 2', async () => {
    const out = join(d, 'g.mlb');
    expect((await mlic(['pack', join(FIX, 'tiny.gguf'), '--name', 'g', '--version', '1.0.0', '--key', join(d, 'acme.key'), '-o', out])).code).toBe(0);
    const bad = join(d, 'g-bad.mlb');
    const b = await readFile(out);
    b[b.length - 1100]! ^= 1;
    await writeFile(bad, b);
    const r = await mlic(['verify', bad, '--pub', join(d, 'acme.pub'), '--json']);
    expect(r.code).toBe(1);
    expect(r.json.ok).toBe(false);
    expect(r.json.error.code).toBe('DIGEST_MISMATCH');
    const rh = await mlic(['verify', bad, '--pub', join(d, 'acme.pub')]);
    expect(rh.code).toBe(1);
    expect(rh.stderr).toContain('DIGEST_MISMATCH');
    const notBundle = await mlic(['verify', join(FIX, 'tiny.gguf'), '--pub', join(d, 'acme.pub'), '--json']);
    expect(notBundle.code).toBe(2);
    expect(notBundle.json.error.code).toBe('NOT_A_BUNDLE');
  });

  describe('bad input: exit 2, a clear error, nothing written', () => {
    const packArgs = (src: string, out: string, extra: string[] = []) => ['pack', src, '--name', 'm', '--version', '1.0.0', '--key', join(d, 'acme.key'), '-o', out, '--json', ...extra];
    const expectNothingWritten = async (dir: string) => {
      const left = (await readdir(dir)).filter((n) => n.endsWith('.mlb') || n.includes('.tmp-'));
      expect(left).toEqual([]);
    };

    it('a missing path', async () => {
      const w = await tmp();
      const r = await mlic(packArgs(join(w, 'nope.onnx'), join(w, 'o.mlb')));
      expect(r.code).toBe(2);
      expect(r.json.error.code).toBe('IO_NOT_FOUND');
      await expectNothingWritten(w);
    });

    it('an empty directory', async () => {
      const w = await tmp();
      await mkdir(join(w, 'empty'));
      const r = await mlic(packArgs(join(w, 'empty'), join(w, 'o.mlb')));
      expect(r.code).toBe(2);
      expect(r.json.error.message).toContain('empty');
      await expectNothingWritten(w);
    });

    it('an unreadable file', async () => {
      const w = await tmp();
      await chmod(w, 0o777);
      await mkdir(join(w, 'm'), { mode: 0o777 });
      await chmod(join(w, 'm'), 0o777);
      await writeRandom(join(w, 'm', 'a.bin'), 100);
      await writeRandom(join(w, 'm', 'secret.bin'), 100);
      await chmod(join(w, 'm', 'secret.bin'), 0o000);
      const keyCopy = join(w, 'k.key');
      await copyFile(join(d, 'acme.key'), keyCopy);
      await chmod(keyCopy, 0o644);
      const r = await mlic(['pack', join(w, 'm'), '--name', 'm', '--version', '1.0.0', '--key', keyCopy, '-o', join(w, 'o.mlb'), '--json'], { dropDac: true });
      expect(r.code, r.stdout + r.stderr).toBe(2);
      expect(r.json.error.code).toBe('IO_ERROR');
      expect(r.json.error.message).toContain('secret.bin');
      await expectNothingWritten(w);
    });

    it('a symlink pointing outside the directory', async () => {
      const w = await tmp();
      await mkdir(join(w, 'm'));
      await writeRandom(join(w, 'm', 'a.bin'), 100);
      await writeFile(join(w, 'outside.txt'), 'secret');
      await symlink(join(w, 'outside.txt'), join(w, 'm', 'link.txt'));
      const r = await mlic(packArgs(join(w, 'm'), join(w, 'o.mlb')));
      expect(r.code).toBe(2);
      expect(r.json.error.code).toBe('IO_UNSAFE_PATH');
      expect(r.json.error.message).toContain('outside');
      await expectNothingWritten(w);
    });

    it('an ONNX external-data location with ..', async () => {
      const w = await tmp();
      const r = await mlic(packArgs(join(FIX, 'bad', 'escape-onnx'), join(w, 'o.mlb')));
      expect(r.code).toBe(2);
      expect(r.json.error.code).toBe('MODEL_INVALID');
      await expectNothingWritten(w);
    });

    it('malformed model files', async () => {
      const w = await tmp();
      for (const f of ['truncated-header.safetensors', 'bad-json.safetensors', 'bad-magic.gguf']) {
        const r = await mlic(packArgs(join(FIX, 'bad', f), join(w, 'o.mlb')));
        expect(r.code, f).toBe(2);
        expect(r.json.error.code, f).toBe('MODEL_INVALID');
      }
      await expectNothingWritten(w);
    });

    it('a version that is not semver, and a bad name', async () => {
      const w = await tmp();
      const r = await mlic(['pack', join(FIX, 'tiny.gguf'), '--name', 'm', '--version', '1.0', '--key', join(d, 'acme.key'), '-o', join(w, 'o.mlb'), '--json']);
      expect(r.code).toBe(2);
      expect(r.json.error.message).toContain('semantic version');
      const n = await mlic(['pack', join(FIX, 'tiny.gguf'), '--name', '../x', '--version', '1.0.0', '--key', join(d, 'acme.key'), '-o', join(w, 'o.mlb'), '--json']);
      expect(n.code).toBe(2);
      await expectNothingWritten(w);
    });

    it('an output that exists, without --force; with --force it is replaced', async () => {
      const w = await tmp();
      const out = join(w, 'o.mlb');
      await writeFile(out, 'precious');
      const r = await mlic(packArgs(join(FIX, 'tiny.gguf'), out));
      expect(r.code).toBe(2);
      expect(r.json.error.code).toBe('IO_EXISTS');
      expect(await readFile(out, 'utf8')).toBe('precious');
      const f = await mlic(packArgs(join(FIX, 'tiny.gguf'), out, ['--force']));
      expect(f.code, f.stderr).toBe(0);
      expect((await readFile(out)).subarray(0, 12).toString()).toBe('mlic-bundle/');
    });

    it('usage errors (unknown option, missing --version) exit 2, also with --json', async () => {
      const r = await mlic(['pack', 'x', '--name', 'm', '--json']);
      expect(r.code).toBe(2);
      expect(r.json.error.code).toBe('USAGE');
      const u = await mlic(['frobnicate']);
      expect(u.code).toBe(2);
    });
  });
});

describe('mlic help', () => {
  it('every command has --help with examples', async () => {
    const cmds = [['keygen'], ['pack'], ['inspect'], ['verify'], ['sign'], ['fingerprint'], ['activate'], ['trust', 'add'], ['trust', 'list'], ['trust', 'remove'], ['licenses'], ['license', 'issue'], ['license', 'inspect'], ['unpack'], ['run'], ['meter', 'status'], ['meter', 'consume'], ['meter', 'serve'], ['usage', 'report'], ['usage', 'verify'], ['audit', 'verify'], ['audit', 'export'], ['server', 'init'], ['server', 'start'], ['admin', 'entitlement', 'create'], ['admin', 'entitlement', 'list'], ['admin', 'entitlement', 'show'], ['admin', 'token', 'create'], ['admin', 'token', 'list'], ['admin', 'token', 'revoke']];
    for (const c of cmds) {
      const r = await mlic([...c, '--help']);
      expect(r.code, c.join(' ')).toBe(0);
      expect(r.stdout, c.join(' ')).toContain('Examples:');
      expect(r.stdout, c.join(' ')).toContain('--json');
    }
  }, 60_000);
});
