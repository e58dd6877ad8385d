import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ovfkit } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";

const TINY_OVA = resolve(import.meta.dirname, "../../fixtures/ova/tiny.ova");
const dir = tempDir();

describe("ovfkit convert --target (whole appliance through the disk convert command)", () => {
  it("converts the bundled appliance for Azure and the result validates against that profile", () => {
    const out = join(dir, "tiny-azure.ova");
    const result = ovfkit(["convert", TINY_OVA, out, "--target", "azure"]);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(existsSync(out)).toBe(true);
    const validate = ovfkit(["validate", "--profile", "azure", out]);
    expect(validate.status, validate.stdout + validate.stderr).toBe(0);
    const verify = ovfkit(["verify", out]);
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);
  });

  it("still demands -O for a disk", () => {
    const result = ovfkit(["convert", join(dir, "a.raw"), join(dir, "b.raw")]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("Missing required argument: O");
  });
});
