import { describe, it, expect, beforeAll } from 'vitest';
import { cp, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { mlic } from './run.js';
import { tmp } from '../helpers.js';
import { gnuTar, makeTar } from '../archive-helpers.js';

const FIX = new URL('../../fixtures/models/', import.meta.url).pathname;

describe('mlic pack <archive>', () => {
  let d: string;
  let tgz: string;
  const packArgs = (src: string, out: string, extra: string[] = []) => ['pack', src, '--name', 'm', '--version', '1.0.0', '--key', join(d, 'acme.key'), '-o', out, '--json', ...extra];
  beforeAll(async () => {
    d = await tmp();
    expect((await mlic(['keygen', '-o', d, '--name', 'acme', '--unencrypted', '--json'])).code).toBe(0);
    await cp(join(FIX, 'onnx-external'), join(d, 'model'), { recursive: true });
    tgz = join(d, 'model.tgz');
    gnuTar(['-czf', tgz, '-C', join(d, 'model'), '.']);
  });

  it('packs a .tgz like the directory it holds, verifies; also as a --component', async () => {
    const r = await mlic(packArgs(tgz, join(d, 'a.mlb')));
    expect(r.code, r.stderr).toBe(0);
    const formats = Object.fromEntries(r.json.result.files.map((f: { path: string; format: string }) => [f.path, f.format]));
    expect(formats).toEqual({ 'model.onnx': 'onnx', 'weights.data': 'onnx-external-data' });
    const dir = await mlic(packArgs(join(d, 'model'), join(d, 'b.mlb')));
    expect(r.json.result.files).toEqual(dir.json.result.files);
    expect((await mlic(['verify', join(d, 'a.mlb'), '--pub', join(d, 'acme.pub'), '--json'])).code).toBe(0);
    const c = await mlic(['pack', '--component', `det=${tgz}`, '--name', 'p', '--version', '1.0.0', '--key', join(d, 'acme.key'), '-o', join(d, 'c.mlb'), '--json']);
    expect(c.code, c.stderr).toBe(0);
    expect(c.json.result.files.map((f: { path: string }) => f.path)).toEqual(['det/model.onnx', 'det/weights.data']);
  });

  it('a truncated .tgz, a corrupt gzip stream, a .tar that is not one: exit 2 with a code, no bundle left', async () => {
    const w = await tmp();
    const gz = await readFile(tgz);
    const flipped = Buffer.from(gz);
    flipped[Math.floor(gz.length / 2)]! ^= 0xff;
    const cases: [string, Buffer][] = [
      ['cut.tgz', gz.subarray(0, Math.floor(gz.length * 0.6))],
      ['flip.tgz', flipped],
      ['text.tar', Buffer.from('not a tar archive\n'.repeat(50))],
    ];
    for (const [name, bytes] of cases) {
      await writeFile(join(w, name), bytes);
      const r = await mlic(packArgs(join(w, name), join(w, 'o.mlb')));
      expect(r.code, name).toBe(2);
      expect(r.json.error.code, name).toBe('FORMAT_INVALID');
      expect(r.json.error.message, name).toContain(name);
      const plain = await mlic(packArgs(join(w, name), join(w, 'o.mlb')).filter((a) => a !== '--json'));
      expect(plain.code, name).toBe(2);
      expect(plain.stderr, name).toContain('FORMAT_INVALID');
    }
    expect((await readdir(w)).filter((n) => n.endsWith('.mlb') || n.includes('.tmp-'))).toEqual([]);
  });

  it('an unsafe member name: exit 2, IO_UNSAFE_PATH', async () => {
    const w = await tmp();
    await writeFile(join(w, 'evil.tgz'), gzipSync(makeTar([{ path: 'ok.bin', data: 'x' }, { path: '../../evil.bin', data: 'y' }])));
    const r = await mlic(packArgs(join(w, 'evil.tgz'), join(w, 'o.mlb')));
    expect(r.code).toBe(2);
    expect(r.json.error.code).toBe('IO_UNSAFE_PATH');
    expect(await readdir(w)).toEqual(['evil.tgz']);
  });

  it('pack --help says which archives it reads', async () => {
    const h = await mlic(['pack', '--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain('.tgz');
    expect(h.stdout).toContain('.tar.gz');
  });
});
