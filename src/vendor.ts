/** mlic's vendor tools as a library ('mlic/vendor'): keys, packing, licences, checking usage reports. */
export { generateVendorKey, encodeSecretKey, publicKeyFileText, type VendorKey } from './keys/vendor.js';
export { loadSecretKey, loadPublicKey, type LoadSecretKeyOptions, type PassphraseSource } from './keys/load.js';
export { pack, type PackOptions, type PackResult } from './bundle/pack.js';
export { issueLicense, parseMeter, parseMatch, type IssueOptions } from './license/issue.js';
export { parseAndVerifyRequest, verifyLicenseText } from './license/sign.js';
export { serializeLicense, type SignedLicense, type ActivationRequest } from './format/license.js';
export { verifyReport as verifyUsageReport, type UsageReport, type ReportCheck } from './usage/report.js';
export { markBundle, type MarkBundleOptions } from './mark/bundle.js';
export { markModel, type MarkOptions, type MarkReport } from './mark/mark.js';
export { trace, type Candidate, type CandidateScore, type TraceResult } from './mark/trace.js';
export { indexModel } from './mark/model.js';
export { licenceMarkKey } from './mark/pattern.js';
export { watermarkCandidates, imagePayload } from './watermark/licence.js';
export { detectImageWatermark, analyzeImage, scoreImage, type ImageCandidate, type ImageDetection, type ImageScore, type RawImage } from './watermark/image.js';
export { detectTextWatermark, scoreText, type TextCandidate, type TextDetection, type TextScore } from './watermark/text.js';
export { decodeImage } from './watermark/codec.js';
