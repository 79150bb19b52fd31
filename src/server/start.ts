/**
 * mlic server start: the database brought up to date (a first start in an empty data directory
 * initializes it and prints the first admin token once), then HTTP(S) until SIGTERM or SIGINT,
 * which stop accepting, let requests in flight finish, and close the database.
 */
import type { TpmVerifyOptions } from '../tpm/attest.js';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { MlicError, fromFsError } from '../errors.js';
import type { VendorKey } from '../keys/vendor.js';
import { migrate, openDatabase } from './db/index.js';
import { buildApp } from './app.js';
import { privateDataDir } from './init.js';
import { createAdminToken, liveAdminTokens } from './tokens.js';

export interface StartOptions {
  dataDir: string;
  database?: string | undefined;
  /** host:port (default 127.0.0.1:8787); [v6]:port for IPv6 */
  listen?: string;
  insecureHttp?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  /** told once, when a first start initialized the database */
  onFirstToken?: (token: string) => void;
  /** told when listening, with the base URL */
  onListening?: (url: string) => void;
  log?: (line: string) => void;
  /** stops the server gracefully when aborted */
  signal?: AbortSignal;
  /** the vendor key to issue licences with (online activation) */
  issuer?: VendorKey;
  rateLimits?: { perKey: number; perAddress: number };
  trustProxy?: boolean;
  tpm?: TpmVerifyOptions;
}

/** How long a stop waits for requests in flight before it cuts their connections. */
export const SHUTDOWN_GRACE_MS = 10_000;

export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new MlicError('USAGE', `--listen ${s}: expected HOST:PORT (e.g. 127.0.0.1:8787, [::1]:8787, 0.0.0.0:443)`);
  return { host: (m[1] ?? m[2])!, port };
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/** Runs until stopped; resolves after a graceful shutdown. */
export async function startServer(o: StartOptions): Promise<void> {
  const { host, port } = parseListen(o.listen ?? '127.0.0.1:8787');
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new MlicError('USAGE', 'give both --tls-cert and --tls-key, or neither');
  const tls = o.tlsCert !== undefined;
  if (!tls && !isLoopback(host) && !o.insecureHttp)
    throw new MlicError('USAGE', `refusing plain HTTP on ${host}: licence keys and admin tokens would cross the network in clear`, {
      hint: 'give --tls-cert and --tls-key, listen on a loopback address behind a TLS proxy, or pass --insecure-http',
    });
  const https = tls
    ? {
        cert: await readFile(o.tlsCert!).catch((e: unknown) => {
          throw fromFsError(e, o.tlsCert!);
        }),
        key: await readFile(o.tlsKey!).catch((e: unknown) => {
          throw fromFsError(e, o.tlsKey!);
        }),
      }
    : undefined;

  await privateDataDir(o.dataDir);
  const db = await openDatabase({ dataDir: o.dataDir, url: o.database });
  let app: Awaited<ReturnType<typeof buildApp>> | undefined;
  try {
    await migrate(db);
    try {
      app = await buildApp({
        db,
        ...(o.issuer ? { issuer: o.issuer } : {}),
        ...(o.log ? { log: o.log } : {}),
        ...(https ? { https } : {}),
        ...(o.rateLimits ? { rateLimits: o.rateLimits } : {}),
        ...(o.trustProxy ? { trustProxy: true } : {}),
        ...(o.tpm ? { tpm: o.tpm } : {}),
      });
    } catch (e) {
      if (!https) throw e;
      throw new MlicError('KEY_INVALID', `--tls-cert ${o.tlsCert} / --tls-key ${o.tlsKey}: not a usable PEM certificate and key (${(e as { code?: string }).code ?? (e as Error).message})`, { cause: e });
    }
    try {
      await app.listen({ host, port });
    } catch (e) {
      const code = (e as { code?: string }).code ?? (e as Error).message;
      throw new MlicError('IO_ERROR', `cannot listen on ${host}:${port}: ${code}`, {
        cause: e,
        ...(code === 'EADDRINUSE' ? { hint: 'another process holds that port; choose another with --listen' } : code === 'EACCES' ? { hint: 'ports below 1024 need privileges; use a higher port behind a proxy' } : {}),
      });
    }
    // Only once the server is up: a start that fails never mints a token it could not show.
    const first = await db.tx(async (q) => ((await liveAdminTokens(q)) === 0 ? createAdminToken(q, 'first admin token (first start)', Math.floor(Date.now() / 1000)) : undefined));
    if (first) o.onFirstToken?.(first.token);
    const addr = app.server.address();
    const bound = typeof addr === 'object' && addr ? addr.port : port;
    o.onListening?.(`${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${bound}`);
    await new Promise<void>((resolve) => {
      if (!o.signal) return; // runs until the process ends
      if (o.signal.aborted) return resolve();
      o.signal.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    // stops accepting, waits for requests in flight (at most SHUTDOWN_GRACE_MS: a client that
    // trickles its request does not hold the server up), then the database
    if (app) {
      const closing = app.close();
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((res) => {
        timer = setTimeout(() => res('late'), SHUTDOWN_GRACE_MS);
        timer.unref();
      });
      if ((await Promise.race([closing, late])) === 'late') app.server.closeAllConnections();
      clearTimeout(timer);
      await closing;
    }
    await db.close();
  }
}
