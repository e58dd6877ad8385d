import { copyFileSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { OvfkitError } from "../../src/errors.js";
import {
  checkDisk,
  collectMap,
  compareDisks,
  convert,
  detectFormat,
  openDisk,
} from "../../src/formats/index.js";
import { planQcow2 } from "../../src/formats/qcow2.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();
const KiB = 1024;
const MiB = 1024 * KiB;
const CLUSTER = 64 * KiB;

/** 5 MiB + 1000 bytes: a patterned first MiB, a zero gap, a run straddling clusters, a few tail bytes. */
function sourceBytes(): Buffer {
  const data = Buffer.alloc(5 * MiB + 1000);
  for (let i = 0; i < MiB; i++) data[i] = (i * 13 + 1) & 0xff;
  data.fill(0x77, 2 * MiB + 100, 3 * MiB + 70000);
  data.write("tail", 5 * MiB + 990, "latin1");
  return data;
}

async function writeSample(
  name: string,
  options: Record<string, string> = {},
  bytes = sourceBytes(),
): Promise<string> {
  const src = join(dir, `${name}.raw`);
  writeFileSync(src, bytes);
  const dest = join(dir, `${name}.qcow2`);
  const reader = await openDisk(src);
  try {
    await convert(reader, dest, { format: "qcow2", options });
  } finally {
    await reader.close();
  }
  return dest;
}

/** Opens, maps and reads every byte; returns the OvfkitError code or "ok" (anything else fails the test). */
async function readAll(path: string, options: { allowParentOutside?: boolean } = {}): Promise<string> {
  try {
    const reader = await openDisk(path, { format: "qcow2", ...options });
    try {
      for await (const e of reader.map()) {
        for (let pos = e.offset; pos < e.offset + e.length; pos += MiB) {
          await reader.read(pos, Math.min(MiB, e.offset + e.length - pos));
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

/** Header offsets (docs/interop/qcow2.txt "Header"). */
const H = { backingOffset: 8, backingSize: 16, crypt: 32, l1Size: 36, l1Offset: 40, incompatible: 72 };

function patched(path: string, name: string, edit: (buf: Buffer) => void): string {
  const buf = readFileSync(path);
  edit(buf);
  const out = join(dir, name);
  writeFileSync(out, buf);
  return out;
}

/** Gives the image a backing file name (stored at offset 1024 of the header cluster). */
function withBacking(buf: Buffer, name: string): void {
  const bytes = Buffer.from(name, "utf8");
  buf.writeBigUInt64BE(1024n, H.backingOffset);
  buf.writeUInt32BE(bytes.length, H.backingSize);
  bytes.copy(buf, 1024);
}

const l2Offset = (buf: Buffer) =>
  Number(buf.readBigUInt64BE(Number(buf.readBigUInt64BE(H.l1Offset))) & 0x00fffffffffffe00n);

describe("qcow2 writer and reader", () => {
  for (const cluster of ["64K", "512", "2M"]) {
    it(`round-trips with cluster_size=${cluster}`, async () => {
      const dest = await writeSample(`rt-${cluster}`, { cluster_size: cluster });
      expect(await detectFormat(dest)).toBe("qcow2");
      const a = await openDisk(join(dir, `rt-${cluster}.raw`));
      const b = await openDisk(dest);
      try {
        // the size is rounded up to whole sectors, like qemu-img
        expect(b.virtualSize).toBe(Math.ceil(a.virtualSize / 512) * 512);
        expect((await compareDisks(a, b)).identical).toBe(true);
        expect((await b.read(5 * MiB + 990, 4)).toString("latin1")).toBe("tail");
        const map = await collectMap(b);
        // the zero MiB after the pattern is not stored (2 MiB clusters hold it together with data)
        const gapStored = !map.some(
          (e) => e.kind === "unallocated" && e.offset <= MiB + 4096 && e.offset + e.length >= 2 * MiB,
        );
        expect(gapStored).toBe(cluster === "2M");
        const report = await checkDisk(dest);
        expect(report.findings).toEqual([]);
      } finally {
        await a.close();
        await b.close();
      }
    });
  }

  it("writes an empty disk as header, L1 and refcounts only", async () => {
    const dest = await writeSample("empty", {}, Buffer.alloc(3 * MiB));
    expect(readFileSync(dest).length).toBe(4 * CLUSTER); // header, L1, refcount table, one refcount block
    const reader = await openDisk(dest);
    expect(await collectMap(reader)).toEqual([{ offset: 0, length: 3 * MiB, kind: "unallocated" }]);
    await reader.close();
  });

  it("refuses bad writer options", () => {
    expect(() => planQcow2(MiB, { cluster_size: "3K" })).toThrow(/power of two/);
    expect(() => planQcow2(MiB, { cluster_size: "4M" })).toThrow(OvfkitError);
    expect(() => planQcow2(MiB, { compat: "0.10" })).toThrow(/no option/);
  });
});

describe("qcow2 refusals", () => {
  it("refuses encryption, external data files and unknown incompatible features", async () => {
    const base = await writeSample("refuse");
    const encrypted = patched(base, "enc.qcow2", (b) => b.writeUInt32BE(2, H.crypt));
    await expect(openDisk(encrypted)).rejects.toMatchObject({ code: "QCOW2_ENCRYPTED", offset: H.crypt });
    const external = patched(base, "ext.qcow2", (b) => b.writeBigUInt64BE(1n << 2n, H.incompatible));
    await expect(openDisk(external)).rejects.toMatchObject({ code: "QCOW2_EXTERNAL_DATA" });
    const unknown = patched(base, "unknown.qcow2", (b) => b.writeBigUInt64BE(1n << 9n, H.incompatible));
    await expect(openDisk(unknown)).rejects.toThrow(/bit 9/);
    expect((await checkDisk(unknown)).findings[0]?.code).toBe("QCOW2_UNKNOWN_FEATURE");
    const v4 = patched(base, "v4.qcow2", (b) => b.writeUInt32BE(4, 4));
    await expect(openDisk(v4, { format: "qcow2" })).rejects.toMatchObject({
      code: "QCOW2_UNSUPPORTED_VERSION",
    });
  });

  it("follows a backing file inside the folder, refuses one outside unless allowed, and stops loops", async () => {
    const parentBytes = Buffer.alloc(5 * MiB + 1024, 0x42);
    const parent = await writeSample("parent", {}, parentBytes);
    const overlay = await writeSample("overlay");
    const child = patched(overlay, "child.qcow2", (b) => withBacking(b, "parent.qcow2"));
    const reader = await openDisk(child);
    expect(reader.backingFile).toBe(parent);
    expect((await reader.read(MiB + 5, 3)).equals(Buffer.from([0x42, 0x42, 0x42]))).toBe(true); // unallocated here: the parent shows
    expect((await reader.read(5, 1))[0]).toBe((5 * 13 + 1) & 0xff); // allocated here: the child's data
    await reader.close();

    const sub = join(dir, "sub");
    mkdirSync(sub, { recursive: true });
    const outside = patched(overlay, "sub/child-outside.qcow2", (b) => withBacking(b, "../parent.qcow2"));
    await expect(openDisk(outside)).rejects.toMatchObject({ code: "QCOW2_BACKING_OUTSIDE" });
    expect(await readAll(outside, { allowParentOutside: true })).toBe("ok");
    const missing = patched(overlay, "missing.qcow2", (b) => withBacking(b, "nowhere.qcow2"));
    await expect(openDisk(missing)).rejects.toMatchObject({ code: "QCOW2_BACKING_NOT_FOUND" });

    const self = patched(overlay, "self.qcow2", (b) => withBacking(b, "self.qcow2"));
    await expect(openDisk(self)).rejects.toMatchObject({ code: "QCOW2_BACKING_LOOP" });
    patched(overlay, "loop-a.qcow2", (b) => withBacking(b, "loop-b.qcow2"));
    patched(overlay, "loop-b.qcow2", (b) => withBacking(b, "loop-a.qcow2"));
    await expect(openDisk(join(dir, "loop-a.qcow2"))).rejects.toMatchObject({
      code: "QCOW2_BACKING_TOO_DEEP",
    });
  });
});

describe("qcow2 damaged input", () => {
  it("bounds the L1 table before allocating it", async () => {
    const base = await writeSample("l1");
    const huge = patched(base, "l1-huge.qcow2", (b) => b.writeUInt32BE(0x7fffffff, H.l1Size));
    await expect(openDisk(huge)).rejects.toMatchObject({ code: "QCOW2_BAD_L1", offset: H.l1Size });
    const past = patched(base, "l1-past.qcow2", (b) => b.writeBigUInt64BE(1n << 40n, H.l1Offset));
    await expect(openDisk(past)).rejects.toMatchObject({ code: "QCOW2_BAD_L1", offset: H.l1Offset });
    expect((await checkDisk(past)).findings.map((f) => f.code)).toEqual(["QCOW2_BAD_L1"]);
    const small = patched(base, "l1-small.qcow2", (b) => b.writeUInt32BE(0, H.l1Size));
    await expect(openDisk(small)).rejects.toMatchObject({ code: "QCOW2_BAD_L1" });
    const l1Entry = patched(base, "l1-entry.qcow2", (b) => {
      const l1 = Number(b.readBigUInt64BE(H.l1Offset));
      b.writeBigUInt64BE((1n << 63n) | (1n << 45n), l1);
    });
    expect(await readAll(l1Entry)).toBe("QCOW2_BAD_L1");
    expect((await checkDisk(l1Entry)).findings.map((f) => f.code)).toContain("QCOW2_OUT_OF_RANGE");
  });

  it("reports L2 entries past the end, unaligned and overlapping, with refcount mismatches", async () => {
    const base = await writeSample("l2");
    const buf = readFileSync(base);
    const l2 = l2Offset(buf);
    const pastEnd = patched(base, "l2-past.qcow2", (b) => b.writeBigUInt64BE((1n << 63n) | (1n << 40n), l2));
    expect(await readAll(pastEnd)).toBe("QCOW2_BAD_L2");
    const pastReport = await checkDisk(pastEnd);
    expect(pastReport.findings.map((f) => f.code)).toEqual(["QCOW2_OUT_OF_RANGE", "QCOW2_LEAKED_CLUSTER"]);
    expect(pastReport.findings[0]?.offset).toBe(l2);

    const unaligned = patched(base, "l2-unaligned.qcow2", (b) =>
      b.writeBigUInt64BE(b.readBigUInt64BE(l2) + 512n, l2),
    );
    expect(await readAll(unaligned)).toBe("QCOW2_BAD_L2");
    expect((await checkDisk(unaligned)).findings.map((f) => f.code)).toContain("QCOW2_UNALIGNED");

    const overlap = patched(base, "l2-overlap.qcow2", (b) =>
      b.writeBigUInt64BE(b.readBigUInt64BE(l2), l2 + 8),
    );
    const codes = (await checkDisk(overlap)).findings.map((f) => f.code);
    expect(codes).toContain("QCOW2_OVERLAP");
    expect(codes).toContain("QCOW2_REFCOUNT_MISMATCH");
    expect(codes).toContain("QCOW2_LEAKED_CLUSTER");
  });

  it("gives typed errors for a truncated file and bad compressed clusters", async () => {
    const base = await writeSample("trunc");
    const cut = join(dir, "cut.qcow2");
    copyFileSync(base, cut);
    truncateSync(cut, 40);
    expect(await readAll(cut)).toBe("TRUNCATED");
    const cut2 = join(dir, "cut2.qcow2");
    copyFileSync(base, cut2);
    truncateSync(cut2, 4 * CLUSTER);
    expect(["QCOW2_BAD_L1", "QCOW2_BAD_L2", "TRUNCATED"]).toContain(await readAll(cut2));
    expect((await checkDisk(cut2)).findings.length).toBeGreaterThan(0);
    // a compressed descriptor pointing at plain (not deflate) bytes
    const compressed = patched(base, "bad-compressed.qcow2", (b) => {
      const l2 = l2Offset(b);
      const host = b.readBigUInt64BE(l2) & 0x00fffffffffffe00n;
      b.writeBigUInt64BE((1n << 62n) | (3n << 54n) | host, l2);
    });
    expect(await readAll(compressed)).toBe("QCOW2_BAD_COMPRESSED");
  });

  it("never crashes or hangs on random corruption of the metadata", async () => {
    const base = await writeSample("fuzz");
    const original = readFileSync(base);
    const l2 = l2Offset(original);
    let seed = 0x2468ace;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const path = join(dir, "fuzz-case.qcow2");
    const outcomes = new Set<string>();
    for (let round = 0; round < 60; round++) {
      const buf = Buffer.from(original);
      const area =
        round % 3 === 0
          ? [0, 128]
          : round % 3 === 1
            ? [l2, 8 * 100]
            : [original.length - 2 * CLUSTER, 2 * CLUSTER];
      for (let k = 0; k < 4; k++) buf[area[0] + rand(area[1])] = rand(256);
      writeFileSync(path, buf);
      outcomes.add(await readAll(path));
      const report = await checkDisk(path, { format: "qcow2" });
      expect(Array.isArray(report.findings)).toBe(true);
    }
    expect(outcomes.size).toBeGreaterThan(1);
  });
});
