import { copyFileSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { compareDisks, convert, openDisk, resizeDisk } from "../../src/formats/index.js";
import { planSize } from "../../src/formats/vhd-write.js";
import { patchFile } from "../formats/vhd-testutil.js";
import { expectedImages, hasCorpus, materialise } from "../helpers/corpus.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";

/**
 * VHDs written by ovfkit, read by qemu-img (the reference peer): the size
 * qemu sees, the bytes `qemu-img convert -f vpc -O raw` gives back, and
 * `qemu-img compare` agreeing with ovfkit's compareDisks.
 */
const noQemu = skipReason("qemu-img");
const dir = tempDir("ovfkit-vhd-qemu-");
const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

function qemuImg(args: string[]): { status: number; stdout: string; stderr: string } {
  return run("qemu-img", args);
}

function qemuSize(path: string): number {
  const result = qemuImg(["info", "-f", "vpc", "--output=json", path]);
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout)["virtual-size"] as number;
}

/** A sparse raw file with seeded pseudo-random runs (deterministic). */
function randomSparseRaw(path: string, size: number, seed: number): void {
  let state = seed;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state;
  };
  writeFileSync(path, "");
  truncateSync(path, size);
  for (let i = 0; i < 12; i++) {
    const length = 1 + (next() % (300 * 1024));
    const offset = next() % (size - length);
    const data = Buffer.alloc(length);
    for (let k = 0; k < length; k++) data[k] = next() >>> 24;
    patchFile(path, offset, data);
  }
}

const VARIANTS: Record<string, string>[] = [
  { subformat: "dynamic" },
  { subformat: "dynamic", force_size: "on" },
  { subformat: "dynamic", block_size: "512K" },
  { subformat: "fixed" },
  { subformat: "fixed", force_size: "on" },
  { subformat: "fixed", align_mib: "on" },
];

async function ovfkitWrite(
  src: string,
  dest: string,
  options: Record<string, string>,
  format?: string,
): Promise<void> {
  const reader = await openDisk(src, { format });
  try {
    await convert(reader, dest, { format: "vpc", options, overwrite: true });
  } finally {
    await reader.close();
  }
}

async function ovfkitCompare(
  a: string,
  b: string,
): Promise<{ identical: boolean; firstDifference?: number }> {
  const ra = await openDisk(a);
  const rb = await openDisk(b, { format: "vpc" });
  try {
    return await compareDisks(ra, rb);
  } finally {
    await ra.close();
    await rb.close();
  }
}

function expectedSize(sourceSize: number, options: Record<string, string>): number {
  if (options.align_mib === "on") return Math.ceil(sourceSize / MIB) * MIB;
  return planSize(sourceSize, options.force_size === "on").size;
}

