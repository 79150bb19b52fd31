/**
 * `omsVerify`: checks a model directory (or one file) against an OpenSSF Model Signing v1.0
 * signature with an ECDSA public key, as the reference `model_signing verify key` (1.x) does.
 *
 * Order: parse the bundle (FORMAT_INVALID) -> load the key (KEY_INVALID) -> key hint and DSSE
 * signature (OMS_VERIFY_FAILED) -> statement root digest (OMS_VERIFY_FAILED) -> list and hash the
 * model (IO_*) -> compare. Differences in content are returned, not thrown.
 *
 * The statement's own serialization.ignore_paths (signed) are honoured, as the reference does, in
 * addition to opts.ignore and the default git paths. Certificate-based bundles are checked only
 * against the given public key, as `model_signing verify key` does: no certificate chain, Sigstore
 * transparency log or timestamp is validated.
 */
import { ecPublicKeyHint, ecdsaVerify, loadEcPublicKey } from '../crypto/ecdsa.js';
import { pae, parseOmsBundle, statementRootDigest } from '../format/oms.js';
import { MlicError } from '../errors.js';
import { hashModelFiles, listModelFiles } from './walk.js';

export interface OmsVerifyOptions {
  /** PEM SPKI public key ("-----BEGIN PUBLIC KEY-----"), ECDSA P-256, P-384 or P-521 */
  publicKeyPem: string;
  /** filesystem paths to leave out (absolute or relative to the current directory), e.g. the signature file */
  ignore?: string[];
  /** leave out .git, .gitattributes, .github, .gitignore in the model directory (default true) */
  ignoreGitPaths?: boolean;
}

export interface OmsVerifyResult {
  /** true only when mismatched, missing and uncovered are all empty */
  ok: boolean;
  /** resources of the signature found on disk and hashed (matching or not), in statement order */
  files: string[];
  /** signed files whose content differs */
  mismatched: string[];
  /** signed files that are absent (or ignored) */
  missing: string[];
  /** files present in the model but not covered by the signature */
  uncovered: string[];
  /** the statement's subject digest (root over the resource digests), hex */
  statementDigest: string;
}

export async function omsVerify(modelPath: string, bundleJson: string, opts: OmsVerifyOptions): Promise<OmsVerifyResult> {
  const parsed = parseOmsBundle(bundleJson);
  const pub = loadEcPublicKey(opts.publicKeyPem);

  const hint = parsed.bundle.verificationMaterial.publicKey?.hint;
  const ourHint = ecPublicKeyHint(pub);
  if (typeof hint === 'string' && hint !== '' && hint.toLowerCase() !== ourHint) {
    throw new MlicError('OMS_VERIFY_FAILED', `the signature was made with a different key: its key hint is ${hint}, the given public key's is ${ourHint}`, {
      hint: 'check that --pub is the public half of the key that signed the model',
    });
  }
  if (!ecdsaVerify(pub, pae(parsed.payloadType, parsed.payload), parsed.signature)) {
    throw new MlicError('OMS_VERIFY_FAILED', `the OMS signature does not verify with the given ${pub.curve} public key: the signature or its statement was altered, or another key signed it`);
  }

  const st = parsed.statement;
  const claimed = st.subject[0].digest.sha256.toLowerCase();
  const actualRoot = statementRootDigest(st);
  if (actualRoot !== claimed) {
    throw new MlicError('OMS_VERIFY_FAILED', `the signed statement is inconsistent: its subject digest is ${claimed}, but its resources hash to ${actualRoot}`);
  }

  const listing = await listModelFiles(modelPath, {
    ignore: opts.ignore ?? [],
    ignoreRelative: st.predicate.serialization.ignore_paths ?? [],
    ignoreGitPaths: opts.ignoreGitPaths ?? true,
  });
  const expected = new Map(st.predicate.resources.map((r) => [r.name, r.digest.toLowerCase()] as const));
  const present = new Map(listing.files.map((f) => [f.name, f] as const));
  const covered = listing.files.filter((f) => expected.has(f.name));
  const digests = await hashModelFiles(covered);

  const files: string[] = [];
  const mismatched: string[] = [];
  const missing: string[] = [];
  for (const r of st.predicate.resources) {
    if (!present.has(r.name)) {
      missing.push(r.name);
      continue;
    }
    files.push(r.name);
    if (digests.get(r.name)!.toString('hex') !== expected.get(r.name)) mismatched.push(r.name);
  }
  const uncovered = listing.files.filter((f) => !expected.has(f.name)).map((f) => f.name);
  return {
    ok: mismatched.length === 0 && missing.length === 0 && uncovered.length === 0,
    files,
    mismatched,
    missing,
    uncovered,
    statementDigest: claimed,
  };
}
