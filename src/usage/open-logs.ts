/** Opening this host's audit log outside a loaded licence (for `mlic audit`). */
import { StateDir } from '../state/home.js';
import { AuditLog } from './audit.js';
import { auditKey, auditPath } from './handle.js';
import { MlicError } from '../errors.js';
import { stat } from 'node:fs/promises';

export async function openAudit(home?: string): Promise<{ audit: AuditLog; close: () => Promise<void> }> {
  const state = StateDir.fromEnv(process.env, home);
  const host = await state.hostIdentity({ create: false });
  const p = auditPath(state);
  if (!(await stat(p).then(() => true, () => false))) throw new MlicError('IO_NOT_FOUND', `${p}: no audit log yet (nothing has been decided on this host)`);
  const audit = await AuditLog.open(p, auditKey(host), { durability: 'strict' });
  return { audit, close: () => audit.close() };
}

/**
 * Appends one decision to this host's audit log (strict), for the one-shot commands (activate,
 * unpack, run, openBundle). Hosts without a host key yet (never activated) have no audit log.
 */
export async function recordDecision(home: string | undefined, data: Omit<import('./audit.js').AuditData, 't'> & { t?: string }): Promise<void> {
  const state = StateDir.fromEnv(process.env, home);
  const host = await state.loadHost();
  if (!host) return;
  await state.ensure('audit');
  const audit = await AuditLog.open(auditPath(state), auditKey(host), { durability: 'strict', open: 'tail' });
  try {
    await audit.record({ t: new Date().toISOString(), ...data });
  } finally {
    await audit.close();
  }
}
