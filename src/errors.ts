/**
 * The one error type thrown by mlic's library code. `code` is stable and is what
 * callers and tests match on; `message` is for people (lowercase, says what and where);
 * `hint` says what to do next.
 */

/** Codes whose meaning is "a verification or licence decision said no": exit status 1. */
export const DENIAL_CODES = [
  'SIGNATURE_INVALID',
  'DIGEST_MISMATCH',
  'CHUNK_AUTH_FAILED',
  'BUNDLE_CORRUPT',
  'BUNDLE_TRUNCATED',
  'BUNDLE_TRAILING_DATA',
  'MANIFEST_INVALID',
  'KEY_MISMATCH',
  'PASSPHRASE_WRONG',
  'NO_LICENSE',
  'LICENSE_EXPIRED',
  'LICENSE_NOT_YET_VALID',
  'HW_MISMATCH',
  'HOST_KEY_MISMATCH',
  'VERSION_NOT_LICENSED',
  'FEATURE_NOT_LICENSED',
  'COMPONENT_NOT_LICENSED',
  'REGION_NOT_ALLOWED',
  'UNTRUSTED_VENDOR',
  'CLOCK_TAMPERED',
  'QUOTA_EXCEEDED',
  'METRIC_NOT_LICENSED',
  'OMS_VERIFY_FAILED',
  'LEDGER_TAMPERED',
  'STATE_TAMPERED',
  'REPORT_INVALID',
  'UNAUTHORIZED',
  'HOST_LIMIT_REACHED',
  'LICENSE_REVOKED',
  'ROLLBACK_REFUSED',
  'SEAT_UNAVAILABLE',
  'LEASE_EXPIRED',
  'TRACE_NO_MATCH',
  'NOT_IMPLICATED',
  'TPM_CERT_UNTRUSTED',
  'TPM_QUOTE_INVALID',
  'TPM_KEY_UNAVAILABLE',
  'TPM_PCR_MISMATCH',
  'TPM_REQUIRED',
  // mlic watermark detect: no candidate licence's mark is in the output (or too little of it to name one)
  'WATERMARK_NOT_FOUND',
] as const;

/** Codes for usage, I/O or malformed input: exit status 2. */
export const INPUT_CODES = [
  'USAGE',
  'IO_NOT_FOUND',
  'IO_EXISTS',
  'IO_ERROR',
  'IO_UNSAFE_PATH',
  'IO_NOT_REGULAR',
  'FORMAT_INVALID',
  'NOT_A_BUNDLE',
  'MODEL_INVALID',
  'KEY_INVALID',
  'PASSPHRASE_REQUIRED',
  'UNSUPPORTED_VERSION',
  'RATE_LIMITED',
  'TPM_UNAVAILABLE',
  'TPM_BUSY',
  'TPM_LOCKOUT',
  'TPM_FAILED',
  'TEXT_TOO_SHORT',
  // an image mlic cannot decode (corrupt, or a format other than PNG, JPEG, WebP, TIFF), or raw pixels of the wrong size
  'IMAGE_INVALID',
  // an image with a side too short to carry (128 px) or hold (64 px) the watermark
  'IMAGE_TOO_SMALL',
  // a tokenizer.json mlic cannot read (only WordLevel with a Whitespace / WhitespaceSplit pre-tokenizer); hint: pass the model's own tokenizer.json, or token ids
  'TOKENIZER_UNSUPPORTED',
  // token ids or text that the tokenizer given cannot have produced (ids past its vocabulary; mostly unknown words); hint: pass the tokenizer of the model that wrote the text
  'TOKENIZER_MISMATCH',
] as const;

export type DenialCode = (typeof DENIAL_CODES)[number];
export type InputCode = (typeof INPUT_CODES)[number];
export type ErrorCode = DenialCode | InputCode | 'INTERNAL';

export interface MlicErrorOptions {
  hint?: string;
  cause?: unknown;
  /** Extra machine-readable details (never secrets), shown under error.details in --json. */
  details?: Record<string, unknown>;
}

export class MlicError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: MlicErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MlicError';
    this.code = code;
    this.hint = options.hint;
    this.details = options.details;
  }
}

const denial = new Set<string>(DENIAL_CODES);
const input = new Set<string>(INPUT_CODES);
/** Every code mlic defines (for reading codes that come back from the licence server). */
export const ERROR_CODES: ReadonlySet<string> = new Set<string>([...DENIAL_CODES, ...INPUT_CODES, 'INTERNAL']);

/** Exit status for an error code: 1 said no, 2 usage/I-O/malformed input, 70 internal. */
export function exitStatusFor(code: string): 1 | 2 | 70 {
  if (denial.has(code)) return 1;
  if (input.has(code)) return 2;
  return 70;
}

export function isMlicError(e: unknown): e is MlicError {
  return e instanceof MlicError;
}

/** Turns a Node fs error into an MlicError with a clear message; anything else passes through. */
export function fromFsError(e: unknown, what: string): unknown {
  if (e instanceof MlicError) return e;
  const err = e as NodeJS.ErrnoException;
  switch (err?.code) {
    case 'ENOENT':
      return new MlicError('IO_NOT_FOUND', `${what}: no such file or directory`, { cause: e });
    case 'EEXIST':
      return new MlicError('IO_EXISTS', `${what}: already exists`, { cause: e, hint: 'use --force to overwrite' });
    case 'EACCES':
    case 'EPERM':
      return new MlicError('IO_ERROR', `${what}: permission denied`, { cause: e });
    case 'EISDIR':
      return new MlicError('IO_NOT_REGULAR', `${what}: is a directory`, { cause: e });
    case 'ENOTDIR':
      return new MlicError('IO_ERROR', `${what}: not a directory`, { cause: e });
    case 'ENOSPC':
      return new MlicError('IO_ERROR', `${what}: no space left on device`, { cause: e });
    case 'ENAMETOOLONG':
      return new MlicError('IO_ERROR', `${what}: file name or path too long for this filesystem`, { cause: e });
    case 'ELOOP':
      return new MlicError('IO_UNSAFE_PATH', `${what}: too many symbolic links`, { cause: e });
    default:
      if (err && typeof err.code === 'string') {
        return new MlicError('IO_ERROR', `${what}: ${err.code}`, { cause: e });
      }
      return e;
  }
}
