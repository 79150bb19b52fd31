/**
 * Talking to the vendor's licence server, for the host and the admin CLI alike: one request, with
 * a timeout; an unreachable server is IO_ERROR naming it; a refusal is an MlicError with the
 * server's own code (its `{"error":{"code","message","hint?","details?"}}`).
 */
import { ERROR_CODES, MlicError, type ErrorCode } from '../errors.js';

/** `path` under the server's base URL. */
export function serverUrl(server: string, path: string): URL {
  try {
    const u = new URL(path, server.endsWith('/') ? server : `${server}/`);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('scheme');
    return u;
  } catch {
    throw new MlicError('USAGE', `${server}: not an http(s) URL`);
  }
}

interface ServerError {
  code?: string;
  message?: string;
  hint?: string;
  details?: unknown;
}

/** A licence server's refusal as an MlicError with the server's code (IO_ERROR for one this mlic does not know). */
export function refusal(what: string, status: number, err: ServerError | undefined): MlicError {
  const code = ERROR_CODES.has(err?.code ?? '') ? (err!.code as ErrorCode) : 'IO_ERROR';
  return new MlicError(code, `the licence server refused the ${what} (${status}): ${err?.message ?? 'no reason given'}`, {
    ...(err?.hint ? { hint: err.hint } : {}),
    ...(err?.details && typeof err.details === 'object' ? { details: err.details as Record<string, unknown> } : {}),
  });
}

export interface ServerAnswer {
  status: number;
  ok: boolean;
  text: string;
  /** the body as JSON, or undefined when it is not JSON */
  json: Record<string, unknown> | undefined;
}

/**
 * One request to the server: a JSON body is POSTed, none is a GET. Throws IO_ERROR (with `hint`
 * if given) when the server cannot be reached; any answer, refusals too, is returned.
 */
export async function callServer(server: string, path: string, o: { body?: unknown; token?: string; timeoutMs?: number; hint?: string } = {}): Promise<ServerAnswer> {
  const url = serverUrl(server, path);
  let res: Response;
  try {
    res = await fetch(url, {
      method: o.body === undefined ? 'GET' : 'POST',
      headers: { ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
      signal: AbortSignal.timeout(o.timeoutMs ?? 60_000),
    });
  } catch (e) {
    // undici wraps the socket error, sometimes in an AggregateError (one per address tried)
    const cause = (e as { cause?: { code?: string; message?: string; errors?: { code?: string }[] } }).cause;
    const why = cause?.code ?? cause?.errors?.[0]?.code ?? cause?.message ?? (e as Error).message;
    throw new MlicError('IO_ERROR', `cannot reach the licence server at ${url.origin}: ${why}`, { cause: e, ...(o.hint ? { hint: o.hint } : {}) });
  }
  const text = await res.text();
  let json: Record<string, unknown> | undefined;
  try {
    const v = JSON.parse(text) as unknown;
    json = typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, ok: res.ok, text, json };
}

/** The refusal in an answer that is not ok (or lacks `field`). */
export function expectField(a: ServerAnswer, field: string, what: string): void {
  if (!a.ok || a.json?.[field] === undefined) throw refusal(what, a.status, a.json?.error as ServerError | undefined);
}
