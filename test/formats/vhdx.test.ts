import { copyFileSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { OvfkitError } from "../../src/errors.js";
import { crc32c } from "../../src/formats/crc32c.js";
import { RandomAccessFile } from "../../src/formats/file.js";
import {
  checkDisk,
  collectMap,
  compareDisks,
  convert,
  detectFormat,
  openDisk,
} from "../../src/formats/index.js";
import { batIndexOfBlock, loadVhdxLayout, planVhdx } from "../../src/formats/vhdx.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();
const MiB = 1024 * 1024;

/** 12 MiB + 512 bytes: data, a zero MiB, data straddling block boundaries, a zero tail. */
function sourceBytes(): Buffer {
  const data = Buffer.alloc(12 * MiB + 512);
  for (let i = 0; i < MiB; i++) data[i] = (i * 7 + 3) & 0xff;
  data.fill(0x5a, 2 * MiB - 100, 4 * MiB + 100);
  data.write("the end", 12 * MiB + 500, "latin1");
  return data;
}

async function writeSample(
  name: string,
  options: Record<string, string>,
): Promise<{ src: string; dest: string }> {
  const src = join(dir, `${name}.raw`);
  writeFileSync(src, sourceBytes());
  const dest = join(dir, `${name}.vhdx`);
  const reader = await openDisk(src);
  try {
    await convert(reader, dest, { format: "vhdx", options });
  } finally {
    await reader.close();
  }
  return { src, dest };
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OvfkitError);
  expect((error as OvfkitError).code).toBe(code);
}

