import { mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { verifyPackage } from "../../src/ovf/ova.js";
import { unpackOva } from "../../src/ovf/pack.js";
import { validateOvf } from "../../src/ovf/validate.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";

const TINY = resolve(import.meta.dirname, "../../fixtures/ova/tiny.ova");
const dir = tempDir("ovfkit-fixture-");
const noTools = skipReason("tar") || skipReason("qemu-img");

describe("fixtures/ova/tiny.ova", () => {
  it("verifies and validates clean for vSphere", async () => {
    const report = await verifyPackage(TINY);
    expect(report.findings).toEqual([]);
    expect(report.members.map((m) => m.name)).toEqual(["tiny.ovf", "tiny.mf", "tiny-disk.vmdk"]);
    const validation = await validateOvf(TINY, { profiles: ["vsphere"] });
    expect(validation.counts.error).toBe(0);
  });

  it("GNU tar lists it and qemu-img checks its disk", { skip: Boolean(noTools) }, async () => {
    expect(run("tar", ["tvf", TINY]).stdout).toMatch(/root\/root .* tiny\.ovf\n/);
    const folder = join(dir, "tiny");
    mkdirSync(folder);
    await unpackOva(TINY, folder);
    const disk = join(folder, "tiny-disk.vmdk");
    expect(run("qemu-img", ["check", disk]).status).toBe(0);
    const raw = join(dir, "tiny.raw");
    expect(run("qemu-img", ["convert", "-O", "raw", disk, raw]).status).toBe(0);
    const bytes = readFileSync(raw);
    expect(bytes.length).toBe(1024 * 1024);
    expect(bytes.toString("latin1", 0, 11)).toBe("ovfkit tiny");
    expect(bytes.readUInt16LE(510)).toBe(0xaa55);
  });
});
