/** `mlic admin entitlement ...` against a real server process. */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { mlic } from '../cli/run.js';
import { tmp } from '../helpers.js';
import { normalizeLicenseKey } from '../../src/server/license-key.js';
import { startServer, stop, type Running } from './process.js';

describe('mlic admin entitlement', () => {
  let s: Running;
  let env: Record<string, string>;
  beforeAll(async () => {
    s = await startServer(['--data', join(await tmp(), 'data')]);
    env = { MLIC_SERVER: s.url, MLIC_ADMIN_TOKEN: s.first.adminToken as string };
  });
  afterAll(async () => {
    if (s) expect(await stop(s)).toBe(0);
  });

  it('create prints the licence key once (stdout alone, or --json), list and show never do', async () => {
    const r = await mlic(['admin', 'entitlement', 'create', '--customer', 'globex', '--model', 'resnet', '--versions', '^2', '--days', '365', '--max-hosts', '8', '--meter', 'inferences=1000000/month', '--region', 'EU', '--json'], { env });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const key = r.json.result.licenseKey as string;
    expect(normalizeLicenseKey(key)).toBe(key);
    const id = r.json.result.entitlement.id as string;
    expect(r.json.result.entitlement).toMatchObject({ customer: 'globex', model: 'resnet', maxHosts: 8, terms: { versions: { policy: 'range', range: '^2' }, meters: [{ metric: 'inferences', limit: 1000000, period: 'month' }], regions: ['EU'] } });
    const text = await mlic(['admin', 'entitlement', 'create', '--customer', 'initech', '--model', 'resnet', '--rolling', '--perpetual', '--max-hosts', '1'], { env });
    expect(text.code).toBe(0);
    expect(normalizeLicenseKey(text.stdout.trim())).toBe(text.stdout.trim());
    const list = await mlic(['admin', 'entitlement', 'list', '--customer', 'globex', '--json'], { env });
    expect(list.code).toBe(0);
    expect(list.json.result.entitlements.map((e: { id: string }) => e.id)).toEqual([id]);
    const show = await mlic(['admin', 'entitlement', 'show', id], { env });
    expect(show.code).toBe(0);
    expect(show.stdout).toContain('globex');
    expect(list.stdout + show.stdout).not.toContain(key);
  });

  it('errors keep their meaning: a wrong token exits 1 UNAUTHORIZED, terms no licence could have exit 2, an unknown id IO_NOT_FOUND, no server IO_ERROR', async () => {
    const args = ['admin', 'entitlement', 'create', '--customer', 'c', '--model', 'resnet', '--versions', '^2', '--days', '30', '--max-hosts', '2', '--json'];
    const bad = await mlic(args, { env: { ...env, MLIC_ADMIN_TOKEN: 'mlat_0000000000000000_' + 'A'.repeat(43) } });
    expect(bad.code).toBe(1);
    expect(bad.json.error.code).toBe('UNAUTHORIZED');
    const terms = await mlic(['admin', 'entitlement', 'create', '--customer', 'c', '--model', 'resnet', '--versions', 'not a range', '--days', '30', '--max-hosts', '2', '--json'], { env });
    expect(terms.code).toBe(2);
    expect(terms.json.error.code).toBe('FORMAT_INVALID');
    const pin = await mlic(['admin', 'entitlement', 'create', '--customer', 'c', '--model', 'resnet', '--versions', '=2.1.0', '--days', '30', '--max-hosts', '2', '--json'], { env });
    expect(pin.json.error.code).toBe('USAGE');
    const nf = await mlic(['admin', 'entitlement', 'show', 'ent_0000000000000000', '--json'], { env });
    expect(nf.code).toBe(2);
    expect(nf.json.error.code).toBe('IO_NOT_FOUND');
    const down = await mlic(args, { env: { ...env, MLIC_SERVER: 'http://127.0.0.1:1' } });
    expect(down.code).toBe(2);
    expect(down.json.error.code).toBe('IO_ERROR');
    const none = await mlic(args, { env: { MLIC_SERVER: s.url } });
    expect(none.json.error.code).toBe('USAGE');
  });
});

describe('mlic admin token', () => {
  it('create prints a working token once; list shows ids, never tokens; revoke ends it; the last one stays', async () => {
    const s = await startServer(['--data', join(await tmp(), 'data')]);
    try {
      const first = s.first.adminToken as string;
      const env = { MLIC_SERVER: s.url, MLIC_ADMIN_TOKEN: first };
      const c = await mlic(['admin', 'token', 'create', '--name', 'release pipeline'], { env });
      expect(c.code, c.stderr).toBe(0);
      const second = c.stdout.trim();
      expect(second).toMatch(/^mlat_[0-9a-f]{16}_/);
      const l = await mlic(['admin', 'token', 'list', '--json'], { env: { ...env, MLIC_ADMIN_TOKEN: second } });
      // (listed by creation time to the second, then id: two made in one second come in either order)
      expect(l.json.result.tokens.map((t: { name: string }) => t.name).sort()).toEqual(['first admin token (first start)', 'release pipeline']);
      expect(l.stdout).not.toContain(first.slice(22));
      const firstId = first.slice(5, 21);
      expect((await mlic(['admin', 'token', 'revoke', firstId, '--json'], { env: { ...env, MLIC_ADMIN_TOKEN: second } })).code).toBe(0);
      const gone = await mlic(['admin', 'token', 'list', '--json'], { env });
      expect(gone.code).toBe(1);
      expect(gone.json.error.code).toBe('UNAUTHORIZED');
      const last = await mlic(['admin', 'token', 'revoke', second.slice(5, 21), '--json'], { env: { ...env, MLIC_ADMIN_TOKEN: second } });
      expect(last.code).toBe(2);
      expect(last.json.error.code).toBe('USAGE');
    } finally {
      expect(await stop(s)).toBe(0);
    }
  });
});
