import { describe, it, expect, beforeAll } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdir, readFile, readdir, stat, writeFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import { BIN, mlic } from './run.js';
import { tmp, writeRandom } from '../helpers.js';
import { fakeRoot } from '../license/hosts.js';

describe('mlic CLI: vendor to customer', () => {
  let v: string; // vendor's directory
  let hostA: { home: string; env: Record<string, string> };
  let hostB: { home: string; env: Record<string, string> };
  let model: Buffer;

  const host = async (name: string, gpus: string[]) => {
    const r = await fakeRoot(name, gpus);
    const home = join(await tmp(`mlic-cli-${name}-`), 'home');
    return { home, env: { MLIC_HOME: home, MLIC_PROBE_ROOT: r.root, PATH: `${r.binDir}:${process.env.PATH}` } };
  };

  beforeAll(async () => {
    v = await tmp('mlic-vendor-');
    expect((await mlic(['keygen', '--out', v, '--name', 'acme', '--unencrypted'])).code).toBe(0);
    const src = join(v, 'model');
    await mkdir(src);
    model = await writeRandom(join(src, 'weights.bin'), 300_000, 3);
    await writeFile(join(src, 'config.json'), '{"a":1}');
    for (const [ver, date] of [
      ['2.1.0', '2026-03-01'],
      ['3.0.0', '2026-10-01'],
    ]) {
      const p = await mlic(['pack', src, '--name', 'm', '--version', ver!, '--release-date', date!, '--key', join(v, 'acme.key'), '-o', join(v, `m-${ver}.mlb`)]);
      expect(p.code, p.stderr).toBe(0);
    }
    hostA = await host('hosta', ['GPU-11111111-2222-3333-4444-555555555555', 'GPU-66666666-7777-8888-9999-000000000000']);
    hostB = await host('hostb', ['GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee']);
  });

  it('fingerprint reads the injected root and a fake nvidia-smi; identifiers never appear', async () => {
    const r = await mlic(['fingerprint', '--json'], { env: hostA.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.result.gpus).toHaveLength(2);
    expect(r.json.result.gpus[0]).toMatchObject({ uuid: 'GPU-11111111-2222-3333-4444-555555555555', name: 'NVIDIA H100 80GB HBM3', pciBusId: '00000000:18:00.0', source: 'nvidia-smi' });
    const kinds = r.json.result.components.map((c: { kind: string }) => c.kind).sort();
    expect(kinds).toEqual(['cpu', 'gpu', 'gpu', 'mac', 'machine-id']);
    expect(JSON.stringify(r.json.result.components)).not.toContain('0a:1b:2c');
    expect(r.json.result.missing['/sys/class/dmi/id/product_uuid']).toBeDefined();
    // Without nvidia-smi, the /proc/driver/nvidia fallback; a missing source is never fatal.
    const noSmi = await mlic(['fingerprint', '--json'], { env: { ...hostA.env, PATH: '/usr/bin:/bin' } });
    expect(noSmi.code).toBe(0);
    expect(noSmi.json.result.missing['nvidia-smi']).toContain('not found');
  });

  it('the whole flow: request, issue, trust, activate, licenses, unpack, run; refused on host B', async () => {
    const req = join(v, 'request.json');
    const a = await mlic(['activate', '--request', '--region', 'DE', '--customer', 'ACME-42', '-o', req, '--json'], { env: hostA.env });
    expect(a.code, a.stderr).toBe(0);
    expect((await stat(join(hostA.home, 'host.json'))).mode & 0o777).toBe(0o600);
    expect((await stat(hostA.home)).mode & 0o777).toBe(0o700);
    const lic = join(v, 'a.lic');
    const i = await mlic(['license', 'issue', '--key', join(v, 'acme.key'), '--request', req, '--model', 'm', '--versions', '^2', '--days', '365', '--tier', 'pro', '--feature', 'batch', '--meter', 'inferences=1000000/month', '--region', 'EU', '--match', 'most', '-o', lic, '--json']);
    expect(i.code, i.stderr).toBe(0);
    expect(JSON.stringify(i.json)).not.toMatch(/"box"|"clear"/);
    expect(await readFile(lic, 'utf8')).toMatch(/^-----BEGIN MLIC LICENSE-----\n/);
    const ins = await mlic(['license', 'inspect', lic, '--pub', join(v, 'acme.pub'), '--json']);
    expect(ins.code).toBe(0);
    expect(ins.json.result.verified).toBe(true);
    expect(ins.json.result.payload.meters[0]).toEqual({ metric: 'inferences', limit: 1000000, period: 'month' });
    // Untrusted vendor first.
    const un = await mlic(['activate', lic, '--json'], { env: hostA.env });
    expect(un.code).toBe(1);
    expect(un.json.error.code).toBe('UNTRUSTED_VENDOR');
    expect((await mlic(['trust', 'add', join(v, 'acme.pub')], { env: hostA.env })).code).toBe(0);
    const tl = await mlic(['trust', 'list', '--json'], { env: hostA.env });
    expect(tl.json.result.keys).toHaveLength(1);
    const act = await mlic(['activate', lic, '--json'], { env: hostA.env });
    expect(act.code, act.stderr).toBe(0);
    const ls = await mlic(['licenses', '--json'], { env: hostA.env });
    expect(ls.json.result.licenses[0].status).toBe('ok');
    expect(ls.json.result.licenses[0].license.tier).toBe('pro');
    // unpack
    const out = join(await tmp(), 'out');
    const u = await mlic(['unpack', join(v, 'm-2.1.0.mlb'), '--out', out, '--json'], { env: hostA.env });
    expect(u.code, u.stderr).toBe(0);
    expect((await readFile(join(out, 'weights.bin'))).equals(model)).toBe(true);
    expect((await stat(join(out, 'weights.bin'))).mode & 0o777).toBe(0o600);
    const u3 = await mlic(['unpack', join(v, 'm-3.0.0.mlb'), '--out', join(out, 'x'), '--json'], { env: hostA.env });
    expect(u3.code).toBe(1);
    expect(u3.json.error.code).toBe('VERSION_NOT_LICENSED');
    expect(u3.json.error.message).toContain('^2');
    const uf = await mlic(['unpack', join(v, 'm-2.1.0.mlb'), '--out', join(out, 'y'), '--feature', 'translate'], { env: hostA.env });
    expect(uf.code).toBe(1);
    expect(uf.stderr).toContain('FEATURE_NOT_LICENSED');
    await expect(access(join(out, 'y'))).rejects.toThrow();
    // run: {model} and MLIC_MODEL_DIR, exit status passed on, directory wiped
    const r = await mlic(['run', join(v, 'm-2.1.0.mlb'), '--', 'sh', '-c', 'cmp "$MLIC_MODEL_DIR/weights.bin" "$1" && echo "$MLIC_MODEL_DIR" && test "$MLIC_MODEL_DIR" = "$2" && exit 7', 'sh', join(out, 'weights.bin'), '{model}'], { env: hostA.env });
    expect(r.code, r.stderr).toBe(7);
    const dirUsed = r.stdout.trim();
    expect(dirUsed).toMatch(/mlic-run-/);
    await expect(access(dirUsed)).rejects.toThrow();
    // Host B: the same licence is refused.
    expect((await mlic(['activate', '--request', '-o', join(v, 'b.json')], { env: hostB.env })).code).toBe(0);
    await mlic(['trust', 'add', join(v, 'acme.pub')], { env: hostB.env });
    const onB = await mlic(['activate', lic, '--json'], { env: hostB.env });
    expect(onB.code).toBe(1);
    expect(onB.json.error.code).toBe('HW_MISMATCH');
    // fingerprint --compare on B against A's request names what differs
    const cmp = await mlic(['fingerprint', '--compare', req, '--json'], { env: hostB.env });
    expect(cmp.code).toBe(1);
    expect(cmp.json.error.code).toBe('HW_MISMATCH');
    const same = await mlic(['fingerprint', '--compare', req, '--json'], { env: hostA.env });
    expect(same.code).toBe(0);
    expect(same.json.result.matches).toBe(true);
  });

  it('mlic run wipes its directory on failure and on SIGTERM', async () => {
    const fail = await mlic(['run', join(v, 'm-2.1.0.mlb'), '--', 'sh', '-c', 'echo "$MLIC_MODEL_DIR"; exit 3'], { env: hostA.env });
    expect(fail.code).toBe(3);
    await expect(access(fail.stdout.trim())).rejects.toThrow();
    const child = spawn(process.execPath, [BIN, 'run', join(v, 'm-2.1.0.mlb'), '--', 'sh', '-c', 'echo "$MLIC_MODEL_DIR"; exec sleep 30'], {
      env: { ...process.env, ...hostA.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const dir = await new Promise<string>((resolve) => child.stdout.once('data', (d) => resolve(String(d).trim())));
    expect((await readdir(dir)).sort()).toEqual(['config.json', 'weights.bin']);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    const exit = new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    child.kill('SIGTERM');
    const code = await exit;
    expect(code).toBe(143);
    await expect(access(dir)).rejects.toThrow();
  });

  it('malformed licence and request files exit 2', async () => {
    const bad = join(v, 'bad.lic');
    await writeFile(bad, 'hello');
    const r = await mlic(['activate', bad, '--json'], { env: hostA.env });
    expect(r.code).toBe(2);
    expect(r.json.error.code).toBe('FORMAT_INVALID');
    const badReq = join(v, 'bad.json');
    await writeFile(badReq, '{"payload":{}}');
    const i = await mlic(['license', 'issue', '--key', join(v, 'acme.key'), '--request', badReq, '--model', 'm', '--rolling', '--json']);
    expect(i.code).toBe(2);
  });
});
