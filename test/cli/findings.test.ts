/**
 * The outside review's findings (security, then a new user's first hour), each reproduced through
 * the built binary as the reviewer did, and now refused or fixed.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, readFile, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mlic, BIN } from './run.js';
import { tmp, writeRandom } from '../helpers.js';
import { generateVendorKey, publicKeyFileText } from '../../src/keys/vendor.js';
import { LICENSE_BEGIN, LICENSE_END } from '../../src/format/license.js';
import { loadLicense } from '../../src/host/handle.js';

describe('review findings through the CLI', () => {
  let v: string;
  let home: string;
  let env: Record<string, string>;
  const key = () => join(v, 'acme.key');

  beforeAll(async () => {
    v = await tmp('mlic-findings-');
    home = join(v, 'home');
    env = { MLIC_HOME: home };
    expect((await mlic(['keygen', '-o', join(v, 'keys', 'new'), '--name', 'probe', '--unencrypted'])).code).toBe(0);
    expect((await mlic(['keygen', '-o', v, '--name', 'acme', '--unencrypted'])).code).toBe(0);
    await writeRandom(join(v, 'w.bin'), 4000, 2);
    for (const ver of ['2.1.0', '2.5.0']) expect((await mlic(['pack', join(v, 'w.bin'), '--name', 'm', '--version', ver, '--key', key(), '-o', join(v, `m-${ver}.mlb`)])).code).toBe(0);
    expect((await mlic(['trust', 'add', join(v, 'acme.pub')], { env })).code).toBe(0);
    expect((await mlic(['activate', '--request', '-o', join(v, 'req.json')], { env })).code).toBe(0);
  });

  it('keygen -o makes a missing directory (0700), as its own help example does', async () => {
    expect((await stat(join(v, 'keys', 'new'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(v, 'keys', 'new', 'probe.key'))).mode & 0o777).toBe(0o600);
  });

  it('bare `mlic` and `mlic help nosuch` are usage errors (exit 2); a usage error is printed once', async () => {
    const bare = await mlic([]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain('Usage: mlic');
    expect((await mlic(['help', 'nosuch'])).code).toBe(2);
    const u = await mlic(['pack', '--bogus']);
    expect(u.code).toBe(2);
    expect(u.stderr.match(/error/g)).toHaveLength(1);
  });

  it('license issue needs --days, --expires or --perpetual; refuses what hosts would refuse', async () => {
    const base = ['license', 'issue', '--key', key(), '--request', join(v, 'req.json'), '--model', 'm', '--versions', '^2', '-o', join(v, 'x.lic')];
    const none = await mlic([...base, '--json']);
    expect(none.code).toBe(2);
    expect(none.json.error.message).toMatch(/--perpetual/);
    for (const bad of [['--days', '30', '--meter', 'inferences=100/month,overage=2000%'], ['--days', '30', '--meter', 'a=1/day', '--meter', 'a=2/month']]) {
      const r = await mlic([...base, ...bad, '--json']);
      expect(r.code, bad.join(' ')).toBe(2);
      expect(r.json.error.message).toMatch(/hosts would reject/);
    }
    const p = await mlic([...base, '--perpetual', '--json']);
    expect(p.code, p.stderr).toBe(0);
    expect(p.json.result.payload.expires).toBeUndefined();
  });

  it('licence inspect says when a licence has expired', async () => {
    const old = join(v, 'old.lic');
    expect((await mlic(['license', 'issue', '--key', key(), '--request', join(v, 'req.json'), '--model', 'm', '--versions', '^2', '--not-before', '2025-01-01', '--expires', '2025-02-01', '-o', old])).code).toBe(0);
    const h = await mlic(['license', 'inspect', old, '--pub', join(v, 'acme.pub')]);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/status\s+EXPIRED on 2025-02-01/);
    const j = await mlic(['license', 'inspect', old, '--pub', join(v, 'acme.pub'), '--json']);
    expect(j.json.result).toMatchObject({ status: 'LICENSE_EXPIRED', expired: true });
  });

  it('an unbound licence (keys in the clear) is written 0600', async () => {
    const u = join(v, 'unbound.lic');
    expect((await mlic(['license', 'issue', '--key', key(), '--unbound', '--model', 'm', '--rolling', '--days', '3', '-o', u])).code).toBe(0);
    expect((await stat(u)).mode & 0o777).toBe(0o600);
  });

  it('confused deputy: a pin is issued only from a bundle whose signature verifies with the vendor key', async () => {
    // The customer hands in 2.5.0 with its unsigned manifest edited to say 2.1.0.
    const b = await readFile(join(v, 'm-2.5.0.mlb'));
    const forged = Buffer.from(b.toString('latin1').replace('"version":"2.5.0"', '"version":"2.1.0"'), 'latin1');
    await writeFile(join(v, 'forged.mlb'), forged);
    const r = await mlic(['license', 'issue', '--key', key(), '--request', join(v, 'req.json'), '--model', 'm', '--versions', '=2.1.0', '--bundle', join(v, 'forged.mlb'), '--days', '9', '-o', join(v, 'pin.lic'), '--json']);
    expect(r.code).toBe(1);
    expect(r.json.error.code).toBe('SIGNATURE_INVALID');
    const ok = await mlic(['license', 'issue', '--key', key(), '--request', join(v, 'req.json'), '--model', 'm', '--versions', '=2.1.0', '--bundle', join(v, 'm-2.1.0.mlb'), '--days', '9', '-o', join(v, 'pin.lic')]);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('customer-chosen fields in a request are refused, and a huge request is refused before it is read', async () => {
    const req = JSON.parse(await readFile(join(v, 'req.json'), 'utf8'));
    const cases = [
      { ...req, payload: { ...req.payload, vendorNote: 'pay nothing' } },
      { ...req, payload: { ...req.payload, fingerprint: { ...req.payload.fingerprint, components: req.payload.fingerprint.components.map((c: object) => ({ ...c, note: 'x' })) } } },
      { ...req, extra: 1 },
      { ...req, payload: { ...req.payload, v: 2.5 } },
    ];
    for (const c of cases) {
      await writeFile(join(v, 'evil.json'), JSON.stringify(c));
      const r = await mlic(['license', 'issue', '--key', key(), '--request', join(v, 'evil.json'), '--model', 'm', '--rolling', '--days', '1', '-o', join(v, 'e.lic'), '--json']);
      expect(r.code, JSON.stringify(c).slice(0, 80)).toBe(2);
      expect(['FORMAT_INVALID', 'UNSUPPORTED_VERSION']).toContain(r.json.error.code);
    }
    await writeFile(join(v, 'huge.json'), '');
    await truncate(join(v, 'huge.json'), 200 << 20);
    const t0 = Date.now();
    const h = await mlic(['license', 'issue', '--key', key(), '--request', join(v, 'huge.json'), '--model', 'm', '--rolling', '--days', '1', '-o', join(v, 'h.lic'), '--json']);
    expect(h.code).toBe(2);
    expect(h.json.error.message).toMatch(/more than the \d+ allowed/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('licence malleability: fields added outside the signed payload (top level, inside signature) are refused', async () => {
    const text = await readFile(join(v, 'pin.lic'), 'utf8');
    const body = JSON.parse(Buffer.from(text.split('\n').slice(1, -2).join(''), 'base64').toString());
    const armor = (o: object) => `${LICENSE_BEGIN}\n${Buffer.from(JSON.stringify(o)).toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n${LICENSE_END}\n`;
    for (const o of [{ ...body, note: 'x' }, { ...body, signature: { ...body.signature, extra: 1 } }]) {
      await writeFile(join(v, 'mal.lic'), armor(o));
      const r = await mlic(['activate', join(v, 'mal.lic'), '--json'], { env });
      expect(r.code).toBe(2);
      expect(r.json.error.code).toBe('FORMAT_INVALID');
    }
  });

  it('trust by key id: another key under a trusted id is refused unless --replace; fingerprints are shown', async () => {
    const mallory = generateVendorKey('mallory');
    const real = generateVendorKey('acme');
    mallory.keyId = Buffer.from(real.keyId);
    await writeFile(join(v, 'real.pub'), publicKeyFileText(real));
    await writeFile(join(v, 'mallory.pub'), publicKeyFileText(mallory));
    const h = join(await tmp(), 'h');
    const a = await mlic(['trust', 'add', join(v, 'real.pub'), '--home', h, '--json']);
    expect(a.json.result.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    const m = await mlic(['trust', 'add', join(v, 'mallory.pub'), '--home', h, '--json']);
    expect(m.code).toBe(2);
    expect(m.json.error.code).toBe('IO_EXISTS');
    expect(m.json.error.message).toContain(a.json.result.fingerprint);
    const again = await mlic(['trust', 'add', join(v, 'real.pub'), '--home', h, '--json']);
    expect(again.json.result.status).toBe('unchanged');
    const r = await mlic(['trust', 'add', join(v, 'mallory.pub'), '--home', h, '--replace', '--json']);
    expect(r.json.result.status).toBe('replaced');
    const l = await mlic(['trust', 'list', '--home', h]);
    expect(l.stdout).toContain('SHA256:');
  });

  it('sign refuses to overwrite an existing signature without --force', async () => {
    const f = join(v, 'artifact.bin');
    await writeFile(f, 'x');
    expect((await mlic(['sign', f, '--key', key()])).code).toBe(0);
    const again = await mlic(['sign', f, '--key', key(), '--json']);
    expect(again.code).toBe(2);
    expect(again.json.error.code).toBe('IO_EXISTS');
    expect((await mlic(['sign', f, '--key', key(), '--force'])).code).toBe(0);
  });

  it('inspect of a truncated bundle says so (exit 1); of one with data appended too', async () => {
    const b = await readFile(join(v, 'm-2.1.0.mlb'));
    await writeFile(join(v, 'cut.mlb'), b.subarray(0, b.length - 2000));
    const t = await mlic(['inspect', join(v, 'cut.mlb'), '--json']);
    expect(t.code).toBe(1);
    expect(t.json.error.code).toBe('BUNDLE_TRUNCATED');
    await writeFile(join(v, 'long.mlb'), Buffer.concat([b, Buffer.alloc(512)]));
    expect((await mlic(['inspect', join(v, 'long.mlb'), '--json'])).json.error.code).toBe('BUNDLE_TRAILING_DATA');
  });

  it('unpack: missing parents are made as mkdir -p makes them (only the output directory is 0700); a symlinked output, also with a trailing slash, is refused', async () => {
    const lic = join(v, 'mine.lic');
    expect((await mlic(['license', 'issue', '--key', key(), '--request', join(v, 'req.json'), '--model', 'm', '--versions', '^2', '--days', '30', '-o', lic])).code).toBe(0);
    expect((await mlic(['activate', lic], { env })).code).toBe(0);
    const base = await tmp();
    const out = join(base, 'a', 'b', 'model');
    const r = await mlic(['unpack', join(v, 'm-2.1.0.mlb'), '-o', out], { env });
    expect(r.code, r.stderr).toBe(0);
    const umask = process.umask();
    expect((await stat(join(base, 'a'))).mode & 0o777).toBe(0o777 & ~umask);
    expect((await stat(out)).mode & 0o777).toBe(0o700);
    const target = join(base, 'elsewhere');
    await mkdir(target);
    await symlink(target, join(base, 'link'));
    for (const o of [join(base, 'link'), join(base, 'link') + '/']) {
      const s = await mlic(['unpack', join(v, 'm-2.1.0.mlb'), '-o', o, '--json'], { env });
      expect(s.code, o).toBe(2);
      expect(s.json.error.code).toBe('IO_UNSAFE_PATH');
    }
    expect(await import('node:fs/promises').then((f) => f.readdir(target))).toEqual([]);
  });

  it('a closed pipe ends a command quietly: no stack trace, and --csv with --json is a usage error', async () => {
    // Enough audit records (each with its own input hash, so none are merged) to overfill a pipe.
    const lic = await loadLicense({ stateDir: home, licenseFile: join(v, 'mine.lic') });
    for (let i = 0; i < 3000; i++) await lic.audit({ inputHash: `sha256:${i.toString(16).padStart(64, '0')}` });
    await lic.close();
    const audit = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${BIN}" audit export --csv --home "${home}" | head -1 >/dev/null; echo "rc=$?"`], { encoding: 'utf8' });
    expect(audit.stderr).not.toMatch(/EPIPE|at .*\.js/);
    expect(audit.stdout).toContain('rc=0');
    const both = await mlic(['audit', 'export', '--csv', '--json'], { env });
    expect(both.code).toBe(2);
    expect(both.json.error.code).toBe('USAGE');
  });

  it('terminal control and bidi characters in unsigned text are escaped for people (inspect of a hostile manifest)', async () => {
    const src = join(await tmp(), 'm');
    await mkdir(src);
    await writeFile(join(src, 'cod\u202egpj.exe'), 'x');
    const b = join(v, 'bidi.mlb');
    expect((await mlic(['pack', src, '--name', 'bidi', '--version', '1.0.0', '--key', key(), '-o', b])).code).toBe(0);
    const r = await mlic(['inspect', b]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('cod\\u202egpj.exe');
    expect(r.stdout).not.toContain('\u202e');
  });

  it('an unreadable or special file is IO_NOT_REGULAR, one code for the condition', async () => {
    for (const args of [['inspect', v], ['verify', v, '--pub', join(v, 'acme.pub')], ['activate', v]]) {
      const r = await mlic([...args, '--json'], { env });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.json.error.code, args.join(' ')).toBe('IO_NOT_REGULAR');
    }
  });

  it('passphrase prompts name the key file and ask again after a wrong passphrase (at a terminal)', async () => {
    const d = await tmp();
    expect((await mlic(['keygen', '-o', d, '--name', 'enc'], { env: { MLIC_PASSPHRASE: 'right one' } })).code).toBe(0);
    await writeFile(join(d, 'f.txt'), 'x');
    await chmod(join(d, 'f.txt'), 0o644);
    // `script` gives mlic a terminal; the answers are typed one after the other.
    const cmd = `(sleep 1; printf 'wrong\\r'; sleep 2; printf 'right one\\r') | script -qec '"${process.execPath}" "${BIN}" sign "${join(d, 'f.txt')}" --key "${join(d, 'enc.key')}"' /dev/null`;
    const r = spawnSync('bash', ['-c', cmd], { encoding: 'utf8', timeout: 30_000, env: { PATH: process.env.PATH ?? '', HOME: d, NO_COLOR: '1' } });
    expect(r.stdout).toContain(`passphrase for ${join(d, 'enc.key')}:`);
    expect(r.stdout).toContain('wrong passphrase, try again');
    expect(r.stdout).toContain('signed');
    expect(await readFile(join(d, 'f.txt.minisig'), 'utf8')).toContain('trusted comment');
  });
});
