/**
 * JSON from hostile input: nesting is bounded before JSON.parse runs (a deep document would
 * otherwise cost time, memory and the stack), and any failure is an MlicError with the code the
 * caller chooses. Pure.
 */
import { MlicError, type ErrorCode } from '../errors.js';

/** mlic's own documents nest at most a few levels; 16 leaves room and refuses abuse. */
export const MAX_JSON_DEPTH = 16;

/** The deepest nesting of arrays and objects in `text`, counting only brackets outside strings; stops early past `limit`. */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

export function parseJson(text: string, what: string, code: ErrorCode = 'FORMAT_INVALID', maxDepth = MAX_JSON_DEPTH): unknown {
  if (jsonDepth(text, maxDepth) > maxDepth) throw new MlicError(code, `${what}: nested more than ${maxDepth} levels deep`);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new MlicError(code, `${what}: not valid JSON`);
  }
}
