/**
 * OpenSSF Model Signing (OMS) v1.0 signature files. Pure: no fs, no clock, no randomness.
 *
 * An OMS signature is a Sigstore bundle v0.3 (JSON) whose content is a DSSE envelope. The
 * envelope's payload is an in-toto Statement v1 with predicate type
 * `https://model_signing/signature/v1.0`:
 *
 *     { "_type": "https://in-toto.io/Statement/v1",
 *       "subject": [{ "name": <model name>, "digest": { "sha256": <root> } }],
 *       "predicateType": "https://model_signing/signature/v1.0",
 *       "predicate": {
 *         "serialization": { "method": "files", "hash_type": "sha256", "allow_symlinks": false,
 *                            "ignore_paths": [...] },            // ignore_paths: v1.1+ writers
 *         "resources": [{ "name": "dir/file", "algorithm": "sha256", "digest": <hex> }, ...] } }
 *
 * - Resource names are POSIX paths relative to the model directory; a one-file model has one
 *   resource named ".". Writers list resources sorted the way Python sorts PurePosixPath values
 *   (component by component, by code point).
 * - root = sha256(raw digest 1 || raw digest 2 || ...) in the order the resources are listed.
 * - The subject name is informative only (the model directory's or file's base name).
 * - The signature is over PAE = "DSSEv1 <len type> <type> <len payload> <payload>" (lengths in
 *   bytes, ASCII decimal), made with ECDSA whose hash follows the curve.
 * - For the key method, verificationMaterial is {"publicKey":{"hint":<hex sha256 of the SPKI PEM
 *   text>},"tlogEntries":[]}. Bundles from model_signing 1.0.x carried {"publicKey":{"rawBytes",
 *   "keyDetails"}} and no tlogEntries; both read.
 *
 * Compatibility of this reader with the reference (sigstore/model-transparency 1.x): the same fields
 * are required; in addition it rejects what the reference could not verify anyway (method
 * "shards", hash_type other than sha256, an envelope with more or fewer than one signature) and
 * certificate-based bundles without tlogEntries.
 */
import { MlicError } from '../errors.js';
import { isContainedRelativePath, isNormalRelativePath } from './paths.js';
import { sha256 } from '../crypto/hash.js';

export const OMS_BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const IN_TOTO_STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const OMS_PREDICATE_TYPE = 'https://model_signing/signature/v1.0';
/** The pre-1.0 (model_signing 0.2) predicate; recognised only to say it is unsupported. */
export const OMS_PREDICATE_TYPE_V01 = 'https://model_signing/Digests/v0.1';

// ---------------------------------------------------------------------------------------------
// Types

export interface DsseSignature {
  /** base64 of the DER ECDSA signature */
  sig: string;
  /** "" from model_signing >= 1.1, null from 1.0.x */
  keyid?: string | null;
}

export interface DsseEnvelope {
  /** base64 of the statement JSON */
  payload: string;
  payloadType: string;
  signatures: DsseSignature[];
}

export interface OmsPublicKeyIdentifier {
  /** hex sha256 of the signer's SPKI PEM text (model_signing >= 1.1) */
  hint?: string | null;
  /** legacy (model_signing 1.0.x): base64 of the PEM text; ignored when verifying */
  rawBytes?: string;
  keyDetails?: string;
}

export interface OmsVerificationMaterial {
  publicKey?: OmsPublicKeyIdentifier;
  certificate?: { rawBytes: string };
  x509CertificateChain?: { certificates: { rawBytes: string }[] };
  tlogEntries?: unknown[];
  timestampVerificationData?: unknown;
}

export interface OmsBundle {
  mediaType: string;
  verificationMaterial: OmsVerificationMaterial;
  dsseEnvelope: DsseEnvelope;
}

export type OmsVerificationMethod = 'publicKey' | 'certificate' | 'x509CertificateChain';

