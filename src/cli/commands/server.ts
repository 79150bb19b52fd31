import { initServer } from '../../server/init.js';
import { printResult, type Ctx } from '../output.js';

export async function init(ctx: Ctx, o: { data: string; database?: string }): Promise<void> {
  const r = await initServer({ dataDir: o.data, database: o.database });
  ctx.note(`initialized ${r.dataDir} (database ${r.database}, schema version ${r.schemaVersion})`);
  ctx.note('the first admin token follows; it is shown this once, keep it in a secret store:');
  ctx.out(r.adminToken);
  printResult(ctx, r);
}
