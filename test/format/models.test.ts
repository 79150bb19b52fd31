import { describe, it, expect } from 'vitest';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspectModelFile, checkModelSet, type ModelFileInfo } from '../../src/format/models.js';
import { MlicError } from '../../src/errors.js';
import { tmp } from '../helpers.js';

const FIX = fileURLToPath(new URL('../../fixtures/models/', import.meta.url));

async function inspect(path: string, name = path.slice(path.lastIndexOf('/') + 1)): Promise<ModelFileInfo> {
  const fh = await open(path, 'r');
  try {
    return await inspectModelFile(fh, (await fh.stat()).size, name);
  } finally {
    await fh.close();
  }
}

describe('model file detection and validation', () => {
  it('detects every good fixture with its details', async () => {
    expect(await inspect(join(FIX, 'tiny-onnx/model.onnx'))).toMatchObject({ format: 'onnx', details: { irVersion: 8, opset: 17, nodes: 3, initializers: 2, externalTensors: 0 }, externalData: [] });
    expect(await inspect(join(FIX, 'onnx-external/model.onnx'))).toMatchObject({ format: 'onnx', externalData: ['weights.data'] });
    expect(await inspect(join(FIX, 'tiny.safetensors'))).toMatchObject({ format: 'safetensors', details: { tensors: 3 } });
    expect(await inspect(join(FIX, 'sharded/model.safetensors.index.json'))).toMatchObject({ format: 'safetensors-index', shards: ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'] });
    expect(await inspect(join(FIX, 'tiny.gguf'))).toMatchObject({ format: 'gguf', details: { ggufVersion: 3, tensors: 2, keys: 5, alignment: 32, architecture: 'tiny' } });
    expect((await inspect(join(FIX, 'sharded/config.json'))).format).toBe('json');
    expect((await inspect(join(FIX, 'onnx-external/weights.data'))).format).toBe('binary');
    // safetensors detected from its header even without the extension
    expect((await inspect(join(FIX, 'tiny.safetensors'), 'weights.bin')).format).toBe('safetensors');
  });

  it('rejects each malformed fixture with MODEL_INVALID', async () => {
    for (const f of ['bad/truncated-header.safetensors', 'bad/bad-json.safetensors', 'bad/bad-magic.gguf']) {
      await expect(inspect(join(FIX, f)), f).rejects.toMatchObject({ code: 'MODEL_INVALID' });
    }
  });

  it('cross-file rules: ONNX external data inside the directory and present; every shard present', async () => {
    const info = await inspect(join(FIX, 'bad/escape-onnx/model.onnx'));
    expect(() => checkModelSet(new Map([['model.onnx', info]]))).toThrow(/outside/);
    const ext = await inspect(join(FIX, 'onnx-external/model.onnx'));
    expect(() => checkModelSet(new Map([['model.onnx', ext]]))).toThrow(/missing/);
    expect(checkModelSet(new Map([['model.onnx', ext], ['weights.data', { format: 'binary', details: {} }]])).get('weights.data')).toBe('onnx-external-data');
    expect(checkModelSet(new Map([['sub/model.onnx', ext], ['sub/weights.data', { format: 'binary', details: {} }]])).get('sub/weights.data')).toBe('onnx-external-data');
    const idx = await inspect(join(FIX, 'sharded/model.safetensors.index.json'));
    expect(() => checkModelSet(new Map([['model.safetensors.index.json', idx], ['model-00001-of-00002.safetensors', { format: 'safetensors', details: {} }]]))).toThrow(/missing/);
    for (const loc of ['/etc/passwd', 'C:\\x', 'a/../../x', '..']) {
      expect(() => checkModelSet(new Map([['m.onnx', { format: 'onnx', details: {}, externalData: [loc] } as ModelFileInfo]])), loc).toThrow(MlicError);
    }
  });

  it('garbage and truncations of every good file never throw anything but MlicError (fuzz, fixed seed)', async () => {
    const d = await tmp();
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const sources: [string, string][] = [
      ['tiny-onnx/model.onnx', 'm.onnx'],
      ['tiny.safetensors', 'm.safetensors'],
      ['tiny.gguf', 'm.gguf'],
      ['sharded/model.safetensors.index.json', 'model.safetensors.index.json'],
    ];
    let errors = 0;
    for (const [src, name] of sources) {
      const orig = await readFile(join(FIX, src));
      for (let i = 0; i < 120; i++) {
        let b = Buffer.from(orig);
        const mode = i % 3;
        if (mode === 0) b = b.subarray(0, Math.floor(rnd() * b.length));
        else if (mode === 1) for (let k = 0; k < 1 + Math.floor(rnd() * 4); k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
        else b = Buffer.concat([b.subarray(0, Math.floor(rnd() * b.length)), Buffer.from(Array.from({ length: 16 }, () => Math.floor(rnd() * 256)))]);
        const p = join(d, name);
        await writeFile(p, b);
        try {
          await inspect(p, name);
        } catch (e) {
          expect(e, `${src} mutation ${i}`).toBeInstanceOf(MlicError);
          expect((e as MlicError).code).toBe('MODEL_INVALID');
          errors++;
        }
      }
    }
    expect(errors).toBeGreaterThan(100); // most mutations are caught
  });
});
