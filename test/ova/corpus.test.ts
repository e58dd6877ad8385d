import { execFileSync } from "node:child_process";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { verifyPackage } from "../../src/ovf/ova.js";
import { ovfkit } from "../helpers/cli.js";
import { CORPUS_OVF, corpusSkipReason, hasCorpus } from "../helpers/corpus.js";

/**
 * `verify` on the real packages of ../shared/corpus/ovf (PROVENANCE.md).
 * Each row: the verdict, the error codes we must report (exactly), and why.
 */
const VERDICTS: { path: string; ok: boolean; errors: string[]; why: string }[] = [
  {
    path: "glance/glance/tests/var/testserver.ova",
    ok: true,
    errors: [],
    why: "valid plain tar: descriptor first, its one File (4 bytes) present with the declared size; no manifest (info only)",
  },
  {
    path: "glance/glance/tests/var/testserver-no-disk.ova",
    ok: false,
    errors: ["OVF_FILE_MISSING"],
    why: "the descriptor references testserver-disk1.vmdk, which the tar does not contain",
  },
  {
    path: "glance/glance/tests/var/testserver-no-ovf.ova",
    ok: false,
    errors: ["OVA_NO_DESCRIPTOR"],
    why: "a tar holding only a disk: no .ovf member",
  },
  {
    path: "glance/glance/tests/var/testserver-bad-ovf.ova",
    ok: false,
    errors: ["OVF_XML_MALFORMED"],
    why: "illegal-xml.ovf is not well-formed XML",
  },
  {
    path: "glance/glance/tests/var/testserver-not-tar.ova",
    ok: false,
    errors: ["OVA_NOT_TAR"],
    why: "a PNG image named .ova",
  },
  {
    path: "ganeti/test/data/ovfdata/wrong_ova.ova",
    ok: false,
    errors: ["OVA_NOT_TAR"],
    why: "a bare XML descriptor named .ova",
  },
  {
    path: "ganeti/test/data/ovfdata/ova.ova",
    ok: false,
    errors: ["OVA_COMPRESSED"],
    why: "gzip-compressed tar: DSP0243 wants a plain tar and vSphere/AWS refuse it",
  },
  {
    path: "ganeti/test/data/ovfdata/no_ovf.ova",
    ok: false,
    errors: ["OVA_COMPRESSED"],
    why: "gzip-compressed tar (which also has no .ovf): refused before looking inside",
  },
  {
    path: "govmomi/vapi/library/testdata/ttylinux-pc_i486-16.1.ova",
    ok: false,
    errors: ["OVF_FILE_SIZE_MISMATCH"],
    why: "the corpus copy's VMDK was truncated to 1 MiB while ovf:size still says 10595840; the manifest digests DO match (computed over the truncated files), its coreutils spacing is a warning",
  },
  {
    path: "govmomi/vapi/library/testdata/ttylinux-pc_i486-16.1.ovf",
    ok: false,
    errors: ["OVF_FILE_SIZE_MISMATCH"],
    why: "the same package as an OVF folder: same verdict",
  },
  {
    path: "cot/COT/tests/input.ovf",
    ok: true,
    errors: [],
    why: "COT's input package: SHA1 manifest over input.ovf, input.vmdk, input.iso, sample_cfg.txt all match, sizes match",
  },
  {
    path: "cot/COT/tests/ubuntu.2.0.ovf",
    ok: true,
    errors: [],
    why: "VirtualBox OVF 2.0 export with a SHA256 manifest whose digests match",
  },
  {
    path: "ganeti/test/data/ovfdata/ganeti.ovf",
    ok: true,
    errors: [],
    why: "SHA1 manifest matches ganeti.ovf and new_disk.vmdk",
  },
  {
    path: "ganeti/test/data/ovfdata/wrong_manifest.ovf",
    ok: false,
    errors: ["MANIFEST_DIGEST_MISMATCH", "MANIFEST_DIGEST_MISMATCH"],
    why: "ganeti's negative fixture: both SHA1 digests are wrong",
  },
  {
    path: "ganeti/test/data/ovfdata/wrong_xml.ovf",
    ok: false,
    errors: ["OVF_XML_MALFORMED"],
    why: "not well-formed XML",
  },
  {
    path: "govmomi/ovf/fixtures/file-ref-path.ovf",
    ok: false,
    errors: ["OVF_HREF_PATH"],
    why: "ovf:href subdir/data.vmdk: not a plain name, cannot be an OVA member",
  },
  {
    path: "govmomi/ovf/fixtures/external/ImportOvf2014/pbm.ovf",
    ok: false,
    errors: ["OVF_HREF_UNSAFE"],
    why: "ovf:href ../../../content/...: climbs out of the package",
  },
  {
    path: "cot/COT/tests/minimal.ovf",
    ok: true,
    errors: [],
    why: "no References, no manifest: nothing to check at package level (validate judges the rest)",
  },
];

