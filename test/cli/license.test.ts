import { describe, it, expect, beforeAll } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdir, readFile, readdir, stat, writeFile, access } from 'node:fs/promises';
import { join } from 'node:path';
import { BIN, mlic } from './run.js';
import { tmp, writeRandom } from '../helpers.js';
import { fakeRoot } from '../license/hosts.js';
import { createActivationRequest } from '../../src/host/licences.js';
import { probeHost } from '../../src/hardware/probe.js';

describe('mlic CLI: vendor to customer', () => {
  let v: string; // vendor's directory
  let hostA: { home: string; env: Record<string, string> };
  let hostB: { home: string; env: Record<string, string> };
  let model: Buffer;

  // The CLI always probes the real machine (no flag or variable can change what a licence
  // decision sees): two "hosts" here are two state directories on this machine.
  const host = async (name: string) => {
    const home = join(await tmp(`mlic-cli-${name}-`), 'home');
    return { home, env: { MLIC_HOME: home } };
  };

  beforeAll(async () => {
    v = await tmp('mlic-vendor-');
    expect((await mlic(['keygen', '-o', v, '--name', 'acme', '--unencrypted'])).code).toBe(0);
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
    hostA = await host('hosta');
    hostB = await host('hostb');
  });

  it('fingerprint probes this machine; identifiers never appear; no variable, flag or PATH entry can present another machine', async () => {
    const r = await mlic(['fingerprint', '--json'], { env: hostA.env });
    expect(r.code, r.stderr).toBe(0);
    const real = await probeHost();
    expect(r.json.result.components.map((c: { kind: string }) => c.kind)).toEqual(real.components.map((c) => c.kind));
    for (const c of real.components) if (c.kind !== 'cpu') expect(JSON.stringify(r.json.result)).not.toContain(c.value); // the CPU model is shown as such
    // A fake machine root and a fake nvidia-smi first on PATH change nothing (the old test seam, MLIC_PROBE_ROOT, is gone).
    const fake = await fakeRoot('evil', ['GPU-11111111-2222-3333-4444-555555555555']);
    const spoofed = await mlic(['fingerprint', '--json'], { env: { ...hostA.env, MLIC_PROBE_ROOT: fake.root, PATH: `${fake.binDir}:${process.env.PATH}` } });
    expect(spoofed.code).toBe(0);
    expect(spoofed.json.result.components).toEqual(r.json.result.components);
    expect(spoofed.json.result.gpus.some((g: { uuid: string }) => g.uuid.startsWith('GPU-1111'))).toBe(false);
    expect((await mlic(['fingerprint', '--root', fake.root])).code).toBe(2);
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
    const u = await mlic(['unpack', join(v, 'm-2.1.0.mlb'), '-o', out, '--json'], { env: hostA.env });
    expect(u.code, u.stderr).toBe(0);
    expect((await readFile(join(out, 'weights.bin'))).equals(model)).toBe(true);
    expect((await stat(join(out, 'weights.bin'))).mode & 0o777).toBe(0o600);
    const u3 = await mlic(['unpack', join(v, 'm-3.0.0.mlb'), '-o', join(out, 'x'), '--json'], { env: hostA.env });
    expect(u3.code).toBe(1);
    expect(u3.json.error.code).toBe('VERSION_NOT_LICENSED');
    expect(u3.json.error.message).toContain('^2');
    const uf = await mlic(['unpack', join(v, 'm-2.1.0.mlb'), '-o', join(out, 'y'), '--feature', 'translate'], { env: hostA.env });
    expect(uf.code).toBe(1);
    expect(uf.stderr).toContain('FEATURE_NOT_LICENSED');
    await expect(access(join(out, 'y'))).rejects.toThrow();
    // run: {model} and MLIC_MODEL_DIR, exit status passed on, directory wiped
    const r = await mlic(['run', join(v, 'm-2.1.0.mlb'), '--', 'sh', '-c', 'cmp "$MLIC_MODEL_DIR/weights.bin" "$1" && echo "$MLIC_MODEL_DIR" && test "$MLIC_MODEL_DIR" = "$2" && exit 7', 'sh', join(out, 'weights.bin'), '{model}'], { env: hostA.env });
    expect(r.code, r.stderr).toBe(7);
    const dirUsed = r.stdout.trim();
    expect(dirUsed).toMatch(/mlic-run-/);
    await expect(access(dirUsed)).rejects.toThrow();
    // Host B (another host key): the same licence is refused with its own code and hint, while the hardware matches.
    expect((await mlic(['activate', '--request', '-o', join(v, 'b.json')], { env: hostB.env })).code).toBe(0);
    await mlic(['trust', 'add', join(v, 'acme.pub')], { env: hostB.env });
    const onB = await mlic(['activate', lic, '--json'], { env: hostB.env });
    expect(onB.code).toBe(1);
    expect(onB.json.error.code).toBe('HOST_KEY_MISMATCH');
    expect(onB.json.error.hint).toMatch(/activate --request/);
    const same = await mlic(['fingerprint', '--compare', req, '--json'], { env: hostA.env });
    expect(same.code).toBe(0);
    expect(same.json.result.matches).toBe(true);
    // Other hardware under A's host key: a request made (through the library) on a machine with other components.
    const other = await fakeRoot('other', []);
    const { request } = await createActivationRequest({ stateDir: hostA.home, probe: { root: other.root, nvidiaSmi: join(other.binDir, 'nvidia-smi') } });
    const req2 = join(v, 'other.json');
    await writeFile(req2, JSON.stringify(request));
    const lic2 = join(v, 'other.lic');
    expect((await mlic(['license', 'issue', '--key', join(v, 'acme.key'), '--request', req2, '--model', 'm', '--versions', '^2', '--days', '30', '-o', lic2])).code).toBe(0);
    const hw = await mlic(['activate', lic2, '--json'], { env: hostA.env });
    expect(hw.code).toBe(1);
    expect(hw.json.error.code).toBe('HW_MISMATCH');
    const cmp = await mlic(['fingerprint', '--compare', req2, '--json'], { env: hostA.env });
    expect(cmp.code).toBe(1);
    expect(cmp.json.error.code).toBe('HW_MISMATCH');
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
    const i = await mlic(['license', 'issue', '--key', join(v, 'acme.key'), '--request', badReq, '--model', 'm', '--rolling', '--perpetual', '--json']);
    expect(i.code).toBe(2);
  });
});