export interface OmsSerialization {
  method: 'files';
  hash_type: 'sha256';
  allow_symlinks: boolean;
  /** paths relative to the model, recorded by model_signing >= 1.1 and honoured by verifiers */
  ignore_paths?: string[];
}

export interface OmsResource {
  name: string;
  algorithm: 'sha256';
  /** lowercase hex */
  digest: string;
}

export interface OmsStatement {
  _type: typeof IN_TOTO_STATEMENT_TYPE;
  subject: [{ name: string; digest: { sha256: string } }];
  predicateType: typeof OMS_PREDICATE_TYPE;
  predicate: {
    serialization: OmsSerialization;
    resources: OmsResource[];
    [extra: string]: unknown;
  };
}

export interface ParsedOmsBundle {
  bundle: OmsBundle;
  method: OmsVerificationMethod;
  /** the decoded DSSE payload bytes (what PAE covers) */
  payload: Buffer;
  payloadType: string;
  /** the decoded DER signature */
  signature: Buffer;
  statement: OmsStatement;
}

// ---------------------------------------------------------------------------------------------
// Names and digests

/**
 * Whether `name` is a resource name as the reference writes it: "." (one-file model), or a
 * normalised relative POSIX path (no leading "/", no empty, "." or ".." component).
 */
export function isValidResourceName(name: string): boolean {
  return isNormalRelativePath(name, true);
}

function isValidIgnorePath(p: string): boolean {
  return isContainedRelativePath(p);
}

function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const ca = ia.next();
    const cb = ib.next();
    if (ca.done) return cb.done ? 0 : -1;
    if (cb.done) return 1;
    const x = ca.value.codePointAt(0)!;
    const y = cb.value.codePointAt(0)!;
    if (x !== y) return x < y ? -1 : 1;
  }
}

/**
 * The order the reference lists resources in: Python's PurePosixPath order, which compares the
 * lists of path components, each by code point. So "a/b" < "a-b/c" (component "a" < "a-b"),
 * unlike a plain string sort.
 */
export function compareResourceNames(a: string, b: string): number {
  const pa = a.split('/');
  const pb = b.split('/');
  const n = Math.min(pa.length, pb.length);
  for (let i = 0; i < n; i++) {
    const c = compareCodePoints(pa[i]!, pb[i]!);
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}

/** sha256 over the concatenated raw digests, in the given order (the statement's subject digest). */
export function rootDigest(digests: readonly Uint8Array[]): Buffer {
  return sha256(Buffer.concat(digests.map((d) => Buffer.from(d.buffer, d.byteOffset, d.byteLength))));
}

/** The root digest recomputed from a statement's resources, in listed order, as lowercase hex. */
export function statementRootDigest(st: OmsStatement): string {
  return rootDigest(st.predicate.resources.map((r) => Buffer.from(r.digest, 'hex'))).toString('hex');
}

// ---------------------------------------------------------------------------------------------
// Building

/**
 * Builds the OMS v1.0 in-toto statement for file digests. Resources are sorted as the reference
 * sorts them; the subject digest is the root over them. `modelName` is the subject name (the
 * reference uses the model path's base name).
 */
export function buildStatement(
  resources: readonly { name: string; digest: Uint8Array }[],
  serialization: Omit<OmsSerialization, 'method' | 'hash_type'> & Partial<Pick<OmsSerialization, 'method' | 'hash_type'>>,
  modelName = 'model',
): OmsStatement {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const r of resources) {
    if (!isValidResourceName(r.name)) problems.push(`resource name ${JSON.stringify(r.name)} is not a normalised relative POSIX path`);
    if (seen.has(r.name)) problems.push(`resource ${JSON.stringify(r.name)} is listed twice`);
    seen.add(r.name);
    if (r.digest.length !== 32) problems.push(`resource ${JSON.stringify(r.name)}: digest must be 32 bytes (sha256), got ${r.digest.length}`);
  }
  if (resources.length === 0) problems.push('no resources: a signature must cover at least one file');
  if (resources.some((r) => r.name === '.') && resources.length !== 1) problems.push('"." names a one-file model and cannot appear with other resources');
  for (const p of serialization.ignore_paths ?? []) if (!isValidIgnorePath(p)) problems.push(`ignore path ${JSON.stringify(p)} must be relative to the model`);
  if (problems.length) throw new MlicError('FORMAT_INVALID', `cannot build an OMS statement: ${problems.join('; ')}`, { details: { problems } });

  const sorted = [...resources].sort((a, b) => compareResourceNames(a.name, b.name));
  const ser: OmsSerialization = { method: 'files', hash_type: 'sha256', allow_symlinks: serialization.allow_symlinks };
  if (serialization.ignore_paths !== undefined) ser.ignore_paths = [...serialization.ignore_paths];
  return {
    _type: IN_TOTO_STATEMENT_TYPE,
    subject: [{ name: modelName, digest: { sha256: rootDigest(sorted.map((r) => r.digest)).toString('hex') } }],
    predicateType: OMS_PREDICATE_TYPE,
    predicate: {
      serialization: ser,
      resources: sorted.map((r) => ({ name: r.name, algorithm: 'sha256', digest: Buffer.from(r.digest).toString('hex') })),
    },
  };
}

