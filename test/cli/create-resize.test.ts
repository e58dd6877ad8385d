import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { driverFor } from "../../src/formats/index.js";
import { ovfkit } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";

const MIB = 1024 * 1024;
const dir = tempDir();
const noQemu = skipReason("qemu-img");
const vpcWritable = Boolean(driverFor("vpc").write);

function qemuVirtualSize(path: string, format: string): number {
  const result = run("qemu-img", ["info", "--output=json", "-f", format, path]);
  expect(result.status).toBe(0);
  return (JSON.parse(result.stdout) as { "virtual-size": number })["virtual-size"];
}

describe("ovfkit create", () => {
  it("makes an empty raw image of the size asked for (qemu-img's size suffixes)", () => {
    const path = join(dir, "empty.raw");
    const result = ovfkit(["create", "-f", "raw", path, "10M"]);
    expect(result.status).toBe(0);
    expect(statSync(path).size).toBe(10 * MIB);
    expect(readFileSync(path).every((b) => b === 0)).toBe(true);
  });

  it.skipIf(noQemu)("qemu-img agrees on the size of a created raw image", () => {
    const path = join(dir, "sized.raw");
    expect(ovfkit(["create", "-f", "raw", path, "1.5M"]).status).toBe(0);
    expect(qemuVirtualSize(path, "raw")).toBe(1.5 * MIB);
  });

  it.runIf(vpcWritable && !noQemu)("creates a VHD that qemu-img reads at (at least) the asked size", () => {
    const path = join(dir, "empty.vhd");
    expect(ovfkit(["create", "-f", "vhd", path, "64M"]).status).toBe(0);
    const size = qemuVirtualSize(path, "vpc");
    expect(size).toBeGreaterThanOrEqual(64 * MIB);
    const info = JSON.parse(ovfkit(["info", "--output", "json", path]).stdout) as Record<string, unknown>;
    expect(info.format).toBe("vpc");
  });

  const vpcParents = Boolean(driverFor("vpc").write && "parent" in (driverFor("vpc").writerOptions ?? {}));
  it.runIf(vpcParents)("-b makes a differencing child that reads as its parent", () => {
    const base = join(dir, "base.vhd");
    const seed = join(dir, "seed.raw");
    writeFileSync(seed, Buffer.alloc(2 * MIB, 0x5a));
    expect(ovfkit(["convert", "-O", "vpc", seed, base]).status).toBe(0);
    const child = join(dir, "child.vhd");
    const result = ovfkit(["create", "-f", "vhd", "-b", "base.vhd", child]);
    expect(result.status).toBe(0);
    const info = JSON.parse(ovfkit(["info", "--output", "json", child]).stdout) as Record<string, unknown>;
    expect(String(info["backing-filename"])).toContain("base.vhd");
    expect(ovfkit(["compare", child, base]).status).toBe(0);
    expect(ovfkit(["compare", child, seed]).status).toBe(0);
  });

  it("refuses a bad size, an existing file and a backing file for raw", () => {
    const bad = ovfkit(["create", "-f", "raw", join(dir, "bad.raw"), "12 parsecs"]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/^ovfkit: BAD_SIZE: cannot parse size "12 parsecs"/);

    const path = join(dir, "there.raw");
    writeFileSync(path, "x");
    const exists = ovfkit(["create", "-f", "raw", path, "1M"]);
    expect(exists.status).toBe(1);
    expect(exists.stderr).toMatch(/^ovfkit: OUTPUT_EXISTS: /);
    expect(ovfkit(["create", "-f", "raw", "--force", path, "1M"]).status).toBe(0);
    expect(statSync(path).size).toBe(MIB);

    const backing = ovfkit(["create", "-f", "raw", "-b", "there.raw", join(dir, "child.raw")]);
    expect(backing.status).toBe(1);
    expect(backing.stderr).toBe("ovfkit: BAD_OPTION: raw images cannot have a backing (parent) file\n");
  });

  it("needs a size when there is no backing file", () => {
    const result = ovfkit(["create", "-f", "raw", join(dir, "nosize.raw")]);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^ovfkit: BAD_SIZE: /);
  });
});

describe("ovfkit resize", () => {
  it("grows by +SIZE and to SIZE", () => {
    const path = join(dir, "grow.raw");
    writeFileSync(path, Buffer.alloc(MIB, 1));
    expect(ovfkit(["resize", path, "+1M"]).status).toBe(0);
    expect(statSync(path).size).toBe(2 * MIB);
    expect(ovfkit(["resize", path, "3M"]).status).toBe(0);
    expect(statSync(path).size).toBe(3 * MIB);
    expect(
      readFileSync(path)
        .subarray(0, MIB)
        .every((b) => b === 1),
    ).toBe(true);
  });

  it("shrinks only with --shrink (a negative size goes after --)", () => {
    const path = join(dir, "shrink.raw");
    writeFileSync(path, Buffer.concat([Buffer.alloc(MIB, 1), Buffer.alloc(MIB)]));
    const refused = ovfkit(["resize", path, "--", "-1M"]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/^ovfkit: SHRINK_REFUSED: shrinking .* needs --shrink/);
    expect(statSync(path).size).toBe(2 * MIB);
    expect(ovfkit(["resize", "--shrink", path, "--", "-1M"]).status).toBe(0);
    expect(statSync(path).size).toBe(MIB);
  });

  it("will not cut off data: a typed error naming the file and the offset", () => {
    const path = join(dir, "full.raw");
    writeFileSync(path, Buffer.alloc(2 * MIB, 1));
    const result = ovfkit(["resize", "--shrink", path, "1M"]);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      `ovfkit: SHRINK_WOULD_LOSE_DATA: the range to cut off holds data (${path} at offset ${MIB} (0x100000))\n`,
    );
    expect(statSync(path).size).toBe(2 * MIB);
  });
});
