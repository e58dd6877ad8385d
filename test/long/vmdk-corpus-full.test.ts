import { describe, expect, it } from "vitest";
import { openDisk } from "../../src/formats/index.js";
import { FULL_HASH_LIMIT, streamSha256 } from "../corpus/vmdk-hash.js";
import { corpusSkipReason, expectedImages, hasCorpus, materialise } from "../helpers/corpus.js";

/**
 * The full-disk sha256 of the corpus VMDKs too large for `npm test`
 * (cot/ubuntu 8 GiB, iotest-version3 16 GiB): streamed through ovfkit's
 * reader, equal to `qemu-img convert -O raw`'s.
 */
const large = expectedImages().filter(
  (i) => i.qemu_format === "vmdk" && i.convert_raw?.ok && (i.convert_raw.size ?? 0) > FULL_HASH_LIMIT,
);

describe.skipIf(!hasCorpus)(`VMDK corpus, full hashes ${corpusSkipReason}`, () => {
  it("has the large images", () => {
    expect(large.map((i) => i.path).sort()).toEqual([
      "cot/ubuntu.2.0-disk1.vmdk",
      "qemu-sample-images/iotest-version3.vmdk",
    ]);
  });
  for (const image of large) {
    it(`${image.path}: sha256 of the whole virtual disk equals qemu-img's`, async () => {
      const reader = await openDisk(await materialise(image));
      try {
        expect(reader.virtualSize).toBe(image.convert_raw?.size);
        expect(await streamSha256(reader)).toBe(image.convert_raw?.sha256);
      } finally {
        await reader.close();
      }
    });
  }
});
