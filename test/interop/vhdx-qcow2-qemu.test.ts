import { readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { OvfkitError } from "../../src/errors.js";
import { RandomAccessFile } from "../../src/formats/file.js";
import { checkDisk, compareDisks, convert, openDisk } from "../../src/formats/index.js";
import { batIndexOfBlock, loadVhdxLayout } from "../../src/formats/vhdx.js";
import { corpusSkipReason, expectedImages, materialise } from "../helpers/corpus.js";
import { tempDir } from "../helpers/tmp.js";
import { hasTool, run, skipReason } from "../helpers/tools.js";

/**
 * ovfkit against qemu-img: our VHDX and qcow2 outputs must pass
 * `qemu-img check` and convert back to the source bytes with qemu-img;
 * images qemu-img makes (compressed, subclusters, zero clusters, v2) must
 * read through ovfkit as qemu-img converts them; damaged copies of real
 * files give typed errors and check findings where qemu-img check also
 * complains.
 */

const noQemu = skipReason("qemu-img");
const dir = tempDir();
const MiB = 1024 * 1024;

/** 40 MiB + 512: random, text-like and zero MiBs, deterministic. */
function mixedSource(): string {
  const path = join(dir, "mixed.raw");
  const data = Buffer.alloc(40 * MiB + 512);
  let x = 0x9e3779b9;
  for (let m = 0; m < 40; m++) {
    const at = m * MiB;
    if (m % 5 === 0 || m % 5 === 3) {
      for (let i = 0; i < MiB; i += 4) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        data.writeInt32LE(x | 0, at + i);
      }
    } else if (m % 5 === 1) {
      const line = Buffer.from(`line ${m}: the quick brown fox jumps over the lazy dog\n`);
      for (let i = 0; i + line.length <= MiB / 2; i += line.length) line.copy(data, at + i);
    }
  }
  data.write("last sector", 40 * MiB + 100, "latin1");
  writeFileSync(path, data);
  return path;
}

function qemuImg(args: string[]): { status: number; out: string } {
  const r = run("qemu-img", args);
  return { status: r.status, out: r.stdout + r.stderr };
}

async function ovfkitConvert(
  src: string,
  dest: string,
  format: string,
  options: Record<string, string>,
): Promise<void> {
  const reader = await openDisk(src);
  try {
    await convert(reader, dest, { format, options });
  } finally {
    await reader.close();
  }
}

async function sameContent(a: string, b: string): Promise<boolean> {
  const ra = await openDisk(a);
  const rb = await openDisk(b);
  try {
    return (await compareDisks(ra, rb)).identical;
  } finally {
    await ra.close();
    await rb.close();
  }
}

async function errorCode(path: string, format: string): Promise<string> {
  try {
    const reader = await openDisk(path, { format });
    try {
      for await (const e of reader.map()) {
        for (let pos = e.offset; pos < e.offset + e.length; pos += 4 * MiB) {
          await reader.read(pos, Math.min(4 * MiB, e.offset + e.length - pos));
        }
      }
    } finally {
      await reader.close();
    }
    return "ok";
  } catch (error) {
    if (error instanceof OvfkitError) return error.code;
    throw error;
  }
}

