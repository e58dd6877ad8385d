import { describe, expect, it } from "vitest";
import { allocatedBytes, checkDisk, collectMap, type Extent, openDisk } from "../../src/formats/index.js";
import { sha256OfReader } from "../formats/vhd-testutil.js";
import { corpusSkipReason, expectedImages, hasCorpus, materialise } from "../helpers/corpus.js";

/**
 * Every VHD and raw image of ../shared/corpus/disks against what qemu-img
 * 7.2 recorded in EXPECTED.json: the virtual size, and the sha256 of the
 * disk converted to raw (streamed through our reader, no file written).
 * Disks over 2 GiB (the empty 127 GiB samples) are hashed in full by
 * test/long/corpus-full.test.ts; here their map and data ranges are checked.
 */
const FULL_HASH_LIMIT = 2 * 1024 ** 3;
const images = expectedImages().filter((image) => image.qemu_format === "vpc" || image.qemu_format === "raw");

function assertCovers(map: Extent[], size: number): void {
  let pos = 0;
  for (const e of map) {
    expect(e.offset).toBe(pos);
    expect(e.length).toBeGreaterThan(0);
    pos += e.length;
  }
  expect(pos).toBe(size);
}

describe.skipIf(!hasCorpus)(`VHD and raw corpus ${corpusSkipReason}`, () => {
  it("has VHD and raw images to test", () => {
    expect(images.filter((i) => i.qemu_format === "vpc").length).toBeGreaterThanOrEqual(8);
  });

  for (const image of images) {
    describe(image.path, () => {
      it("is detected by content and has qemu's virtual size", async () => {
        const path = await materialise(image);
        const reader = await openDisk(path);
        try {
          expect(reader.format).toBe(image.qemu_format);
          expect(reader.virtualSize).toBe(image.qemu_img_info?.["virtual-size"]);
        } finally {
          await reader.close();
        }
      });

      it("converts to the raw bytes qemu-img produced", async () => {
        const path = await materialise(image);
        const reader = await openDisk(path);
        try {
          const map = await collectMap(reader);
          assertCovers(map, reader.virtualSize);
          if (reader.virtualSize <= FULL_HASH_LIMIT) {
            expect(await sha256OfReader(reader)).toBe(image.convert_raw?.sha256);
            return;
          }
          // Too big to hash here: every range that is not data must be
          // nothing stored, and data ranges must be few and readable.
          const data = await allocatedBytes(reader);
          expect(data).toBeLessThan(64 * 1024 * 1024);
          for (const e of map.filter((x) => x.kind === "data")) await reader.read(e.offset, e.length);
          for (const e of map.filter((x) => x.kind !== "data").slice(0, 8)) {
            const probe = await reader.read(e.offset + Math.floor(e.length / 2), 512);
            expect(probe.every((b) => b === 0)).toBe(true);
          }
        } finally {
          await reader.close();
        }
      });

      if (image.qemu_format === "vpc") {
        it("checks without corruption", async () => {
          const path = await materialise(image);
          const report = await checkDisk(path);
          expect(report.findings.filter((f) => f.severity !== "warning")).toEqual([]);
        });
      }
    });
  }
});
