import { describe, expect, it } from "vitest";
import { openDisk } from "../../src/formats/index.js";
import { sha256OfReader } from "../formats/vhd-testutil.js";
import { corpusSkipReason, expectedImages, hasCorpus, materialise } from "../helpers/corpus.js";

/**
 * Long suite (`npm run test:long`): the full sha256 of every VHD and raw
 * corpus image converted to raw through ovfkit's reader, streamed without
 * writing a file, against qemu-img's `convert_raw.sha256`. This includes
 * the two empty 127 GiB samples (virtualpc-dynamic.vhd, hyperv2012r2-dynamic.vhd),
 * which `npm test` only checks by size and map: hashing 127 GiB of zeros
 * takes about 3-4 minutes each on this 2-core machine.
 */
const images = expectedImages().filter((image) => image.qemu_format === "vpc" || image.qemu_format === "raw");

describe.skipIf(!hasCorpus)(`full-content hashes of the VHD and raw corpus ${corpusSkipReason}`, () => {
  for (const image of images) {
    it(`${image.path} (${image.qemu_img_info?.["virtual-size"]} bytes) hashes as qemu-img's raw`, async () => {
      const reader = await openDisk(await materialise(image));
      try {
        expect(reader.virtualSize).toBe(image.convert_raw?.size);
        expect(await sha256OfReader(reader)).toBe(image.convert_raw?.sha256);
      } finally {
        await reader.close();
      }
    });
  }
});
