import { execFileSync } from "node:child_process";
import { closeSync, openSync, readdirSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  checkDisk,
  compareDisks,
  convert,
  type DiskReader,
  detectFormat,
  type Extent,
  mapRange,
  openDisk,
} from "../../src/formats/index.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";

/**
 * ovfkit's VMDK writers against qemu-img: every subformat passes
 * `qemu-img check` and `qemu-img convert -O raw` gives back the source
 * bytes; ovfkit's streamOptimized passes the canonical-layout checker and
 * qemu-img's does not.
 */

const noQemu = skipReason("qemu-img");
const dir = tempDir("ovfkit-vmdk-interop-");
const SUBFORMATS = [
  "monolithicSparse",
  "streamOptimized",
  "monolithicFlat",
  "twoGbMaxExtentSparse",
  "twoGbMaxExtentFlat",
] as const;

/** Deterministic mixed content: random-ish grains, text, zeros, a partial last grain. */
function mixedImage(size: number): Buffer {
  const data = Buffer.alloc(size);
  let seed = 12345;
  for (let offset = 0; offset < size; offset += 65536) {
    const kind = (offset / 65536) % 4;
    const end = Math.min(size, offset + 65536);
    if (kind === 0) {
      for (let i = offset; i < end; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        data[i] = seed >>> 24;
      }
    } else if (kind === 1) {
      data.write(
        "the quick brown fox jumps over the lazy dog ".repeat(2000).slice(0, end - offset),
        offset,
        "latin1",
      );
    } else if (kind === 3) {
      data[offset + 777] = 1; // one byte in an otherwise zero grain
    }
  }
  return data;
}

function qemuImg(args: string[]): string {
  return execFileSync("qemu-img", args, { encoding: "utf8" });
}

describe.skipIf(Boolean(noQemu))(`VMDK interop with qemu-img ${noQemu}`, () => {
  const size = 5 * 1024 * 1024 + 3 * 512; // not a whole number of grains
  const srcPath = join(dir, "src.raw");
  const src = mixedImage(size);
  writeFileSync(srcPath, src);

  for (const subformat of SUBFORMATS) {
    it(`${subformat}: qemu-img check passes and convert -O raw gives the source bytes`, async () => {
      const out = join(dir, `out-${subformat}.vmdk`);
      const reader = await openDisk(srcPath);
      await convert(reader, out, { format: "vmdk", options: { subformat }, threads: 2 });
      await reader.close();
      expect(await detectFormat(out)).toBe("vmdk");
      const check = run("qemu-img", ["check", "-f", "vmdk", out]);
      expect(check.status, check.stdout + check.stderr).toBe(0);
      const info = JSON.parse(qemuImg(["info", "--output=json", "-f", "vmdk", out])) as Record<
        string,
        unknown
      >;
      expect(info["virtual-size"]).toBe(size);
      const back = join(dir, `back-${subformat}.raw`);
      qemuImg(["convert", "-f", "vmdk", "-O", "raw", out, back]);
      expect(readFileSync(back).equals(src)).toBe(true);
      // and our own reader agrees
      const ours = await openDisk(out);
      const original = await openDisk(srcPath);
      expect((await compareDisks(ours, original)).identical).toBe(true);
      await ours.close();
      await original.close();
    });
  }

  it("ovfkit's streamOptimized passes the canonical checker, qemu-img's fails with the reasons", async () => {
    const ours = join(dir, "out-streamOptimized.vmdk");
    expect((await checkDisk(ours)).findings).toEqual([]);
    const theirs = join(dir, "qemu-stream.vmdk");
    qemuImg(["convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", srcPath, theirs]);
    const reasons = (await checkDisk(theirs)).findings.map((f) => `${f.code}: ${f.message}`);
    expect(reasons).toContain("VMDK_STREAM_NONCANONICAL: gdOffset in header is not GD_AT_END");
    expect(reasons).toContain("VMDK_STREAM_NONCANONICAL: no footer");
    expect(reasons).toContain(
      "VMDK_STREAM_NONCANONICAL: header has a redundant grain directory (rgdOffset is not 0)",
    );
  });

  it("qemu-img's outputs of every subformat read back through ovfkit", async () => {
    for (const subformat of SUBFORMATS) {
      const theirs = join(dir, `qemu-${subformat}.vmdk`);
      qemuImg(["convert", "-f", "raw", "-O", "vmdk", "-o", `subformat=${subformat}`, srcPath, theirs]);
      const reader = await openDisk(theirs);
      const original = await openDisk(srcPath);
      expect((await compareDisks(reader, original)).identical, subformat).toBe(true);
      await reader.close();
      await original.close();
    }
  });

  it("writer options reach the descriptor like qemu-img's", async () => {
    const out = join(dir, "opts.vmdk");
    const reader = await openDisk(srcPath);
    await convert(reader, out, {
      format: "vmdk",
      options: {
        subformat: "streamOptimized",
        adapter_type: "lsilogic",
        hwversion: "14",
        toolsversion: "12345",
      },
    });
    await reader.close();
    const disk = await openDisk(out);
    expect(disk.formatSpecific).toMatchObject({
      "adapter-type": "lsilogic",
      "hw-version": "14",
      "sparse-version": 3,
    });
    expect(disk.geometry).toEqual({
      cylinders: Math.floor(size / (255 * 63 * 512)),
      heads: 255,
      sectors: 63,
    });
    await disk.close();
    const info = JSON.parse(qemuImg(["info", "--output=json", out])) as {
      "format-specific": { data: Record<string, unknown> };
    };
    expect(info["format-specific"].data["create-type"]).toBe("streamOptimized");
    await expect(
      convert(await openDisk(srcPath), join(dir, "bad.vmdk"), {
        format: "vmdk",
        options: { subformat: "nope" },
      }),
    ).rejects.toMatchObject({ code: "BAD_OPTION" });
    await expect(
      convert(await openDisk(srcPath), join(dir, "bad.vmdk"), {
        format: "vmdk",
        options: { compat6: "on", hwversion: "7" },
      }),
    ).rejects.toMatchObject({ code: "BAD_OPTION" });
  });
});

