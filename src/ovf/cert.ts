import { createPrivateKey, sign, verify, X509Certificate } from "node:crypto";
import { OvfkitError } from "../errors.js";
import { type ManifestAlgorithm, NODE_HASH, type PackageFinding } from "./manifest.js";

/**
 * OVF package certificates (`.cert`, DSP0243 §5.2): the first line is
 * `ALG(name.mf)= <hex signature of the manifest bytes>`, then the signer's
 * X.509 certificate (and optionally its chain) in PEM — what ovftool
 * `--privateKey` and open-vmdk's ova-compose `--sign` write. The signature
 * is PKCS#1 v1.5 over the manifest file with the named digest, i.e. what
 * `openssl dgst -sha256 -sign key.pem APP.mf` produces.
 */

export interface ParsedCertificateFile {
  algorithm: ManifestAlgorithm;
  /** The manifest name the signature line names. */
  manifestName: string;
  /** Lower-case hex. */
  signature: string;
  /** PEM blocks in file order: the signer first, then any chain. */
  certificates: string[];
}

const SIGNATURE_LINE = /^(SHA1|SHA256|SHA512)\(([^\r\n]+)\)= ?([0-9A-Fa-f]+)\r?$/;
const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Parses a `.cert` file; malformed files throw CERT_SYNTAX with the line. */
export function parseCertificateFile(text: string, file?: string): ParsedCertificateFile {
  const lines = text.split("\n");
  const lineIndex = lines.findIndex((line) => line.trim() !== "");
  const first = lines[lineIndex] ?? "";
  const match = SIGNATURE_LINE.exec(first);
  if (!match) {
    throw new OvfkitError(
      "CERT_SYNTAX",
      `first line of the certificate file is not "ALG(name.mf)= hexsignature": ${first.slice(0, 80)}`,
      { file, line: lineIndex + 1, column: 1 },
    );
  }
  const [, algorithm, manifestName, signature] = match as unknown as [
    ManifestAlgorithm,
    ManifestAlgorithm,
    string,
    string,
  ];
  const certificates = text.match(PEM_BLOCK) ?? [];
  if (certificates.length === 0) {
    throw new OvfkitError("CERT_SYNTAX", "the certificate file holds no PEM certificate", {
      file,
      line: lineIndex + 2,
      column: 1,
    });
  }
  return { algorithm, manifestName, signature: signature.toLowerCase(), certificates };
}

export interface SignOptions {
  /** PEM private key (RSA; EC keys work with node:crypto but few importers accept them). */
  privateKey: string | Buffer;
  passphrase?: string;
  /** PEM certificate (chain) to embed after the signature line. */
  certificate: string | Buffer;
  algorithm?: ManifestAlgorithm;
}

