import { createHash } from "node:crypto";
import {
  copyFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  checkDisk,
  collectMap,
  compareDisks,
  convert,
  createDisk,
  detectFormat,
  openDisk,
  resizeDisk,
} from "../../src/formats/index.js";
import {
  chsForSectors,
  chsRoundUp,
  FOOTER_SIZE,
  footerChecksumOk,
  geometryBytes,
  HEADER_SIZE,
  headerChecksumOk,
  parseFooter,
  parseHeader,
  serializeFooter,
  serializeHeader,
} from "../../src/formats/vhd-format.js";
import { planSize } from "../../src/formats/vhd-write.js";
import { ovfkit } from "../helpers/cli.js";
import { CORPUS_DISKS, corpusSkipReason, expectedImages, hasCorpus, materialise } from "../helpers/corpus.js";
import { tempDir } from "../helpers/tmp.js";
import { patchFile, readBytes, sha256OfReader } from "./vhd-testutil.js";

const dir = tempDir("ovfkit-vhd-");
const MIB = 1024 * 1024;

/** A raw file of `size` bytes holding `runs` (offset, byte) of `length` bytes each; the rest are holes. */
function rawWith(
  name: string,
  size: number,
  runs: { offset: number; length: number; byte: number }[],
): string {
  const path = join(dir, name);
  writeFileSync(path, "");
  truncateSync(path, size);
  for (const run of runs) patchFile(path, run.offset, Buffer.alloc(run.length, run.byte));
  return path;
}

