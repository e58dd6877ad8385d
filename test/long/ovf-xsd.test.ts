import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { validateOvf } from "../../src/ovf/validate.js";
import { CORPUS_OVF, corpusSkipReason, hasCorpus } from "../helpers/corpus.js";
import { hasTool, skipReason } from "../helpers/tools.js";

/**
 * Layer 5 (--strict-xsd) on EVERY file of VALIDATION-xmllint.tsv: the
 * verdict must be xmllint's own (the TSV was made with xmllint against the
 * same schemas). "not-wellformed"/"not-ns-wellformed" files must not pass.
 */
describe.skipIf(!hasCorpus || !hasTool("xmllint"))(
  `strict XSD verdicts over the whole OVF corpus ${corpusSkipReason}${skipReason("xmllint")}`,
  () => {
    it("agrees with VALIDATION-xmllint.tsv on every file", async () => {
      const rows = readFileSync(join(CORPUS_OVF, "VALIDATION-xmllint.tsv"), "utf8")
        .trim()
        .split("\n")
        .slice(1)
        .map((line) => line.split("\t"));
      const report = await validateOvf(
        rows.map((r) => join(CORPUS_OVF, r[0]!)),
        { strictXsd: true },
      );
      let passes = 0;
      report.files.forEach((result, i) => {
        const tsv = rows[i]![3];
        const passed = result.layers.includes(5) && !result.findings.some((f) => f.ruleId === "OVF-XSD-001");
        if (passed) passes += 1;
        expect(passed ? "pass" : "not pass", `${rows[i]![0]} (xmllint: ${tsv})`).toBe(
          tsv === "pass" ? "pass" : "not pass",
        );
      });
      expect(rows.length).toBeGreaterThan(500);
      expect(passes).toBe(rows.filter((r) => r[3] === "pass").length);
    });
  },
);
