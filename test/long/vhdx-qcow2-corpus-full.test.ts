import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { convert, emptyDisk, openDisk } from "../../src/formats/index.js";
import { sha256OfReader } from "../formats/vhd-testutil.js";
import { corpusSkipReason, expectedImages, hasCorpus, materialise } from "../helpers/corpus.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";

/**
 * Long suite (`npm run test:long`): the full sha256 of every VHDX and
 * qcow2 corpus image (whatever its virtual size; `npm test` hashes those
 * up to 2 GiB) through ovfkit's reader, streamed without a temp file,
 * against qemu-img's `convert_raw.sha256`; and a 6 GiB sparse disk with
 * data near its end written by ovfkit as VHDX and qcow2, checked and
 * read back by qemu-img (BAT/L1 beyond the first 4 GiB of offsets).
 * The qcow2 overlay of a VHD needs its parent materialised beside it and
 * is covered by test/corpus/vhdx-qcow2-corpus.test.ts.
 */
const images = expectedImages().filter(
  (i) =>
    (i.qemu_format === "vhdx" || i.qemu_format === "qcow2") &&
    i.convert_raw?.ok &&
    !Array.isArray(i.qemu_img_info),
);

describe.skipIf(!hasCorpus)(`full-content hashes of the VHDX and qcow2 corpus ${corpusSkipReason}`, () => {
  for (const image of images) {
    it(`${image.path} hashes as qemu-img's raw`, async () => {
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

const noQemu = skipReason("qemu-img");
const GiB = 1024 ** 3;

describe.skipIf(!!noQemu)("a 6 GiB sparse disk through ovfkit's writers and qemu-img", () => {
  const dir = tempDir();
  for (const [format, options] of [
    ["vhdx", { block_size: "1M" }],
    ["qcow2", { cluster_size: "4K" }],
  ] as const) {
    it(`${format} ${JSON.stringify(options)}`, async () => {
      const src = join(dir, "sparse.raw");
      writeFileSync(src, Buffer.alloc(0));
      run("truncate", ["-s", String(6 * GiB), src]);
      const marks = [0, 4 * GiB + 12345, 6 * GiB - 4096];
      const fd = await import("node:fs/promises").then((fs) => fs.open(src, "r+"));
      for (const at of marks) await fd.write(Buffer.from(`mark at ${at}`), 0, undefined, at);
      await fd.close();
      const dest = join(dir, `sparse.${format}`);
      const reader = await openDisk(src);
      await convert(reader, dest, { format, options: { ...options }, overwrite: true });
      await reader.close();
      expect(run("qemu-img", ["check", "-f", format, dest]).stdout).toContain("No errors were found");
      const back = join(dir, `back-${format}.raw`);
      expect(run("qemu-img", ["convert", "-f", format, "-O", "raw", dest, back]).status).toBe(0);
      const compare = run("qemu-img", ["compare", "-f", "raw", "-F", "raw", src, back]);
      expect(compare.stdout).toContain("Images are identical");
      const ours = await openDisk(dest);
      for (const at of marks) expect((await ours.read(at, 20)).toString("latin1")).toContain(`mark at ${at}`);
      await ours.close();
      expect(readFileSync(dest).length).toBeLessThan(64 * 1024 * 1024);
    });
  }

  it("an empty 64 TiB VHDX has the right BAT size and reads as zeros at its end", async () => {
    const dest = join(dir, "huge.vhdx");
    await convert(emptyDisk(64 * 1024 * GiB), dest, { format: "vhdx", overwrite: true });
    expect(run("qemu-img", ["check", "-f", "vhdx", dest]).stdout).toContain("No errors were found");
    const reader = await openDisk(dest);
    expect(reader.virtualSize).toBe(64 * 1024 * GiB);
    expect((await reader.read(reader.virtualSize - 512, 512)).every((b) => b === 0)).toBe(true);
    await reader.close();
  });
});
