/** `mlic server start` as a real process: listening, health, errors, access log, TLS, shutdown. */
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'node:https';
import BetterSqlite3 from 'better-sqlite3';
import { BIN } from '../cli/run.js';
import { tmp } from '../helpers.js';
import { SCHEMA_VERSION } from '../../src/server/db/index.js';
import { KINDS, freshServerPlace } from './databases.js';
import { startServer, stop } from './process.js';

describe.each(KINDS)('mlic server start on %s', (kind) => {
  it('a first start initializes an empty data directory (token once), serves /healthz and mlic-coded errors, logs one JSON line a request, stops on SIGTERM with 0', async () => {
    const { dataDir, url } = await freshServerPlace(kind);
    const db = url ? ['--database', url] : [];
    const s = await startServer(['--data', dataDir, ...db]);
    expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(s.first.adminToken).toMatch(/^mlat_/);
    const h = await fetch(`${s.url}/healthz`);
    expect(h.status).toBe(200);
    expect(await h.json()).toEqual({ ok: true, database: kind, schemaVersion: SCHEMA_VERSION });
    const nf = await fetch(`${s.url}/no/such/route?token=secret-in-query`, { headers: { authorization: 'Bearer mlat_secret_header' } });
    expect(nf.status).toBe(404);
    expect(((await nf.json()) as { error: { code: string } }).error.code).toBe('IO_NOT_FOUND');
    const big = await fetch(`${s.url}/healthz`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ x: 'a'.repeat(100_000) }) });
    expect(big.status).toBe(413);
    expect(((await big.json()) as { error: { code: string } }).error.code).toBe('FORMAT_INVALID');
    expect(await stop(s)).toBe(0);
    const lines = s.stdout().trim().split('\n').slice(1).map((l) => JSON.parse(l) as { method: string; path: string; status: number });
    expect(lines.map((l) => [l.method, l.path, l.status])).toEqual([
      ['GET', '/healthz', 200],
      ['GET', '/no/such/route', 404],
      ['POST', '/healthz', 413],
    ]);
    expect(s.stdout() + s.stderr()).not.toMatch(/secret-in-query|mlat_secret_header/);
    // a second start finds the database initialized: no new token
    const again = await startServer(['--data', dataDir, ...db]);
    expect(again.first.adminToken).toBeUndefined();
    expect(await stop(again)).toBe(0);
  });
});

describe('mlic server start: refusals and TLS', () => {
  const fails = (args: string[]) => {
    const r = spawnSync(process.execPath, [BIN, 'server', 'start', '--json', ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    return { status: r.status, error: (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error };
  };

  it('plain HTTP on a non-loopback address is refused without --insecure-http; a bad --listen is USAGE', async () => {
    const dir = join(await tmp(), 'd');
    const r = fails(['--data', dir, '--listen', '0.0.0.0:0']);
    expect(r.status).toBe(2);
    expect(r.error.code).toBe('USAGE');
    expect(r.error.message).toMatch(/plain HTTP/);
    expect(fails(['--data', dir, '--listen', 'nonsense']).error.code).toBe('USAGE');
    expect(fails(['--data', dir, '--listen', '127.0.0.1:70000']).error.code).toBe('USAGE');
    // (test servers listen on loopback only, so --insecure-http on 0.0.0.0 is not started here)
  });

  it('refuses to start on a database newer than itself (UNSUPPORTED_VERSION, exit 2)', async () => {
    const dir = join(await tmp(), 'd');
    const s = await startServer(['--data', dir]);
    expect(await stop(s)).toBe(0);
    const db = new BetterSqlite3(join(dir, 'mlic.db'));
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(SCHEMA_VERSION + 1, 'future', 0);
    db.close();
    const r = fails(['--data', dir]);
    expect(r.status).toBe(2);
    expect(r.error.code).toBe('UNSUPPORTED_VERSION');
  });

  it('serves HTTPS with --tls-cert and --tls-key (a self-signed certificate from openssl)', async () => {
    const d = await tmp();
    const cert = join(d, 'cert.pem');
    const key = join(d, 'key.pem');
    const o = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
    expect(o.status, `openssl (Debian: apt-get install openssl): ${o.stderr}`).toBe(0);
    const s = await startServer(['--data', join(d, 'data'), '--tls-cert', cert, '--tls-key', key]);
    expect(s.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const ca = await readFile(cert);
    const body = await new Promise<string>((res, rej) => {
      const rq = request(`${s.url}/healthz`, { ca }, (r) => {
        let b = '';
        r.on('data', (c) => (b += c));
        r.on('end', () => res(b));
      });
      rq.on('error', rej);
      rq.end();
    });
    expect(JSON.parse(body)).toMatchObject({ ok: true });
    expect(await stop(s)).toBe(0);
    expect(fails(['--data', join(d, 'data'), '--tls-cert', cert]).error.code).toBe('USAGE');
  });
});

describe('mlic server start: failures and stops', () => {
  it('a start that cannot listen (port taken) is IO_ERROR, exit 2, and mints no token: the next start still shows the first one', async () => {
    const dir = join(await tmp(), 'd');
    const holder = await startServer(['--data', join(await tmp(), 'other')]);
    const port = new URL(holder.url).port;
    const r = spawnSync(process.execPath, [BIN, 'server', 'start', '--json', '--data', dir, '--listen', `127.0.0.1:${port}`], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 });
    expect(await stop(holder)).toBe(0);
    expect(r.status).toBe(2);
    expect((JSON.parse(r.stdout) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'IO_ERROR', message: expect.stringContaining('EADDRINUSE') });
    const s = await startServer(['--data', dir]);
    expect(s.first.adminToken).toMatch(/^mlat_/);
    expect(await stop(s)).toBe(0);
  });

  it('a client trickling its request does not hold a SIGTERM up past the grace period', async () => {
    const s = await startServer(['--data', join(await tmp(), 'd')]);
    const { port } = new URL(s.url);
    const sock = connect(Number(port), '127.0.0.1');
    await new Promise((res) => sock.once('connect', res));
    sock.write('POST /v1/entitlements HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{');
    const drip = setInterval(() => sock.write(' '), 1000);
    sock.on('error', () => undefined);
    await new Promise((res) => setTimeout(res, 300));
    const t0 = Date.now();
    try {
      expect(await stop(s)).toBe(0);
    } finally {
      clearInterval(drip);
      sock.destroy();
    }
    expect(Date.now() - t0).toBeLessThan(15_000);
  }, 30_000);
});

describe('two servers on one PostgreSQL', () => {
  it('starting at once on an empty database: both serve, the schema is migrated once, one first admin token between them', async () => {
    const { url } = await freshServerPlace('postgres');
    const [a, b] = await Promise.all([startServer(['--data', join(await tmp(), 'a'), '--database', url!]), startServer(['--data', join(await tmp(), 'b'), '--database', url!])]);
    try {
      for (const s of [a, b]) expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
      expect([a.first.adminToken, b.first.adminToken].filter(Boolean)).toHaveLength(1);
    } finally {
      expect(await stop(a)).toBe(0);
      expect(await stop(b)).toBe(0);
    }
  });
});
