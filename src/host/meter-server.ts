/**
 * `mlic meter serve`: validate requests over a Unix socket, one JSON object per line, for
 * runtimes that are not Node (docs/USAGE.md §3). Garbage, over-long lines and unknown metrics get
 * an error answer and the connection keeps being served.
 */
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { chmod, lstat, unlink } from 'node:fs/promises';
import { MlicError } from '../errors.js';
import type { LoadedLicense, ValidateRequest } from './handle.js';

export const MAX_LINE = 64 * 1024;

export interface ServeOptions {
  socketPath: string;
  license: LoadedLicense;
  onListening?: () => void;
}

async function isLiveSocket(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** Answers one request object; never throws. */
export async function answer(lic: LoadedLicense, msg: unknown): Promise<Record<string, unknown>> {
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return { ok: false, error: { code: 'bad_request', message: 'each line must be a JSON object' } };
  const m = msg as Record<string, unknown>;
  const id = m.id === undefined ? {} : { id: m.id };
  const op = m.op ?? 'validate';
  try {
    switch (op) {
      case 'ping':
        return { ...id, ok: true, result: { pong: true } };
      case 'validate': {
        const req: ValidateRequest = {};
        if (m.feature !== undefined) {
          if (typeof m.feature !== 'string') return { ...id, ok: false, error: { code: 'bad_request', message: 'feature must be a string' } };
          req.feature = m.feature;
        }
        if (m.meter !== undefined) {
          const mm = m.meter as Record<string, unknown>;
          if (typeof mm !== 'object' || mm === null || typeof mm.metric !== 'string' || typeof mm.quantity !== 'number')
            return { ...id, ok: false, error: { code: 'bad_request', message: 'meter must be {"metric": string, "quantity": integer}' } };
          req.meter = { metric: mm.metric, quantity: mm.quantity };
        }
        if (m.inputHash !== undefined) req.inputHash = m.inputHash as string;
        if (m.outputHash !== undefined) req.outputHash = m.outputHash as string;
        return { ...id, ok: true, result: await lic.validate(req) };
      }
      case 'status':
        return { ...id, ok: true, result: { meters: await lic.status() } };
      case 'audit':
        await lic.audit({ ...(m.inputHash !== undefined ? { inputHash: m.inputHash as string } : {}), ...(m.outputHash !== undefined ? { outputHash: m.outputHash as string } : {}), ...(typeof m.feature === 'string' ? { feature: m.feature } : {}) });
        return { ...id, ok: true, result: { recorded: true } };
      default:
        return { ...id, ok: false, error: { code: 'unknown_op', message: `unknown op ${JSON.stringify(op).slice(0, 40)} (use validate, status, audit, ping)` } };
    }
  } catch (e) {
    const err = e instanceof MlicError ? { code: e.code.toLowerCase(), message: e.message } : { code: 'internal', message: 'internal error' };
    return { ...id, ok: false, error: err };
  }
}

function serveConnection(sock: Socket, lic: LoadedLicense): void {
  let buf = '';
  let discarding = false;
  let chain: Promise<void> = Promise.resolve();
  const send = (o: unknown) => {
    if (!sock.destroyed) sock.write(JSON.stringify(o) + '\n');
  };
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (discarding) {
        discarding = false;
        continue;
      }
      if (line.trim() === '') continue;
      if (line.length > MAX_LINE) {
        chain = chain.then(() => send({ ok: false, error: { code: 'line_too_long', message: `lines are limited to ${MAX_LINE} bytes` } }));
        continue;
      }
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        chain = chain.then(() => send({ ok: false, error: { code: 'bad_json', message: 'not valid JSON' } }));
        continue;
      }
      // Answers go out in request order.
      chain = chain.then(async () => send(await answer(lic, msg)));
    }
    if (buf.length > MAX_LINE) {
      buf = '';
      if (!discarding) {
        discarding = true;
        chain = chain.then(() => send({ ok: false, error: { code: 'line_too_long', message: `lines are limited to ${MAX_LINE} bytes` } }));
      }
    }
  });
  sock.on('error', () => sock.destroy());
}

export async function serve(o: ServeOptions): Promise<Server> {
  try {
    const st = await lstat(o.socketPath);
    if (!st.isSocket()) throw new MlicError('IO_EXISTS', `${o.socketPath} exists and is not a socket`);
    if (await isLiveSocket(o.socketPath)) throw new MlicError('IO_EXISTS', `${o.socketPath}: another server is listening there`);
    await unlink(o.socketPath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const server = createServer((sock) => serveConnection(sock, o.license));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new MlicError('IO_ERROR', `cannot listen on ${o.socketPath}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
    server.listen(o.socketPath, () => resolve());
  });
  await chmod(o.socketPath, 0o600);
  o.onListening?.();
  return server;
}
