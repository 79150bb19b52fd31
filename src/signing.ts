/** Release signing as a library ('mlic/signing'): minisign/signify signatures of any file, OpenSSF Model Signing. */
export { signFile, verifyFileSignature, type SignFileOptions, type VerifyFileResult } from './signing/files.js';
export { omsSign, type OmsSignOptions, type OmsSignResult } from './oms/sign.js';
export { omsVerify, type OmsVerifyOptions, type OmsVerifyResult } from './oms/verify.js';
export { generateEcdsaKeyPair } from './crypto/ecdsa.js';
