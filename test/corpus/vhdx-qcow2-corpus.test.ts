import { copyFileSync, existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { type DiskReader, detectFormat, openDisk } from "../../src/formats/index.js";
import { sha256OfReader } from "../formats/vhd-testutil.js";
import { corpusSkipReason, type ExpectedImage, expectedImages, materialise } from "../helpers/corpus.js";

/**
 * Every VHDX and qcow2 of ../shared/corpus/disks/EXPECTED.json through our
 * readers: the virtual size qemu-img reported, and the sha256 of the whole
 * virtual disk (streamed from the reader into the hash, no temp file)
 * equal to qemu-img convert's raw output. Images above 2 GiB get size, map
 * and spot reads here; their full hash runs in test/long.
 */

const FULL_HASH_LIMIT = 2 * 1024 ** 3;

/** The VHDX and qcow2 entries qemu-img could convert. */
function vhdxQcow2Images(): ExpectedImage[] {
  return expectedImages().filter(
    (i) => (i.qemu_format === "vhdx" || i.qemu_format === "qcow2") && i.convert_raw?.ok,
  );
}

/** The map is ordered, contiguous and covers exactly the virtual disk. */
async function expectMapCoversDisk(reader: DiskReader): Promise<void> {
  let expected = 0;
  for await (const extent of reader.map()) {
    expect(extent.offset).toBe(expected);
    expected = extent.offset + extent.length;
  }
  expect(expected).toBe(reader.virtualSize);
}

/**
 * Like `materialise`, plus the backing chain qemu-img info lists: a qcow2
 * stored as-is whose backing VHD is stored gzip-compressed is copied beside
 * its materialised parent, so the relative backing name resolves.
 */
function chainOf(image: ExpectedImage): unknown[] {
  return Array.isArray(image.qemu_img_info) ? image.qemu_img_info : [image.qemu_img_info];
}

async function materialiseWithBacking(image: ExpectedImage): Promise<string> {
  const chain = chainOf(image) as Array<Record<string, unknown> | undefined>;
  const backingName = chain[0]?.["backing-filename"];
  if (typeof backingName !== "string") return materialise(image);
  const folder = dirname(image.path);
  const parent = expectedImages().find((i) => i.path === join(folder, backingName));
  if (!parent) throw new Error(`${image.path}: backing ${backingName} is not in EXPECTED.json`);
  const parentPath = await materialise(parent);
  const overlay = await materialise(image);
  if (dirname(parentPath) === dirname(overlay)) return overlay;
  const target = join(dirname(parentPath), basename(overlay));
  if (!existsSync(target)) copyFileSync(overlay, target);
  return target;
}

const images = vhdxQcow2Images();

describe.skipIf(!!corpusSkipReason)("VHDX and qcow2 corpus", () => {
  it("lists the corpus images", () => {
    expect(images.filter((i) => i.qemu_format === "vhdx").length).toBeGreaterThanOrEqual(5);
    expect(images.filter((i) => i.qemu_format === "qcow2").length).toBeGreaterThanOrEqual(3);
  });

  for (const image of images) {
    it(`${image.path}: detected, virtual size and content equal qemu-img's`, async () => {
      const path = await materialiseWithBacking(image);
      expect(await detectFormat(path)).toBe(image.qemu_format);
      const info = Array.isArray(image.qemu_img_info) ? image.qemu_img_info[0] : image.qemu_img_info;
      const reader = await openDisk(path);
      try {
        expect(reader.format).toBe(image.qemu_format);
        expect(reader.virtualSize).toBe(info?.["virtual-size"]);
        expect(reader.virtualSize).toBe(image.convert_raw?.size);
        if (chainOf(image).length > 1) expect(reader.backingFile).toBeDefined();
        await expectMapCoversDisk(reader);
        if (reader.virtualSize <= FULL_HASH_LIMIT) {
          expect(await sha256OfReader(reader)).toBe(image.convert_raw?.sha256);
        } else {
          const tail = await reader.read(reader.virtualSize - 4096, 4096);
          expect(tail.length).toBe(4096);
        }
      } finally {
        await reader.close();
      }
    });
  }
});

describe.skipIf(!!corpusSkipReason)("qcow2 overlay on a VHD (qemu-made/qcow2-over-vhd.qcow2)", () => {
  it("reads the overlay's cluster over the VHD parent's data", async () => {
    const image = images.find((i) => i.path === "qemu-made/qcow2-over-vhd.qcow2");
    expect(image).toBeDefined();
    const path = await materialiseWithBacking(image as ExpectedImage);
    const reader = await openDisk(path);
    const parent = await openDisk(join(dirname(path), "vpc-dynamic-force_size.vhd"));
    try {
      expect(reader.backingFile).toBe(join(dirname(path), "vpc-dynamic-force_size.vhd"));
      expect(reader.files).toContain(parent.path);
      // the notes: 64 KiB of 0xab written at 1 MiB over the parent
      const written = await reader.read(1024 * 1024, 65536);
      expect(written.every((b) => b === 0xab)).toBe(true);
      // elsewhere the parent's bytes show through
      for (const offset of [0, 512 * 1024, 1024 * 1024 + 65536, 4 * 1024 * 1024]) {
        expect((await reader.read(offset, 65536)).equals(await parent.read(offset, 65536))).toBe(true);
      }
      const parentData = (await parent.read(1024 * 1024, 65536)).every((b) => b === 0xab);
      expect(parentData).toBe(false);
      // without backing, the unallocated ranges read as zeros
      const alone = await openDisk(path, { noBacking: true });
      expect(alone.backingFile).toBeUndefined();
      expect((await alone.read(0, 65536)).every((b) => b === 0)).toBe(true);
      await alone.close();
    } finally {
      await reader.close();
      await parent.close();
    }
  });
});
