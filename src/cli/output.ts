/** Where the CLI's words go: one JSON object on stdout with --json, else human text on stderr/stdout. */
import { MlicError, exitStatusFor } from '../errors.js';

/** Colour only on a terminal, never with --json or NO_COLOR; chalk is loaded only then (start-up time). */
export function colorWanted(json: boolean): boolean {
  return !json && !process.env.NO_COLOR && Boolean(process.stderr.isTTY);
}

type Paint = (s: string) => string;
async function painter(json: boolean): Promise<{ red: Paint; yellow: Paint; dim: Paint }> {
  if (!colorWanted(json)) return { red: (s) => s, yellow: (s) => s, dim: (s) => s };
  const { default: chalk } = await import('chalk');
  chalk.level = chalk.level || 1;
  return { red: (s) => chalk.red(s), yellow: (s) => chalk.yellow(s), dim: (s) => chalk.dim(s) };
}

export interface Ctx {
  json: boolean;
  /** human-readable result lines go to stdout; notes and progress go to stderr (both escaped for the terminal) */
  out: (line: string) => void;
  note: (line: string) => void;
  color: boolean;
}

// C0 and C1 controls (except tab), DEL, and the Unicode bidirectional and zero-width marks that
// reorder or hide text: unsigned input (a manifest, a licence, a file name) must not be able to
// clear the screen, fake a line of output or reverse what is shown.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff]/g;

/** Escapes control and bidi characters in one line of text for a terminal (\x1b, \u202e, ...). */
export function safeText(s: string): string {
  return s.replace(UNSAFE, (c) => {
    const n = c.charCodeAt(0);
    return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
}


export function makeCtx(json: boolean): Ctx {
  const color = colorWanted(json);
  return {
    json,
    color,
    out: (line) => {
      if (!json) process.stdout.write(safeText(line) + '\n');
    },
    note: (line) => {
      if (!json) process.stderr.write(safeText(line) + '\n');
    },
  };
}

export function printResult(ctx: Ctx, result: unknown): void {
  if (ctx.json) process.stdout.write(JSON.stringify({ ok: true, result }) + '\n');
}

export async function printError(json: boolean, e: unknown): Promise<number> {
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
    const paint = await painter(json);
    process.stderr.write(`${paint.red('mlic: error:')} ${safeText(err.message)} ${paint.dim(`[${err.code}]`)}\n`);
    if (err.hint) process.stderr.write(`${paint.yellow('hint:')} ${safeText(err.hint)}\n`);
    if (err.code === 'INTERNAL' && process.env.MLIC_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  }
  return status;
}
