/** Where the CLI's words go: one JSON object on stdout with --json, else human text on stderr/stdout. */
import chalk from 'chalk';
import { MlicError, exitStatusFor } from '../errors.js';

export interface Ctx {
  json: boolean;
  /** human-readable result lines go to stdout; notes and progress go to stderr */
  out: (line: string) => void;
  note: (line: string) => void;
  color: boolean;
}

export function makeCtx(json: boolean): Ctx {
  const color = !json && !process.env.NO_COLOR && Boolean(process.stderr.isTTY);
  chalk.level = color ? chalk.level || 1 : 0;
  return {
    json,
    color,
    out: (line) => {
      if (!json) process.stdout.write(line + '\n');
    },
    note: (line) => {
      if (!json) process.stderr.write(line + '\n');
    },
  };
}

export function printResult(ctx: Ctx, result: unknown): void {
  if (ctx.json) process.stdout.write(JSON.stringify({ ok: true, result }) + '\n');
}

export function printError(json: boolean, e: unknown): number {
  const err =
    e instanceof MlicError
      ? e
      : new MlicError('INTERNAL', `internal error: ${(e as Error)?.message ?? String(e)}`, {
          hint: 'this is a bug in mlic; please report it with the command you ran (never include secrets)',
        });
  const status = exitStatusFor(err.code);
  if (json) {
    process.stdout.write(
      JSON.stringify({ ok: false, error: { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}), ...(err.details ? { details: err.details } : {}) } }) + '\n',
    );
  } else {
    process.stderr.write(`${chalk.red('mlic: error:')} ${err.message} ${chalk.dim(`[${err.code}]`)}\n`);
    if (err.hint) process.stderr.write(`${chalk.yellow('hint:')} ${err.hint}\n`);
    if (err.code === 'INTERNAL' && process.env.MLIC_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  }
  return status;
}
