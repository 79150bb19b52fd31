/**
 * The licence server's HTTP application: routes, schema validation, one error shape
 * (`{"error":{"code","message"}}` with mlic's codes), and an access log of one JSON line per
 * request (method, path, status, time; never headers, bodies or tokens).
 */
import type { TpmVerifyOptions } from '../tpm/attest.js';
import Fastify, { type FastifyInstance } from 'fastify';
import { MlicError, exitStatusFor } from '../errors.js';
import { REVOCATION_LOCK, SCHEMA_VERSION, activationLock, leaseLock, type Database } from './db/index.js';
import type { VendorKey } from '../keys/vendor.js';
import { activate, newChallenge, deactivate, parseActivation } from './activations.js';
import { parseDeactivation } from '../format/revocation.js';
import { listHosts } from './hosts.js';
import { receiveReport, usageSummary } from './usage.js';
import { lease, leaseEntitlement } from './leases.js';
import { parseLeaseRequest, serializeLease } from '../format/lease.js';
import { parseReservationRequest } from '../format/reservation.js';
import { fleetUsage, reservation } from './quotas.js';
import { RateLimiter } from './rate-limit.js';
import { licenseKeyHash, normalizeLicenseKey } from './license-key.js';
import { MAX_REPORT_BYTES } from '../usage/report.js';
import { PAGE_QUERY_PROPERTIES } from './paging.js';
import { RevocationLists, revoke, type RevokeTarget } from './revocations.js';
import { checkAdminToken, createAdminToken, listAdminTokens, revokeAdminToken } from './tokens.js';
import { ENTITLEMENT_INPUT_SCHEMA, LICENSE_CURSOR, createEntitlement, getEntitlement, listEntitlements, listLicenses, type EntitlementInput } from './entitlements.js';

export interface AppOptions {
  db: Database;
  /** the vendor key licences are issued with; without it, activation answers 503 */
  issuer?: VendorKey;
  /** where access-log lines go (default: stdout) */
  log?: (line: string) => void;
  https?: { cert: Buffer; key: Buffer };
  /** activations a minute per licence key, and public requests a minute per client address (0: no limit) */
  rateLimits?: { perKey: number; perAddress: number };
  /** take the client address from X-Forwarded-For (only behind a proxy that sets it) */
  trustProxy?: boolean;
  /** the server's clock for leases (tests move it; default: the system's) */
  clock?: () => Date;
  /** how TPM-attested activation requests are checked (--tpm-ca, --require-tpm, --pcr-policy) */
  tpm?: TpmVerifyOptions;
}

/** The revocation list rides along with activation and deactivation answers up to this size; a longer one is fetched with `revocations sync`. */
const EMBED_LIST_MAX = 1 << 20;

export const DEFAULT_RATE_LIMITS = { perKey: 300, perAddress: 600 };

/** The HTTP status for an mlic error code: a decision that said no is 403, bad input 400. */
function statusFor(code: string): number {
  if (code === 'INTERNAL') return 500;
  if (code === 'UNAUTHORIZED') return 401;
  if (code === 'IO_NOT_FOUND') return 404;
  if (code === 'IO_EXISTS') return 409;
  if (code === 'IO_ERROR') return 503;
  if (code === 'RATE_LIMITED') return 429;
  return exitStatusFor(code) === 1 ? 403 : 400;
}

