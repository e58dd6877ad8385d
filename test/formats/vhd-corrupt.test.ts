import { copyFileSync, statSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { isOvfkitError } from "../../src/errors.js";
import { checkDisk, detectFormat, openDisk } from "../../src/formats/index.js";
import { FOOTER_SIZE, HEADER_SIZE, parseHeader, serializeHeader } from "../../src/formats/vhd-format.js";
import { corpusSkipReason, expectedImages, hasCorpus, materialise } from "../helpers/corpus.js";
import { tempDir } from "../helpers/tmp.js";
import { patchFile, readBytes, sha256OfReader } from "./vhd-testutil.js";

/**
 * Corrupted copies of real images (qemu's dynamic VHD, Windows' fixed VHD):
 * each damage gives its typed error on open and its finding in `check`,
 * never a crash.
 */
const dir = tempDir("ovfkit-vhd-corrupt-");
let dynamic = ""; // qemu-made/vpc-dynamic.vhd: BAT at 1536, 5 entries, blocks 0, 2, 3 allocated
let fixed = ""; // node-vhd/fixed.vhd (Windows 10)
let dynamicSha = "";
let foreignFixed = ""; // qemu-made/vpc-fixed-force_size.vhd: a valid footer that belongs to another image

const TABLE_OFFSET = 1536;

function copyOf(source: string, name: string): string {
  const path = join(dir, name);
  copyFileSync(source, path);
  return path;
}

async function openError(path: string, format?: string): Promise<unknown> {
  try {
    const reader = await openDisk(path, { format });
    await reader.close();
  } catch (error) {
    return error;
  }
  return undefined;
}

async function findingCodes(path: string): Promise<string[]> {
  return (await checkDisk(path, { format: "vpc" })).findings.map((f) => f.code);
}

describe.skipIf(!hasCorpus)(`corrupted VHDs ${corpusSkipReason}`, () => {
  beforeAll(async () => {
    const byPath = new Map(expectedImages().map((i) => [i.path, i]));
    const dyn = byPath.get("qemu-made/vpc-dynamic.vhd")!;
    dynamic = await materialise(dyn);
    dynamicSha = dyn.convert_raw!.sha256!;
    fixed = await materialise(byPath.get("node-vhd/fixed.vhd")!);
    foreignFixed = await materialise(byPath.get("qemu-made/vpc-fixed-force_size.vhd")!);
  });

  it("the originals are clean", async () => {
    expect(await findingCodes(dynamic)).toEqual([]);
    expect(await findingCodes(fixed)).toEqual([]);
  });

  it("fixed: a flipped footer checksum byte is VHD_BAD_CHECKSUM, still detected as VHD", async () => {
    const path = copyOf(fixed, "fixed-checksum.vhd");
    const at = statSync(path).size - FOOTER_SIZE + 64;
    patchFile(path, at, Buffer.from([readBytes(path, at, 1)[0]! ^ 0x01]));
    expect(await detectFormat(path)).toBe("vpc");
    expect(await openError(path)).toMatchObject({ code: "VHD_BAD_CHECKSUM", offset: at, file: path });
    expect((await checkDisk(path)).findings).toMatchObject([
      { code: "VHD_BAD_CHECKSUM", severity: "corruption" },
    ]);
  });

  it("fixed: truncated (no footer) is not a VHD", async () => {
    const path = copyOf(fixed, "fixed-cut.vhd");
    truncateSync(path, 5 * 1024 * 1024);
    expect(await detectFormat(path)).toBe("raw");
    expect(await openError(path, "vpc")).toMatchObject({ code: "VHD_NO_FOOTER" });
    await expect(checkDisk(path, { format: "vpc" })).rejects.toMatchObject({ code: "VHD_NO_FOOTER" });
  });

  it("dynamic: a damaged end footer falls back to the copy at 0; check reports it", async () => {
    const path = copyOf(dynamic, "dyn-endfooter.vhd");
    const at = statSync(path).size - FOOTER_SIZE + 40; // original size field
    patchFile(path, at, Buffer.from([0x7f]));
    const reader = await openDisk(path);
    expect(await sha256OfReader(reader)).toBe(dynamicSha);
    await reader.close();
    expect(await findingCodes(path)).toEqual(["VHD_BAD_CHECKSUM"]);
  });

  it("dynamic: a damaged or different footer copy is a check finding", async () => {
    const damaged = copyOf(dynamic, "dyn-copy.vhd");
    patchFile(damaged, 30, Buffer.from([0x21]));
    expect(await findingCodes(damaged)).toEqual(["VHD_BAD_CHECKSUM"]);
    const other = copyOf(dynamic, "dyn-copy2.vhd");
    // A valid footer that is not this image's: the force_size sample's copy.
    const foreign = readBytes(foreignFixed, statSync(foreignFixed).size - FOOTER_SIZE, FOOTER_SIZE);
    patchFile(other, 0, foreign);
    expect(await findingCodes(other)).toContain("VHD_FOOTER_MISMATCH");
  });

  it("dynamic: a damaged header is VHD_BAD_CHECKSUM at the header's checksum", async () => {
    const path = copyOf(dynamic, "dyn-header.vhd");
    patchFile(path, FOOTER_SIZE + 100, Buffer.from([0x55]));
    expect(await openError(path)).toMatchObject({ code: "VHD_BAD_CHECKSUM", offset: FOOTER_SIZE + 36 });
    expect(await findingCodes(path)).toEqual(["VHD_BAD_CHECKSUM"]);
  });

  it("dynamic: a BAT entry past the end of the file is VHD_BAT_OUT_OF_RANGE", async () => {
    const path = copyOf(dynamic, "dyn-bat-eof.vhd");
    patchFile(path, TABLE_OFFSET, Buffer.from([0x00, 0x10, 0x00, 0x00]));
    expect(await openError(path)).toMatchObject({ code: "VHD_BAT_OUT_OF_RANGE", offset: TABLE_OFFSET });
    expect(await findingCodes(path)).toContain("VHD_BAT_OUT_OF_RANGE");
  });

  it("dynamic: a BAT entry pointing into the header is VHD_BAT_OUT_OF_RANGE", async () => {
    const path = copyOf(dynamic, "dyn-bat-meta.vhd");
    patchFile(path, TABLE_OFFSET + 8, Buffer.from([0, 0, 0, 1]));
    expect(await openError(path)).toMatchObject({ code: "VHD_BAT_OUT_OF_RANGE", offset: TABLE_OFFSET + 8 });
  });

  it("dynamic: two BAT entries on one block are VHD_BLOCKS_OVERLAP", async () => {
    const path = copyOf(dynamic, "dyn-overlap.vhd");
    patchFile(path, TABLE_OFFSET + 4, readBytes(path, TABLE_OFFSET, 4)); // block 1 = block 0
    expect(await findingCodes(path)).toEqual(["VHD_BLOCKS_OVERLAP"]);
  });

  it("dynamic: a block whose bitmap marks nothing is a leak", async () => {
    const path = copyOf(dynamic, "dyn-leak.vhd");
    const block0 = readBytes(path, TABLE_OFFSET, 4).readUInt32BE(0) * 512;
    patchFile(path, block0, Buffer.alloc(512));
    const report = await checkDisk(path);
    expect(report.findings).toMatchObject([{ code: "VHD_BLOCK_UNUSED", severity: "leak", offset: block0 }]);
  });

  it("dynamic: space between the last block and the footer is a leak", async () => {
    const path = copyOf(dynamic, "dyn-gap.vhd");
    const size = statSync(path).size;
    const footer = readBytes(path, size - FOOTER_SIZE, FOOTER_SIZE);
    patchFile(path, size - FOOTER_SIZE, Buffer.alloc(FOOTER_SIZE));
    patchFile(path, size - FOOTER_SIZE + 3 * 1024 * 1024, footer); // room for a whole block
    const report = await checkDisk(path);
    expect(report.findings).toMatchObject([
      { code: "VHD_DATA_AFTER_END", severity: "leak", offset: size - FOOTER_SIZE },
    ]);
    const reader = await openDisk(path);
    expect(await sha256OfReader(reader)).toBe(dynamicSha);
    await reader.close();
  });

  it("dynamic: truncated in the middle: the footer copy is used, the lost blocks are out of range", async () => {
    const path = copyOf(dynamic, "dyn-cut.vhd");
    truncateSync(path, Math.floor(statSync(path).size / 2));
    expect(await detectFormat(path)).toBe("vpc");
    expect(await openError(path)).toMatchObject({ code: "VHD_BAT_OUT_OF_RANGE" });
    const codes = await findingCodes(path);
    expect(codes).toContain("VHD_FOOTER_MISSING");
    expect(codes).toContain("VHD_BAT_OUT_OF_RANGE");
    const tiny = copyOf(dynamic, "dyn-tiny.vhd");
    truncateSync(tiny, 1000);
    expect(await openError(tiny)).toMatchObject({ code: "VHD_BAD_HEADER" });
  });

  it("dynamic: impossible block size and too small a BAT are typed errors", async () => {
    const header = parseHeader(readBytes(dynamic, FOOTER_SIZE, HEADER_SIZE));
    const odd = copyOf(dynamic, "dyn-bs.vhd");
    patchFile(odd, FOOTER_SIZE, serializeHeader({ ...header, blockSize: 3000 }));
    expect(await openError(odd)).toMatchObject({ code: "VHD_BAD_BLOCK_SIZE" });
    const small = copyOf(dynamic, "dyn-small.vhd");
    patchFile(small, FOOTER_SIZE, serializeHeader({ ...header, maxTableEntries: 2 }));
    expect(await openError(small)).toMatchObject({ code: "VHD_BAT_TOO_SMALL" });
    const huge = copyOf(dynamic, "dyn-huge.vhd");
    patchFile(huge, FOOTER_SIZE, serializeHeader({ ...header, tableOffset: 2 ** 40 }));
    expect(await openError(huge)).toMatchObject({ code: "TRUNCATED" });
  });

  it("random byte damage in the metadata never crashes", async () => {
    const path = join(dir, "dyn-fuzz.vhd");
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let round = 0; round < 60; round++) {
      copyFileSync(dynamic, path);
      for (let k = 0; k < 4; k++)
        patchFile(path, random() % (TABLE_OFFSET + 512), Buffer.from([random() & 0xff]));
      for (const act of [
        async () => {
          const reader = await openDisk(path, { format: "vpc" });
          try {
            await sha256OfReader(reader);
          } finally {
            await reader.close();
          }
        },
        () => checkDisk(path, { format: "vpc" }),
      ]) {
        try {
          await act();
        } catch (error) {
          expect(isOvfkitError(error), String(error)).toBe(true);
        }
      }
    }
  });
});
