import { tpmChecks } from './license.js';
import { MlicError } from '../../errors.js';
import { initServer } from '../../server/init.js';
import { startServer } from '../../server/start.js';
import { handleSignalsWith } from '../../util/cleanup.js';
import { vendorKey } from '../keys.js';
import { printResult, type Ctx } from '../output.js';

export async function init(ctx: Ctx, o: { data: string; database?: string }): Promise<void> {
  const r = await initServer({ dataDir: o.data, database: o.database });
  ctx.note(`initialized ${r.dataDir} (database ${r.database}, schema version ${r.schemaVersion})`);
  ctx.note('the first admin token follows; it is shown this once, keep it in a secret store:');
  ctx.out(r.adminToken);
  printResult(ctx, r);
}

export async function start(ctx: Ctx, o: { data: string; database?: string; listen: string; tlsCert?: string; tlsKey?: string; insecureHttp?: boolean; key?: string; passphraseFile?: string; rateLimitKey?: string; rateLimitAddress?: string; trustProxy?: boolean; tpmCa?: string; requireTpm?: boolean; pcrPolicy?: string; maxRequestAge?: string }): Promise<void> {
  const perMinute = (v: string | undefined, flag: string, dflt: number) => {
    if (v === undefined) return dflt;
    if (!/^\d{1,9}$/.test(v)) throw new MlicError('USAGE', `${flag} must be a whole number a minute (0: no limit), got '${v}'`);
    return Number(v);
  };
  const rateLimits = { perKey: perMinute(o.rateLimitKey, '--rate-limit-key', 300), perAddress: perMinute(o.rateLimitAddress, '--rate-limit-address', 600) };
  const tpm = await tpmChecks(o);
  // the vendor key, as for license issue: --key FILE or MLIC_SECRET_KEY (never logged); none: no activation
  const issuer = o.key !== undefined || process.env.MLIC_SECRET_KEY ? await vendorKey(ctx, o) : undefined;
  if (!issuer) ctx.note('no vendor key (--key or MLIC_SECRET_KEY): online activation will answer 503');
  const ac = new AbortController();
  let firstToken: string | undefined;
  const release = handleSignalsWith((sig) => {
    ctx.note(`${sig}: stopping (requests in flight finish; a second signal exits now)`);
    ac.abort();
  });
  try {
    await startServer({
      dataDir: o.data,
      database: o.database,
      listen: o.listen,
      ...(o.tlsCert !== undefined ? { tlsCert: o.tlsCert } : {}),
      ...(o.tlsKey !== undefined ? { tlsKey: o.tlsKey } : {}),
      insecureHttp: o.insecureHttp ?? false,
      rateLimits,
      trustProxy: o.trustProxy ?? false,
      tpm,
      signal: ac.signal,
      ...(issuer ? { issuer } : {}),
      onFirstToken: (token) => {
        firstToken = token;
        if (ctx.json) return; // in the result line below
        ctx.note('initialized the data directory; the first admin token follows, shown this once:');
        process.stderr.write(`${token}\n`);
      },
      onListening: (url) => {
        // the first line on stdout, for scripts; access-log lines follow
        process.stdout.write(ctx.json ? JSON.stringify({ ok: true, result: { url, ...(firstToken ? { adminToken: firstToken } : {}) } }) + '\n' : `${url}\n`);
        if (!ctx.json) ctx.note(`mlic server listening on ${url}`);
      },
    });
  } finally {
    release();
  }
}