async function convertFile(src: string, dest: string, options: Record<string, string> = {}): Promise<void> {
  const reader = await openDisk(src);
  try {
    await convert(reader, dest, { format: "vpc", options });
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

describe("VHD structures", () => {
  it.skipIf(!hasCorpus)(`parses the Windows-made footer and header samples ${corpusSkipReason}`, () => {
    const footer = readFileSync(join(CORPUS_DISKS, "node-vhd/footer.bin"));
    expect(footerChecksumOk(footer)).toBe(true);
    const f = parseFooter(footer);
    expect(f).toMatchObject({
      creatorApp: "win ",
      diskType: 2,
      currentSize: 10485760,
      dataOffset: undefined,
    });
    expect(f.geometry).toEqual({ cylinders: 301, heads: 4, sectors: 17 });
    // Re-serialising gives the same bytes: every field is understood.
    expect(serializeFooter(f).equals(footer)).toBe(true);

    const headerBin = readFileSync(join(CORPUS_DISKS, "node-vhd/header.bin"));
    const header = headerBin.subarray(FOOTER_SIZE, FOOTER_SIZE + HEADER_SIZE);
    expect(headerChecksumOk(header)).toBe(true);
    const h = parseHeader(header);
    expect(h).toMatchObject({ tableOffset: 1536, blockSize: 2 * MIB, maxTableEntries: 256, locators: [] });
    expect(serializeHeader(h).equals(header)).toBe(true);
  });

  it.skipIf(!hasCorpus)(`computes the CHS geometries qemu wrote ${corpusSkipReason}`, async () => {
    const byPath = new Map(expectedImages().map((i) => [i.path, i]));
    const rounded = readBytes(await materialise(byPath.get("qemu-made/vpc-dynamic.vhd")!), 0, FOOTER_SIZE);
    const exact = readBytes(
      await materialise(byPath.get("qemu-made/vpc-dynamic-force_size.vhd")!),
      0,
      FOOTER_SIZE,
    );
    const off = planSize(8 * MIB, false);
    const on = planSize(8 * MIB, true);
    expect(off.geometry).toEqual(parseFooter(rounded).geometry); // 241/4/17
    expect(off.size).toBe(parseFooter(rounded).currentSize);
    expect(on.geometry).toEqual(parseFooter(exact).geometry); // 65535/16/255
    expect(on.size).toBe(8 * MIB);
  });

  it("rounds CHS up to a geometry that covers the request and caps at the maximum", () => {
    for (const sectors of [1, 100, 16384, 1_000_000, 8_000_000, 266_000_000]) {
      const g = chsRoundUp(sectors);
      expect(geometryBytes(g)).toBeGreaterThanOrEqual(sectors * 512);
      expect(geometryBytes(chsForSectors(sectors))).toBeLessThanOrEqual(sectors * 512);
    }
    expect(chsRoundUp(300_000_000)).toEqual({ cylinders: 65535, heads: 16, sectors: 255 });
  });
});

describe("VHD writer", () => {
  const runs = [
    { offset: 0, length: 4096, byte: 0x11 },
    { offset: 2 * MIB + 512, length: 512, byte: 0x22 }, // inside block 1
    { offset: 6 * MIB - 1024, length: 4096, byte: 0x33 }, // straddles blocks 2 and 3
  ];

  it("writes dynamic VHDs that read back the source, zero chunks unallocated", async () => {
    const src = rawWith("w-src.raw", 8 * MIB, runs);
    for (const [name, options] of [
      ["w-dyn.vhd", {}],
      ["w-dyn-force.vhd", { force_size: "on" }],
      ["w-dyn-512k.vhd", { block_size: "512K", force_size: "on" }],
    ] as const) {
      const dest = join(dir, name);
      await convertFile(src, dest, options);
      expect(await detectFormat(dest)).toBe("vpc");
      expect(await sameContent(src, dest)).toBe(true);
      const reader = await openDisk(dest);
      expect(reader.creator).toBe("ovfk 0.1");
      expect(reader.formatSpecific.type).toBe("dynamic");
      const data = (await collectMap(reader)).filter((e) => e.kind === "data");
      // Chunks of 1 MiB holding data are stored; the all-zero ones are not.
      expect(data.map((e) => [e.offset / MIB, (e.offset + e.length) / MIB])).toEqual([
        [0, 1],
        [2, 3],
        [5, 7],
      ]);
      await reader.close();
    }
    const exact = await openDisk(join(dir, "w-dyn-force.vhd"));
    const rounded = await openDisk(join(dir, "w-dyn.vhd"));
    expect(exact.virtualSize).toBe(8 * MIB);
    expect(rounded.virtualSize).toBe(planSize(8 * MIB, false).size);
    await exact.close();
    await rounded.close();
  });

  it("writes fixed VHDs and Azure-aligned ones", async () => {
    const src = rawWith("f-src.raw", 5 * MIB + 512, runs.slice(0, 2));
    const fixed = join(dir, "f.vhd");
    await convertFile(src, fixed, { subformat: "fixed", force_size: "on" });
    expect(statSync(fixed).size).toBe(5 * MIB + 512 + FOOTER_SIZE);
    expect(await sameContent(src, fixed)).toBe(true);

    const azure = join(dir, "azure.vhd");
    await convertFile(src, azure, { align_mib: "on" });
    const reader = await openDisk(azure);
    expect(reader.virtualSize).toBe(6 * MIB);
    expect(reader.formatSpecific.type).toBe("fixed");
    expect(statSync(azure).size).toBe(6 * MIB + FOOTER_SIZE);
    await reader.close();
    expect(await sameContent(src, azure)).toBe(true);
  });

  it("refuses bad options and oversized Azure disks, leaving nothing behind", async () => {
    const sub = join(dir, "refused");
    mkdirSync(sub);
    const cases: [Record<string, string>, number, string][] = [
      [{ subformat: "sparse" }, MIB, "BAD_OPTION"],
      [{ block_size: "1000" }, MIB, "BAD_OPTION"],
      [{ block_size: "512M" }, MIB, "BAD_OPTION"],
      [{ colour: "red" }, MIB, "BAD_OPTION"],
      [{ align_mib: "on", subformat: "dynamic" }, MIB, "BAD_OPTION"],
      [{ align_mib: "on" }, 4 * 1024 ** 4 + MIB, "VHD_TOO_LARGE"],
      [{}, 2041 * 1024 ** 3, "VHD_TOO_LARGE"],
    ];
    for (const [options, size, code] of cases) {
      await expect(createDisk(join(sub, "x.vhd"), size, { format: "vhd", options })).rejects.toMatchObject({
        code,
      });
    }
    expect(readdirSync(sub)).toEqual([]);
  });

  it("creates large empty disks without writing their data", async () => {
    const big = join(dir, "big.vhd");
    await createDisk(big, 1024 ** 4, { format: "vpc", options: { force_size: "on" } });
    expect(statSync(big).size).toBeLessThan(3 * MIB); // footer, header, 2 MiB BAT, footer
    const reader = await openDisk(big);
    expect(reader.virtualSize).toBe(1024 ** 4);
    expect(await collectMap(reader)).toEqual([{ offset: 0, length: 1024 ** 4, kind: "unallocated" }]);
    await reader.close();
  });
});

describe("VHD sector bitmaps", () => {
  it("honours clear bits (qemu ignores them): those sectors read as zeros and map unallocated", async () => {
    const src = rawWith("b-src.raw", 4 * MIB, [{ offset: 0, length: MIB, byte: 0x5a }]);
    const vhd = join(dir, "b.vhd");
    await convertFile(src, vhd, { force_size: "on" });
    const before = await openDisk(vhd);
    const layout = (before as unknown as { layout: { bat: Uint32Array } }).layout;
    const block0 = layout.bat[0]! * 512;
    await before.close();
    // Clear the bits of sectors 8..15 (bitmap byte 1): 4 KiB at 4096.
    patchFile(vhd, block0 + 1, Buffer.from([0x00]));
    const reader = await openDisk(vhd);
    expect(await collectMap(reader, 0, 2 * MIB)).toEqual([
      { offset: 0, length: 4096, kind: "data" },
      { offset: 4096, length: 4096, kind: "unallocated" },
      { offset: 8192, length: MIB - 8192, kind: "data" },
      { offset: MIB, length: MIB, kind: "unallocated" },
    ]);
    const bytes = await reader.read(4000, 200);
    expect([...bytes.subarray(0, 96)].every((b) => b === 0x5a)).toBe(true);
    expect([...bytes.subarray(96)].every((b) => b === 0)).toBe(true);
    await reader.close();
  });
});

describe("VHD differencing", () => {
  it("creates a child, stores only changed sectors and reads the merged disk", async () => {
    const chain = join(dir, "chain");
    mkdirSync(chain);
    const baseRaw = join(chain, "base.raw");
    writeFileSync(baseRaw, "");
    truncateSync(baseRaw, 6 * MIB);
    patchFile(baseRaw, 0, Buffer.alloc(3 * MIB, 0x41));
    const base = join(chain, "base.vhd");
    await convertFile(baseRaw, base, { force_size: "on" });

    // An empty child reads exactly as its parent.
    const child = join(chain, "child.vhd");
    await createDisk(child, 6 * MIB, { format: "vpc", options: { parent: "base.vhd" } });
    expect(await sameContent(child, base)).toBe(true);
    const opened = await openDisk(child);
    expect(opened.backingFile).toBe(base);
    expect(opened.files).toEqual([child, base]);
    expect(opened.formatSpecific).toMatchObject({ type: "differencing", "parent-name": "base.vhd" });
    expect(opened.formatSpecific["parent-locators"]).toEqual(["W2ru:.\\base.vhd", `W2ku:${base}`]);
    await opened.close();

    // A child written from a modified copy: sectors changed, zeroed and added past the parent's data.
    const modified = join(chain, "modified.raw");
    copyFileSync(baseRaw, modified);
    patchFile(modified, 1000, Buffer.alloc(100, 0x42)); // sectors 1..2
    patchFile(modified, 2 * MIB, Buffer.alloc(512, 0)); // zeros over parent data
    patchFile(modified, 5 * MIB, Buffer.alloc(1024, 0x43)); // where the parent is unallocated
    const child2 = join(chain, "child2.vhd");
    await convertFile(modified, child2, { parent: "base.vhd" });
    // The merged disk equals the raw it was built from (qemu cannot merge VHD chains, so the raw is the reference).
    expect(await sameContent(child2, modified)).toBe(true);
    const merged = await openDisk(child2);
    expect(await sha256OfReader(merged)).toBe(
      createHash("sha256").update(readFileSync(modified)).digest("hex"),
    );
    await merged.close();
    const own = await openDisk(child2, { noBacking: true });
    expect((await collectMap(own)).filter((e) => e.kind === "data")).toEqual([
      { offset: 512, length: 1024, kind: "data" },
      { offset: 2 * MIB, length: 512, kind: "data" },
      { offset: 5 * MIB, length: 1024, kind: "data" },
    ]);
    await own.close();
    // A grandchild over the child: three levels merge.
    const grandchild = join(chain, "grandchild.vhd");
    await createDisk(grandchild, 6 * MIB, { format: "vpc", options: { parent: "child2.vhd" } });
    expect(await sameContent(grandchild, modified)).toBe(true);
  });

  it("verifies the parent's unique id and refuses missing, foreign and outside parents", async () => {
    const root = join(dir, "parents");
    const sub = join(root, "sub");
    mkdirSync(sub, { recursive: true });
    const parent = join(root, "p.vhd");
    await createDisk(parent, 2 * MIB, { format: "vpc", options: { force_size: "on" } });
    const child = join(sub, "c.vhd");
    await createDisk(child, 2 * MIB, { format: "vpc", options: { parent: "../p.vhd" } });
    await expect(openDisk(child)).rejects.toMatchObject({ code: "VHD_PARENT_OUTSIDE" });
    const reader = await openDisk(child, { allowParentOutside: true });
    expect(reader.backingFile).toBe(parent);
    await reader.close();

    // Same folder: a different VHD under the parent's name is not the parent.
    const near = join(root, "near");
    mkdirSync(near);
    const p2 = join(near, "p.vhd");
    await createDisk(p2, 2 * MIB, { format: "vpc", options: { force_size: "on" } });
    const c2 = join(near, "c.vhd");
    await createDisk(c2, 2 * MIB, { format: "vpc", options: { parent: "p.vhd" } });
    renameSync(p2, join(near, "p-original.vhd"));
    await expect(openDisk(c2)).rejects.toMatchObject({ code: "VHD_PARENT_NOT_FOUND" });
    await createDisk(p2, 2 * MIB, { format: "vpc", options: { force_size: "on" } });
    await expect(openDisk(c2)).rejects.toMatchObject({ code: "VHD_PARENT_MISMATCH" });
    const report = await checkDisk(c2);
    expect(report.findings.map((f) => f.code)).toContain("VHD_PARENT_MISMATCH");
  });

  it("tries relative locators, then absolute ones (W2ku, MacX), then the parent's name", async () => {
    const loc = join(dir, "locators");
    mkdirSync(join(loc, "a"), { recursive: true });
    mkdirSync(join(loc, "b"));
    const real = join(loc, "a", "base.vhd");
    const decoy = join(loc, "b", "base.vhd");
    await createDisk(real, MIB, { format: "vpc", options: { force_size: "on" } });
    await createDisk(decoy, MIB, { format: "vpc", options: { force_size: "on" } });
    const child = join(loc, "child.vhd");
    await createDisk(child, MIB, { format: "vpc", options: { parent: "a/base.vhd" } });
    const header = parseHeader(readBytes(child, FOOTER_SIZE, HEADER_SIZE));
    /** Rewrites locator `index` (code and text) in place; each has a sector of room. */
    const setLocator = (index: number, code: string, data: Buffer) => {
      const locator = header.locators[index]!;
      locator.platformCode = Buffer.from(code, "latin1").readUInt32BE(0);
      locator.dataLength = data.length;
      patchFile(child, locator.dataOffset, Buffer.concat([data, Buffer.alloc(512 - data.length)]));
      patchFile(child, FOOTER_SIZE, serializeHeader(header));
    };
    const backing = async () => {
      const reader = await openDisk(child);
      const path = reader.backingFile;
      await reader.close();
      return path;
    };
    expect(await backing()).toBe(real);
    // The relative locator names the decoy (wrong unique id): the absolute one wins.
    setLocator(0, "W2ru", Buffer.from(".\\b\\base.vhd", "utf16le"));
    expect(await backing()).toBe(real);
    // A file URL (MacX) works as the absolute locator too.
    setLocator(1, "MacX", Buffer.from(`file://localhost${real}`, "utf8"));
    expect(await backing()).toBe(real);
    // Windows drive paths cannot be followed here: the parent's name beside the child is the last resort.
    setLocator(1, "W2ku", Buffer.from("C:\\VMs\\base.vhd", "utf16le"));
    await expect(openDisk(child)).rejects.toMatchObject({ code: "VHD_PARENT_MISMATCH" });
    copyFileSync(real, join(loc, "base.vhd"));
    expect(await backing()).toBe(join(loc, "base.vhd"));
  });

  it("refuses loops and chains deeper than 16", async () => {
    const deep = join(dir, "deep");
    mkdirSync(deep);
    await createDisk(join(deep, "d0.vhd"), MIB, { format: "vpc", options: { force_size: "on" } });
    for (let i = 1; i <= 17; i++) {
      await createDisk(join(deep, `d${i}.vhd`), MIB, { format: "vpc", options: { parent: `d${i - 1}.vhd` } });
    }
    const ok = await openDisk(join(deep, "d16.vhd")); // 16 parents
    expect(ok.files).toHaveLength(17);
    await ok.close();
    await expect(openDisk(join(deep, "d17.vhd"))).rejects.toMatchObject({ code: "VHD_CHAIN_TOO_DEEP" });

    // Turn d0 into a child of d2: d2 -> d1 -> d0 -> d2.
    const d0 = join(deep, "d0.vhd");
    const d2Id = parseFooter(readBytes(join(deep, "d2.vhd"), 0, FOOTER_SIZE)).uniqueId;
    const footer = parseFooter(readBytes(d0, 0, FOOTER_SIZE));
    const newFooter = serializeFooter({ ...footer, diskType: 4 });
    patchFile(d0, 0, newFooter);
    patchFile(d0, statSync(d0).size - FOOTER_SIZE, newFooter);
    const header = parseHeader(readBytes(d0, FOOTER_SIZE, HEADER_SIZE));
    patchFile(d0, FOOTER_SIZE, serializeHeader({ ...header, parentUniqueId: d2Id, parentName: "d2.vhd" }));
    await expect(openDisk(join(deep, "d2.vhd"))).rejects.toMatchObject({ code: "VHD_PARENT_LOOP" });
  });
});

describe("VHD resize", () => {
  it("grows and shrinks fixed VHDs in place", async () => {
    const src = rawWith("r-src.raw", 3 * MIB, [{ offset: MIB, length: 4096, byte: 0x77 }]);
    const vhd = join(dir, "r-fixed.vhd");
    await convertFile(src, vhd, { subformat: "fixed", force_size: "on" });
    await resizeDisk(vhd, 5 * MIB);
    expect(statSync(vhd).size).toBe(5 * MIB + FOOTER_SIZE);
    let reader = await openDisk(vhd);
    expect(reader.virtualSize).toBe(5 * MIB);
    expect(await sameContent(src, vhd)).toBe(true); // the old footer's bytes are zeros now
    await reader.close();
    await expect(resizeDisk(vhd, 4 * MIB)).rejects.toMatchObject({ code: "SHRINK_REFUSED" });
    await expect(resizeDisk(vhd, MIB, { shrink: true })).rejects.toMatchObject({
      code: "SHRINK_WOULD_LOSE_DATA",
    });
    await resizeDisk(vhd, 2 * MIB, { shrink: true });
    reader = await openDisk(vhd);
    expect(reader.virtualSize).toBe(2 * MIB);
    await reader.close();
    expect(await sameContent(src, vhd)).toBe(true);
  });

  it("grows dynamic VHDs in place when the BAT has room, else rewrites them atomically", async () => {
    const src = rawWith("r-dsrc.raw", 3 * MIB, [
      { offset: 0, length: 512, byte: 1 },
      { offset: 2 * MIB + 4096, length: 512, byte: 2 },
    ]);
    const vhd = join(dir, "r-dyn.vhd");
    await convertFile(src, vhd, { force_size: "on" });
    const sizeBefore = statSync(vhd).size;
    await resizeDisk(vhd, 4 * MIB); // still 2 blocks: in place
    expect(statSync(vhd).size).toBe(sizeBefore);
    await resizeDisk(vhd, 9 * MIB); // 5 blocks: a new BAT, blocks copied
    const reader = await openDisk(vhd);
    expect(reader.virtualSize).toBe(9 * MIB);
    expect(reader.formatSpecific["max-table-entries"]).toBe(5);
    await reader.close();
    expect(await sameContent(src, vhd)).toBe(true);
    expect((await checkDisk(vhd)).findings).toEqual([]);
    await resizeDisk(vhd, 2 * MIB + 8192, { shrink: true });
    expect(await sameContent(src, vhd)).toBe(true);
    await expect(resizeDisk(vhd, MIB, { shrink: true })).rejects.toMatchObject({
      code: "SHRINK_WOULD_LOSE_DATA",
    });
    expect(readdirSync(dir).filter((f) => f.includes("ovfkit-"))).toEqual([]);
  });
});

describe("VHD through the real CLI", () => {
  it("create -b, convert -O vpc, check exit codes, resize", async () => {
    const cli = join(dir, "cli");
    mkdirSync(cli);
    const raw = rawWith("cli/src.raw", 4 * MIB, [{ offset: 3 * MIB, length: 8192, byte: 0x99 }]);
    const base = join(cli, "base.vhd");
    let r = ovfkit(["convert", "-O", "vhd", "-o", "force_size=on", raw, base]);
    expect(r.status, r.stderr).toBe(0);
    r = ovfkit(["create", "-f", "vpc", "-b", "base.vhd", join(cli, "child.vhd")]);
    expect(r.status, r.stderr).toBe(0);
    r = ovfkit(["info", "--output", "json", join(cli, "child.vhd")]);
    expect(JSON.parse(r.stdout)).toMatchObject({
      format: "vpc",
      "virtual-size": 4 * MIB,
      "backing-filename": base,
    });
    expect(ovfkit(["compare", raw, join(cli, "child.vhd")]).status).toBe(0);
    expect(ovfkit(["check", join(cli, "child.vhd")]).status).toBe(0);

    const fixed = join(cli, "fixed.vhd");
    expect(ovfkit(["convert", "-O", "vpc", "-o", "subformat=fixed,force_size=on", raw, fixed]).status).toBe(
      0,
    );
    expect(ovfkit(["resize", fixed, "+1M"]).status).toBe(0);
    expect(JSON.parse(ovfkit(["info", "--output", "json", fixed]).stdout)["virtual-size"]).toBe(5 * MIB);
    patchFile(fixed, 5 * MIB + 64, Buffer.from([0, 0, 0, 0]));
    expect(ovfkit(["check", fixed]).status).toBe(2); // corruption: footer checksum
    r = ovfkit(["info", fixed, "-f", "vpc"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("VHD_BAD_CHECKSUM");

    const leaky = join(cli, "leaky.vhd");
    expect(ovfkit(["convert", "-O", "vpc", "-o", "force_size=on", raw, leaky]).status).toBe(0);
    const bat = readBytes(leaky, FOOTER_SIZE + HEADER_SIZE, 8);
    patchFile(leaky, bat.readUInt32BE(4) * 512, Buffer.alloc(512)); // block 1's bitmap: nothing marked
    expect(ovfkit(["check", leaky]).status).toBe(3);
  });
});

describe("VHD detection", () => {
  it.skipIf(!hasCorpus)(
    `detects fixed VHDs by footer, also old 511-byte footers ${corpusSkipReason}`,
    async () => {
      const image = expectedImages().find((i) => i.path === "node-vhd/fixed.vhd")!;
      const fixed = await materialise(image);
      expect(await detectFormat(fixed)).toBe("vpc");
      const old = join(dir, "old-vpc.vhd");
      copyFileSync(fixed, old);
      truncateSync(old, statSync(fixed).size - 1); // Virtual PC 2004 wrote 511-byte footers
      expect(await detectFormat(old)).toBe("vpc");
      const reader = await openDisk(old);
      expect(reader.virtualSize).toBe(10 * MIB);
      expect(await sha256OfReader(reader)).toBe(image.convert_raw?.sha256);
      await reader.close();
      expect(await detectFormat(join(CORPUS_DISKS, "qemu-sample-images/grub_mbr.raw"))).toBe("raw");
    },
  );

  it("shows VHD facts through `ovfkit info`", async () => {
    const vhd = join(dir, "info.vhd");
    await createDisk(vhd, 10 * MIB, { format: "vhd", options: {} });
    const result = ovfkit(["info", "--output", "json", vhd]);
    expect(result.status).toBe(0);
    const info = JSON.parse(result.stdout);
    expect(info).toMatchObject({ format: "vpc", "virtual-size": planSize(10 * MIB, false).size });
    expect(JSON.stringify(info)).toContain("dynamic");
  });
});