describe.skipIf(noQemu !== "")(`ovfkit VHDs read by qemu-img ${noQemu}`, () => {
  const sources: { name: string; path: () => Promise<string> }[] = [
    {
      name: "random sparse data (12 MiB + 1536 B)",
      path: async () => {
        const path = join(dir, "random.raw");
        randomSparseRaw(path, 12 * MIB + 1536, 7);
        return path;
      },
    },
  ];
  if (hasCorpus) {
    sources.unshift({
      name: "corpus qemu-made/src.raw",
      path: () => materialise(expectedImages().find((i) => i.path === "qemu-made/src.raw")!),
    });
  }

  for (const source of sources) {
    for (const options of VARIANTS) {
      const label = Object.entries(options)
        .map(([k, v]) => `${k}=${v}`)
        .join(",");
      it(`${source.name} -> vpc ${label}`, async () => {
        const src = await source.path();
        const srcBytes = readFileSync(src);
        const out = join(dir, `out-${label.replace(/[=,]/g, "_")}.vhd`);
        await ovfkitWrite(src, out, options);
        const size = expectedSize(srcBytes.length, options);
        expect(qemuSize(out)).toBe(size);
        const reader = await openDisk(out);
        expect(reader.virtualSize).toBe(size);
        await reader.close();

        const back = `${out}.raw`;
        const conv = qemuImg(["convert", "-f", "vpc", "-O", "raw", out, back]);
        expect(conv.status, conv.stderr).toBe(0);
        const raw = readFileSync(back);
        expect(raw.length).toBe(size);
        expect(raw.subarray(0, srcBytes.length).equals(srcBytes)).toBe(true);
        expect(raw.subarray(srcBytes.length).every((b) => b === 0)).toBe(true);

        expect(qemuImg(["compare", "-f", "raw", "-F", "vpc", src, out]).status).toBe(0);
        expect((await ovfkitCompare(src, out)).identical).toBe(true);
      });
    }
  }

  it("qemu-img compare and ovfkit compare find the same first difference", async () => {
    const src = join(dir, "diff.raw");
    randomSparseRaw(src, 6 * MIB, 99);
    const out = join(dir, "diff.vhd");
    await ovfkitWrite(src, out, { subformat: "fixed", force_size: "on" });
    const changed = 3 * MIB + 777;
    patchFile(out, changed, Buffer.from([readFileSync(src)[changed]! ^ 0xff]));
    const qemu = qemuImg(["compare", "-f", "raw", "-F", "vpc", src, out]);
    expect(qemu.status).toBe(1);
    const ours = await ovfkitCompare(src, out);
    expect(ours.identical).toBe(false);
    // qemu-img reports the first differing sector's offset.
    expect(qemu.stdout).toContain(`offset ${Math.floor(changed / 512) * 512}!`);
    expect(Math.floor(ours.firstDifference! / 512) * 512).toBe(Math.floor(changed / 512) * 512);
  });

  it("a 16 GiB sparse disk: sizes, data and compare agree without reading the holes", async () => {
    const raw = join(dir, "big.raw");
    writeFileSync(raw, "");
    truncateSync(raw, 16 * GIB);
    const patterns = [
      { offset: 0, byte: 0xa1 },
      { offset: 5 * GIB + 12345, byte: 0xb2 },
      { offset: 16 * GIB - 64 * 1024, byte: 0xc3 },
    ];
    for (const p of patterns) patchFile(raw, p.offset, Buffer.alloc(64 * 1024, p.byte));
    // qemu makes the sparse source (it sees holes through SEEK_DATA); ovfkit converts from that.
    const qemuVhd = join(dir, "big-qemu.vhd");
    const made = qemuImg([
      "convert",
      "-f",
      "raw",
      "-O",
      "vpc",
      "-o",
      "subformat=dynamic,force_size=on",
      raw,
      qemuVhd,
    ]);
    expect(made.status, made.stderr).toBe(0);
    const bigVariants: Record<string, string>[] = [
      { subformat: "dynamic" },
      { subformat: "fixed", force_size: "on" },
    ];
    for (const options of bigVariants) {
      const out = join(dir, `big-${options.subformat}.vhd`);
      await ovfkitWrite(qemuVhd, out, options);
      expect(qemuSize(out)).toBe(expectedSize(16 * GIB, options));
      for (const p of patterns) {
        const io = run("qemu-io", [
          "-r",
          "-f",
          "vpc",
          "-c",
          `read -P 0x${p.byte.toString(16)} ${p.offset} 65536`,
          out,
        ]);
        expect(io.stdout).toContain("read 65536/65536 bytes");
        expect(io.stdout + io.stderr).not.toContain("Pattern verification failed");
      }
      expect(qemuImg(["compare", "-f", "vpc", "-F", "vpc", qemuVhd, out]).status).toBe(0);
      if (options.subformat === "dynamic") expect((await ovfkitCompare(qemuVhd, out)).identical).toBe(true);
    }
  });

  it.skipIf(!hasCorpus)("resizing qemu's CHS-sized VHDs keeps qemu's size rule", async () => {
    for (const name of ["vpc-fixed.vhd", "vpc-dynamic.vhd"]) {
      const original = await materialise(expectedImages().find((i) => i.path === `qemu-made/${name}`)!);
      const copy = join(dir, `qemu-${name}`);
      copyFileSync(original, copy);
      await resizeDisk(copy, 20 * MIB);
      const reader = await openDisk(copy);
      const size = reader.virtualSize;
      await reader.close();
      expect(size).toBe(planSize(20 * MIB, false).size); // rounded up to CHS, creator "qemu" kept
      expect(qemuSize(copy)).toBe(size);
      expect(qemuImg(["compare", "-f", "vpc", "-F", "vpc", original, copy]).status).toBe(0);
    }
  });

  it("qemu-img reads VHDs that ovfkit resized", async () => {
    const src = join(dir, "resize.raw");
    randomSparseRaw(src, 4 * MIB, 3);
    for (const options of [
      { subformat: "dynamic", force_size: "on" },
      { subformat: "fixed", force_size: "on" },
    ]) {
      const vhd = join(dir, `resize-${options.subformat}.vhd`);
      await ovfkitWrite(src, vhd, options);
      await resizeDisk(vhd, 11 * MIB);
      expect(qemuSize(vhd)).toBe(11 * MIB);
      expect(qemuImg(["compare", "-f", "raw", "-F", "vpc", src, vhd]).status).toBe(0);
      const copy = `${vhd}.copy`;
      copyFileSync(vhd, copy);
      expect((await ovfkitCompare(src, copy)).identical).toBe(true);
    }
  });
});