/** A sparse 4.5 GiB source held in memory: a few data blocks, the rest unallocated. */
function sparseSource(size: number, blocks: { offset: number; data: Buffer }[]): DiskReader {
  return {
    format: "raw",
    path: "(memory)",
    virtualSize: size,
    files: [],
    formatSpecific: {},
    async *map(offset?: number, length?: number) {
      const { start, end } = mapRange(size, offset, length);
      let pos = start;
      for (const b of blocks) {
        const from = Math.max(pos, b.offset);
        const to = Math.min(end, b.offset + b.data.length);
        if (to <= from) continue;
        if (from > pos) yield { offset: pos, length: from - pos, kind: "unallocated" } as Extent;
        yield { offset: from, length: to - from, kind: "data" } as Extent;
        pos = to;
      }
      if (end > pos) yield { offset: pos, length: end - pos, kind: "unallocated" } as Extent;
    },
    async read(offset: number, length: number, into?: Buffer) {
      const out = into ? into.subarray(0, length) : Buffer.alloc(length);
      out.fill(0);
      for (const b of blocks) {
        const from = Math.max(offset, b.offset);
        const to = Math.min(offset + length, b.offset + b.data.length);
        if (to > from) b.data.copy(out, from - offset, from - b.offset, to - b.offset);
      }
      return out;
    },
    async close() {},
  };
}

describe.skipIf(Boolean(noQemu))(`VMDK split extents over 2 GiB with qemu-img ${noQemu}`, () => {
  const size = 4.5 * 1024 ** 3;
  const blocks = [
    { offset: 0, data: Buffer.alloc(70000, 0x11) },
    { offset: 2 * 1024 ** 3 - 4096, data: Buffer.alloc(8192, 0x22) }, // straddles the first split
    { offset: 4 * 1024 ** 3 + 512, data: Buffer.alloc(100000, 0x33) },
  ];
  const rawPath = join(dir, "sparse.raw");
  const fd = openSync(rawPath, "w");
  for (const b of blocks) writeSync(fd, b.data, 0, b.data.length, b.offset);
  closeSync(fd);
  execFileSync("truncate", ["-s", String(size), rawPath]);

  for (const subformat of ["twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "streamOptimized"] as const) {
    it(`${subformat} of a 4.5 GiB disk: split as qemu-img splits, qemu-img compare identical`, async () => {
      const sub = join(dir, subformat);
      execFileSync("mkdir", ["-p", sub]);
      const out = join(sub, "big.vmdk");
      await convert(sparseSource(size, blocks), out, { format: "vmdk", options: { subformat } });
      if (subformat !== "streamOptimized") {
        expect(readdirSync(sub).sort()).toEqual(
          [
            "big.vmdk",
            ...[1, 2, 3].map((i) => `big-${subformat.endsWith("Sparse") ? "s" : "f"}00${i}.vmdk`),
          ].sort(),
        );
      }
      const compare = run("qemu-img", ["compare", "-f", "raw", "-F", "vmdk", rawPath, out]);
      expect(compare.status, compare.stdout + compare.stderr).toBe(0);
      const check = run("qemu-img", ["check", "-f", "vmdk", out]);
      expect(check.status, check.stdout + check.stderr).toBe(0);
    });
  }
});