export async function buildApp(o: AppOptions): Promise<FastifyInstance> {
  const log = o.log ?? ((line: string) => process.stdout.write(line + '\n'));
  const app = Fastify({
    logger: false,
    bodyLimit: 64 * 1024,
    // a request must arrive whole within 30 s (slow clients cannot hold connections, or a stop, open)
    requestTimeout: 30_000,
    connectionTimeout: 60_000,
    // never echo a client's request id back into our logs
    genReqId: (() => {
      let n = 0;
      return () => String(++n);
    })(),
    // unknown fields are refused, never silently dropped; no type coercion
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } },
    ...(o.https ? { https: { cert: o.https.cert, key: o.https.key } } : {}),
    // one hop: the address the proxy in front saw (the last X-Forwarded-For entry), never one a client wrote in the header
    ...(o.trustProxy ? { trustProxy: (_addr: string, hop: number) => hop === 0 } : {}),
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;

  // The OpenAPI document is made from the very schemas the routes validate with (GET /openapi.json).
  const routes: { method: string; url: string; schema?: Record<string, unknown>; hook: unknown }[] = [];
  app.addHook('onRoute', (r) => {
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    for (const m of methods) if (m !== 'HEAD' && r.url !== '/openapi.json') routes.push({ method: m.toLowerCase(), url: r.url, ...(r.schema ? { schema: r.schema as Record<string, unknown> } : {}), hook: r.onRequest });
  });

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
    void reply.code(404).send({ error: { code: 'IO_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` } });
  });

  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof MlicError && err.code === 'RATE_LIMITED' && typeof err.details?.retryAfter === 'number') void reply.header('retry-after', String(err.details.retryAfter));
    if (err instanceof MlicError)
      return reply.code(statusFor(err.code)).send({ error: { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}), ...(err.details ? { details: err.details } : {}) } });
    const e = err as { statusCode?: number; code?: string; validation?: unknown; message?: string };
    if (e.validation) return reply.code(400).send({ error: { code: 'FORMAT_INVALID', message: e.message ?? 'invalid request' } });
    if (e.statusCode === 413) return reply.code(413).send({ error: { code: 'FORMAT_INVALID', message: 'request body too large' } });
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) return reply.code(e.statusCode).send({ error: { code: 'FORMAT_INVALID', message: e.message ?? 'bad request' } });
    // for the operator: one line on stderr with what failed, never a request's content
    process.stderr.write(
      JSON.stringify({ t: new Date().toISOString(), level: 'error', method: _req.method, path: _req.url.split('?')[0], error: (err as Error).name, code: e.code ?? null }) + '\n',
    );
    return reply.code(500).send({ error: { code: 'INTERNAL', message: 'internal error' } });
  });

  app.get(
    '/healthz',
    {
      schema: {
        response: Object.fromEntries(
          [200, 503].map((c) => [c, { type: 'object', properties: { ok: { type: 'boolean' }, database: { type: 'string' }, schemaVersion: { type: 'integer' } }, required: ['ok', 'database', 'schemaVersion'] }]),
        ),
      },
    },
    async (_req, reply) => {
      // a round trip to the database: a server that cannot reach it is not healthy (503)
      try {
        await o.db.get('SELECT 1 AS one');
      } catch {
        return reply.code(503).send({ ok: false, database: o.db.kind, schemaVersion: SCHEMA_VERSION });
      }
      return { ok: true, database: o.db.kind, schemaVersion: SCHEMA_VERSION };
    },
  );

  // The admin API: a bearer admin token (mlat_...), checked against its stored hash.
  const admin = async (req: { headers: Record<string, string | string[] | undefined> }) => {
    const h = req.headers.authorization;
    const m = typeof h === 'string' ? /^Bearer +(\S{1,200})$/i.exec(h) : null;
    const id = m ? await checkAdminToken(o.db, m[1]!) : undefined;
    if (!id) throw new MlicError('UNAUTHORIZED', 'an admin token is required (Authorization: Bearer mlat_...)');
  };

  app.post('/v1/entitlements', { onRequest: admin, schema: { body: ENTITLEMENT_INPUT_SCHEMA } }, async (req, reply) => {
    const r = await o.db.tx((q) => createEntitlement(q, req.body as EntitlementInput, new Date()));
    return reply.code(201).send(r);
  });
  app.get(
    '/v1/entitlements',
    { onRequest: admin, schema: { querystring: { type: 'object', additionalProperties: false, properties: { customer: { type: 'string', maxLength: 200 }, ...PAGE_QUERY_PROPERTIES } } } },
    async (req) => listEntitlements(o.db, req.query as { customer?: string; limit?: string; after?: string }),
  );
  app.get('/v1/entitlements/:id', { onRequest: admin, schema: { params: { type: 'object', properties: { id: { type: 'string', pattern: '^ent_[0-9a-f]{16}$' } } } } }, async (req, reply) => {
    const e = await getEntitlement(o.db, (req.params as { id: string }).id);
    if (!e) return reply.code(404).send({ error: { code: 'IO_NOT_FOUND', message: 'no such entitlement' } });
    return { entitlement: e };
  });

  app.post(
    '/v1/admin-tokens',
    { onRequest: admin, schema: { body: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: { type: 'string', minLength: 1, maxLength: 200 } } } } },
    async (req, reply) => {
      const now = Math.floor(Date.now() / 1000);
      const { id, token } = await o.db.tx((q) => createAdminToken(q, (req.body as { name: string }).name, now));
      return reply.code(201).send({ id, name: (req.body as { name: string }).name, token });
    },
  );
  app.get('/v1/admin-tokens', { onRequest: admin }, async () => ({ tokens: await listAdminTokens(o.db) }));
  app.post(
    '/v1/admin-tokens/:id/revoke',
    { onRequest: admin, schema: { params: { type: 'object', properties: { id: { type: 'string', pattern: '^[0-9a-f]{16}$' } } } } },
    async (req) => {
      const id = (req.params as { id: string }).id;
      const r = await o.db.tx((q) => revokeAdminToken(q, id, Math.floor(Date.now() / 1000)));
      if (r === 'missing') throw new MlicError('IO_NOT_FOUND', `no admin token ${id}`);
      if (r === 'last') throw new MlicError('USAGE', 'refusing to revoke the last live admin token (nobody could use the admin API after it)', { hint: 'create another token first' });
      return { id, revoked: true, ...(r === 'already' ? { already: true } : {}) };
    },
  );

  app.get(
    '/v1/hosts',
    {
      onRequest: admin,
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { entitlement: { type: 'string', pattern: '^ent_[0-9a-f]{16}$' }, active: { type: 'string', enum: ['true', 'false'] }, ...PAGE_QUERY_PROPERTIES },
        },
      },
    },
    async (req) => {
      const { active, ...rest } = req.query as { entitlement?: string; active?: 'true' | 'false'; limit?: string; after?: string };
      return listHosts(o.db, { ...rest, ...(active !== undefined ? { active: active === 'true' } : {}) });
    },
  );

  // The licences issued (with their text): what `mlic trace --server` takes as candidates.
  app.get(
    '/v1/licenses',
    {
      onRequest: admin,
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            model: { type: 'string', minLength: 1, maxLength: 128 },
            marked: { type: 'string', enum: ['true', 'false'], description: "by the licence's own payload: for marked bundles (mlic mark) or not" },
            watermark: { type: 'string', enum: ['true', 'false'], description: "by the licence's own payload: carries a watermark key (issued with --require-watermark) or not" },
            entitlement: { type: 'string', pattern: '^ent_[0-9a-f]{16}$' },
            ...PAGE_QUERY_PROPERTIES,
            after: LICENSE_CURSOR,
          },
        },
      },
    },
    async (req) => {
      const { marked, watermark, ...rest } = req.query as { model?: string; marked?: 'true' | 'false'; watermark?: 'true' | 'false'; entitlement?: string; limit?: string; after?: string };
      return listLicenses(o.db, { ...rest, ...(marked !== undefined ? { marked: marked === 'true' } : {}), ...(watermark !== undefined ? { watermark: watermark === 'true' } : {}) });
    },
  );

  const lists = o.issuer ? new RevocationLists(o.db, o.issuer) : undefined;
  const limits = o.rateLimits ?? DEFAULT_RATE_LIMITS;
  const perAddress = new RateLimiter(limits.perAddress, 'from this address');
  const perKey = new RateLimiter(limits.perKey, 'for this licence key');
  // The list to attach to an answer whose change is committed: when it can be had and is not too
  // long (the host can `revocations sync` otherwise); the change stands either way.
  const attachedList = async (): Promise<string | undefined> =>
    lists?.current().then(
      (l) => (l.text.length <= EMBED_LIST_MAX ? l.text : undefined),
      () => undefined,
    );
  // before the body is parsed: a flood costs no parsing
  const limitAddress = async (req: { ip: string }) => perAddress.take(req.ip);
  const noIssuer = () => new MlicError('IO_ERROR', 'this server issues no licences: it was started without the vendor key', { hint: 'start it with --key (or MLIC_SECRET_KEY)' });

  // Revocation: the admin revokes a licence, a host or an entitlement; anyone may fetch the signed list.
  app.post(
    '/v1/revocations',
    {
      onRequest: admin,
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
          minProperties: 1,
          maxProperties: 1,
          properties: {
            licenseId: { type: 'string', pattern: '^[0-9a-f]{32}$' },
            hostId: { type: 'string', pattern: '^host_[0-9a-f]{16}$' },
            entitlementId: { type: 'string', pattern: '^ent_[0-9a-f]{16}$' },
          },
        },
      },
    },
    async (req) => {
      const target = req.body as RevokeTarget;
      return o.db.tx((q) => revoke(q, target, Math.floor(Date.now() / 1000)), { lock: REVOCATION_LOCK });
    },
  );
  app.get('/v1/revocations', async (_req, reply) => {
    if (!lists) throw noIssuer();
    const { serial, text } = await lists.current();
    return reply.header('content-type', 'application/json; charset=utf-8').header('x-mlic-serial', String(serial)).send(text);
  });

  // Online activation (no admin token: the licence key is the credential).
  app.post(
    '/v1/activations',
    {
      onRequest: limitAddress,
      schema: {
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['licenseKey', 'request'],
          properties: { licenseKey: { type: 'string', minLength: 1, maxLength: 64 }, request: { type: 'string', minLength: 2, maxLength: 48 * 1024 } },
        },
      },
    },
    async (req, reply) => {
      if (!o.issuer || !lists) throw noIssuer();
      const b = req.body as { licenseKey: string; request: string };
      perKey.take(normalizeLicenseKey(b.licenseKey) ?? b.licenseKey.slice(0, 64));
      // parsed and verified before any database work: junk takes no connection and no lock
      const parsed = parseActivation(b.licenseKey, b.request);
      const r = await o.db.tx((q) => activate(q, o.issuer!, parsed, new Date(), o.tpm), { lock: activationLock(licenseKeyHash(parsed.normalized)) });
      const revocations = await attachedList();
      return reply.code(r.reissued ? 200 : 201).send({ ...r, ...(revocations !== undefined ? { revocations } : {}) });
    },
  );

  // A fresh nonce for a TPM host to quote in its activation request (used once, within 10 minutes).
  app.post('/v1/activations/challenge', { onRequest: limitAddress, schema: { body: { type: 'object', additionalProperties: false, properties: {} } } }, async (_req, reply) => {
    if (!o.issuer) throw noIssuer();
    return reply.code(201).send(await o.db.tx((q) => newChallenge(q, new Date())));
  });

  // A host frees its slot (no admin token: the host's signature is the credential; the admin may post a host's file too).
  app.post(
    '/v1/deactivations',
    { onRequest: limitAddress, schema: { body: { type: 'object', additionalProperties: false, required: ['deactivation'], properties: { deactivation: { type: 'string', minLength: 2, maxLength: 4096 } } } } },
    async (req) => {
      const d = parseDeactivation((req.body as { deactivation: string }).deactivation);
      const r = await o.db.tx((q) => deactivate(q, d, new Date()), { lock: REVOCATION_LOCK });
      const revocations = await attachedList();
      return { ...r, ...(revocations !== undefined ? { revocations } : {}) };
    },
  );

  // Floating seats: a host checks out, renews and releases leases with requests signed by its key.
  const clock = o.clock ?? (() => new Date());
  app.post(
    '/v1/leases',
    { onRequest: limitAddress, schema: { body: { type: 'object', additionalProperties: false, required: ['request'], properties: { request: { type: 'string', minLength: 2, maxLength: 4096 } } } } },
    async (req, reply) => {
      if (!o.issuer) throw noIssuer();
      const r = parseLeaseRequest((req.body as { request: string }).request);
      const ent = await leaseEntitlement(o.db, r.payload.licenseId);
      if (!ent) throw new MlicError('IO_NOT_FOUND', `this server issued no licence ${r.payload.licenseId}`);
      const a = await o.db.tx((q) => lease(q, o.issuer!, r, clock()), { lock: leaseLock(ent) });
      if ('lease' in a) return reply.code(a.renewed ? 200 : 201).send({ lease: serializeLease(a.lease), renewed: a.renewed });
      return a;
    },
  );

  // Fleet quotas: a host reserves blocks of a fleet meter's units and gives back what it did not use.
  app.post(
    '/v1/reservations',
    { onRequest: limitAddress, schema: { body: { type: 'object', additionalProperties: false, required: ['request'], properties: { request: { type: 'string', minLength: 2, maxLength: 4096 } } } } },
    async (req, reply) => {
      const r = parseReservationRequest((req.body as { request: string }).request);
      const ent = await leaseEntitlement(o.db, r.payload.licenseId);
      if (!ent) throw new MlicError('IO_NOT_FOUND', `this server issued no licence ${r.payload.licenseId}`);
      const a = await o.db.tx((q) => reservation(q, r, clock()), { lock: leaseLock(ent) });
      if ('refusal' in a) throw a.refusal;
      return reply.code(r.payload.action === 'reserve' ? 201 : 200).send(a);
    },
  );

  // Usage reports: the host's signature and the licence it was issued are the credential (the admin may upload a host's file too).
  app.post(
    '/v1/usage-reports',
    {
      bodyLimit: MAX_REPORT_BYTES + 1024,
      onRequest: limitAddress,
      schema: { body: { type: 'object', additionalProperties: false, required: ['report'], properties: { report: { type: 'string', minLength: 2, maxLength: MAX_REPORT_BYTES } } } },
    },
    async (req, reply) => {
      const r = await o.db.tx((q) => receiveReport(q, (req.body as { report: string }).report, Math.floor(Date.now() / 1000)));
      return reply.code(r.already ? 200 : 201).send(r);
    },
  );
  app.get(
    '/v1/usage',
    {
      onRequest: admin,
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { entitlement: { type: 'string', pattern: '^ent_[0-9a-f]{16}$' }, period: { type: 'string', pattern: '^[0-9]{4}-(0[1-9]|1[0-2])$' } },
        },
      },
    },
    async (req) => {
      const f = req.query as { entitlement?: string; period?: string };
      // the reports, and for fleet meters the server's own count next to them
      return { ...(await usageSummary(o.db, f)), fleet: await fleetUsage(o.db, { ...(f.entitlement ? { entitlementId: f.entitlement } : {}), ...(f.period ? { period: f.period } : {}) }, clock()) };
    },
  );

  app.get('/openapi.json', async () => openApiDocument(routes.map(({ hook, ...r }) => ({ ...r, admin: hook === admin }))));

  return app;
}

