import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ALL_RULES, validateOvf } from "../../src/ovf/validate.js";
import { hasTool } from "../helpers/tools.js";

/**
 * One hand-written negative fixture per rule (fixtures/ovf/negative, made by
 * generate.py from base.ovf; expected locations are where the change sits,
 * found by text search there, not by running ovfkit).
 */
const FIXTURES = resolve(import.meta.dirname, "../../fixtures/ovf/negative");

interface Expected {
  path: string;
  line: number;
  column: number;
  file?: string;
  descriptor?: string | null;
  profile?: string;
  strictXsd?: boolean;
  schemas?: string;
  note: string;
}

const EXPECTED = JSON.parse(readFileSync(join(FIXTURES, "EXPECTED.json"), "utf8")) as Record<
  string,
  Expected
>;

describe("negative fixtures", () => {
  it("cover every rule", () => {
    expect(Object.keys(EXPECTED).sort()).toEqual(ALL_RULES.map((r) => r.id).sort());
  });

  it("the base descriptor is clean under every layer and profile", async () => {
    const report = await validateOvf(join(FIXTURES, "base.ovf"), {
      profiles: ["vsphere-6.0", "virtualbox", "aws", "ovirt"],
      strictXsd: hasTool("xmllint"),
    });
    // base.ovf has no disk beside it: only "not found beside the descriptor" may be reported
    expect(report.files[0]!.findings.filter((f) => f.ruleId !== "OVF-REF-011")).toEqual([]);
  });

  for (const [ruleId, want] of Object.entries(EXPECTED)) {
    const needsXmllint = want.strictXsd && !want.schemas;
    it.skipIf(needsXmllint && !hasTool("xmllint"))(`${ruleId}: ${want.note || want.path}`, async () => {
      const report = await validateOvf(join(FIXTURES, want.path), {
        profiles: want.profile ? [want.profile] : [],
        strictXsd: want.strictXsd ?? false,
        ...(want.schemas ? { schemaDir: join(FIXTURES, want.schemas) } : {}),
      });
      const findings = report.files.flatMap((f) => f.findings);
      const hit = findings.find((f) => f.ruleId === ruleId);
      expect(
        hit,
        `${ruleId} not reported; got ${findings.map((f) => `${f.ruleId}@${f.line}:${f.column}`).join(", ")}`,
      ).toBeDefined();
      const file = want.file ?? want.descriptor ?? want.path;
      expect({ file: hit!.file, line: hit!.line, column: hit!.column }).toEqual({
        file: join(FIXTURES, file),
        line: want.line,
        column: want.column,
      });
      expect(hit!.message.length).toBeGreaterThan(10);
      expect(hit!.fix.length).toBeGreaterThan(10);
      // every finding inside a parsed descriptor carries an XPath (malformed XML has no tree to point into)
      if (want.line > 0 && hit!.file.endsWith(".ovf") && hit!.layer !== 1) expect(hit!.xpath).toMatch(/^\//);
      if (want.profile) {
        expect(hit!.profile).toBe(want.profile);
        expect(hit!.source).toMatch(/notes\/targets\.md/);
      }
    });
  }
});