describe("verify verdicts on the corpus", { skip: !hasCorpus }, () => {
  if (!hasCorpus) console.warn(`[skip] ${corpusSkipReason}`);
  for (const row of VERDICTS) {
    it(`${row.path}: ${row.ok ? "OK" : row.errors.join(", ")} — ${row.why}`, async () => {
      const report = await verifyPackage(join(CORPUS_OVF, row.path));
      expect(report.findings.filter((f) => f.severity === "error").map((f) => f.code)).toEqual(row.errors);
      expect(report.ok).toBe(row.ok);
    });
  }

  it("the CLI gives exit 0 / 1 and a JSON report with locations", () => {
    const good = ovfkit(["verify", join(CORPUS_OVF, "cot/COT/tests/input.ovf")]);
    expect(good.status).toBe(0);
    expect(good.stdout).toContain("verdict: OK");
    const bad = ovfkit([
      "verify",
      "--output",
      "json",
      join(CORPUS_OVF, "ganeti/test/data/ovfdata/wrong_manifest.ovf"),
    ]);
    expect(bad.status).toBe(1);
    const report = JSON.parse(bad.stdout) as { findings: { code: string; line?: number; file?: string }[] };
    expect(report.findings[0]).toMatchObject({
      code: "MANIFEST_DIGEST_MISMATCH",
      file: "wrong_manifest.mf",
      line: 1,
    });
    const strict = ovfkit([
      "verify",
      "--strict",
      join(CORPUS_OVF, "govmomi/vapi/library/testdata/ttylinux-pc_i486-16.1.ova"),
    ]);
    expect(strict.stdout).toMatch(/ERROR: MANIFEST_SPACING/);
    expect(ovfkit(["verify", join(CORPUS_OVF, "no-such.ova")]).status).toBe(2);
    // JUnit and SARIF through the validator's report writers.
    const junit = ovfkit([
      "verify",
      "--output",
      "junit",
      join(CORPUS_OVF, "ganeti/test/data/ovfdata/wrong_manifest.ovf"),
    ]);
    expect(junit.status).toBe(1);
    expect(junit.stdout).toMatch(/<testsuites>[\s\S]*<failure message="SHA1 of new_disk\.vmdk/);
    const sarif = ovfkit([
      "verify",
      "--output",
      "sarif",
      join(CORPUS_OVF, "ganeti/test/data/ovfdata/wrong_manifest.ovf"),
    ]);
    const result = (
      JSON.parse(sarif.stdout) as { runs: { results: { ruleId: string; locations: unknown[] }[] }[] }
    ).runs[0]!.results[0]!;
    expect(result).toMatchObject({
      ruleId: "MANIFEST_DIGEST_MISMATCH",
      locations: [
        { physicalLocation: { artifactLocation: { uri: "wrong_manifest.mf" }, region: { startLine: 1 } } },
      ],
    });
  });

  it("every descriptor and OVA in the corpus gets a verdict without an exception", async () => {
    const files = execFileSync(
      "find",
      [CORPUS_OVF, "-name", "*.ovf", "-o", "-name", "*.ova", "-o", "-name", "*.ovd"],
      {
        encoding: "utf8",
      },
    )
      .trim()
      .split("\n");
    expect(files.length).toBeGreaterThan(500);
    for (const file of files) {
      const report = await verifyPackage(file);
      for (const finding of report.findings) {
        expect(finding.code, relative(CORPUS_OVF, file)).toMatch(/^[A-Z][A-Z0-9_]+$/);
      }
      expect(report.ok).toBe(!report.findings.some((f) => f.severity === "error"));
    }
  });
});