/** OpenAPI 3.1 from the routes' own JSON Schemas (the server validates with exactly these). */
export function openApiDocument(routes: readonly { method: string; url: string; schema?: Record<string, unknown>; admin: boolean }[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const error = { type: 'object', required: ['error'], properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' }, hint: { type: 'string' } } } } };
  for (const r of [...routes].sort((a, b) => (a.url + a.method).localeCompare(b.url + b.method))) {
    const path = r.url.replace(/:([A-Za-z_]+)/g, '{$1}');
    const s = r.schema ?? {};
    const params: unknown[] = [];
    const pp = (s.params as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
    for (const [name, schema] of Object.entries(pp)) params.push({ name, in: 'path', required: true, schema });
    const qp = (s.querystring as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
    for (const [name, schema] of Object.entries(qp)) params.push({ name, in: 'query', required: false, schema });
    const responses: Record<string, unknown> = { default: { description: 'an error, with one of mlic\'s codes', content: { 'application/json': { schema: error } } } };
    for (const [code, schema] of Object.entries((s.response as Record<string, unknown> | undefined) ?? {})) responses[code] = { description: code, content: { 'application/json': { schema } } };
    if (!s.response) responses[r.method === 'post' ? '201' : '200'] = { description: 'ok' };
    (paths[path] ??= {})[r.method] = {
      ...(params.length ? { parameters: params } : {}),
      ...(s.body ? { requestBody: { required: true, content: { 'application/json': { schema: s.body } } } } : {}),
      ...(r.admin ? { security: [{ adminToken: [] }] } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'mlic licence server', version: '1' },
    components: { securitySchemes: { adminToken: { type: 'http', scheme: 'bearer', description: 'an admin token, mlat_...' } } },
    paths,
  };
}
