import { describe, it, expect, beforeAll } from 'vitest';
import { readFile, writeFile, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mlic } from '../cli/run.js';
import { tmp, writeRandom } from '../helpers.js';
import { sh, tool } from './tools.js';

const hasMinisign = tool('minisign');
const hasSignify = tool('signify-openbsd');

describe.skipIf(!hasMinisign)('interop with minisign', () => {
  let d: string;
  beforeAll(async () => {
    d = await tmp();
    expect((await mlic(['keygen', '-o', d, '--name', 'v', '--unencrypted'])).code).toBe(0);
  });

  it('mlic signs (prehashed), minisign verifies; one changed byte and minisign rejects', async () => {
    const f = join(d, 'model.bin');
    await writeRandom(f, 3 << 20, 11);
    const s = await mlic(['sign', f, '--key', join(d, 'v.key'), '--comment', 'release 2.1.0 of resnet']);
    expect(s.code, s.stderr).toBe(0);
    const v = sh('minisign', ['-Vm', f, '-p', join(d, 'v.pub')]);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout + v.stderr).toContain('release 2.1.0 of resnet');
    const b = await readFile(f);
    b[12345]! ^= 1;
    await writeFile(f, b);
    expect(sh('minisign', ['-Vm', f, '-p', join(d, 'v.pub')]).code).toBe(1);
  });

  it('a bundle signed by mlic sign verifies in minisign, and mlic verify checks both', async () => {
    const src = join(d, 'w.bin');
    await writeRandom(src, 5000);
    const b = join(d, 'w.mlb');
    expect((await mlic(['pack', src, '--name', 'w', '--version', '1.0.0', '--key', join(d, 'v.key'), '-o', b])).code).toBe(0);
    expect((await mlic(['sign', b, '--key', join(d, 'v.key')])).code).toBe(0);
    expect(sh('minisign', ['-Vm', b, '-p', join(d, 'v.pub')]).code).toBe(0);
    const v = await mlic(['verify', b, '--pub', join(d, 'v.pub'), '--json']);
    expect(v.code, v.stderr).toBe(0);
    expect(v.json.result.signature.trustedComment).toContain('file:w.mlb');
    // A detached signature that no longer matches fails the bundle's verify too.
    await writeFile(`${b}.minisig`, (await readFile(`${b}.minisig`, 'utf8')).replace(/file:w\.mlb/, 'file:x.mlb'));
    const bad = await mlic(['verify', b, '--pub', join(d, 'v.pub'), '--json']);
    expect(bad.code).toBe(1);
    expect(bad.json.error.code).toBe('SIGNATURE_INVALID');
  });

  it('minisign -G and -Sm sign; mlic verifies and prints the trusted comment; a changed file or comment exits 1', async () => {
    const pub = join(d, 'm.pub');
    const sec = join(d, 'm.key');
    const g = sh('minisign', ['-G', '-W', '-p', pub, '-s', sec]);
    expect(g.code, g.stderr).toBe(0);
    const f = join(d, 'artifact.tgz');
    await writeRandom(f, 100_000, 2);
    const s = sh('minisign', ['-S', '-s', sec, '-m', f, '-t', 'built by ci run 42']);
    expect(s.code, s.stderr).toBe(0);
    const v = await mlic(['verify', f, '--pub', pub]);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toContain('trusted comment: built by ci run 42');
    const vj = await mlic(['verify', f, '--pub', pub, '--json']);
    expect(vj.json.result).toMatchObject({ kind: 'file', valid: true, alg: 'ED', trustedComment: 'built by ci run 42' });
    // Changed trusted comment.
    const sig = await readFile(`${f}.minisig`, 'utf8');
    const tampered = join(d, 'tampered.minisig');
    await writeFile(tampered, sig.replace('run 42', 'run 43'));
    const tc = await mlic(['verify', f, '--pub', pub, '--sig', tampered, '--json']);
    expect(tc.code).toBe(1);
    expect(tc.json.error.code).toBe('SIGNATURE_INVALID');
    // Changed file.
    const f2 = join(d, 'artifact2.tgz');
    await copyFile(f, f2);
    await writeFile(f2, Buffer.concat([await readFile(f2), Buffer.from('x')]));
    const cf = await mlic(['verify', f2, '--pub', pub, '--sig', `${f}.minisig`, '--json']);
    expect(cf.code).toBe(1);
    // A legacy signature from minisign (-l) verifies too.
    expect(sh('minisign', ['-S', '-l', '-s', sec, '-m', f, '-x', join(d, 'legacy.minisig')]).code).toBe(0);
    const lv = await mlic(['verify', f, '--pub', pub, '--sig', join(d, 'legacy.minisig'), '--json']);
    expect(lv.code, lv.stderr).toBe(0);
    expect(lv.json.result.alg).toBe('Ed');
    // Another key's signature is KEY_MISMATCH.
    const other = await mlic(['verify', f, '--pub', join(d, 'v.pub'), '--json']);
    expect(other.code).toBe(1);
    expect(other.json.error.code).toBe('KEY_MISMATCH');
  });
});

describe.skipIf(!hasSignify)('interop with signify (OpenBSD)', () => {
  it('a legacy Ed signature from mlic (--legacy) is accepted by signify -V; signify signatures verify in mlic', async () => {
    const d = await tmp();
    expect((await mlic(['keygen', '-o', d, '--name', 'v', '--unencrypted'])).code).toBe(0);
    const f = join(d, 'model.onnx');
    await writeRandom(f, 50_000, 4);
    expect((await mlic(['sign', f, '--key', join(d, 'v.key'), '--legacy', '-o', join(d, 'model.onnx.sig')])).code).toBe(0);
    const v = sh('signify-openbsd', ['-V', '-p', join(d, 'v.pub'), '-m', f, '-x', join(d, 'model.onnx.sig')]);
    expect(v.code, v.stderr).toBe(0);
    const b = await readFile(f);
    b[0]! ^= 1;
    await writeFile(join(d, 'bad.onnx'), b);
    expect(sh('signify-openbsd', ['-V', '-p', join(d, 'v.pub'), '-m', join(d, 'bad.onnx'), '-x', join(d, 'model.onnx.sig')]).code).not.toBe(0);
    // signify's own keys and signatures
    expect(sh('signify-openbsd', ['-G', '-n', '-p', join(d, 's.pub'), '-s', join(d, 's.sec')]).code).toBe(0);
    expect(sh('signify-openbsd', ['-S', '-s', join(d, 's.sec'), '-m', f, '-x', join(d, 's.sig')]).code).toBe(0);
    const m = await mlic(['verify', f, '--pub', join(d, 's.pub'), '--sig', join(d, 's.sig'), '--json']);
    expect(m.code, m.stderr).toBe(0);
    expect(m.json.result.alg).toBe('Ed');
    const mb = await mlic(['verify', join(d, 'bad.onnx'), '--pub', join(d, 's.pub'), '--sig', join(d, 's.sig'), '--json']);
    expect(mb.code).toBe(1);
  });
});
