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

// Licences: the vendor's side
export { issueLicense, parseMeter, parseMatch, type IssueOptions } from './license/issue.js';
export { parseLicenseText, serializeLicense, redactedPayload, type LicensePayload, type SignedLicense, type ActivationRequest, type VersionPolicy, type MatchPolicy, type Meter } from './format/license.js';
export { verifyLicenseText, parseAndVerifyRequest } from './license/sign.js';
// Licences: the customer's side
export { createActivationRequest, activateLicense, listLicenses, authorizeBundle, type RuntimeOptions, type AuthorizeOptions, type Authorization } from './license/runtime.js';
export { decide, type DecisionInput } from './license/policy.js';
export { openBundle, type OpenBundleOptions, type OpenedBundle } from './bundle/open.js';
export { unpack, type UnpackOptions, type UnpackResult } from './bundle/unpack.js';
export { runWithBundle, type RunOptions, type RunResult } from './bundle/run.js';
export { probeHost, type HostProbe, type ProbeOptions } from './hardware/probe.js';
export { fingerprintOf, matchFingerprint } from './hardware/fingerprint.js';
export { StateDir, defaultHome } from './state/home.js';
// Metering, reports, audit
export { loadLicense, LoadedLicense, type LoadLicenseOptions, type ValidateRequest, type ValidateResult, type ValidateError } from './usage/handle.js';
export { buildReport, verifyReport, type UsageReport } from './usage/report.js';
export { serve as serveMeter } from './usage/server.js';
export { ChainLog } from './state/chainlog.js';
// Release signing
export { signFile, verifyFileSignature, blake2bFile } from './signing/files.js';
export { omsSign } from './oms/sign.js';
export { omsVerify, type OmsVerifyResult } from './oms/verify.js';
export { generateEcdsaKeyPair } from './crypto/ecdsa.js';