/** The statement as DSSE payload bytes: JSON, 2-space indent, no trailing newline (as the reference writes it). */
export function serializeStatement(st: OmsStatement): Buffer {
  return Buffer.from(JSON.stringify(st, null, 2), 'utf8');
}

/** DSSE v1 pre-authentication encoding: "DSSEv1 <len type> <type> <len body> <body>". */
export function pae(payloadType: string, payload: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `, 'ascii'), type, Buffer.from(` ${payload.length} `, 'ascii'), payload]);
}

/** A key-method OMS bundle, field for field as model_signing >= 1.1 writes it. */
export function buildKeyBundle(payload: Uint8Array, signatureDer: Uint8Array, keyHint: string): OmsBundle {
  return {
    mediaType: OMS_BUNDLE_MEDIA_TYPE,
    verificationMaterial: { publicKey: { hint: keyHint }, tlogEntries: [] },
    dsseEnvelope: {
      payload: Buffer.from(payload).toString('base64'),
      payloadType: IN_TOTO_PAYLOAD_TYPE,
      signatures: [{ sig: Buffer.from(signatureDer).toString('base64'), keyid: '' }],
    },
  };
}

/** Compact JSON, no trailing newline, like the reference's model.sig. */
export function serializeBundle(b: OmsBundle): string {
  return JSON.stringify(b);
}

// ---------------------------------------------------------------------------------------------
// Validation

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function kind(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}

/** Standard or URL-safe base64 (both are valid in protobuf JSON), padding optional. */
const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;
const B64URL = /^(?:[A-Za-z0-9\-_]{4})*(?:[A-Za-z0-9\-_]{2}(?:==)?|[A-Za-z0-9\-_]{3}=?)?$/;
const HEX64 = /^[0-9a-fA-F]{64}$/;

function isBase64(s: string): boolean {
  return s.length > 0 && (B64.test(s) || B64URL.test(s));
}

class Problems {
  readonly list: string[] = [];
  add(path: string, msg: string): void {
    this.list.push(`${path}: ${msg}`);
  }
  /** Requires a non-empty base64 string at `path`. */
  base64(v: unknown, path: string): boolean {
    if (typeof v !== 'string') this.add(path, `must be a base64 string, is ${kind(v)}`);
    else if (!isBase64(v)) this.add(path, v === '' ? 'is empty' : 'is not valid base64');
    else return true;
    return false;
  }
}

function checkStatement(v: unknown, p: Problems, at: string): void {
  if (!isObj(v)) {
    p.add(at, `must be a JSON object, is ${kind(v)}`);
    return;
  }
  if (v._type !== IN_TOTO_STATEMENT_TYPE) p.add(`${at}._type`, `must be "${IN_TOTO_STATEMENT_TYPE}", is ${describe(v._type)}`);
  if (v.predicateType !== OMS_PREDICATE_TYPE) {
    const why = v.predicateType === OMS_PREDICATE_TYPE_V01 ? ' (a pre-1.0 model_signing signature; re-sign with model_signing >= 1.0 or mlic)' : '';
    p.add(`${at}.predicateType`, `must be "${OMS_PREDICATE_TYPE}", is ${describe(v.predicateType)}${why}`);
  }
  const subject = v.subject;
  if (!Array.isArray(subject) || subject.length !== 1) {
    p.add(`${at}.subject`, `must be an array of exactly one subject, is ${Array.isArray(subject) ? `an array of ${subject.length}` : kind(subject)}`);
  } else {
    const s0 = subject[0] as unknown;
    if (!isObj(s0)) p.add(`${at}.subject[0]`, `must be an object, is ${kind(s0)}`);
    else {
      if (typeof s0.name !== 'string') p.add(`${at}.subject[0].name`, `must be a string, is ${kind(s0.name)}`);
      if (!isObj(s0.digest)) p.add(`${at}.subject[0].digest`, `must be an object, is ${kind(s0.digest)}`);
      else if (typeof s0.digest.sha256 !== 'string' || !HEX64.test(s0.digest.sha256)) p.add(`${at}.subject[0].digest.sha256`, 'must be 64 hex digits');
    }
  }
  const pred = v.predicate;
  if (!isObj(pred)) {
    p.add(`${at}.predicate`, `must be an object, is ${kind(pred)}`);
    return;
  }
  const ser = pred.serialization;
  if (!isObj(ser)) p.add(`${at}.predicate.serialization`, `must be an object, is ${kind(ser)}`);
  else {
    if (ser.method !== 'files') {
      const why = ser.method === 'shards' ? ' (method "shards" is not supported by mlic; sign with the default "files" method)' : '';
      p.add(`${at}.predicate.serialization.method`, `must be "files", is ${describe(ser.method)}${why}`);
    }
    if (ser.hash_type !== 'sha256') p.add(`${at}.predicate.serialization.hash_type`, `must be "sha256" (the only hash mlic supports), is ${describe(ser.hash_type)}`);
    if (typeof ser.allow_symlinks !== 'boolean') p.add(`${at}.predicate.serialization.allow_symlinks`, `must be a boolean, is ${kind(ser.allow_symlinks)}`);
    if (ser.ignore_paths !== undefined) {
      if (!Array.isArray(ser.ignore_paths)) p.add(`${at}.predicate.serialization.ignore_paths`, `must be an array of strings, is ${kind(ser.ignore_paths)}`);
      else
        ser.ignore_paths.forEach((ip: unknown, i: number) => {
          if (typeof ip !== 'string') p.add(`${at}.predicate.serialization.ignore_paths[${i}]`, `must be a string, is ${kind(ip)}`);
          else if (!isValidIgnorePath(ip)) p.add(`${at}.predicate.serialization.ignore_paths[${i}]`, `${JSON.stringify(ip)} must be a path relative to the model (no leading "/", no "..")`);
        });
    }
  }
  const res = pred.resources;
  if (!Array.isArray(res)) {
    p.add(`${at}.predicate.resources`, `must be an array, is ${kind(res)}`);
    return;
  }
  if (res.length === 0) p.add(`${at}.predicate.resources`, 'is empty: the signature covers no file');
  const seen = new Set<string>();
  res.forEach((r: unknown, i: number) => {
    const rp = `${at}.predicate.resources[${i}]`;
    if (!isObj(r)) {
      p.add(rp, `must be an object, is ${kind(r)}`);
      return;
    }
    if (typeof r.name !== 'string') p.add(`${rp}.name`, `must be a string, is ${kind(r.name)}`);
    else {
      if (!isValidResourceName(r.name)) p.add(`${rp}.name`, `${JSON.stringify(r.name)} is not a normalised relative POSIX path`);
      else if (r.name === '.' && res.length !== 1) p.add(`${rp}.name`, '"." (a one-file model) cannot appear with other resources');
      if (seen.has(r.name)) p.add(`${rp}.name`, `${JSON.stringify(r.name)} is listed more than once`);
      seen.add(r.name);
    }
    if (r.algorithm !== 'sha256') p.add(`${rp}.algorithm`, `must be "sha256", is ${describe(r.algorithm)}`);
    if (typeof r.digest !== 'string' || !HEX64.test(r.digest)) p.add(`${rp}.digest`, 'must be 64 hex digits');
  });
}

function describe(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v) : kind(v);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes and validates a statement from DSSE payload bytes; collects problems under `at`. */
function statementFromPayload(payload: Buffer, p: Problems, at: string): unknown {
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    p.add(at, 'is not UTF-8 text');
    return undefined;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    p.add(at, `is not JSON (${(e as Error).message})`);
    return undefined;
  }
  checkStatement(json, p, at);
  return json;
}

function checkBundle(v: unknown, p: Problems): void {
  if (!isObj(v)) {
    p.add('(top level)', `must be a JSON object, is ${kind(v)}`);
    return;
  }
  if (v.mediaType !== OMS_BUNDLE_MEDIA_TYPE) p.add('mediaType', `must be "${OMS_BUNDLE_MEDIA_TYPE}", is ${describe(v.mediaType)}`);

  const vm = v.verificationMaterial;
  if (!isObj(vm)) p.add('verificationMaterial', `must be an object, is ${kind(vm)}`);
  else {
    const present = (['publicKey', 'certificate', 'x509CertificateChain'] as const).filter((k) => vm[k] !== undefined);
    if (present.length !== 1) {
      p.add('verificationMaterial', present.length === 0 ? 'needs one of publicKey, certificate, x509CertificateChain' : `has both ${present.join(' and ')}; exactly one is allowed`);
    }
    if (vm.publicKey !== undefined) {
      const pk = vm.publicKey;
      if (!isObj(pk)) p.add('verificationMaterial.publicKey', `must be an object, is ${kind(pk)}`);
      else {
        if (pk.hint !== undefined && pk.hint !== null && typeof pk.hint !== 'string') p.add('verificationMaterial.publicKey.hint', `must be a string, is ${kind(pk.hint)}`);
        if (pk.rawBytes !== undefined) p.base64(pk.rawBytes, 'verificationMaterial.publicKey.rawBytes');
        if (pk.keyDetails !== undefined && typeof pk.keyDetails !== 'string') p.add('verificationMaterial.publicKey.keyDetails', `must be a string, is ${kind(pk.keyDetails)}`);
      }
    }
    if (vm.certificate !== undefined) {
      if (!isObj(vm.certificate)) p.add('verificationMaterial.certificate', `must be an object, is ${kind(vm.certificate)}`);
      else p.base64(vm.certificate.rawBytes, 'verificationMaterial.certificate.rawBytes');
    }
    if (vm.x509CertificateChain !== undefined) {
      const ch = vm.x509CertificateChain;
      if (!isObj(ch)) p.add('verificationMaterial.x509CertificateChain', `must be an object, is ${kind(ch)}`);
      else if (!Array.isArray(ch.certificates) || ch.certificates.length === 0) p.add('verificationMaterial.x509CertificateChain.certificates', 'must be a non-empty array');
      else
        ch.certificates.forEach((c: unknown, i: number) => {
          if (!isObj(c)) p.add(`verificationMaterial.x509CertificateChain.certificates[${i}]`, `must be an object, is ${kind(c)}`);
          else p.base64(c.rawBytes, `verificationMaterial.x509CertificateChain.certificates[${i}].rawBytes`);
        });
    }
    if (vm.tlogEntries === undefined) {
      // model_signing 1.0.x wrote key bundles without tlogEntries (the reference reads them as []);
      // certificate-based bundles must have the field.
      if (vm.publicKey === undefined) p.add('verificationMaterial.tlogEntries', 'is missing (an array is required; it may be empty)');
    } else if (!Array.isArray(vm.tlogEntries)) p.add('verificationMaterial.tlogEntries', `must be an array, is ${kind(vm.tlogEntries)}`);
    if (vm.timestampVerificationData !== undefined && !isObj(vm.timestampVerificationData)) {
      p.add('verificationMaterial.timestampVerificationData', `must be an object, is ${kind(vm.timestampVerificationData)}`);
    }
  }

  if (v.messageSignature !== undefined) p.add('messageSignature', 'is not used by OMS (its signatures are DSSE envelopes)');
  const env = v.dsseEnvelope;
  if (!isObj(env)) {
    p.add('dsseEnvelope', `must be an object, is ${kind(env)}`);
    return;
  }
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE) p.add('dsseEnvelope.payloadType', `must be "${IN_TOTO_PAYLOAD_TYPE}", is ${describe(env.payloadType)}`);
  const sigs = env.signatures;
  if (!Array.isArray(sigs) || sigs.length !== 1) {
    p.add('dsseEnvelope.signatures', `must be an array of exactly one signature, is ${Array.isArray(sigs) ? `an array of ${sigs.length}` : kind(sigs)}`);
  } else {
    const s0 = sigs[0] as unknown;
    if (!isObj(s0)) p.add('dsseEnvelope.signatures[0]', `must be an object, is ${kind(s0)}`);
    else {
      p.base64(s0.sig, 'dsseEnvelope.signatures[0].sig');
      if (s0.keyid !== undefined && s0.keyid !== null && typeof s0.keyid !== 'string') p.add('dsseEnvelope.signatures[0].keyid', `must be a string, is ${kind(s0.keyid)}`);
    }
  }
  if (p.base64(env.payload, 'dsseEnvelope.payload')) {
    statementFromPayload(Buffer.from(env.payload as string, 'base64'), p, 'statement');
  }
}

function fail(problems: string[]): never {
  const head = problems.length === 1 ? 'invalid OMS signature' : `invalid OMS signature (${problems.length} problems)`;
  throw new MlicError('FORMAT_INVALID', `${head}: ${problems.join('; ')}`, {
    hint: '"statement" is the in-toto statement decoded from dsseEnvelope.payload',
    details: { problems },
  });
}

/**
 * Checks that `json` is an OMS v1.0 Sigstore bundle with a valid in-toto statement, collecting every
 * bad field path; throws MlicError('FORMAT_INVALID') listing them all. Does not check signatures or
 * the statement's root digest (those are verification, not format).
 */
export function assertOmsBundle(json: unknown): asserts json is OmsBundle {
  const p = new Problems();
  checkBundle(json, p);
  if (p.list.length) fail(p.list);
}

/** Parses signature-file text: JSON, then assertOmsBundle; returns the decoded parts. */
export function parseOmsBundle(text: string): ParsedOmsBundle {
  if (typeof text !== 'string' || text.trim() === '') fail(['(file): is empty, not a JSON signature bundle']);
  let json: unknown;
  try {
    json = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (e) {
    fail([`(file): is not JSON (${(e as Error).message})`]);
  }
  assertOmsBundle(json);
  const vm = json.verificationMaterial;
  const method: OmsVerificationMethod = vm.publicKey !== undefined ? 'publicKey' : vm.certificate !== undefined ? 'certificate' : 'x509CertificateChain';
  const payload = Buffer.from(json.dsseEnvelope.payload, 'base64');
  const statement = JSON.parse(payload.toString('utf8')) as OmsStatement;
  return {
    bundle: json,
    method,
    payload,
    payloadType: json.dsseEnvelope.payloadType,
    signature: Buffer.from(json.dsseEnvelope.signatures[0]!.sig, 'base64'),
    statement,
  };
}
