import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareDisks, convert, type DiskReader, openDisk } from "../../src/formats/index.js";
import { DRIVERS } from "../../src/formats/registry.js";
import { planSize } from "../../src/formats/vhd-write.js";
import { tempDir } from "../helpers/tmp.js";
import { patchFile } from "./vhd-testutil.js";

/**
 * Property: any sparse disk content survives a round trip through every
 * writer in the registry and its reader (detected by content). Drivers
 * that gain a writer are covered automatically with their default options;
 * VHD runs every option combination that changes the layout.
 */
const MIB = 1024 * 1024;
const root = tempDir("ovfkit-roundtrip-");

const VHD_COMBINATIONS: Record<string, string>[] = [
  {},
  { force_size: "on", block_size: "512K" },
  { block_size: "1M" },
  { subformat: "fixed" },
  { subformat: "fixed", force_size: "on" },
  { align_mib: "on" },
];

interface Target {
  format: string;
  options: Record<string, string>;
}

const TARGETS: Target[] = DRIVERS.filter((d) => d.write).flatMap((d) =>
  d.name === "vpc"
    ? VHD_COMBINATIONS.map((options) => ({ format: d.name, options }))
    : [{ format: d.name, options: {} }],
);

/** Size the reader of a target must present for a source of `size` bytes. */
function expectedSize(target: Target, size: number): number {
  if (target.format !== "vpc") return size;
  if (target.options.align_mib === "on") return Math.ceil(size / MIB) * MIB;
  return planSize(size, target.options.force_size === "on").size;
}

const runArb = fc.record({
  offset: fc.nat(),
  length: fc.integer({ min: 1, max: 128 * 1024 }),
  byte: fc.integer({ min: 0, max: 255 }),
  random: fc.boolean(),
});

const diskArb = fc.record({
  sectors: fc.integer({ min: 1, max: 6 * 2048 }),
  runs: fc.array(runArb, { maxLength: 6 }),
  seed: fc.integer(),
});

function bytesFor(
  run: { offset: number; byte: number; random: boolean },
  length: number,
  seed: number,
): Buffer {
  if (!run.random) return Buffer.alloc(length, run.byte);
  const out = Buffer.allocUnsafe(length);
  let state = (seed ^ run.offset) >>> 0;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state >>> 24;
  }
  return out;
}

describe("round trip through every writer", () => {
  it("lists the writers under test", () => {
    expect(TARGETS.map((t) => t.format)).toContain("vpc");
    expect(TARGETS.map((t) => t.format)).toContain("raw");
  });

  it("random sparse contents read back identically", async () => {
    await fc.assert(
      fc.asyncProperty(diskArb, async (disk) => {
        const dir = mkdtempSync(join(root, "case-"));
        const size = disk.sectors * 512;
        const src = join(dir, "source.raw");
        writeFileSync(src, "");
        truncateSync(src, size);
        for (const run of disk.runs) {
          const offset = run.offset % size;
          const length = Math.min(run.length, size - offset);
          patchFile(src, offset, bytesFor(run, length, disk.seed));
        }
        const source = await openDisk(src);
        try {
          for (const [i, target] of TARGETS.entries()) {
            const dest = join(dir, `out-${i}.${target.format}`);
            await convert(source, dest, { format: target.format, options: target.options });
            const copy: DiskReader = await openDisk(dest);
            try {
              const label = `${target.format} ${JSON.stringify(target.options)}`;
              expect(copy.format, label).toBe(target.format);
              expect(copy.virtualSize, label).toBe(expectedSize(target, size));
              const result = await compareDisks(source, copy);
              expect(result, label).toMatchObject({ identical: true });
            } finally {
              await copy.close();
            }
          }
        } finally {
          await source.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 50 },
    );
  });
});