describe.skipIf(!!noQemu)("ovfkit VHDX and qcow2 output through qemu-img", () => {
  const src = noQemu ? "" : mixedSource();
  const cases: Array<[string, Record<string, string>]> = [
    ["vhdx", { subformat: "dynamic" }],
    ["vhdx", { subformat: "fixed" }],
    ["vhdx", { subformat: "dynamic", block_size: "1M" }],
    ["vhdx", { subformat: "dynamic", block_size: "8M", log_size: "2M" }],
    ["vhdx", { subformat: "fixed", block_size: "256M" }],
    ["qcow2", {}],
    ["qcow2", { cluster_size: "512" }],
    ["qcow2", { cluster_size: "2M" }],
  ];
  for (const [format, options] of cases) {
    it(`${format} ${JSON.stringify(options)} passes qemu-img check and converts back to the source bytes`, async () => {
      const name = `out-${format}-${Object.values(options).join("-")}`;
      const dest = join(dir, `${name}.${format}`);
      await ovfkitConvert(src, dest, format, options);
      const check = qemuImg(["check", "-f", format, dest]);
      expect(check.out).toContain("No errors were found");
      expect(check.status).toBe(0);
      const info = JSON.parse(qemuImg(["info", "--output=json", "-f", format, dest]).out) as Record<
        string,
        unknown
      >;
      expect(info["virtual-size"]).toBe(40 * MiB + 512);
      const back = join(dir, `${name}.raw`);
      expect(qemuImg(["convert", "-f", format, "-O", "raw", dest, back]).status).toBe(0);
      expect(readFileSync(back).equals(readFileSync(src))).toBe(true);
      expect((await checkDisk(dest)).findings).toEqual([]);
    });
  }

  const qemuMade: Array<[string, string, string[]]> = [
    ["qcow2 compressed", "qcow2", ["convert", "-c", "-O", "qcow2"]],
    ["qcow2 v2 (compat=0.10)", "qcow2", ["convert", "-O", "qcow2", "-o", "compat=0.10,cluster_size=4k"]],
    [
      "qcow2 extended L2 (subclusters)",
      "qcow2",
      ["convert", "-O", "qcow2", "-o", "extended_l2=on,cluster_size=128k"],
    ],
    ["qcow2 compressed with extended L2", "qcow2", ["convert", "-c", "-O", "qcow2", "-o", "extended_l2=on"]],
    ["qcow2 8-bit refcounts", "qcow2", ["convert", "-O", "qcow2", "-o", "refcount_bits=8"]],
    [
      "qcow2 64-bit refcounts",
      "qcow2",
      ["convert", "-O", "qcow2", "-o", "refcount_bits=64,cluster_size=16k"],
    ],
    ["vhdx dynamic 1M blocks", "vhdx", ["convert", "-O", "vhdx", "-o", "block_size=1M"]],
    [
      "vhdx dynamic 64M blocks, 4M log",
      "vhdx",
      ["convert", "-O", "vhdx", "-o", "block_size=64M,log_size=4M"],
    ],
    ["vhdx fixed", "vhdx", ["convert", "-O", "vhdx", "-o", "subformat=fixed"]],
  ];
  for (const [label, format, args] of qemuMade) {
    it(`reads qemu-img's ${label} like qemu-img and finds nothing wrong in it`, async () => {
      const dest = join(dir, `qemu-${label.replace(/\W+/g, "-")}.${format}`);
      expect(qemuImg([...args, src, dest]).status).toBe(0);
      const back = join(dir, `qemu-${label.replace(/\W+/g, "-")}.raw`);
      expect(qemuImg(["convert", "-f", format, "-O", "raw", dest, back]).status).toBe(0);
      expect(await sameContent(dest, back)).toBe(true);
      expect((await checkDisk(dest)).findings).toEqual([]);
    });
  }

  it.skipIf(!hasTool("qemu-io"))(
    "reads zero clusters and zeroed subclusters written by qemu-io",
    async () => {
      for (const opts of ["compat=1.1", "extended_l2=on", "compat=1.1,cluster_size=4k"]) {
        const image = join(dir, `zeros-${opts.replace(/\W+/g, "-")}.qcow2`);
        expect(qemuImg(["convert", "-O", "qcow2", "-o", opts, src, image]).status).toBe(0);
        const io = run("qemu-io", [
          "-c",
          "write -z 1M 3M",
          "-c",
          "write -z 5000k 8k",
          "-c",
          "write -P 0x5c 20M 100k",
          image,
        ]);
        expect(io.status).toBe(0);
        const back = join(dir, "zeros.raw");
        expect(qemuImg(["convert", "-O", "raw", image, back]).status).toBe(0);
        expect(await sameContent(image, back)).toBe(true);
        const reader = await openDisk(image);
        const kinds = new Set<string>();
        for await (const e of reader.map(MiB, 3 * MiB)) kinds.add(e.kind);
        await reader.close();
        expect([...kinds]).toEqual(["zero"]);
        expect((await checkDisk(image)).findings).toEqual([]);
      }
    },
  );
});

describe.skipIf(!!noQemu)("refcount damage in qemu-made qcow2 images", () => {
  for (const bits of [16, 64]) {
    it(`${bits}-bit refcounts: a wrong count and a leak are reported by ovfkit and qemu-img`, async () => {
      const image = join(dir, `refcount-${bits}.qcow2`);
      const created = qemuImg(["create", "-f", "qcow2", "-o", `refcount_bits=${bits}`, image, "8M"]);
      expect(created.status).toBe(0);
      const buf = readFileSync(image);
      const table = Number(buf.readBigUInt64BE(48));
      const block = Number(buf.readBigUInt64BE(table));
      const writeCount = (b: Buffer, cluster: number, value: number) =>
        bits === 16
          ? b.writeUInt16BE(value, block + cluster * 2)
          : b.writeBigUInt64BE(BigInt(value), block + cluster * 8);
      const wrong = Buffer.from(buf);
      writeCount(wrong, 0, 3); // the header cluster is referenced once
      const wrongPath = join(dir, `refcount-${bits}-wrong.qcow2`);
      writeFileSync(wrongPath, wrong);
      const wrongReport = await checkDisk(wrongPath);
      expect(wrongReport.findings.map((f) => [f.code, f.offset])).toEqual([["QCOW2_REFCOUNT_MISMATCH", 0]]);
      expect(qemuImg(["check", wrongPath]).status).not.toBe(0);

      const clusterSize = 2 ** buf.readUInt32BE(20);
      const nextCluster = Math.ceil(buf.length / clusterSize);
      const leak = Buffer.concat([buf, Buffer.alloc((nextCluster + 1) * clusterSize - buf.length)]);
      writeCount(leak, nextCluster, 1); // a cluster past everything, counted but unused
      const leakPath = join(dir, `refcount-${bits}-leak.qcow2`);
      writeFileSync(leakPath, leak);
      const leakReport = await checkDisk(leakPath);
      expect(leakReport.findings.map((f) => [f.code, f.severity])).toEqual([
        ["QCOW2_LEAKED_CLUSTER", "leak"],
      ]);
      expect(qemuImg(["check", leakPath]).out).toMatch(/leaked cluster/i);
    });
  }
});

