/** The OpenAPI document: served at /openapi.json, made from the routes' own schemas, and the copy in docs/ is current. */
import { describe, it, expect } from 'vitest';
import { mkdir, readFile } from 'node:fs/promises';
import { buildApp } from '../../src/server/app.js';
import { openDatabase } from '../../src/server/db/index.js';
import { ENTITLEMENT_INPUT_SCHEMA } from '../../src/server/entitlements.js';
import { freshServerPlace } from './databases.js';

describe('OpenAPI', () => {
  it('is served at /openapi.json from the schemas the server validates with, and docs/openapi.json is that document (npm run openapi)', async () => {
    const p = await freshServerPlace('sqlite');
    await mkdir(p.dataDir, { recursive: true, mode: 0o700 });
    const db = await openDatabase({ dataDir: p.dataDir });
    const app = await buildApp({ db, log: () => undefined });
    try {
      const r = await app.inject({ method: 'GET', url: '/openapi.json' });
      expect(r.statusCode).toBe(200);
      const doc = r.json() as { openapi: string; paths: Record<string, Record<string, { requestBody?: { content: { 'application/json': { schema: unknown } } }; security?: unknown }>> };
      expect(doc.openapi).toBe('3.1.0');
      expect(Object.keys(doc.paths).sort()).toEqual([
        '/healthz',
        '/v1/activations',
        '/v1/activations/challenge',
        '/v1/admin-tokens',
        '/v1/admin-tokens/{id}/revoke',
        '/v1/deactivations',
        '/v1/entitlements',
        '/v1/entitlements/{id}',
        '/v1/hosts',
        '/v1/leases',
        '/v1/licenses',
        '/v1/reservations',
        '/v1/revocations',
        '/v1/usage',
        '/v1/usage-reports',
      ]);
      expect(doc.paths['/v1/entitlements']!.post!.requestBody!.content['application/json'].schema).toEqual(ENTITLEMENT_INPUT_SCHEMA);
      expect(doc.paths['/v1/entitlements']!.post!.security).toEqual([{ adminToken: [] }]);
      expect(doc.paths['/healthz']!.get!.security).toBeUndefined();
      expect(doc.paths['/v1/activations']!.post!.security).toBeUndefined();
      expect(doc.paths['/v1/activations/challenge']!.post!.security).toBeUndefined();
      expect(doc.paths['/v1/revocations']!.get!.security).toBeUndefined();
      expect(doc.paths['/v1/revocations']!.post!.security).toEqual([{ adminToken: [] }]);
      expect(doc.paths['/v1/usage']!.get!.security).toEqual([{ adminToken: [] }]);
      expect(doc.paths['/v1/licenses']!.get!.security).toEqual([{ adminToken: [] }]);
      const committed = JSON.parse(await readFile(new URL('../../docs/openapi.json', import.meta.url), 'utf8')) as unknown;
      expect(committed, 'docs/openapi.json is stale: run npm run openapi').toEqual(doc);
    } finally {
      await app.close();
      await db.close();
    }
  });
});
