/** Passphrases for the CLI: --passphrase-file, MLIC_PASSPHRASE, or a no-echo prompt on a TTY. Never printed. */
import { MlicError } from '../errors.js';
import type { PassphraseSource } from '../keys/load.js';
import { MAX_INPUT, readTextFile } from '../util/files.js';
import { spinner, type Spinner } from './spinner.js';

export async function readPassphraseFile(path: string): Promise<string> {
  const text = await readTextFile(path, { maxBytes: MAX_INPUT.passphrase, what: 'passphrase file' });
  const first = text.split(/\r?\n/)[0] ?? '';
  if (first === '') throw new MlicError('USAGE', `${path}: passphrase file is empty`);
  return first;
}

export function promptHidden(question: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(question);
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding('utf8');
    let value = '';
    const onData = (s: string) => {
      for (const ch of s) {
        if (ch === '\r' || ch === '\n') {
          cleanup();
          process.stderr.write('\n');
          resolve(value);
          return;
        } else if (ch === '\u0003') {
          cleanup();
          process.stderr.write('\n');
          reject(new MlicError('USAGE', 'interrupted'));
          return;
        } else if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    const cleanup = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
    };
    stdin.on('data', onData);
  });
}

const canPrompt = () => Boolean(process.stdin.isTTY && process.stderr.isTTY);

/**
 * For unlocking a key file (`keyName` is its path, or MLIC_SECRET_KEY): the prompt names it and,
 * at a terminal, a wrong passphrase is asked again (three tries). While scrypt runs, a spinner
 * says so; `done()` stops it.
 */
export function passphraseSource(file: string | undefined, keyName = 'the secret key', json = false): PassphraseSource & { done(): void } {
  let spin: Spinner | undefined;
  const interactive = file === undefined && !process.env.MLIC_PASSPHRASE && canPrompt();
  const source = async () => {
    let pw: string;
    if (file !== undefined) pw = await readPassphraseFile(file);
    else if (process.env.MLIC_PASSPHRASE) pw = process.env.MLIC_PASSPHRASE;
    else if (canPrompt()) pw = await promptHidden(`passphrase for ${keyName}: `);
    else
      throw new MlicError('PASSPHRASE_REQUIRED', `${keyName} is encrypted and no passphrase was given`, {
        hint: 'set MLIC_PASSPHRASE or pass --passphrase-file FILE',
      });
    spin = await spinner(`unlocking ${keyName}`, json);
    return pw;
  };
  return Object.assign(source, {
    tries: interactive ? 3 : 1,
    onWrong: () => {
      spin?.stop();
      process.stderr.write('wrong passphrase, try again\n');
    },
    done: () => spin?.stop(),
  });
}

/** For a new key (`keyName`: the file it will be written to): asked twice on a TTY. */
export async function newPassphrase(file: string | undefined, keyName = 'the new key'): Promise<string> {
  if (file !== undefined) return readPassphraseFile(file);
  if (process.env.MLIC_PASSPHRASE) return process.env.MLIC_PASSPHRASE;
  if (!canPrompt())
    throw new MlicError('PASSPHRASE_REQUIRED', 'a passphrase is needed to encrypt the new secret key', {
      hint: 'set MLIC_PASSPHRASE, pass --passphrase-file FILE, or --unencrypted for a key kept in a secrets store',
    });
  const a = await promptHidden(`passphrase for ${keyName}: `);
  if (a === '') throw new MlicError('USAGE', 'empty passphrase', { hint: 'use --unencrypted to store the key without one' });
  const b = await promptHidden('repeat the passphrase: ');
  if (a !== b) throw new MlicError('USAGE', 'the passphrases do not match');
  return a;
}
