import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { deflateSync, inflateRawSync, inflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { DeflatePool } from "../../src/formats/deflate-pool.js";
import { checkDisk, compareDisks, convert, openDisk } from "../../src/formats/index.js";
import { GrainInflater, inflateGrainSync } from "../../src/formats/vmdk-sparse.js";
import { tempDir } from "../helpers/tmp.js";

/**
 * Layout test: ovfkit's streamOptimized output parsed marker by marker,
 * independently of the reader, against VMware's canonical layout.
 */

const dir = tempDir("ovfkit-vmdk-stream-");
const GRAIN = 65536;

function sourceImage(): Buffer {
  const disk = Buffer.alloc(80 * 1024 * 1024 + 1024); // 3 grain tables, last grain partial
  randomBytes(GRAIN).copy(disk, 0); // grain 0: incompressible
  disk.fill("text text ", GRAIN, 2 * GRAIN); // grain 1: compressible
  disk[5 * GRAIN + 100] = 7; // grain 5: one byte
  // grain 1030 (table 2), and the partial last grain
  disk.fill(0x5a, 1030 * GRAIN, 1030 * GRAIN + 4096);
  disk.fill(0xee, disk.length - 1024);
  return disk;
}

describe("streamOptimized canonical layout", () => {
  const src = sourceImage();
  const srcPath = join(dir, "src.raw");
  writeFileSync(srcPath, src);
  const outPath = join(dir, "out.vmdk");

  it("is written in VMware's order: header, descriptor, grains, GT per table, GD, footer, EOS", async () => {
    const reader = await openDisk(srcPath);
    await convert(reader, outPath, { format: "vmdk", options: { subformat: "streamOptimized" }, threads: 2 });
    await reader.close();
    const f = readFileSync(outPath);

    // header (spec "Hosted Sparse Extent Header")
    expect(f.toString("latin1", 0, 4)).toBe("KDMV");
    expect(f.readUInt32LE(4)).toBe(3); // version
    expect(f.readUInt32LE(8)).toBe(0x30001); // newline detection | compressed | markers
    const capacity = Number(f.readBigUInt64LE(12));
    expect(capacity).toBe(Math.ceil(src.length / 512));
    expect(f.readBigUInt64LE(20)).toBe(128n); // grain
    expect(f.readBigUInt64LE(28)).toBe(1n); // descriptor at sector 1
    expect(f.readBigUInt64LE(48)).toBe(0n); // no redundant GD
    expect(f.readBigUInt64LE(56)).toBe(0xffffffffffffffffn); // GD_AT_END
    const overHead = Number(f.readBigUInt64LE(64));
    expect(overHead).toBe(128);
    expect(f.readUInt16LE(77)).toBe(1); // deflate
    expect(f.toString("latin1", 512, 512 * 4)).toContain('createType="streamOptimized"');

    // walk the markers
    type Event =
      | { kind: "grain"; lba: number; sector: number; size: number }
      | { kind: "GT" | "GD" | "footer" | "eos"; sector: number; sectors: number };
    const events: Event[] = [];
    let pos = overHead * 512;
    while (pos < f.length) {
      const val = Number(f.readBigUInt64LE(pos));
      const size = f.readUInt32LE(pos + 8);
      if (size > 0) {
        events.push({ kind: "grain", lba: val, sector: pos / 512, size });
        pos += Math.ceil((12 + size) / 512) * 512;
        continue;
      }
      const type = f.readUInt32LE(pos + 12);
      const kind = (["eos", "GT", "GD", "footer"] as const)[type]!;
      expect(kind, `marker type ${type} at ${pos}`).toBeDefined();
      events.push({ kind, sector: pos / 512, sectors: val });
      pos += 512 + val * 512;
      if (kind === "eos") break;
    }
    expect(pos).toBe(f.length);

    const grains = events.filter((e) => e.kind === "grain") as Extract<Event, { kind: "grain" }>[];
    // all-zero grains are never stored; the rest in ascending LBA
    expect(grains.map((g) => g.lba / 128)).toEqual([0, 1, 5, 1030, Math.floor((src.length - 1) / GRAIN)]);
    for (const g of grains) {
      const data = f.subarray(g.sector * 512 + 12, g.sector * 512 + 12 + g.size);
      expect(data[0]).toBe(0x78); // zlib stream
      const grain = src.subarray(g.lba * 512, g.lba * 512 + GRAIN);
      expect(inflateSync(data).equals(Buffer.concat([grain, Buffer.alloc(GRAIN - grain.length)]))).toBe(true);
    }
    // order: grains of table 0, GT(0), grains of table 2, GT(2), GD, footer, EOS
    expect(events.map((e) => (e.kind === "grain" ? `g${e.lba / 128}` : e.kind))).toEqual([
      "g0",
      "g1",
      "g5",
      "GT",
      "g1030",
      `g${Math.floor((src.length - 1) / GRAIN)}`,
      "GT",
      "GD",
      "footer",
      "eos",
    ]);
    const gts = events.filter((e) => e.kind === "GT");
    expect(gts.every((e) => e.kind === "GT" && e.sectors === 4)).toBe(true);
    const gdMarker = events.find((e) => e.kind === "GD")!;
    const gd = f.subarray((gdMarker.sector + 1) * 512, (gdMarker.sector + 1) * 512 + 3 * 4);
    expect([gd.readUInt32LE(0), gd.readUInt32LE(4), gd.readUInt32LE(8)]).toEqual([
      gts[0]!.sector + 1,
      0, // table 1 has no grains: no table at all
      gts[1]!.sector + 1,
    ]);
    // GT entries point at the grain markers
    const gt0 = f.subarray((gts[0]!.sector + 1) * 512);
    expect([gt0.readUInt32LE(0), gt0.readUInt32LE(4), gt0.readUInt32LE(8), gt0.readUInt32LE(20)]).toEqual([
      grains[0]!.sector,
      grains[1]!.sector,
      0,
      grains[2]!.sector,
    ]);
    // footer 1536 bytes before the end: the header with the real gdOffset; then the EOS marker
    const footerMarker = events.find((e) => e.kind === "footer")!;
    expect(footerMarker.sector * 512).toBe(f.length - 1536);
    const footer = f.subarray(f.length - 1024, f.length - 512);
    expect(footer.readBigUInt64LE(56)).toBe(BigInt(gdMarker.sector + 1));
    const headerWithRealGd = Buffer.from(f.subarray(0, 512));
    headerWithRealGd.writeBigUInt64LE(BigInt(gdMarker.sector + 1), 56);
    expect(footer.equals(headerWithRealGd)).toBe(true);
    expect(f.subarray(f.length - 512).equals(Buffer.alloc(512))).toBe(true);
  });

  it("passes the canonical checker and reads back identical", async () => {
    expect((await checkDisk(outPath)).findings).toEqual([]);
    const a = await openDisk(outPath);
    const b = await openDisk(srcPath);
    expect((await compareDisks(a, b)).identical).toBe(true);
    await a.close();
    await b.close();
  });

  it("serves concurrent reads (as the emulator issues them) with the right bytes", async () => {
    const reader = await openDisk(outPath);
    try {
      const offsets = [0, 1000, 65000, 65536 * 5, 1030 * 65536 - 100, src.length - 5000, 70000, 12];
      const reads = offsets
        .flatMap((o) => [o, o + 3])
        .map((o) => ({ o, n: Math.min(200_000, src.length - o) }));
      const results = await Promise.all(reads.map(({ o, n }) => reader.read(o, n)));
      results.forEach((data, i) => {
        const { o, n } = reads[i]!;
        expect(data.equals(src.subarray(o, o + n)), `read at ${o}`).toBe(true);
      });
    } finally {
      await reader.close();
    }
  });

  it("flags each departure from the canonical layout with its reason", async () => {
    const good = readFileSync(outPath);
    const variant = async (name: string, edit: (f: Buffer) => Buffer) => {
      const path = join(dir, name);
      writeFileSync(path, edit(Buffer.from(good)));
      return (await checkDisk(path)).findings.map((x) => x.message);
    };
    expect(
      await variant("v1.vmdk", (f) => {
        f.writeUInt32LE(1, 4);
        return f;
      }),
    ).toContain("header version 1 (ESXi requires 3 for streams)");
    // drop the footer and EOS: no footer, end-of-stream marker missing (and the reader refuses it)
    const cut = await variant("cut.vmdk", (f) => f.subarray(0, f.length - 1536));
    expect(cut).toEqual(expect.arrayContaining(["no footer", "end-of-stream marker missing"]));
    await expect(openDisk(join(dir, "cut.vmdk"))).rejects.toMatchObject({ code: "VMDK_FOOTER_MISSING" });
    // swap the LBAs of the first two grains: out of order
    const swapped = await variant("swap.vmdk", (f) => {
      const first = 128 * 512;
      const size = f.readUInt32LE(first + 8);
      const second = first + Math.ceil((12 + size) / 512) * 512;
      f.writeBigUInt64LE(128n, first);
      f.writeBigUInt64LE(0n, second);
      return f;
    });
    expect(swapped).toContain("grains not in ascending LBA (0 after 128)");
  });
});

describe("DeflatePool", () => {
  it("compresses on workers and keeps the input order", async () => {
    const pool = new DeflatePool({ threads: 2, level: 1, maxInFlight: 3 });
    try {
      async function* batches() {
        for (let i = 0; i < 20; i++) {
          // alternate big random and tiny text batches so that completions come out of order
          const items =
            i % 2 === 0
              ? [randomBytes(200_000), randomBytes(70_000)]
              : [Buffer.from(`batch ${i} `.repeat(50))];
          yield { meta: { i, items: items.map((x) => Buffer.from(x)) }, items };
        }
      }
      let expected = 0;
      for await (const { meta, compressed } of pool.ordered(batches())) {
        expect(meta.i).toBe(expected++);
        expect(compressed.length).toBe(meta.items.length);
        for (const [k, c] of compressed.entries()) expect(inflateSync(c).equals(meta.items[k]!)).toBe(true);
      }
      expect(expected).toBe(20);
    } finally {
      await pool.close();
    }
  });

  it("stores incompressible blocks and still deflates compressible ones", async () => {
    const pool = new DeflatePool({ threads: 1, level: 9 });
    try {
      const random = randomBytes(65536);
      const text = Buffer.from("compressible ".repeat(6000)).subarray(0, 65536);
      const { compressed } = await pool.compress([random, text]);
      expect(compressed[0]!.length).toBeGreaterThan(65536); // stored blocks + zlib wrapper
      expect(compressed[1]!.length).toBeLessThan(2000);
      expect(inflateSync(compressed[0]!).equals(random)).toBe(true);
      expect(inflateSync(compressed[1]!).equals(text)).toBe(true);
      const raw = new DeflatePool({ threads: 1, raw: true, detectIncompressible: false });
      const { compressed: r } = await raw.compress([text]);
      expect(inflateRawSync(r[0]!).equals(text)).toBe(true); // raw deflate: no zlib wrapper
      await raw.close();
    } finally {
      await pool.close();
    }
  });

  it("refuses bad levels", () => {
    expect(() => new DeflatePool({ level: 12 })).toThrow(expect.objectContaining({ code: "BAD_OPTION" }));
  });
});

describe("GrainInflater", () => {
  it("inflates into the caller's buffer and turns every zlib failure into VMDK_ZLIB_ERROR", () => {
    const inflater = new GrainInflater();
    const grain = Buffer.from("abc".repeat(30000)).subarray(0, 65536);
    const out = Buffer.alloc(65536);
    const good = deflateSync(grain);
    expect(inflater.inflateInto(good, out, "f", 0)).toBe(65536);
    expect(out.equals(grain)).toBe(true);
    const short = deflateSync(grain.subarray(0, 1000));
    expect(inflater.inflateInto(short, out, "f", 0)).toBe(1000); // a short last grain
    expect(() => inflater.inflateInto(good.subarray(0, good.length - 6), out, "f", 512)).toThrow(
      expect.objectContaining({ code: "VMDK_ZLIB_ERROR", offset: 512 }),
    );
    expect(() => inflater.inflateInto(Buffer.from("not zlib at all"), out, "f", 1024)).toThrow(
      expect.objectContaining({ code: "VMDK_ZLIB_ERROR", offset: 1024 }),
    );
    expect(() => inflater.inflateInto(deflateSync(Buffer.alloc(70000, 1)), out, "f", 2048)).toThrow(
      expect.objectContaining({
        code: "VMDK_ZLIB_ERROR",
        message: expect.stringContaining("more than a grain"),
      }),
    );
    // still usable after errors
    expect(inflater.inflateInto(good, out, "f", 0)).toBe(65536);
    expect(out.equals(grain)).toBe(true);
  });

  it("the fallback inflater (zlib-sync, else node:zlib) gives the same results and errors", () => {
    const grain = Buffer.from("xyz".repeat(30000)).subarray(0, 65536);
    expect(inflateGrainSync(deflateSync(grain), 65536, "f", 0).equals(grain)).toBe(true);
    expect(() => inflateGrainSync(Buffer.from("garbage!"), 65536, "f", 7)).toThrow(
      expect.objectContaining({ code: "VMDK_ZLIB_ERROR", offset: 7 }),
    );
    expect(() => inflateGrainSync(deflateSync(grain).subarray(0, 40), 65536, "f", 8)).toThrow(
      expect.objectContaining({ code: "VMDK_ZLIB_ERROR", offset: 8 }),
    );
    expect(() => inflateGrainSync(deflateSync(Buffer.alloc(70000, 1)), 65536, "f", 9)).toThrow(
      expect.objectContaining({ code: "VMDK_ZLIB_ERROR", offset: 9 }),
    );
  });
});