describe.skipIf(!!noQemu || !!corpusSkipReason)(
  "damaged copies of real corpus images (ovfkit and qemu-img agree)",
  () => {
    const find = (path: string) => {
      const image = expectedImages().find((i) => i.path === path);
      if (!image) throw new Error(`${path} missing from EXPECTED.json`);
      return materialise(image);
    };

    function damaged(source: string, name: string, edit: (buf: Buffer) => void): string {
      const buf = readFileSync(source);
      edit(buf);
      const out = join(dir, name);
      writeFileSync(out, buf);
      return out;
    }

    it("VHDX: both headers' CRC broken, a BAT entry past EOF, a truncated file", async () => {
      const source = await find("qemu-sample-images/test-disk2vhd.vhdx");
      const headers = damaged(source, "d2v-headers.vhdx", (b) => {
        b[64 * 1024 + 200] ^= 1;
        b[128 * 1024 + 200] ^= 1;
      });
      expect(await errorCode(headers, "vhdx")).toBe("VHDX_BAD_HEADER");
      expect((await checkDisk(headers, { format: "vhdx" })).findings[0]?.code).toBe("VHDX_BAD_HEADER");
      expect(qemuImg(["check", "-f", "vhdx", headers]).status).not.toBe(0);

      const file = await RandomAccessFile.open(source);
      const layout = await loadVhdxLayout(file);
      await file.close();
      let allocatedEntry = -1;
      const original = readFileSync(source);
      for (let block = 0; block < layout.dataBlocks && allocatedEntry < 0; block++) {
        const at = layout.batOffset + batIndexOfBlock(block, layout.chunkRatio) * 8;
        if ((original.readBigUInt64LE(at) & 7n) === 6n) allocatedEntry = at;
      }
      expect(allocatedEntry).toBeGreaterThan(0);
      const bat = damaged(source, "d2v-bat.vhdx", (b) =>
        b.writeBigUInt64LE((1000000n << 20n) | 6n, allocatedEntry),
      );
      expect(await errorCode(bat, "vhdx")).toBe("VHDX_BAD_BAT");
      const report = await checkDisk(bat);
      expect(report.findings.map((f) => f.code)).toEqual(["VHDX_BAT_OUT_OF_RANGE"]);
      expect(report.findings[0]?.offset).toBe(allocatedEntry);
      expect(qemuImg(["check", "-f", "vhdx", bat]).status).not.toBe(0);

      const truncated = damaged(source, "d2v-truncated.vhdx", () => {});
      truncateSync(truncated, original.length - 3 * MiB);
      // the last payload blocks now end past EOF (or, when a region sat there, the region does)
      expect(["VHDX_BAD_BAT", "VHDX_BAD_REGION"]).toContain(await errorCode(truncated, "vhdx"));
      const truncatedCodes = (await checkDisk(truncated)).findings.map((f) => f.code);
      expect(truncatedCodes.some((c) => c === "VHDX_BAT_OUT_OF_RANGE" || c === "VHDX_BAD_REGION")).toBe(true);
    });

    it("qcow2: L1 past EOF, an L2 entry past EOF, a truncated file", async () => {
      const source = await find("qemu-made/qcow2-v3.qcow2");
      const l1 = damaged(source, "v3-l1.qcow2", (b) => b.writeBigUInt64BE(1n << 36n, 40));
      expect(await errorCode(l1, "qcow2")).toBe("QCOW2_BAD_L1");
      expect((await checkDisk(l1)).findings[0]?.code).toBe("QCOW2_BAD_L1");
      expect(qemuImg(["check", "-f", "qcow2", l1]).status).not.toBe(0);

      const original = readFileSync(source);
      const l1Offset = Number(original.readBigUInt64BE(40));
      const l2 = Number(original.readBigUInt64BE(l1Offset) & 0x00fffffffffffe00n);
      let entry = l2;
      while (original.readBigUInt64BE(entry) === 0n) entry += 8;
      const l2Bad = damaged(source, "v3-l2.qcow2", (b) =>
        b.writeBigUInt64BE((1n << 63n) | (1n << 40n), entry),
      );
      expect(await errorCode(l2Bad, "qcow2")).toBe("QCOW2_BAD_L2");
      const codes = (await checkDisk(l2Bad)).findings.map((f) => f.code);
      expect(codes).toContain("QCOW2_OUT_OF_RANGE");
      expect(qemuImg(["check", "-f", "qcow2", l2Bad]).status).not.toBe(0);

      const truncated = damaged(source, "v3-truncated.qcow2", () => {});
      truncateSync(truncated, original.length - 5 * 65536);
      expect(["QCOW2_BAD_L2", "TRUNCATED"]).toContain(await errorCode(truncated, "qcow2"));
      expect((await checkDisk(truncated)).findings.length).toBeGreaterThan(0);
    });
  },
);
