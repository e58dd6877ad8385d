import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ovfkit } from "../helpers/cli.js";

const NEGATIVE = resolve(import.meta.dirname, "../../fixtures/ovf/negative");

describe("ovfkit validate (CLI)", () => {
  it("exits 0 on a clean descriptor", () => {
    const result = ovfkit(["validate", join(NEGATIVE, "base.ovf")]);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("1 file checked: 0 errors");
  });

  it("exits 1 on errors and prints file:line:col, rule and fix", () => {
    const result = ovfkit(["validate", join(NEGATIVE, "OVF-REF-004/case.ovf")]);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/case\.ovf:\d+:\d+: error OVF-REF-004: Parent "99"/);
    expect(result.stdout).toContain("fix: set rasd:Parent");
  });

  it("warnings pass unless --warnings-as-errors", () => {
    const path = join(NEGATIVE, "OVF-STRUCT-004/case.ovf");
    expect(ovfkit(["validate", path]).status).toBe(0);
    expect(ovfkit(["validate", "--warnings-as-errors", path]).status).toBe(1);
  });

  it("exits 2 when it cannot run (unknown profile, missing file)", () => {
    const unknown = ovfkit(["validate", "--profile", "vmware-fusion", join(NEGATIVE, "base.ovf")]);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("OVF_UNKNOWN_PROFILE");
    const missing = ovfkit(["validate", join(NEGATIVE, "no-such.ovf")]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("FILE_NOT_FOUND");
  });

  it("reads an .ova in place and applies repeated profiles", () => {
    const result = ovfkit([
      "validate",
      "-p",
      "vsphere",
      "-p",
      "aws",
      "--output",
      "json",
      join(NEGATIVE, "OVF-TGT-001/case.ova"),
    ]);
    expect(result.status).toBe(1);
    const report = JSON.parse(result.stdout) as {
      files: { kind: string; profiles: string[]; findings: { ruleId: string }[] }[];
    };
    expect(report.files[0]!.kind).toBe("ova");
    expect(report.files[0]!.profiles).toEqual(["vsphere", "aws"]);
    expect(report.files[0]!.findings.filter((f) => f.ruleId === "OVF-TGT-001").length).toBeGreaterThanOrEqual(
      2,
    );
  });

  it("validates every .ovf/.ova in a folder in one call", () => {
    const result = ovfkit([
      "validate",
      "--output",
      "json",
      join(NEGATIVE, "OVF-REF-011"),
      join(NEGATIVE, "OVF-SEM-001"),
    ]);
    const report = JSON.parse(result.stdout) as { files: { file: string }[] };
    expect(report.files.map((f) => f.file.slice(NEGATIVE.length + 1))).toEqual([
      "OVF-REF-011/case.ova",
      "OVF-SEM-001/case.ovf",
    ]);
  });

  it("--list-rules prints every rule with layer and severity", () => {
    const result = ovfkit(["validate", "--list-rules"]);
    expect(result.status).toBe(0);
    const lines = result.stdout.trim().split("\n");
    expect(lines.length).toBeGreaterThan(60);
    expect(lines).toContainEqual(expect.stringMatching(/^OVF-TGT-005\tprofile\(vsphere\)\terror\t/));
    expect(lines).toContainEqual(expect.stringMatching(/^OVF-REF-002\tlayer 3\terror\t/));
  });

  it("writes SARIF and JUnit on stdout", () => {
    const sarif = ovfkit(["validate", "--output", "sarif", join(NEGATIVE, "OVF-REF-004/case.ovf")]);
    expect(JSON.parse(sarif.stdout)).toMatchObject({ version: "2.1.0" });
    const junit = ovfkit(["validate", "--output", "junit", join(NEGATIVE, "OVF-REF-004/case.ovf")]);
    expect(junit.stdout).toMatch(/^<\?xml[^>]*>\n<testsuites>/);
    expect(junit.status).toBe(1);
  });
});
