/**
 * mlic as a library: the operations a user needs, as closable handles (never raw keys). The
 * vendor's tools are in 'mlic/vendor', release signing in 'mlic/signing'. Nothing here imports
 * the CLI's dependencies (commander, chalk, ora).
 */
export { MlicError, isMlicError, exitStatusFor, type ErrorCode } from './errors.js';
// Anyone: look at and verify a bundle with the vendor's public key.
export { inspectBundle, type InspectResult } from './bundle/inspect.js';
export { verifyBundle, type VerifyResult } from './bundle/verify.js';
// The customer's host: activation, licences, licensed use.
export { createActivationRequest, activateLicense, type HostOptions, type ActivateResult } from './host/licences.js';
export { listLicenses, type InstalledLicense } from './host/list.js';
export { openBundle, type OpenBundleOptions, type OpenedBundle } from './host/open.js';
export { unpack, type UnpackOptions, type UnpackResult } from './host/unpack.js';
export { runWithBundle, type RunOptions, type RunResult } from './host/run.js';
export { loadLicense, type LoadedLicense, type LoadLicenseOptions, type ValidateRequest, type ValidateResult, type ValidateError, type MeterStatus } from './host/handle.js';
export { probeHost, type HostProbe, type ProbeOptions } from './hardware/probe.js';
export type { LicensePayload, VersionPolicy, Meter, MatchPolicy } from './format/license.js';
export type { Manifest, ManifestFile } from './format/manifest.js';
export { watermarkImage, createTextWatermark } from './host/watermark.js';
export type { LicenceWatermark, MarkedImage } from './host/handle.js';
export type { RawImage, EmbedOptions } from './watermark/image.js';
export type { LogitsProcessor, TextWatermarkParams } from './watermark/text.js';
