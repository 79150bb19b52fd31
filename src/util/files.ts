/** Reading the small text inputs mlic takes from users (keys, licences, requests, reports): bounded, with clear errors. */
import { open, readFile } from 'node:fs/promises';
import { MlicError, fromFsError } from '../errors.js';

/** Size bounds of mlic's text inputs; anything larger is refused before it is parsed. */
export const MAX_INPUT = {
  licence: 1 << 20,
  request: 256 << 10,
  report: 1 << 20,
  secretKey: 64 << 10,
  publicKey: 4 << 10,
  signature: 64 << 10,
  passphrase: 4 << 10,
  omsSignature: 64 << 20,
  pem: 64 << 10,
} as const;

export interface ReadTextOptions {
  /** refuse (FORMAT_INVALID) a file larger than this; default 1 MiB */
  maxBytes?: number;
  /** what the file is, for messages (e.g. "licence") */
  what?: string;
}

/**
 * Reads a text file of at most `maxBytes` bytes; a larger one is refused before it is read
 * (FORMAT_INVALID), a directory or device is IO_NOT_REGULAR, a missing file IO_NOT_FOUND.
 */
export async function readTextFile(path: string, o: ReadTextOptions = {}): Promise<string> {
  return (await readSmallFile(path, o)).toString('utf8');
}

/** readTextFile's bytes: a file of at most `maxBytes` bytes, read whole, refused as readTextFile refuses. */
export async function readSmallFile(path: string, o: ReadTextOptions = {}): Promise<Buffer> {
  const max = o.maxBytes ?? 1 << 20;
  const what = o.what ? `${o.what} ${path}` : path;
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw fromFsError(e, path);
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new MlicError('IO_NOT_REGULAR', `${path}: is a directory, not a file`);
    if (st.isFile() && st.size > max) throw new MlicError('FORMAT_INVALID', `${what} is ${st.size} bytes, more than the ${max} allowed`);
    // Pipes and character devices: read at most max + 1 bytes.
    const buf = Buffer.allocUnsafe(Math.min(max + 1, st.isFile() ? st.size + 1 : max + 1));
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n === buf.length) break;
    }
    if (n > max) throw new MlicError('FORMAT_INVALID', `${what} is more than the ${max} bytes allowed`);
    return buf.subarray(0, n);
  } catch (e) {
    throw fromFsError(e, path);
  } finally {
    await fh.close();
  }
}

/** A small JSON state file: its value, or undefined when there is no file; FORMAT_INVALID (with `hint`) when it is not JSON. */
export async function readJsonIfPresent(path: string, hint?: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromFsError(e, path);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new MlicError('FORMAT_INVALID', `${path}: corrupt state file (not JSON)`, hint ? { hint } : {});
  }
}
