import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { validateOvf } from "../../src/ovf/validate.js";
import { CORPUS_OVF, corpusSkipReason, hasCorpus } from "../helpers/corpus.js";
import { hasTool, skipReason } from "../helpers/tools.js";
import { corpusOvfFiles } from "./corpus-files.js";

/**
 * The tolerant layers (1-4) on every real descriptor and OVA of the corpus.
 * Real exports must get NO errors (warnings allowed); the only files with
 * errors are the ones below, each for the reason given (docs/ovf-validate.md
 * "Findings on the corpus" explains every one).
 */
const EXPECTED_ERRORS: Record<string, { rules: string[]; why: string }> = {
  "cloud-init/doc/sources/ovf/example/ovf-env.xml": {
    rules: ["OVF-STRUCT-001"],
    why: "an ovf-env.xml environment, not an Envelope",
  },
  "cot/COT/tests/ersatz_ovf_3.0.ovf": {
    rules: ["OVF-STRUCT-001"],
    why: "fake envelope/3 namespace (COT negative test)",
  },
  "cot/COT/tests/invalid.ovf": {
    rules: ["OVF-REF-001"],
    why: "COT negative test: Disk flash2 names an undeclared File",
  },
  "ganeti/test/data/ovfdata/empty.ovf": {
    rules: ["OVF-STRUCT-007"],
    why: "ganeti negative test: VirtualSystem without ovf:id",
  },
  "ganeti/test/data/ovfdata/ganeti.ovf": {
    rules: ["OVF-REF-004", "OVF-STRUCT-013"],
    why: "ganeti's own export: Disk without capacity, Parent to a missing controller",
  },
  "ganeti/test/data/ovfdata/gzip_disk.ovf": {
    rules: ["OVF-REF-004", "OVF-STRUCT-013"],
    why: "same ganeti export with a gzip disk",
  },
  "ganeti/test/data/ovfdata/no_disk_in_ref.ovf": {
    rules: ["OVF-REF-001", "OVF-SEM-002", "OVF-STRUCT-013"],
    why: "ganeti negative test",
  },
  "ganeti/test/data/ovfdata/virtualbox.ovf": {
    rules: ["OVF-SEM-002", "OVF-STRUCT-013"],
    why: "hand-edited VirtualBox-style test data: two disks on one IDE unit, no capacity",
  },
  "ganeti/test/data/ovfdata/wrong_manifest.ovf": {
    rules: ["OVF-STRUCT-013"],
    why: "ganeti test data: Disk without ovf:capacity",
  },
  "ganeti/test/data/ovfdata/wrong_ova.ova": {
    rules: ["OVF-PKG-001"],
    why: "not a tar (ganeti negative test)",
  },
  "ganeti/test/data/ovfdata/wrong_xml.ovf": {
    rules: ["OVF-XML-001"],
    why: "malformed XML (ganeti negative test)",
  },
  "glance/glance/tests/var/testserver-bad-ovf.ova": {
    rules: ["OVF-XML-001"],
    why: "glance negative test: illegal XML",
  },
  "glance/glance/tests/var/testserver-no-disk.ova": {
    rules: ["OVF-REF-011"],
    why: "glance negative test: the disk is not in the OVA",
  },
  "glance/glance/tests/var/testserver-no-ovf.ova": {
    rules: ["OVF-PKG-002"],
    why: "glance negative test: no descriptor",
  },
  "glance/glance/tests/var/testserver-not-tar.ova": {
    rules: ["OVF-PKG-001"],
    why: "glance negative test: not a tar",
  },
  "govmomi/ovf/fixtures/empty.ovf": { rules: ["OVF-STRUCT-003"], why: "envelope with no VirtualSystem" },
  "govmomi/ovf/fixtures/external/DeleteHDTestdata/PvScsis_old/descriptor.ovf": {
    rules: ["OVF-STRUCT-001"],
    why: "an HTML page saved as .ovf",
  },
  "govmomi/ovf/fixtures/external/DeleteHDTestdata/SasPvScsi_old/descriptor.ovf": {
    rules: ["OVF-STRUCT-001"],
    why: "an HTML page saved as .ovf",
  },
  "govmomi/ovf/fixtures/external/DeleteHDTestdata/Sass_old/descriptor.ovf": {
    rules: ["OVF-STRUCT-001"],
    why: "an HTML page saved as .ovf",
  },
  "govmomi/ovf/fixtures/external/ImportOvf2014/complete_vs.ovf": {
    rules: ["OVF-REF-010"],
    why: "href ../../../content/...: leaves the package",
  },
  "govmomi/ovf/fixtures/external/ImportOvf2014/complete_vs_11.ovf": {
    rules: ["OVF-STRUCT-005"],
    why: 'vmw:vServiceDependencySection ovf:required="true": unknown outside vCenter',
  },
  "govmomi/ovf/fixtures/external/ImportOvf2014/complete_vsc.ovf": { rules: ["OVF-STRUCT-005"], why: "same" },
  "govmomi/ovf/fixtures/external/ImportOvf2014/complete_vsc_11.ovf": {
    rules: ["OVF-STRUCT-005"],
    why: "same",
  },
  "govmomi/ovf/fixtures/external/ImportOvf2014/complete_vsc_orig.ovf": {
    rules: ["OVF-REF-010", "OVF-STRUCT-005"],
    why: "both of the above",
  },
  "govmomi/ovf/fixtures/external/ImportOvf2014/invalid.ovf": {
    rules: ["OVF-STRUCT-007"],
    why: "ovftool negative test: VirtualSystem without id",
  },
  "govmomi/ovf/fixtures/external/ImportOvf2014/pbm.ovf": {
    rules: ["OVF-REF-010"],
    why: "href leaves the package",
  },
  "govmomi/ovf/fixtures/external/SLES11_SP2_64/SLES11_SP2_64.ovf": {
    rules: ["OVF-STRUCT-001"],
    why: "Envelope in no namespace at all",
  },
  "govmomi/ovf/fixtures/external/invalid_ovf/path1/testLonCharacterPathLimit/testDBpathLimitwwwwwwwwwwwwwww/descriptor.ovf":
    { rules: ["OVF-XML-001"], why: "not XML" },
  "govmomi/ovf/fixtures/external/jeos_corrupted.ovf": { rules: ["OVF-XML-001"], why: "corrupted bytes" },
  "govmomi/ovf/fixtures/external/missing_nvdimm_controller.ovf": {
    rules: ["OVF-REF-004"],
    why: "NVDIMM whose controller Item is missing (govmomi negative test)",
  },
  "govmomi/ovf/fixtures/external/nostalgiauday/nostalgia.ovf": {
    rules: ["OVF-STRUCT-014"],
    why: "two DiskSections",
  },
  "govmomi/ovf/fixtures/external/ovf_negative_test/New folder/haoUnOS2VMs/haoUnOS2VMs.ovf": {
    rules: ["OVF-STRUCT-007"],
    why: "ovftool negative test",
  },
  "govmomi/ovf/fixtures/external/security-test-content/ovf/negative-out-of-bound-disk/haoUnOS2VMs.ovf": {
    rules: ["OVF-REF-008"],
    why: "negative ovf:size",
  },
  "govmomi/ovf/fixtures/external/security-test-content/ovf/negative-size-disk/haoUnOS2VMs.ovf": {
    rules: ["OVF-REF-008"],
    why: "negative ovf:size",
  },
  "govmomi/ovf/fixtures/virtualsystemcollection.ovf": {
    rules: ["OVF-XML-005"],
    why: "xmlns:epasd URI with a space (libxml2: not a valid URI)",
  },
  "govmomi/vapi/library/testdata/ttylinux-pc_i486-16.1.ova": {
    rules: ["OVF-REF-009"],
    why: "ovf:size 10595840, the stored disk is 1048576 bytes",
  },
  "govmomi/vapi/library/testdata/ttylinux-pc_i486-16.1.ovf": {
    rules: ["OVF-REF-009"],
    why: "same descriptor beside the same disk",
  },
  ...Object.fromEntries(
    [7, 10, 11, 13, 14, 15, 17, 18, 19, 20, 21].map((hw) => [
      `open-vmdk/templates/template-hw${hw}.ovf`,
      {
        rules: ["OVF-REF-007", "OVF-REF-008", "OVF-SEM-006", "OVF-SEM-007"],
        why: "templates: @@PLACEHOLDER@@ sizes and counts",
      },
    ]),
  ),
};

