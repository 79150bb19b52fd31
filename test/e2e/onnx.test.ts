import { describe, it, expect } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { pack } from '../../src/bundle/pack.js';
import { unpack } from '../../src/host/unpack.js';
import { openBundle } from '../../src/host/open.js';
import { issueLicense } from '../../src/license/issue.js';
import { serializeLicense } from '../../src/format/license.js';
import { activateLicense, createActivationRequest } from '../../src/host/licences.js';
import { publicKeyFileText } from '../../src/keys/vendor.js';
import { key, tmp } from '../helpers.js';
import { fakeHost } from '../license/hosts.js';

const FIX = fileURLToPath(new URL('../../fixtures/models/', import.meta.url));

async function infer(model: string | Uint8Array): Promise<number[]> {
  const s = typeof model === 'string' ? await ort.InferenceSession.create(model) : await ort.InferenceSession.create(model);
  const out = await s.run({ X: new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4]), [1, 4]) });
  return Array.from(out.Y!.data as Float32Array);
}

describe('end to end with a real ONNX model in onnxruntime-node', () => {
  it('plaintext, `unpack` output and `openBundle` in memory give identical outputs', async () => {
    const expected = JSON.parse(await readFile(join(FIX, 'EXPECTED.json'), 'utf8')).output as number[];
    const plain = await infer(join(FIX, 'tiny-onnx/model.onnx'));
    expect(plain).toEqual(expected);

    const vendor = key('acme');
    const d = await tmp();
    const bundle = join(d, 'tiny-1.0.0.mlb');
    await pack({ input: join(FIX, 'tiny-onnx'), name: 'tiny', version: '1.0.0', key: vendor, out: bundle });
    const host = await fakeHost('gpu1');
    await host.state.trustAdd(publicKeyFileText(vendor));
    const { request } = await createActivationRequest({ stateDir: host.stateDir, hostProbe: host.probe() });
    const lic = serializeLicense(issueLicense({ key: vendor, request, model: 'tiny', versions: { policy: 'range', range: '^1' }, perpetual: true }).license);
    await activateLicense(lic, { stateDir: host.stateDir, hostProbe: host.probe() });

    const out = join(d, 'unpacked');
    await unpack(bundle, out, { stateDir: host.stateDir, hostProbe: host.probe() });
    expect(await infer(join(out, 'model.onnx'))).toEqual(plain);

    const m = await openBundle(bundle, { stateDir: host.stateDir, hostProbe: host.probe() });
    try {
      expect(await infer(m.file('model.onnx'))).toEqual(plain);
    } finally {
      await m.close();
    }

    // And the external-data variant from unpack output.
    const b2 = join(d, 'ext-1.0.0.mlb');
    await pack({ input: join(FIX, 'onnx-external'), name: 'tiny', version: '1.0.1', key: vendor, out: b2 });
    const out2 = join(d, 'unpacked2');
    await unpack(b2, out2, { stateDir: host.stateDir, hostProbe: host.probe() });
    expect(await infer(join(out2, 'model.onnx'))).toEqual(plain);
  });
});
