/**
 * mlic as a library. Everything the CLI does goes through these functions; nothing here
 * imports the CLI's dependencies (commander, chalk).
 */
export { MlicError, exitStatusFor, isMlicError, type ErrorCode } from './errors.js';
export { generateVendorKey, encodeSecretKey, decodeSecretKey, secretKeyIsEncrypted, publicKeyFileText, vendorPublicKey, type VendorKey } from './keys/vendor.js';
export { loadSecretKey, loadPublicKey, type LoadSecretKeyOptions, type PassphraseSource } from './keys/load.js';
export { pack, type PackOptions, type PackResult } from './bundle/pack.js';
export { inspectBundle, type InspectResult } from './bundle/inspect.js';
export { verifyBundle, openVerified, type VerifyResult } from './bundle/verify.js';
export { decryptChunks, checkBundleKey } from './bundle/decrypt.js';
export { bundleKeyFromMaster, modelKey, lineKey, bundleKey, fileKey } from './keys/derive.js';
export { parsePublicKey, serializePublicKey, parseSignature, serializeSignature, keyIdHex, type MinisignPublicKey, type MinisignSignature } from './format/minisign.js';
export { type Manifest, type ManifestFile } from './format/manifest.js';
export { parseSemver, compareSemver, type SemVer } from './format/semver.js';
