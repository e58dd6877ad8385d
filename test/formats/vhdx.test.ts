import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
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
import { batIndexOfBlock, guidBytes, loadVhdxLayout, planVhdx } from "../../src/formats/vhdx.js";
import { tempDir } from "../helpers/tmp.js";
import { hasTool, run } from "../helpers/tools.js";

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
  bytes: Buffer = sourceBytes(),
): Promise<{ src: string; dest: string }> {
  const src = join(dir, `${name}.raw`);
  writeFileSync(src, bytes);
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

// ---------------------------------------------------------------------------
// Log replay: logs built by hand following MS-VHDX §2.3.1
// ---------------------------------------------------------------------------

const SECTOR = 4096;
const LOG_OFFSET = MiB; // where our writer puts the 1 MiB log
type Update = { fileOffset: number; data: Buffer } | { fileOffset: number; zeroLength: number };

/** One log entry (§2.3.1.1 header, §2.3.1.2/3 descriptors, §2.3.1.4 data sectors) with a valid CRC-32C. */
function logEntry(o: {
  guid: Buffer;
  sequence: bigint;
  tail: number;
  lastFileOffset: number;
  /** The file size the writer had flushed (default: lastFileOffset). */
  flushedFileOffset?: number;
  updates: Update[];
}): Buffer {
  const descriptorSectors = Math.ceil((64 + 32 * o.updates.length) / SECTOR);
  const dataUpdates = o.updates.filter((u): u is { fileOffset: number; data: Buffer } => "data" in u);
  const entry = Buffer.alloc((descriptorSectors + dataUpdates.length) * SECTOR);
  entry.write("loge", 0, "latin1");
  entry.writeUInt32LE(entry.length, 8);
  entry.writeUInt32LE(o.tail, 12);
  entry.writeBigUInt64LE(o.sequence, 16);
  entry.writeUInt32LE(o.updates.length, 24);
  o.guid.copy(entry, 32);
  entry.writeBigUInt64LE(BigInt(o.flushedFileOffset ?? o.lastFileOffset), 48);
  entry.writeBigUInt64LE(BigInt(o.lastFileOffset), 56);
  let dataSector = descriptorSectors;
  for (const [i, u] of o.updates.entries()) {
    const d = entry.subarray(64 + 32 * i, 96 + 32 * i);
    if ("zeroLength" in u) {
      d.write("zero", 0, "latin1");
      d.writeBigUInt64LE(BigInt(u.zeroLength), 8);
      d.writeBigUInt64LE(BigInt(u.fileOffset), 16);
      d.writeBigUInt64LE(o.sequence, 24);
    } else {
      d.write("desc", 0, "latin1");
      u.data.copy(d, 4, 4092, 4096); // trailing bytes
      u.data.copy(d, 8, 0, 8); // leading bytes
      d.writeBigUInt64LE(BigInt(u.fileOffset), 16);
      d.writeBigUInt64LE(o.sequence, 24);
      const ds = entry.subarray(dataSector * SECTOR, (dataSector + 1) * SECTOR);
      ds.write("data", 0, "latin1");
      ds.writeUInt32LE(Number(o.sequence >> 32n), 4);
      u.data.copy(ds, 8, 8, 4092);
      ds.writeUInt32LE(Number(o.sequence & 0xffffffffn), 4092);
      dataSector++;
    }
  }
  entry.writeUInt32LE(crc32c(entry), 4);
  return entry;
}

/** Sets the log GUID of both headers (and their CRCs): the log must now be replayed. */
function setLogGuid(buf: Buffer, guid: Buffer): void {
  for (const at of [64 * 1024, 128 * 1024]) {
    guid.copy(buf, at + 48);
    rewriteHeaderCrc(buf, at);
  }
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("vhdx log replay (read-only, in memory)", () => {
  async function loggedImage(name: string) {
    const { dest } = await writeSample(name, { block_size: "1M" });
    const file = await RandomAccessFile.open(dest);
    const layout = await loadVhdxLayout(file);
    await file.close();
    const buf = readFileSync(dest);
    const batEntryAt = (block: number) => layout.batOffset + batIndexOfBlock(block, layout.chunkRatio) * 8;
    const blockOffset = (block: number) => Number(buf.readBigUInt64LE(batEntryAt(block)) >> 20n) * MiB;
    return { dest, buf, layout, batEntryAt, blockOffset };
  }

  it("applies the active sequence, ignores stale and torn entries, and never writes the file", async () => {
    const { buf, batEntryAt, blockOffset } = await loggedImage("log");
    const guid = Buffer.from("00112233445566778899aabbccddeeff", "hex");
    const block0 = blockOffset(0);
    expect(block0).toBeGreaterThan(0);
    expect(buf.readBigUInt64LE(batEntryAt(5)) & 7n).toBe(0n); // MiB 5 of the source is zeros: not stored
    // entry 1 (sequence 7): 0xEE over the third 4 KiB of block 0, zeros over its first 8 KiB
    const a = logEntry({
      guid,
      sequence: 7n,
      tail: 0,
      lastFileOffset: buf.length,
      updates: [
        { fileOffset: block0 + 2 * SECTOR, data: Buffer.alloc(SECTOR, 0xee) },
        { fileOffset: block0, zeroLength: 2 * SECTOR },
      ],
    });
    // entry 2 (sequence 8): block 5 allocated in a MiB the writer had appended to the file
    // (flushed) before logging its first 4 KiB and the BAT page that maps it
    const newBlock = buf.length;
    const batPageAt = Math.floor(batEntryAt(5) / SECTOR) * SECTOR;
    const batPage = Buffer.from(buf.subarray(batPageAt, batPageAt + SECTOR));
    batPage.writeBigUInt64LE((BigInt(newBlock / MiB) << 20n) | 6n, batEntryAt(5) - batPageAt);
    const b = logEntry({
      guid,
      sequence: 8n,
      tail: 0,
      lastFileOffset: newBlock + MiB,
      updates: [
        { fileOffset: newBlock, data: Buffer.alloc(SECTOR, 0x5b) },
        { fileOffset: batPageAt, data: batPage },
      ],
    });
    // a stale entry (sequence 3) further on, and a torn one (bad CRC, sequence 9) right after the head
    const stale = logEntry({
      guid,
      sequence: 3n,
      tail: 512 * 1024,
      lastFileOffset: buf.length,
      updates: [{ fileOffset: blockOffset(1), data: Buffer.alloc(SECTOR, 0x99) }],
    });
    const torn = logEntry({
      guid,
      sequence: 9n,
      tail: 0,
      lastFileOffset: buf.length,
      updates: [{ fileOffset: block0, data: Buffer.alloc(SECTOR, 0x66) }],
    });
    torn[200] ^= 1;
    a.copy(buf, LOG_OFFSET);
    b.copy(buf, LOG_OFFSET + a.length);
    torn.copy(buf, LOG_OFFSET + a.length + b.length);
    stale.copy(buf, LOG_OFFSET + 512 * 1024);
    setLogGuid(buf, guid);
    const path = join(dir, "log-replay.vhdx");
    writeFileSync(path, Buffer.concat([buf, Buffer.alloc(MiB)]));
    const before = sha(readFileSync(path));

    const source = sourceBytes();
    const reader = await openDisk(path);
    try {
      expect(reader.dirty).toBe(true);
      expect(reader.formatSpecific["log-entries-replayed"]).toBe(2);
      const block0Now = await reader.read(0, MiB);
      expect(block0Now.subarray(0, 2 * SECTOR).every((x) => x === 0)).toBe(true);
      expect(block0Now.subarray(2 * SECTOR, 3 * SECTOR).every((x) => x === 0xee)).toBe(true);
      expect(block0Now.subarray(3 * SECTOR).equals(source.subarray(3 * SECTOR, MiB))).toBe(true);
      const block5 = await reader.read(5 * MiB, MiB); // through the replayed BAT entry
      expect(block5.subarray(0, SECTOR).every((x) => x === 0x5b)).toBe(true);
      expect(block5.subarray(SECTOR).every((x) => x === 0)).toBe(true);
      expect((await reader.read(MiB, MiB)).equals(source.subarray(MiB, 2 * MiB))).toBe(true); // stale entry not applied
      expect(
        (await collectMap(reader)).find((e) => e.offset <= 5 * MiB && e.offset + e.length > 5 * MiB)?.kind,
      ).toBe("data");
    } finally {
      await reader.close();
    }
    const report = await checkDisk(path);
    expect(report.findings.map((f) => [f.code, f.severity])).toEqual([["VHDX_LOG_NOT_EMPTY", "warning"]]);
    expect(sha(readFileSync(path))).toBe(before);
  });

  it.skipIf(!hasTool("qemu-img"))(
    "replays like qemu-img (which replays into a copy when opened read-write)",
    async () => {
      const path = join(dir, "log-replay.vhdx");
      const copy = join(dir, "log-replay-qemu.vhdx");
      copyFileSync(path, copy);
      // qemu replays the log when it opens the image read-write (check -r), then converts the result
      const check = run("qemu-img", ["check", "-r", "all", "-f", "vhdx", copy]);
      // qemu counts the replay as a repaired inconsistency; afterwards the copy is clean
      expect(check.stdout + check.stderr).not.toMatch(/Could not open/);
      const recheck = run("qemu-img", ["check", "-f", "vhdx", copy]);
      expect(recheck.status, recheck.stdout + recheck.stderr).toBe(0);
      const raw = join(dir, "log-replay-qemu.raw");
      expect(run("qemu-img", ["convert", "-f", "vhdx", "-O", "raw", copy, raw]).status).toBe(0);
      const ours = await openDisk(path);
      const theirs = await openDisk(raw);
      try {
        expect((await compareDisks(ours, theirs)).identical).toBe(true);
      } finally {
        await ours.close();
        await theirs.close();
      }
    },
  );

  it("refuses a log whose active sequence is broken, and one without any valid entry replays nothing", async () => {
    const { buf } = await loggedImage("log-broken");
    const guid = Buffer.from("ffeeddccbbaa99887766554433221100", "hex");
    // the head (sequence 5) names a tail at 64 KiB where no valid entry is
    const head = logEntry({ guid, sequence: 5n, tail: 64 * 1024, lastFileOffset: buf.length, updates: [] });
    const broken = Buffer.from(buf);
    head.copy(broken, LOG_OFFSET);
    setLogGuid(broken, guid);
    const p1 = join(dir, "log-broken.vhdx");
    writeFileSync(p1, broken);
    await expect(openDisk(p1)).rejects.toMatchObject({ code: "VHDX_LOG_CORRUPT" });
    expect((await checkDisk(p1)).findings.map((f) => f.code)).toEqual(["VHDX_LOG_CORRUPT"]);

    // the log says the file was flushed up to beyond its end: the file was cut short
    const cut = Buffer.from(buf);
    logEntry({ guid, sequence: 5n, tail: 0, lastFileOffset: buf.length + MiB, updates: [] }).copy(
      cut,
      LOG_OFFSET,
    );
    setLogGuid(cut, guid);
    const p3 = join(dir, "log-flushed-past-end.vhdx");
    writeFileSync(p3, cut);
    await expect(openDisk(p3)).rejects.toMatchObject({ code: "VHDX_LOG_CORRUPT" });

    // a log GUID with an all-zero log: nothing valid to replay (qemu does the same)
    const empty = Buffer.from(buf);
    setLogGuid(empty, guid);
    const p2 = join(dir, "log-nothing.vhdx");
    writeFileSync(p2, empty);
    const reader = await openDisk(p2);
    expect(reader.formatSpecific["log-entries-replayed"]).toBe(0);
    expect(reader.dirty).toBe(true);
    await reader.close();
  });
});

// ---------------------------------------------------------------------------
// Differencing disks: built by hand (qemu-img cannot make or read them)
// ---------------------------------------------------------------------------

describe("vhdx differencing read", () => {
  const BLOCK = MiB;
  const SECTOR_BYTES = 512;
  /** Sectors of block 2 present in the child (the rest reads from the parent). */
  const PRESENT_SECTORS = new Set([...Array.from({ length: 16 }, (_, i) => i), 100]);

  function parentBytes(): Buffer {
    const data = Buffer.alloc(8 * MiB);
    for (let m = 0; m < 8; m++) {
      data.fill(0x10 + m, m * MiB, (m + 1) * MiB);
      data.write(`parent MiB ${m}`, m * MiB + 1000, "latin1");
    }
    return data;
  }

  function childBytes(): Buffer {
    const data = Buffer.alloc(8 * MiB);
    data.fill(0xc0, 0, MiB);
    data.fill(0xc2, 2 * MiB, 3 * MiB);
    return data;
  }

  /** What the child must read as: block 0 its own, 1 the parent's, 2 per sector, 3 zeros, 4-7 the parent's. */
  function expected(): Buffer {
    const out = parentBytes();
    childBytes().copy(out, 0, 0, MiB);
    for (const s of PRESENT_SECTORS)
      out.fill(0xc2, 2 * MiB + s * SECTOR_BYTES, 2 * MiB + (s + 1) * SECTOR_BYTES);
    out.fill(0, 3 * MiB, 4 * MiB);
    return out;
  }

  /** §2.6.2.6 parent locator item: type GUID, count, 12-byte entries, UTF-16LE keys and values. */
  function locatorItem(pairs: Record<string, string>): Buffer {
    const entries = Object.entries(pairs);
    const strings: Buffer[] = [];
    const table = Buffer.alloc(20 + 12 * entries.length);
    guidBytes("B04AEFB7-D19E-4A81-B789-25B8E9445913").copy(table, 0);
    table.writeUInt16LE(entries.length, 18);
    let at = table.length;
    for (const [i, [key, value]] of entries.entries()) {
      const k = Buffer.from(key, "utf16le");
      const v = Buffer.from(value, "utf16le");
      table.writeUInt32LE(at, 20 + 12 * i);
      table.writeUInt32LE(at + k.length, 24 + 12 * i);
      table.writeUInt16LE(k.length, 28 + 12 * i);
      table.writeUInt16LE(v.length, 30 + 12 * i);
      strings.push(k, v);
      at += k.length + v.length;
    }
    return Buffer.concat([table, ...strings]);
  }

  async function layoutOf(path: string) {
    const file = await RandomAccessFile.open(path);
    try {
      return await loadVhdxLayout(file);
    } finally {
      await file.close();
    }
  }

  /** Turns an ovfkit dynamic VHDX of childBytes() into a differencing disk with the given locator. */
  async function makeChild(path: string, locator: Record<string, string>): Promise<void> {
    const { dest } = await writeSample(
      `child-base-${Math.random().toString(36).slice(2)}`,
      { block_size: "1M" },
      childBytes(),
    );
    const layout = await layoutOf(dest);
    const file = readFileSync(dest);
    const meta = layout.metadataOffset;
    // file parameters (first item, at +64 KiB): set HasParent (§2.6.2.1)
    file.writeUInt32LE(file.readUInt32LE(meta + 64 * 1024 + 4) | 2, meta + 64 * 1024 + 4);
    // a sixth metadata table entry (§2.6.1.2) for the parent locator, its data at +68 KiB
    const item = locatorItem(locator);
    const entry = meta + 32 + 5 * 32;
    guidBytes("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C").copy(file, entry);
    file.writeUInt32LE(68 * 1024, entry + 16);
    file.writeUInt32LE(item.length, entry + 20);
    file.writeUInt32LE(4, entry + 24); // IsRequired
    file.writeUInt16LE(6, meta + 10);
    item.copy(file, meta + 68 * 1024);
    // BAT: block 2 partially present, block 3 zero, a sector bitmap block for chunk 0 at the end
    const bat = (index: number) => layout.batOffset + index * 8;
    const block2 = file.readBigUInt64LE(bat(batIndexOfBlock(2, layout.chunkRatio)));
    file.writeBigUInt64LE((block2 & ~7n) | 7n, bat(batIndexOfBlock(2, layout.chunkRatio)));
    file.writeBigUInt64LE(2n, bat(batIndexOfBlock(3, layout.chunkRatio)));
    const bitmap = Buffer.alloc(MiB);
    const firstBit = (2 * BLOCK) / SECTOR_BYTES; // block 2's first sector within chunk 0
    for (const s of PRESENT_SECTORS) bitmap[(firstBit + s) >> 3] |= 1 << ((firstBit + s) & 7);
    file.writeBigUInt64LE((BigInt(file.length / MiB) << 20n) | 6n, bat(layout.chunkRatio));
    writeFileSync(path, Buffer.concat([file, bitmap]));
  }

  async function parentWithGuid(folder: string): Promise<{ path: string; guid: string }> {
    mkdirSync(folder, { recursive: true });
    const { dest } = await writeSample(
      `parent-${Math.random().toString(36).slice(2)}`,
      { block_size: "1M" },
      parentBytes(),
    );
    const path = join(folder, "parent.vhdx");
    copyFileSync(dest, path);
    return { path, guid: (await layoutOf(path)).header.dataWriteGuid };
  }

  it("reads through the parent: absent blocks, clear sector bitmap bits, beside ZERO and present blocks", async () => {
    const folder = join(dir, "diff");
    const { path: parentPath, guid } = await parentWithGuid(folder);
    const child = join(folder, "child.vhdx");
    await makeChild(child, {
      parent_linkage: `{${guid}}`,
      relative_path: ".\\parent.vhdx",
      absolute_win32_path: "C:\\VMs\\parent.vhdx",
    });
    const reader = await openDisk(child);
    try {
      expect(reader.format).toBe("vhdx");
      expect(reader.backingFile).toBe(parentPath);
      expect(reader.files).toEqual([child, parentPath]);
      expect((await reader.read(0, 8 * MiB)).equals(expected())).toBe(true);
      // unaligned reads across the sector runs of the partial block
      const want = expected();
      for (const [at, n] of [
        [2 * MiB + 8000, 300],
        [2 * MiB + 100 * 512 - 7, 530],
        [MiB - 3, 10],
      ] as const) {
        expect((await reader.read(at, n)).equals(want.subarray(at, at + n))).toBe(true);
      }
      const map = await collectMap(reader);
      expect(map.find((e) => e.offset <= 3 * MiB && e.offset + e.length > 3 * MiB)?.kind).toBe("zero");
      expect(map.filter((e) => e.kind === "data").length).toBeGreaterThan(0);
      expect(reader.formatSpecific["parent-locator"]).toMatchObject({ relative_path: ".\\parent.vhdx" });
    } finally {
      await reader.close();
    }
    expect((await checkDisk(child)).findings).toEqual([]);
    // without the parent, its ranges read as zeros
    const alone = await openDisk(child, { noBacking: true });
    expect((await alone.read(MiB, MiB)).every((b) => b === 0)).toBe(true);
    expect((await alone.read(0, 16)).every((b) => b === 0xc0)).toBe(true);
    await alone.close();
  });

  it("finds the parent by file name when the locator paths are Windows paths", async () => {
    const folder = join(dir, "diff-name");
    const { guid } = await parentWithGuid(folder);
    const child = join(folder, "child.vhdx");
    await makeChild(child, { parent_linkage: guid, absolute_win32_path: "D:\\Hyper-V\\parent.vhdx" });
    const reader = await openDisk(child);
    expect((await reader.read(0, 8 * MiB)).equals(expected())).toBe(true);
    await reader.close();
  });

  it("refuses a parent outside the folder (unless allowed), a changed parent and a missing one", async () => {
    const root = join(dir, "diff-rules");
    const { guid } = await parentWithGuid(root);
    const sub = join(root, "children");
    mkdirSync(sub, { recursive: true });
    const outside = join(sub, "outside.vhdx");
    await makeChild(outside, { parent_linkage: `{${guid}}`, relative_path: "..\\parent.vhdx" });
    await expect(openDisk(outside)).rejects.toMatchObject({ code: "VHDX_PARENT_OUTSIDE" });
    const allowed = await openDisk(outside, { allowParentOutside: true });
    expect((await allowed.read(0, 8 * MiB)).equals(expected())).toBe(true);
    await allowed.close();

    const changed = join(root, "changed.vhdx");
    await makeChild(changed, {
      parent_linkage: "{01234567-89AB-CDEF-0123-456789ABCDEF}",
      relative_path: "parent.vhdx",
    });
    await expect(openDisk(changed)).rejects.toMatchObject({ code: "VHDX_PARENT_MISMATCH" });

    const missing = join(root, "missing.vhdx");
    await makeChild(missing, { parent_linkage: `{${guid}}`, relative_path: "gone.vhdx" });
    await expect(openDisk(missing)).rejects.toMatchObject({ code: "VHDX_PARENT_NOT_FOUND" });

    const self = join(root, "self.vhdx");
    await makeChild(self, { parent_linkage: `{${guid}}`, relative_path: "self.vhdx" });
    await expect(openDisk(self)).rejects.toMatchObject({ code: "VHDX_CHAIN_TOO_DEEP" });
  });
});
