import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DRIVERS } from "../../src/formats/index.js";
import { ovfkit } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";

const MIB = 1024 * 1024;
const dir = tempDir();
const raw = join(dir, "map.raw");
writeFileSync(raw, Buffer.alloc(2 * MIB, 3));
const noQemu = skipReason("qemu-img");
const WRITABLE = DRIVERS.filter((d) => d.write && d.name !== "raw").map((d) => d.name);

/** 16 MiB: data in MiB 0, 3, 4, 9 and 15, 100 bytes in MiB 7, holes elsewhere. */
const holes = join(dir, "holes.raw");
{
  const data = Buffer.alloc(16 * MIB);
  for (const mib of [0, 3, 4, 9, 15]) data.fill(mib + 1, mib * MIB, (mib + 1) * MIB);
  data.fill(0x78, 7 * MIB + 4096, 7 * MIB + 4196);
  writeFileSync(holes, data);
}

interface Range {
  start: number;
  length: number;
  data: boolean;
}

/** qemu-img map lists each block separately; join touching ranges so coverage can be checked. */
function mergeAdjacent(ranges: Range[]): Range[] {
  const merged: Range[] = [];
  for (const r of ranges) {
    const last = merged.at(-1);
    if (last && last.start + last.length === r.start) last.length += r.length;
    else merged.push({ ...r });
  }
  return merged;
}

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

  it.each(WRITABLE)("an empty %s image maps as no data, and the extents cover it exactly", (format) => {
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
  });

  // qemu-img maps whole blocks/clusters; ovfkit honours sector bitmaps, so its data ranges may be finer.
  it.skipIf(noQemu).each(WRITABLE)(
    "every byte ovfkit maps as data in a %s image, qemu-img map does too",
    (format) => {
      const image = join(dir, `holes.${format}`);
      expect(ovfkit(["convert", "-O", format, holes, image]).status).toBe(0);
      const ours = JSON.parse(ovfkit(["map", "--output", "json", image]).stdout) as Range[];
      const qemu = run("qemu-img", ["map", "--output=json", "-f", format, image]);
      expect(qemu.status).toBe(0);
      const theirs = mergeAdjacent((JSON.parse(qemu.stdout) as Range[]).filter((r) => r.data));
      const oursData = ours.filter((r) => r.data);
      expect(oursData.length).toBeGreaterThan(0);
      for (const range of oursData) {
        const end = range.start + range.length;
        const covered = theirs.some((t) => t.start <= range.start && end <= t.start + t.length);
        expect(covered, `${format}: data ${range.start}+${range.length} not data for qemu-img`).toBe(true);
      }
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
