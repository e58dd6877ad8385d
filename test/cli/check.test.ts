import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { driverFor } from "../../src/formats/index.js";
import { ovfkit } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();
const raw = join(dir, "disk.raw");
writeFileSync(raw, Buffer.alloc(1024 * 1024, 0x41));

/** VHD dynamic header (VHD spec 2.0, "Dynamic Disk Header Format"): at offset 512, checksum at +36. */
const VHD_DYNAMIC_HEADER_OFFSET = 512;
const VHD_DYNAMIC_HEADER_CHECKSUM = 36;
const vhdWritable = Boolean(driverFor("vpc").write && driverFor("vpc").check);

describe("ovfkit check", () => {
  it("a raw image is clean: exit 0, qemu-img's wording", () => {
    const result = ovfkit(["check", raw]);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("No errors were found on the image.");
  });

  it("--output json gives ImageCheck fields and the findings", () => {
    const result = ovfkit(["check", "--output", "json", raw]);
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      filename: raw,
      format: "raw",
      "check-errors": 0,
      corruptions: 0,
      leaks: 0,
      warnings: 0,
      findings: [],
    });
  });

  it("a missing file could not be checked: exit 1, typed error", () => {
    const result = ovfkit(["check", join(dir, "nope.vhd")]);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^ovfkit: FILE_NOT_FOUND: no such file: .*nope\.vhd/);
  });

  it("a missing file with --output json gives the error as JSON on stdout", () => {
    const result = ovfkit(["check", "--output", "json", join(dir, "nope.vhd")]);
    expect(result.status).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ error: { code: "FILE_NOT_FOUND" } });
  });

  it.runIf(vhdWritable)("a dynamic VHD with a damaged header checksum is corrupt: exit 2", () => {
    const vhd = join(dir, "bad.vhd");
    expect(ovfkit(["convert", "-O", "vpc", raw, vhd]).status).toBe(0);
    expect(ovfkit(["check", vhd]).status).toBe(0);
    const bytes = readFileSync(vhd);
    bytes[VHD_DYNAMIC_HEADER_OFFSET + VHD_DYNAMIC_HEADER_CHECKSUM] ^= 0xff;
    writeFileSync(vhd, bytes);
    const info = ovfkit(["info", vhd]);
    expect(info.status).toBe(1);
    // the error names its code, the file and the byte offset of the damaged field (decimal and hex)
    expect(info.stderr).toMatch(
      new RegExp(`^ovfkit: VHD_[A-Z_]+: .+ \\(${vhd} at offset \\d+ \\(0x[0-9a-f]+\\)\\)\n$`),
    );
    const result = ovfkit(["check", "--output", "json", "-f", "vpc", vhd]);
    if (result.status === 1) {
      // the driver may refuse to open it at all: still a typed error with the offset
      expect(JSON.parse(result.stdout).error).toMatchObject({ code: expect.stringMatching(/^VHD_/) });
    } else {
      expect(result.status).toBe(2);
      expect(JSON.parse(result.stdout).corruptions).toBeGreaterThan(0);
    }
  });
});
