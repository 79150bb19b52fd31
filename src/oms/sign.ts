/**
 * `omsSign`: signs a model directory (or one file) as OpenSSF Model Signing v1.0 with an ECDSA key,
 * producing the same Sigstore bundle the reference `model_signing sign key` (1.1+) writes.
 */
import { ecPublicFromPrivate, ecPublicKeyHint, ecdsaSign, ecdsaVerify, loadEcPrivateKey, loadEcPublicKey } from '../crypto/ecdsa.js';
import { IN_TOTO_PAYLOAD_TYPE, buildKeyBundle, buildStatement, pae, serializeBundle, serializeStatement } from '../format/oms.js';
import { MlicError } from '../errors.js';
import { hashModelFiles, listModelFiles } from './walk.js';

export interface OmsSignOptions {
  /** PEM private key: PKCS#8 or SEC1, ECDSA P-256, P-384 or P-521 */
  privateKeyPem: string;
  /** passphrase when the PEM is encrypted */
  passphrase?: string;
  /**
   * Filesystem paths to leave out (absolute or relative to the current directory), typically the
   * signature file itself when it is written inside the model directory. A directory leaves out its
   * whole subtree.
   */
  ignore?: string[];
  /** leave out .git, .gitattributes, .github, .gitignore in the model directory (default true, as the reference) */
  ignoreGitPaths?: boolean;
}

export interface OmsSignResult {
  /** the signature file's content (compact JSON, as model_signing writes model.sig) */
  bundleJson: string;
  /** the resource names signed, in statement order */
  files: string[];
}

export async function omsSign(modelPath: string, opts: OmsSignOptions): Promise<OmsSignResult> {
  // Load the key first: a bad key should not cost a pass over a 70 GB model.
  const priv = loadEcPrivateKey(opts.privateKeyPem, opts.passphrase);
  const pub = ecPublicFromPrivate(priv);

  const listing = await listModelFiles(modelPath, { ignore: opts.ignore ?? [], ignoreGitPaths: opts.ignoreGitPaths ?? true });
  if (listing.files.length === 0) {
    throw new MlicError('MODEL_INVALID', `${modelPath}: nothing to sign: no regular files left after the ignored paths`, { details: { ignored: listing.ignorePaths } });
  }
  const digests = await hashModelFiles(listing.files);
  const statement = buildStatement(
    listing.files.map((f) => ({ name: f.name, digest: digests.get(f.name)! })),
    { allow_symlinks: false, ignore_paths: listing.ignorePaths },
    listing.modelName,
  );
  const payload = serializeStatement(statement);
  const message = pae(IN_TOTO_PAYLOAD_TYPE, payload);
  const sig = ecdsaSign(priv, message);
  // Check our own signature before handing it out (a faulty signature can leak the key).
  if (!ecdsaVerify(pub, message, sig)) throw new MlicError('INTERNAL', 'the new OMS signature does not verify with its own public key');
  return {
    bundleJson: serializeBundle(buildKeyBundle(payload, sig, ecPublicKeyHint(pub))),
    files: statement.predicate.resources.map((r) => r.name),
  };
}

/** The key hint an OMS bundle records for this public key (hex sha256 of its canonical SPKI PEM). */
export function omsKeyHint(publicKeyPem: string): string {
  return ecPublicKeyHint(loadEcPublicKey(publicKeyPem));
}
