/**
 * The licence server's HTTP application: routes, schema validation, one error shape
 * (`{"error":{"code","message"}}` with mlic's codes), and an access log of one JSON line per
 * request (method, path, status, time; never headers, bodies or tokens).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { MlicError, exitStatusFor } from '../errors.js';
import { SCHEMA_VERSION, type Database } from './db/index.js';

export interface AppOptions {
  db: Database;
  /** where access-log lines go (default: stdout) */
  log?: (line: string) => void;
  https?: { cert: Buffer; key: Buffer };
}

/** The HTTP status for an mlic error code: a decision that said no is 403, bad input 400. */
function statusFor(code: string): number {
  if (code === 'INTERNAL') return 500;
  if (code === 'IO_NOT_FOUND') return 404;
  return exitStatusFor(code) === 1 ? 403 : 400;
}

export async function buildApp(o: AppOptions): Promise<FastifyInstance> {
  const log = o.log ?? ((line: string) => process.stdout.write(line + '\n'));
  const app = Fastify({
    logger: false,
    bodyLimit: 64 * 1024,
    // never echo a client's request id back into our logs
    genReqId: (() => {
      let n = 0;
      return () => String(++n);
    })(),
    ...(o.https ? { https: { cert: o.https.cert, key: o.https.key } } : {}),
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;

  app.addHook('onResponse', async (req, reply) => {
    log(
      JSON.stringify({
        t: new Date().toISOString(),
        method: req.method,
        path: req.url.split('?')[0],
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
        ip: req.ip,
      }),
    );
  });

  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` } });
  });

  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof MlicError) return reply.code(statusFor(err.code)).send({ error: { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) } });
    const e = err as { statusCode?: number; code?: string; validation?: unknown; message?: string };
    if (e.validation) return reply.code(400).send({ error: { code: 'FORMAT_INVALID', message: e.message ?? 'invalid request' } });
    if (e.statusCode === 413) return reply.code(413).send({ error: { code: 'FORMAT_INVALID', message: 'request body too large' } });
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) return reply.code(e.statusCode).send({ error: { code: 'FORMAT_INVALID', message: e.message ?? 'bad request' } });
    return reply.code(500).send({ error: { code: 'INTERNAL', message: 'internal error' } });
  });

  app.get(
    '/healthz',
    { schema: { response: { 200: { type: 'object', properties: { ok: { type: 'boolean' }, database: { type: 'string' }, schemaVersion: { type: 'integer' } }, required: ['ok', 'database', 'schemaVersion'] } } } },
    async () => {
      // a round trip to the database: a server that cannot reach it is not healthy
      await o.db.get('SELECT 1 AS one');
      return { ok: true, database: o.db.kind, schemaVersion: SCHEMA_VERSION };
    },
  );

  return app;
}
