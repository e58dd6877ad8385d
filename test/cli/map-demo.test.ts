import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DRIVERS } from "../../src/formats/index.js";
import { ovfkit } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";

const MIB = 1024 * 1024;
const dir = tempDir();
const raw = join(dir, "map.raw");
writeFileSync(raw, Buffer.alloc(2 * MIB, 3));

describe("ovfkit map", () => {
  it("--output json lists extents with qemu-img map's fields covering the disk", () => {
    const result = ovfkit(["map", "--output", "json", raw]);
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual([
      { start: 0, length: 2 * MIB, data: true, zero: false, present: true },
    ]);
  });

  it("prints a table for people", () => {
    const result = ovfkit(["map", raw]);
    expect(result.status).toBe(0);
    expect(result.stdout.split("\n")[1]).toMatch(/^0x0\s+0x200000\s+data$/);
  });

  it.each(DRIVERS.filter((d) => d.write && d.name !== "raw").map((d) => d.name))(
    "an empty %s image maps as no data, and the extents cover it exactly",
    (format) => {
      const image = join(dir, `empty.${format}`);
      expect(ovfkit(["create", "-f", format, image, "8M"]).status).toBe(0);
      const entries = JSON.parse(ovfkit(["map", "--output", "json", image]).stdout) as {
        start: number;
        length: number;
        data: boolean;
      }[];
      expect(entries.some((e) => e.data)).toBe(false);
      let next = 0;
      for (const e of entries) {
        expect(e.start).toBe(next);
        next += e.length;
      }
      expect(next).toBeGreaterThanOrEqual(8 * MIB);
    },
  );

  it("a missing file: exit 1, the error as JSON with --output json", () => {
    const result = ovfkit(["map", "--output", "json", join(dir, "gone.raw")]);
    expect(result.status).toBe(1);
    expect(JSON.parse(result.stdout)).toMatchObject({ error: { code: "FILE_NOT_FOUND" } });
  });
});

describe("ovfkit demo", () => {
  it("converts, checks and compares every writable format and exits 0", () => {
    const demoDir = join(dir, "demo");
    const result = ovfkit(["demo", "--dir", demoDir]);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("OK    create: ");
    for (const driver of DRIVERS) {
      if (!driver.write) {
        expect(result.stdout).toContain(`SKIP  format ${driver.name}: no writer yet`);
      } else if (driver.name !== "raw") {
        expect(result.stdout).toMatch(/OK {4}compare .*demo\.[a-z0-9]+: identical/);
        expect(result.stdout).toContain(`OK    convert raw -> ${driver.name}`);
        expect(result.stdout).toContain(`OK    convert ${driver.name} -> raw`);
      }
    }
    expect(result.stdout).toMatch(/demo: \d+ ok, 0 failed, \d+ skipped\n/);
    expect(result.stdout).not.toContain("FAIL");
    expect(existsSync(join(demoDir, "demo.raw"))).toBe(true);
  });
});
