import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import * as ajvDraft04 from "ajv-draft-04";
import * as ajvFormats from "ajv-formats";
import { beforeAll, describe, expect, it } from "vitest";
import { formatJson, formatJunit, formatSarif, formatText } from "../../src/ovf/reports/index.js";
import { ALL_RULES, type ValidationReport, validateOvf } from "../../src/ovf/validate.js";
import { CORPUS_SCHEMAS, hasCorpus } from "../helpers/corpus.js";
import { hasTool, skipReason } from "../helpers/tools.js";

// CommonJS packages: under NodeNext their default export arrives as `.default`
const Ajv4 = ajvDraft04.default.default;
const addFormats = ajvFormats.default.default;

const NEGATIVE = resolve(import.meta.dirname, "../../fixtures/ovf/negative");

/** A report with errors, warnings and infos, from several layers and a profile, plus a clean file. */
async function sampleReport(): Promise<ValidationReport> {
  return validateOvf(
    [
      join(NEGATIVE, "base.ovf"),
      join(NEGATIVE, "OVF-REF-002/case.ovf"),
      join(NEGATIVE, "OVF-STRUCT-006/case.ovf"),
      join(NEGATIVE, "OVF-TGT-002/case.ovf"),
      join(NEGATIVE, "OVF-PKG-001/case.ova"),
      join(NEGATIVE, "OVF-XML-001/case.ovf"),
    ],
    { profiles: ["vsphere-6.7"] },
  );
}

describe("validation reports", () => {
  let report: ValidationReport;
  beforeAll(async () => {
    report = await sampleReport();
  });

  it("text: file:line:col: severity rule: message, then the fix", () => {
    const text = formatText(report);
    expect(text).toMatch(
      /OVF-REF-002\/case\.ovf:\d+:\d+: error OVF-REF-002: HostResource "ovf:\/disk\/vmdisk9"/,
    );
    expect(text).toMatch(/\n {4}fix: make HostResource ovf:\/disk\/<diskId>/);
    expect(text).toMatch(/6 files checked: \d+ errors, \d+ warnings?, \d+ info\n$/);
  });

  it("JSON: versioned, every finding has rule, severity, location, fix", () => {
    const parsed = JSON.parse(formatJson(report, "1.2.3", 1)) as {
      version: number;
      exitCode: number;
      files: { file: string; findings: Record<string, unknown>[] }[];
    };
    expect(parsed.version).toBe(1);
    expect(parsed.exitCode).toBe(1);
    const findings = parsed.files.flatMap((f) => f.findings);
    expect(findings.length).toBeGreaterThan(5);
    for (const f of findings) {
      expect(Object.keys(f)).toEqual(
        expect.arrayContaining([
          "ruleId",
          "severity",
          "message",
          "fix",
          "file",
          "line",
          "column",
          "xpath",
          "layer",
        ]),
      );
    }
  });

  it.skipIf(!hasCorpus)(
    "SARIF validates against the SARIF 2.1.0 schema (draft-04, so Ajv's draft-04 class)",
    () => {
      const schema = JSON.parse(
        readFileSync(join(CORPUS_SCHEMAS, "reports/sarif-schema-2.1.0.json"), "utf8"),
      ) as object;
      const ajv = new Ajv4({ allErrors: true, strict: false });
      addFormats(ajv);
      const validate = ajv.compile(schema);
      const sarif = JSON.parse(
        formatSarif(report, ALL_RULES, { toolVersion: "1.2.3", baseDir: NEGATIVE }),
      ) as {
        runs: {
          results: {
            ruleId: string;
            locations: { physicalLocation: { region?: { startLine: number } } }[];
          }[];
        }[];
      };
      expect(validate(sarif), JSON.stringify(validate.errors?.slice(0, 3))).toBe(true);
      // the schema does bite: a wrong version or level is refused
      expect(validate({ ...sarif, version: "2.0.0" })).toBe(false);
      const results = sarif.runs[0]!.results;
      expect(results.length).toBe(report.counts.error + report.counts.warning + report.counts.info);
      const ref = results.find((r) => r.ruleId === "OVF-REF-002")!;
      expect(ref.locations[0]!.physicalLocation.region!.startLine).toBeGreaterThan(1);
    },
  );

  it.skipIf(!hasCorpus || !hasTool("xmllint"))(
    `JUnit validates against the JUnit XSD with xmllint ${skipReason("xmllint")}`,
    () => {
      const xml = formatJunit(report, ALL_RULES);
      const dir = mkdtempSync(join(tmpdir(), "ovfkit-junit-"));
      const file = join(dir, "junit.xml");
      writeFileSync(file, xml);
      // the schema's root is <testsuites>
      execFileSync(
        "xmllint",
        ["--noout", "--nonet", "--schema", join(CORPUS_SCHEMAS, "reports/JUnit.xsd"), file],
        {
          stdio: "pipe",
        },
      );
      const suites = [...xml.matchAll(/<testsuite [^>]*tests="(\d+)" failures="(\d+)"/g)];
      expect(suites).toHaveLength(6);
      // one testcase per rule per file; a rule with an error is one failure whatever its count of findings
      const refSuite = xml.slice(xml.indexOf("OVF-REF-002/case.ovf"));
      expect(refSuite.slice(0, refSuite.indexOf("</testsuite>"))).toMatch(
        /<testcase name="OVF-REF-002 [^"]*"[^>]*>\s*<failure /,
      );
      const baseSuite = xml.slice(
        xml.indexOf("negative/base.ovf"),
        xml.indexOf("</testsuite>", xml.indexOf("negative/base.ovf")),
      );
      expect(baseSuite).not.toContain("<failure");
      expect((baseSuite.match(/<testcase /g) ?? []).length).toBeGreaterThan(30);
    },
  );
});