/** Opens, maps and reads every byte; returns the OvfkitError code or "ok" (anything else fails the test). */
async function readAll(path: string): Promise<string> {
  try {
    const reader = await openDisk(path, { format: "vhdx" });
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

function rewriteHeaderCrc(buf: Buffer, at: number): void {
  buf.writeUInt32LE(0, at + 4);
  buf.writeUInt32LE(crc32c(buf.subarray(at, at + 4096)), at + 4);
}

describe("vhdx writer and reader", () => {
  const cases: Array<Record<string, string>> = [
    { subformat: "dynamic" },
    { subformat: "fixed" },
    { subformat: "dynamic", block_size: "1M" },
    { subformat: "fixed", block_size: "2M", log_size: "2M" },
  ];
  for (const options of cases) {
    it(`round-trips ${JSON.stringify(options)}`, async () => {
      const name = Object.values(options).join("-");
      const { src, dest } = await writeSample(name, options);
      expect(await detectFormat(dest)).toBe("vhdx");
      const a = await openDisk(src);
      const b = await openDisk(dest);
      try {
        expect(b.virtualSize).toBe(a.virtualSize);
        expect((await compareDisks(a, b)).identical).toBe(true);
        expect((await b.read(12 * MiB + 500, 7)).toString("latin1")).toBe("the end");
        const map = await collectMap(b);
        if (options.subformat === "dynamic" && options.block_size === "1M") {
          // the all-zero 5th..12th MiB are not stored
          expect(map.some((e) => e.kind === "unallocated" && e.offset === 5 * MiB)).toBe(true);
        }
        if (options.subformat === "fixed") expect(map.every((e) => e.kind === "data")).toBe(true);
        expect((await checkDisk(dest)).findings).toEqual([]);
      } finally {
        await a.close();
        await b.close();
      }
    });
  }

  it("plans the BAT with interleaved sector bitmap entries (chunk ratio)", () => {
    // 512-byte sectors, 1 MiB blocks: chunk ratio 4096; 10000 blocks need 2 bitmap slots between them
    const plan = planVhdx(10000 * MiB, { block_size: "1M" });
    expect(plan.chunkRatio).toBe(4096);
    expect(plan.batEntries).toBe(10000 + 2);
    expect(batIndexOfBlock(4095, 4096)).toBe(4095);
    expect(batIndexOfBlock(4096, 4096)).toBe(4097);
    expect(planVhdx(MiB, {}).chunkRatio).toBe(128); // 32 MiB default blocks
  });

  it("refuses bad writer options", () => {
    expect(() => planVhdx(MiB, { block_size: "3M" })).toThrow(/power of two/);
    expect(() => planVhdx(MiB, { block_size: "512K" })).toThrow(OvfkitError);
    expect(() => planVhdx(MiB, { subformat: "differencing" })).toThrow(/dynamic and fixed/);
    expect(() => planVhdx(MiB, { log_size: "1500K" })).toThrow(OvfkitError);
    expect(() => planVhdx(MiB, { cluster_size: "1M" })).toThrow(/no option/);
  });
});

describe("vhdx damaged input", () => {
  it("uses the other header when the current one has a bad CRC, and check reports it", async () => {
    const { dest } = await writeSample("hdr", { block_size: "1M" });
    const bad = join(dir, "hdr-bad.vhdx");
    const buf = readFileSync(dest);
    buf[128 * 1024 + 100] ^= 0xff; // header 2 (sequence 2, the current one)
    writeFileSync(bad, buf);
    expect(await readAll(bad)).toBe("ok");
    const report = await checkDisk(bad);
    expect(report.findings.map((f) => f.code)).toEqual(["VHDX_BAD_HEADER"]);
    expect(report.findings[0]?.offset).toBe(128 * 1024);
    buf[64 * 1024 + 100] ^= 0xff;
    writeFileSync(bad, buf);
    await expectCode(openDisk(bad), "VHDX_BAD_HEADER");
    expect((await checkDisk(bad, { format: "vhdx" })).findings[0]?.code).toBe("VHDX_BAD_HEADER");
  });

  it("refuses a non-empty log instead of ignoring it", async () => {
    const { dest } = await writeSample("log", { block_size: "1M" });
    const bad = join(dir, "log-bad.vhdx");
    const buf = readFileSync(dest);
    for (const at of [64 * 1024, 128 * 1024]) {
      buf.fill(0x11, at + 48, at + 64); // log GUID
      rewriteHeaderCrc(buf, at);
    }
    writeFileSync(bad, buf);
    const error = await openDisk(bad).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "VHDX_LOG_NOT_EMPTY", offset: 128 * 1024 + 48 });
    expect((error as Error).message).toMatch(/replay/);
    expect((await checkDisk(bad)).findings.map((f) => f.code)).toContain("VHDX_LOG_NOT_EMPTY");
  });

  it("reports a BAT entry past the end of the file and overlapping blocks", async () => {
    const { dest } = await writeSample("bat", { block_size: "1M" });
    const file = await RandomAccessFile.open(dest);
    const layout = await loadVhdxLayout(file);
    await file.close();
    const buf = readFileSync(dest);
    const entry = (block: number) => layout.batOffset + batIndexOfBlock(block, layout.chunkRatio) * 8;
    const pastEnd = join(dir, "bat-past-end.vhdx");
    const copy = Buffer.from(buf);
    copy.writeBigUInt64LE((BigInt(4096) << 20n) | 6n, entry(1)); // 4 GiB into a small file
    writeFileSync(pastEnd, copy);
    expect(await readAll(pastEnd)).toBe("VHDX_BAD_BAT");
    const report = await checkDisk(pastEnd);
    expect(report.findings.map((f) => f.code)).toEqual(["VHDX_BAT_OUT_OF_RANGE"]);
    expect(report.findings[0]?.offset).toBe(entry(1));

    const overlap = join(dir, "bat-overlap.vhdx");
    const copy2 = Buffer.from(buf);
    copy2.writeBigUInt64LE(copy2.readBigUInt64LE(entry(0)), entry(2));
    writeFileSync(overlap, copy2);
    expect((await checkDisk(overlap)).findings.map((f) => f.code)).toEqual(["VHDX_BAT_OVERLAP"]);

    const onMetadata = join(dir, "bat-on-metadata.vhdx");
    const copy3 = Buffer.from(buf);
    copy3.writeBigUInt64LE((BigInt(layout.metadataOffset / MiB) << 20n) | 6n, entry(0));
    writeFileSync(onMetadata, copy3);
    expect((await checkDisk(onMetadata)).findings.map((f) => f.code)).toEqual(["VHDX_BAT_OVERLAP"]);
  });

  it("gives typed errors for damaged region tables, metadata and truncation", async () => {
    const { dest } = await writeSample("regions", { block_size: "1M" });
    const buf = readFileSync(dest);
    const regions = Buffer.from(buf);
    regions[192 * 1024 + 20] ^= 1;
    regions[256 * 1024 + 20] ^= 1;
    const p1 = join(dir, "regions-bad.vhdx");
    writeFileSync(p1, regions);
    expect(await readAll(p1)).toBe("VHDX_BAD_REGION_TABLE");

    const metadata = Buffer.from(buf);
    metadata.write("garbage!", 2 * MiB, "latin1"); // metadata table signature (log is 1 MiB at 1 MiB)
    const p2 = join(dir, "metadata-bad.vhdx");
    writeFileSync(p2, metadata);
    expect(await readAll(p2)).toBe("VHDX_BAD_METADATA");

    const p3 = join(dir, "truncated.vhdx");
    copyFileSync(dest, p3);
    truncateSync(p3, 300 * 1024);
    expect(await readAll(p3)).toBe("TRUNCATED");
    const p4 = join(dir, "truncated-data.vhdx");
    copyFileSync(dest, p4);
    truncateSync(p4, buf.length - 512 * 1024);
    expect(await readAll(p4)).toBe("VHDX_BAD_BAT");
    expect((await checkDisk(p4)).findings.map((f) => f.code)).toEqual(["VHDX_BAT_OUT_OF_RANGE"]);
  });

  it("never crashes or hangs on random corruption of the structures", async () => {
    const { dest } = await writeSample("fuzz", { block_size: "1M" });
    const original = readFileSync(dest);
    let seed = 0x1234567;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const path = join(dir, "fuzz-case.vhdx");
    const outcomes = new Set<string>();
    for (let round = 0; round < 40; round++) {
      const buf = Buffer.from(original);
      // flip bytes in the structures (first 4 MiB: ids, headers, regions, log, metadata, BAT)
      for (let k = 0; k < 8; k++) buf[rand(4 * MiB)] = rand(256);
      // and sometimes in the BAT entries themselves, with valid CRCs around them
      if (round % 2 === 0) buf.writeUInt32LE(rand(0xffffffff), 3 * MiB + 8 * rand(16) + 4 * rand(2));
      writeFileSync(path, buf);
      outcomes.add(await readAll(path));
      const report = await checkDisk(path, { format: "vhdx" });
      expect(Array.isArray(report.findings)).toBe(true);
    }
    expect(outcomes.size).toBeGreaterThan(1);
  });
});
