import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseCertificateFile, signManifest, verifyCertificate } from "../../src/ovf/cert.js";
import { formatManifest, manifestLineLength, parseManifest } from "../../src/ovf/manifest.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";

const dir = tempDir("ovfkit-cert-");
const noOpenssl = skipReason("openssl");

function openssl(...args: string[]): string {
  const result = run("openssl", args, { cwd: dir });
  if (result.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${result.stderr}`);
  return result.stdout;
}

/** Keys and certificates made with openssl at test time: no private key is committed. */
function makeKeys(): void {
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "self.key",
    "-out",
    "self.crt",
    "-days",
    "2",
    "-subj",
    "/CN=ovfkit self-signed",
  );
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "2",
    "-subj",
    "/CN=ovfkit test CA",
  );
  openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "leaf.key",
    "-out",
    "leaf.csr",
    "-subj",
    "/CN=ovfkit signer",
  );
  openssl(
    "x509",
    "-req",
    "-in",
    "leaf.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "leaf.crt",
    "-days",
    "2",
  );
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "other-ca.key",
    "-out",
    "other-ca.crt",
    "-days",
    "2",
    "-subj",
    "/CN=other CA",
  );
}

const read = (name: string): string => readFileSync(join(dir, name), "utf8");

describe("manifest grammar", () => {
  it("accepts exact lines, mixed algorithms per line, and reports bad lines with their numbers", () => {
    const sha1 = "a".repeat(40);
    const sha256 = "b".repeat(64);
    const text = [
      `SHA1(app.ovf)= ${sha1}`,
      `SHA256(disk.vmdk)= ${sha256}`,
      `SHA256 (x.iso) = ${sha256}`,
      `SHA2-256(y.iso)= ${sha256}`,
      `SHA1(short)= abc`,
      "garbage",
      `SHA1(app.ovf)= ${sha1}`,
      `SHA512(app.mf)= ${"c".repeat(128)}`,
      "",
    ].join("\n");
    const parsed = parseManifest(text, { file: "app.mf" });
    expect(parsed.entries.map((e) => [e.algorithm, e.name, e.line])).toEqual([
      ["SHA1", "app.ovf", 1],
      ["SHA256", "disk.vmdk", 2],
      ["SHA256", "x.iso", 3],
    ]);
    expect(parsed.findings.map((f) => [f.code, f.line, f.severity])).toEqual([
      ["MANIFEST_SPACING", 3, "warning"],
      ["MANIFEST_ALGORITHM", 4, "error"],
      ["MANIFEST_DIGEST_LENGTH", 5, "error"],
      ["MANIFEST_SYNTAX", 6, "error"],
      ["MANIFEST_DUPLICATE", 7, "error"],
      ["MANIFEST_SELF", 8, "error"],
    ]);
    expect(parseManifest(text, { strict: true }).findings[0]).toMatchObject({
      code: "MANIFEST_SPACING",
      severity: "error",
    });
  });

  it("writes what it parses, with the line lengths pack reserves", () => {
    const entries = [{ algorithm: "SHA512" as const, name: "d.vmdk", digest: "e".repeat(128) }];
    const text = formatManifest(entries);
    expect(text).toBe(`SHA512(d.vmdk)= ${"e".repeat(128)}\n`);
    expect(Buffer.byteLength(text)).toBe(manifestLineLength("SHA512", "d.vmdk"));
    expect(parseManifest(text).findings).toEqual([]);
  });
});

describe("certificates against openssl", { skip: Boolean(noOpenssl) }, () => {
  if (!noOpenssl) makeKeys();
  const manifest = Buffer.from(`SHA256(app.ovf)= ${"1".repeat(64)}\n`);

  it("verifies a .cert whose signature openssl made", () => {
    writeFileSync(join(dir, "app.mf"), manifest);
    const hex = openssl("dgst", "-sha256", "-hex", "-sign", "self.key", "app.mf").trim().split("= ")[1]!;
    const certText = `SHA256(app.mf)= ${hex}\n${read("self.crt")}`;
    const parsed = parseCertificateFile(certText, "app.cert");
    const report = verifyCertificate(parsed, manifest, "app.mf");
    expect(report.signatureValid).toBe(true);
    expect(report.selfSigned).toBe(true);
    expect(report.findings.map((f) => f.code)).toEqual(["CERT_SELF_SIGNED"]);
    const tampered = verifyCertificate(parsed, Buffer.concat([manifest, Buffer.from("x")]), "app.mf");
    expect(tampered.findings.map((f) => f.code)).toContain("CERT_SIGNATURE_INVALID");
  });

  it("signs so that openssl dgst -verify accepts the signature", () => {
    const certText = signManifest(manifest, "app.mf", {
      privateKey: read("self.key"),
      certificate: read("self.crt"),
    });
    const parsed = parseCertificateFile(certText);
    expect(certText.split("\n")[0]).toMatch(/^SHA256\(app\.mf\)= [0-9a-f]{512}$/);
    writeFileSync(join(dir, "sig.bin"), Buffer.from(parsed.signature, "hex"));
    writeFileSync(join(dir, "app.mf"), manifest);
    openssl("x509", "-in", "self.crt", "-pubkey", "-noout", "-out", "self.pub");
    const verdict = run(
      "openssl",
      ["dgst", "-sha256", "-verify", "self.pub", "-signature", "sig.bin", "app.mf"],
      { cwd: dir },
    );
    expect(verdict.stdout.trim()).toBe("Verified OK");
    expect(verdict.status).toBe(0);
  });

  it("chains a CA-issued signer to --ca, and refuses an unrelated CA", () => {
    const certText = signManifest(manifest, "app.mf", {
      privateKey: read("leaf.key"),
      certificate: read("leaf.crt"),
    });
    const parsed = parseCertificateFile(certText);
    const trusted = verifyCertificate(parsed, manifest, "app.mf", { ca: read("ca.crt") });
    expect(trusted).toMatchObject({ trusted: true, selfSigned: false, signatureValid: true });
    expect(trusted.findings).toEqual([]);
    const untrusted = verifyCertificate(parsed, manifest, "app.mf", { ca: read("other-ca.crt") });
    expect(untrusted.findings.map((f) => f.code)).toEqual(["CERT_UNTRUSTED"]);
    // openssl agrees on both verdicts.
    expect(run("openssl", ["verify", "-CAfile", "ca.crt", "leaf.crt"], { cwd: dir }).status).toBe(0);
    expect(run("openssl", ["verify", "-CAfile", "other-ca.crt", "leaf.crt"], { cwd: dir }).status).not.toBe(
      0,
    );
  });

  it("reports expiry, wrong manifest name, key mismatch and malformed files", () => {
    const certText = signManifest(manifest, "app.mf", {
      privateKey: read("self.key"),
      certificate: read("self.crt"),
    });
    const parsed = parseCertificateFile(certText);
    const later = verifyCertificate(parsed, manifest, "app.mf", {
      now: new Date(Date.now() + 10 * 86_400_000),
    });
    expect(later.findings.map((f) => f.code)).toContain("CERT_EXPIRED");
    const earlier = verifyCertificate(parsed, manifest, "app.mf", {
      now: new Date(Date.now() - 10 * 86_400_000),
    });
    expect(earlier.findings.map((f) => f.code)).toContain("CERT_NOT_YET_VALID");
    expect(verifyCertificate(parsed, manifest, "other.mf").findings.map((f) => f.code)).toContain(
      "CERT_MANIFEST_NAME",
    );
    expect(() =>
      signManifest(manifest, "app.mf", { privateKey: read("leaf.key"), certificate: read("self.crt") }),
    ).toThrow(expect.objectContaining({ code: "CERT_KEY_MISMATCH" }));
    expect(() => parseCertificateFile("hello\n", "x.cert")).toThrow(
      expect.objectContaining({ code: "CERT_SYNTAX", line: 1 }),
    );
    expect(() => parseCertificateFile(`SHA256(a.mf)= ab\n`, "x.cert")).toThrow(
      expect.objectContaining({ code: "CERT_SYNTAX" }),
    );
  });
});