/** Builds the `.cert` text for `manifest` (the exact bytes of `manifestName`). */
export function signManifest(manifest: Buffer, manifestName: string, options: SignOptions): string {
  const algorithm = options.algorithm ?? "SHA256";
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey({ key: options.privateKey, passphrase: options.passphrase });
  } catch (error) {
    throw new OvfkitError("CERT_KEY", `cannot read the private key: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (key.asymmetricKeyType !== "rsa") {
    throw new OvfkitError(
      "CERT_KEY",
      `the private key is ${key.asymmetricKeyType}; OVF signing uses RSA (what ovftool and vSphere accept)`,
    );
  }
  const pem = certificateText(options.certificate);
  const leaf = new X509Certificate(pem.match(PEM_BLOCK)![0]!);
  if (!leaf.checkPrivateKey(key)) {
    throw new OvfkitError(
      "CERT_KEY_MISMATCH",
      `the private key does not belong to certificate ${leaf.subject}`,
    );
  }
  const signature = sign(NODE_HASH[algorithm], manifest, key).toString("hex");
  return `${algorithm}(${manifestName})= ${signature}\n${pem.trimEnd()}\n`;
}

/** The PEM certificate blocks of `certificate`, refusing text with none. */
function certificateText(certificate: string | Buffer): string {
  const text = certificate.toString();
  const blocks = text.match(PEM_BLOCK);
  if (!blocks) throw new OvfkitError("CERT_SYNTAX", "no PEM certificate in the given certificate file");
  try {
    for (const block of blocks) new X509Certificate(block);
  } catch (error) {
    throw new OvfkitError("CERT_SYNTAX", `bad PEM certificate: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return `${blocks.join("\n")}\n`;
}

/** Length in bytes of the `.cert` `signManifest` would write (pack reserves the space before the manifest is known). */
export function signedCertificateLength(manifestName: string, options: SignOptions): number {
  // RSA signatures are exactly the modulus size, so signing anything gives the length.
  return Buffer.byteLength(signManifest(Buffer.alloc(0), manifestName, options));
}

export interface CertificateVerifyOptions {
  /** PEM bundle of trusted CA certificates. Without it a self-signed signer is reported, not trusted. */
  ca?: string;
  /** "Now" for validity checks (tests). */
  now?: Date;
  /** Name of the `.cert` for finding locations. */
  file?: string;
}

export interface CertificateReport {
  findings: PackageFinding[];
  subject?: string;
  issuer?: string;
  validFrom?: string;
  validTo?: string;
  selfSigned?: boolean;
  signatureValid?: boolean;
  trusted?: boolean;
}

/**
 * Checks a parsed `.cert` against the manifest bytes: the signature, the
 * manifest name it claims to sign, the signer's validity dates, and the
 * chain up to `ca` (or reports a self-signed signer).
 */
export function verifyCertificate(
  parsed: ParsedCertificateFile,
  manifest: Buffer,
  manifestName: string,
  options: CertificateVerifyOptions = {},
): CertificateReport {
  const file = options.file;
  const findings: PackageFinding[] = [];
  const add = (code: string, severity: PackageFinding["severity"], message: string): void => {
    findings.push({ code, severity, message, file });
  };
  let chain: X509Certificate[];
  try {
    chain = parsed.certificates.map((pem) => new X509Certificate(pem));
  } catch (error) {
    add("CERT_SYNTAX", "error", `bad PEM certificate: ${(error as Error).message}`);
    return { findings };
  }
  const leaf = chain[0]!;
  const report: CertificateReport = {
    findings,
    subject: leaf.subject,
    issuer: leaf.issuer,
    validFrom: leaf.validFrom,
    validTo: leaf.validTo,
  };
  if (parsed.manifestName !== manifestName) {
    add(
      "CERT_MANIFEST_NAME",
      "error",
      `the signature names ${parsed.manifestName}, the package's manifest is ${manifestName}`,
    );
  }
  let signatureValid = false;
  try {
    signatureValid = verify(
      NODE_HASH[parsed.algorithm],
      manifest,
      leaf.publicKey,
      Buffer.from(parsed.signature, "hex"),
    );
  } catch (error) {
    add("CERT_SIGNATURE_INVALID", "error", `signature could not be checked: ${(error as Error).message}`);
  }
  report.signatureValid = signatureValid;
  if (!signatureValid && !findings.some((f) => f.code === "CERT_SIGNATURE_INVALID")) {
    add(
      "CERT_SIGNATURE_INVALID",
      "error",
      `the ${parsed.algorithm} signature does not match ${manifestName} (manifest changed after signing, or wrong key)`,
    );
  }
  const now = options.now ?? new Date();
  if (now < new Date(leaf.validFrom))
    add("CERT_NOT_YET_VALID", "error", `certificate is valid only from ${leaf.validFrom}`);
  if (now > new Date(leaf.validTo)) add("CERT_EXPIRED", "error", `certificate expired on ${leaf.validTo}`);
  report.selfSigned = leaf.checkIssued(leaf) && verifiesWith(leaf, leaf);
  if (options.ca !== undefined) {
    const anchors = (options.ca.match(PEM_BLOCK) ?? []).map((pem) => new X509Certificate(pem));
    report.trusted = chainsTo(leaf, chain.slice(1), anchors, now);
    if (!report.trusted)
      add("CERT_UNTRUSTED", "error", `certificate ${leaf.subject} does not chain to the given CA bundle`);
  } else if (report.selfSigned) {
    add(
      "CERT_SELF_SIGNED",
      "warning",
      `certificate is self-signed (${leaf.subject}); pass --ca to check a chain`,
    );
  } else {
    add(
      "CERT_CHAIN_NOT_CHECKED",
      "info",
      `certificate issued by ${leaf.issuer}; pass --ca to check the chain`,
    );
  }
  return report;
}

function verifiesWith(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** Walks issuer links from `cert` through `intermediates` to one of `anchors` (bounded depth). */
function chainsTo(
  cert: X509Certificate,
  intermediates: X509Certificate[],
  anchors: X509Certificate[],
  now: Date,
  depth = 0,
): boolean {
  if (depth > 8) return false;
  for (const anchor of anchors) {
    if (cert.checkIssued(anchor) && verifiesWith(cert, anchor)) return true;
    if (cert.fingerprint256 === anchor.fingerprint256) return true;
  }
  for (const next of intermediates) {
    if (next === cert || !cert.checkIssued(next) || !verifiesWith(cert, next)) continue;
    if (now > new Date(next.validTo) || now < new Date(next.validFrom)) continue;
    if (
      chainsTo(
        next,
        intermediates.filter((c) => c !== next),
        anchors,
        now,
        depth + 1,
      )
    )
      return true;
  }
  return false;
}
