import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mlic } from './run.js';
import { tmp, writeRandom } from '../helpers.js';
import { tool, sh } from '../interop/tools.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const VEC = join(ROOT, 'fixtures/vectors/oms');

describe('OpenSSF Model Signing from the CLI', () => {
  it('verifies the reference tool\'s signatures (three releases) and names what changed', async () => {
    const pub = join(VEC, 'signing-key-pub.pem');
    const v100 = await mlic(['verify', '--oms', join(VEC, 'v1.0.0-elliptic-key/signme-1'), '--sig', join(VEC, 'v1.0.0-elliptic-key/model.sig'), '--pub', pub, '--json']);
    expect(v100.code, v100.stderr).toBe(0);
    const v101 = await mlic(['verify', '--oms', join(VEC, 'v1.0.1-elliptic-key'), '--sig', join(VEC, 'v1.0.1-elliptic-key/model.sig'), '--pub', pub, '--ignore', join(VEC, 'v1.0.1-elliptic-key/ignore-me'), '--json']);
    expect(v101.code, v101.stderr).toBe(0);
    expect(v101.json.result.files).toEqual(['signme-1', 'signme-2']);
    const v110 = await mlic(['verify', '--oms', join(VEC, 'v1.1.0-elliptic-key'), '--sig', join(VEC, 'v1.1.0-elliptic-key/model.sig'), '--pub', pub, '--json']);
    expect(v110.code, v110.stderr).toBe(0);
    // A copy with one changed byte.
    const d = await tmp();
    for (const f of ['signme-1', 'signme-2', 'ignore-me', 'model.sig']) await writeFile(join(d, f), await readFile(join(VEC, 'v1.1.0-elliptic-key', f)));
    await writeFile(join(d, 'signme-2'), Buffer.concat([await readFile(join(d, 'signme-2')), Buffer.from('!')]));
    const bad = await mlic(['verify', '--oms', d, '--sig', join(d, 'model.sig'), '--pub', pub, '--json']);
    expect(bad.code).toBe(1);
    expect(bad.json.error.code).toBe('OMS_VERIFY_FAILED');
    expect(bad.json.error.details.mismatched).toEqual(['signme-2']);
    // An invalid bundle from the spec vectors is malformed input.
    const inv = await mlic(['verify', '--oms', join(VEC, 'v1.1.0-elliptic-key'), '--sig', join(VEC, 'spec-v1.0/invalid/missing-envelope.bundle.json'), '--pub', pub, '--json']);
    expect(inv.code).toBe(2);
    expect(inv.json.error.code).toBe('FORMAT_INVALID');
  });

  it('keygen --type ecdsa-p256, sign --oms, verify --oms (with an encrypted key too)', async () => {
    const d = await tmp();
    const k = await mlic(['keygen', '--type', 'ecdsa-p256', '-o', d, '--name', 'oms', '--unencrypted', '--json']);
    expect(k.code, k.stderr).toBe(0);
    expect((await stat(join(d, 'oms.pem'))).mode & 0o777).toBe(0o600);
    expect(await readFile(join(d, 'oms.pub.pem'), 'utf8')).toContain('BEGIN PUBLIC KEY');
    const m = join(d, 'model');
    await mkdir(join(m, 'sub'), { recursive: true });
    await writeRandom(join(m, 'a.safetensors'), 10_000);
    await writeRandom(join(m, 'sub', 'b.bin'), 20_000, 2);
    const sig = join(d, 'model.sig');
    const s = await mlic(['sign', '--oms', m, '--key', join(d, 'oms.pem'), '-o', sig, '--json']);
    expect(s.code, s.stderr).toBe(0);
    expect(JSON.parse(await readFile(sig, 'utf8')).mediaType).toBe('application/vnd.dev.sigstore.bundle.v0.3+json');
    expect((await mlic(['verify', '--oms', m, '--sig', sig, '--pub', join(d, 'oms.pub.pem')])).code).toBe(0);
    await writeFile(join(m, 'extra.txt'), 'x');
    const unc = await mlic(['verify', '--oms', m, '--sig', sig, '--pub', join(d, 'oms.pub.pem'), '--json']);
    expect(unc.code).toBe(1);
    expect(unc.json.error.details.uncovered).toEqual(['extra.txt']);
    const e = await mlic(['keygen', '--type', 'ecdsa-p256', '-o', d, '--name', 'enc', '--json'], { env: { MLIC_PASSPHRASE: 'pw' } });
    expect(e.code, e.stderr).toBe(0);
    expect(await readFile(join(d, 'enc.pem'), 'utf8')).toContain('ENCRYPTED PRIVATE KEY');
    expect((await mlic(['sign', '--oms', m, '--key', join(d, 'enc.pem'), '-o', join(d, 'e.sig')], { env: { MLIC_PASSPHRASE: 'pw' } })).code).toBe(0);
    const wrong = await mlic(['sign', '--oms', m, '--key', join(d, 'enc.pem'), '-o', join(d, 'e2.sig'), '--json'], { env: { MLIC_PASSPHRASE: 'nope' } });
    expect(wrong.code).toBe(1);
    expect(wrong.json.error.code).toBe('PASSPHRASE_WRONG');
  });
});

describe('examples/release.sh, the CI recipe', () => {
  it('packs, signs (minisign and OMS) and collects the artifacts; customers verify them', async () => {
    const d = await tmp();
    expect((await mlic(['keygen', '-o', d, '--name', 'vendor', '--json'], { env: { MLIC_PASSPHRASE: 'ci-pass' } })).code).toBe(0);
    expect((await mlic(['keygen', '--type', 'ecdsa-p256', '-o', d, '--name', 'oms', '--unencrypted'])).code).toBe(0);
    const model = join(d, 'model');
    await mkdir(model);
    await writeRandom(join(model, 'weights.bin'), 2_500_000, 9);
    await writeFile(join(model, 'config.json'), '{"x":1}');
    const out = join(d, 'dist');
    const env = {
      ...process.env,
      MLIC_SECRET_KEY: await readFile(join(d, 'vendor.key'), 'utf8'),
      MLIC_PASSPHRASE: 'ci-pass',
      MLIC_OMS_KEY: await readFile(join(d, 'oms.pem'), 'utf8'),
      MODEL_DIR: model,
      MODEL_NAME: 'demo',
      MODEL_VERSION: '1.2.3',
      OUT_DIR: out,
    };
    const r = spawnSync('bash', [join(ROOT, 'examples/release.sh')], { env, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toContain('ci-pass');
    expect((await readdir(out)).sort()).toEqual(['SHA256SUMS', 'demo-1.2.3.mlb', 'demo-1.2.3.mlb.minisig', 'demo-1.2.3.oms.sig']);
    const v = await mlic(['verify', join(out, 'demo-1.2.3.mlb'), '--pub', join(d, 'vendor.pub'), '--json']);
    expect(v.code, v.stderr).toBe(0);
    expect(v.json.result.signature.trustedComment).toContain('demo 1.2.3');
    const o = await mlic(['verify', '--oms', model, '--sig', join(out, 'demo-1.2.3.oms.sig'), '--pub', join(d, 'oms.pub.pem')]);
    expect(o.code, o.stderr).toBe(0);
    if (tool('minisign')) expect(sh('minisign', ['-Vm', join(out, 'demo-1.2.3.mlb'), '-p', join(d, 'vendor.pub')]).code).toBe(0);
    expect(sh('sha256sum', ['-c', 'SHA256SUMS'], { cwd: out }).code).toBe(0);
  });
});
