/**
 * Is an endorsement key certificate from a TPM manufacturer the vendor trusts? The chain is built
 * from the EK certificate up through the certificates in the trust directory (`--tpm-ca DIR`:
 * the manufacturers' root and intermediate CA certificates, PEM or DER) to a self-signed root
 * there; every link's signature and validity period are checked, and every issuer must be a CA.
 */
import { X509Certificate } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MlicError, fromFsError } from '../errors.js';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const MAX_CA_FILE = 1 << 20;
const MAX_CHAIN = 8;

/** Every certificate in the files of `dir` (*.pem, *.crt, *.cer, *.der); a file that holds none is skipped. */
export async function loadTpmCas(dir: string): Promise<X509Certificate[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => /\.(pem|crt|cer|der)$/i.test(n)).sort();
  } catch (e) {
    throw fromFsError(e, dir);
  }
  const out: X509Certificate[] = [];
  for (const n of names) {
    const buf = await readFile(join(dir, n)).catch((e: unknown) => Promise.reject(fromFsError(e, join(dir, n))));
    if (buf.length > MAX_CA_FILE) continue;
    const text = buf.toString('latin1');
    const pems = text.match(PEM_CERT);
    for (const one of pems ?? [buf]) {
      try {
        out.push(new X509Certificate(one));
      } catch {
        /* not a certificate */
      }
    }
  }
  if (out.length === 0) throw new MlicError('USAGE', `${dir} holds no CA certificate (*.pem, *.crt, *.cer, *.der)`, { hint: "put the TPM manufacturers' root and intermediate CA certificates there" });
  return out;
}

const within = (c: X509Certificate, now: Date) => now.getTime() >= Date.parse(c.validFrom) && now.getTime() <= Date.parse(c.validTo);
const selfSigned = (c: X509Certificate) => c.checkIssued(c) && c.verify(c.publicKey);

/** Verifies the EK certificate's chain to a root in `cas`; returns the chain's subjects, EK first. Throws TPM_CERT_UNTRUSTED naming the link that failed. */
export function verifyEkCertificate(ekDer: Uint8Array, cas: readonly X509Certificate[], now: Date): string[] {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(ekDer);
  } catch {
    throw new MlicError('TPM_CERT_UNTRUSTED', 'the endorsement key certificate is not a valid X.509 certificate');
  }
  const untrusted = (why: string) => new MlicError('TPM_CERT_UNTRUSTED', `the endorsement key certificate is not trusted: ${why}`, { hint: "add the TPM manufacturer's CA certificates to --tpm-ca DIR (only if you trust that manufacturer)" });
  if (!within(cert, now)) throw untrusted(`it is valid from ${cert.validFrom} to ${cert.validTo}`);
  const chain = [cert.subject.replace(/\n/g, ', ')];
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    const issuer = cas.find((c) => cert.checkIssued(c) && c.ca && cert.verify(c.publicKey));
    if (!issuer) throw untrusted(`no certificate in the trust directory issued ${depth === 0 ? 'it' : `"${chain.at(-1)}"`} (issuer "${cert.issuer.replace(/\n/g, ', ')}")`);
    if (!within(issuer, now)) throw untrusted(`its issuer "${issuer.subject.replace(/\n/g, ', ')}" is valid from ${issuer.validFrom} to ${issuer.validTo}`);
    chain.push(issuer.subject.replace(/\n/g, ', '));
    if (selfSigned(issuer)) return chain;
    cert = issuer;
  }
  throw untrusted(`its chain is longer than ${MAX_CHAIN} certificates`);
}