/** Every document of the OVF corpus this test reads. */
function corpusPackages(): string[] {
  return corpusOvfFiles(/\.(ovf|ova|xml)$/);
}

describe.skipIf(!hasCorpus)(`validate the OVF corpus ${corpusSkipReason}`, () => {
  it("layers 1-4 give errors only where the corpus holds broken or negative files", async () => {
    const files = corpusPackages();
    const report = await validateOvf(files);
    expect(report.files).toHaveLength(files.length);
    const withErrors: Record<string, string[]> = {};
    for (const result of report.files) {
      const rules = [
        ...new Set(result.findings.filter((f) => f.severity === "error").map((f) => f.ruleId)),
      ].sort();
      if (rules.length > 0) withErrors[relative(CORPUS_OVF, result.file)] = rules;
      for (const finding of result.findings) {
        expect(finding.line, `${finding.ruleId} in ${result.file}`).toBeGreaterThanOrEqual(0);
        if (finding.line > 0 && finding.layer !== 1 && finding.file.endsWith(".ovf"))
          expect(finding.xpath).toMatch(/^\//);
      }
    }
    const expected = Object.fromEntries(
      Object.entries(EXPECTED_ERRORS).map(([file, { rules }]) => [file, rules]),
    );
    expect(withErrors).toEqual(expected);
    // the real exports (vSphere, ovftool, VirtualBox, XenCenter, COT-made appliances) are all among the clean ones
    expect(files.length - Object.keys(withErrors).length).toBeGreaterThan(460);
  });

  it.skipIf(!hasTool("xmllint"))(
    `layer 5 agrees with VALIDATION-xmllint.tsv on a sample ${skipReason("xmllint")}`,
    async () => {
      const rows = readFileSync(join(CORPUS_OVF, "VALIDATION-xmllint.tsv"), "utf8")
        .trim()
        .split("\n")
        .slice(1)
        .map((line) => line.split("\t"))
        .filter((_, i) => i % 8 === 0); // every 8th file here; all of them in test/long/ovf-xsd.test.ts
      const report = await validateOvf(
        rows.map((r) => join(CORPUS_OVF, r[0]!)),
        { strictXsd: true },
      );
      report.files.forEach((result, i) => {
        const tsv = rows[i]![3];
        const passed = result.layers.includes(5) && !result.findings.some((f) => f.ruleId === "OVF-XSD-001");
        expect(passed ? "pass" : "not pass", `${rows[i]![0]} (xmllint: ${tsv})`).toBe(
          tsv === "pass" ? "pass" : "not pass",
        );
      });
      expect(rows.length).toBeGreaterThan(60);
    },
  );
});
