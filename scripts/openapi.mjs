#!/usr/bin/env node
// npm run openapi: writes docs/openapi.json, the licence server's HTTP API as the server itself
// serves it at /openapi.json (made from the schemas its routes validate with). A test fails when
// the file in docs/ differs from what the server serves.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApp } from '../dist/server/app.js';
import { openDatabase } from '../dist/server/db/index.js';

const dir = mkdtempSync(join(tmpdir(), 'mlic-openapi-'));
try {
  const db = await openDatabase({ dataDir: dir });
  const app = await buildApp({ db, log: () => undefined });
  const r = await app.inject({ method: 'GET', url: '/openapi.json' });
  writeFileSync('docs/openapi.json', JSON.stringify(r.json(), null, 2) + '\n');
  await app.close();
  await db.close();
  console.log('wrote docs/openapi.json');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
