import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkDisk, collectMap, detectFormat, openDisk } from "../../src/formats/index.js";
import {
  corpusSkipReason,
  type ExpectedImage,
  expectedImages,
  hasCorpus,
  materialise,
} from "../helpers/corpus.js";
import { FULL_HASH_LIMIT, streamSha256 } from "./vmdk-hash.js";

/**
 * Every VMDK of ../shared/corpus/disks read through ovfkit: virtual size as
 * qemu-img reports it, and the sha256 of the whole virtual disk streamed
 * through our reader equal to `qemu-img convert -O raw`'s. Images over
 * 2 GiB virtual are checked here by size, map and spot reads; their full
 * hash is in test/long/vmdk-corpus-full.test.ts.
 */

const vmdks = expectedImages().filter((i) => i.qemu_format === "vmdk");
const readable = vmdks.filter((i) => i.convert_raw?.ok);
const virtualSize = (i: ExpectedImage) => i.convert_raw?.size ?? i.qemu_img_info?.["virtual-size"] ?? -1;

describe.skipIf(!hasCorpus)(`VMDK corpus ${corpusSkipReason}`, () => {
  it("has the VMDKs the suite expects", () => {
    expect(vmdks.length).toBeGreaterThanOrEqual(20);
  });

  for (const image of readable) {
    const small = virtualSize(image) <= FULL_HASH_LIMIT;
    it(`${image.path}: detected, virtual size ${small ? "and sha256 " : ""}as qemu-img`, async () => {
      const path = await materialise(image);
      expect(await detectFormat(path)).toBe("vmdk");
      const reader = await openDisk(path);
      try {
        expect(reader.virtualSize).toBe(virtualSize(image));
        const map = await collectMap(reader);
        expect(map.reduce((sum, e) => sum + e.length, 0)).toBe(reader.virtualSize);
        if (small) expect(await streamSha256(reader)).toBe(image.convert_raw?.sha256);
      } finally {
        await reader.close();
      }
    });
  }

  it("iotest-version3 (16 GiB stream): the 100 marked sectors hold their digits", async () => {
    const image = vmdks.find((i) => i.path.endsWith("iotest-version3.vmdk"))!;
    const reader = await openDisk(await materialise(image));
    try {
      for (let i = 0; i < 100; i++) {
        const sector = await reader.read(i * 655360 + i * 512, 512);
        expect(sector.equals(Buffer.alloc(512, (i % 10) + 0x30)), `sector ${i}`).toBe(true);
        // the bytes around the marked sector are zeros
        const before = await reader.read(i * 655360 + i * 512 - (i === 0 ? 0 : 512), i === 0 ? 0 : 512);
        expect(before.every((b) => b === 0)).toBe(true);
      }
      // every marked sector lies in a grain the map calls data
      const data = (await collectMap(reader)).filter((e) => e.kind === "data");
      for (let i = 0; i < 100; i++) {
        const at = i * 655360 + i * 512;
        expect(data.some((e) => e.offset <= at && at + 512 <= e.offset + e.length)).toBe(true);
      }
    } finally {
      await reader.close();
    }
  });

  it("cot/ubuntu (8 GiB VirtualBox stream, no spaces around =) maps as one hole", async () => {
    const image = vmdks.find((i) => i.path.endsWith("ubuntu.2.0-disk1.vmdk"))!;
    const reader = await openDisk(await materialise(image));
    try {
      expect(await collectMap(reader)).toEqual([{ offset: 0, length: 8 * 1024 ** 3, kind: "unallocated" }]);
      expect(reader.formatSpecific["adapter-type"]).toBe("ide");
    } finally {
      await reader.close();
    }
  });

  it("vmdk-child reads through its parent and shows the qemu-io writes", async () => {
    const image = vmdks.find((i) => i.path.endsWith("vmdk-child.vmdk"))!;
    const reader = await openDisk(await materialise(image));
    try {
      expect(reader.backingFile).toMatch(/vmdk-monolithicSparse\.vmdk$/);
      expect((await reader.read(1024 * 1024, 65536)).equals(Buffer.alloc(65536, 0xab))).toBe(true);
      expect((await reader.read(0x5ff800, 4096)).equals(Buffer.alloc(4096, 0xcd))).toBe(true);
      const alone = await openDisk(await materialise(image), { noBacking: true });
      expect(alone.backingFile).toBeUndefined();
      await alone.close();
    } finally {
      await reader.close();
    }
  });

  it("zeroed_grain image maps its zeroed grains as zero", async () => {
    const image = vmdks.find((i) => i.path.endsWith("monolithicSparse-zeroed_grain.vmdk"))!;
    const reader = await openDisk(await materialise(image));
    try {
      expect(reader.formatSpecific["sparse-version"]).toBe(2);
    } finally {
      await reader.close();
    }
  });

  it("vmfs and vmfsSparse descriptors over qemu-made extents read like the originals", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ovfkit-vmfs-"));
    try {
      const flat = vmdks.find((i) => i.path.endsWith("qemu-made/vmdk-monolithicFlat.vmdk"))!;
      const sparse = vmdks.find((i) => i.path.endsWith("qemu-made/vmdk-twoGbMaxExtentSparse.vmdk"))!;
      const flatExtent = (await materialise(flat)).replace(/\.vmdk$/, "-flat.vmdk");
      const sparseExtent = (await materialise(sparse)).replace(/\.vmdk$/, "-s001.vmdk");
      copyFileSync(flatExtent, join(dir, "disk-flat.vmdk"));
      copyFileSync(sparseExtent, join(dir, "delta.vmdk"));
      const descriptor = (type: string, line: string) =>
        `# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="${type}"\n${line}\nddb.adapterType = "lsilogic"\n`;
      writeFileSync(join(dir, "vmfs.vmdk"), descriptor("vmfs", 'RW 16384 VMFS "disk-flat.vmdk"'));
      writeFileSync(
        join(dir, "vmfssparse.vmdk"),
        descriptor("vmfsSparse", 'RW 16384 VMFSSPARSE "delta.vmdk"'),
      );
      writeFileSync(
        join(dir, "zero-tail.vmdk"),
        descriptor("monolithicFlat", 'RW 16384 FLAT "disk-flat.vmdk" 0\nRW 2048 ZERO'),
      );
      const zeroTail = await openDisk(join(dir, "zero-tail.vmdk"));
      expect(zeroTail.virtualSize).toBe(9 * 1024 * 1024);
      expect((await collectMap(zeroTail)).at(-1)).toEqual({ offset: 8 << 20, length: 1 << 20, kind: "zero" });
      expect((await zeroTail.read((8 << 20) - 512, 1024)).subarray(512).every((b) => b === 0)).toBe(true);
      await zeroTail.close();
      for (const [name, image] of [
        ["vmfs.vmdk", flat],
        ["vmfssparse.vmdk", sparse],
      ] as const) {
        expect(await detectFormat(join(dir, name))).toBe("vmdk");
        const reader = await openDisk(join(dir, name));
        expect(reader.formatSpecific["create-type"]).toBe(name === "vmfs.vmdk" ? "vmfs" : "vmfsSparse");
        expect(await streamSha256(reader)).toBe(image.convert_raw?.sha256);
        await reader.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the truncated govmomi stream is a typed error (VMDK_FOOTER_MISSING), also for check", async () => {
    const image = vmdks.find((i) => i.path.includes("ttylinux"))!;
    expect(image.convert_raw?.ok).toBe(false);
    const path = await materialise(image);
    await expect(openDisk(path)).rejects.toMatchObject({
      code: "VMDK_FOOTER_MISSING",
      offset: 1048576 - 1536,
    });
    const report = await checkDisk(path);
    expect(report.findings.map((f) => f.code)).toContain("VMDK_FOOTER_MISSING");
    expect(report.findings.some((f) => f.message === "no footer")).toBe(true);
  });

  it("qemu-made streamOptimized images are flagged non-canonical; VMware's pass", async () => {
    for (const image of vmdks.filter((i) => /qemu-made\/vmdk-streamOptimized/.test(i.path))) {
      const report = await checkDisk(await materialise(image));
      const reasons = report.findings
        .filter((f) => f.code === "VMDK_STREAM_NONCANONICAL")
        .map((f) => f.message);
      expect(reasons, image.path).toContain("gdOffset in header is not GD_AT_END");
      expect(reasons, image.path).toContain("no footer");
      expect(report.findings.filter((f) => f.severity === "corruption")).toEqual([]);
    }
    for (const name of ["iotest-version3.vmdk", "ubuntu.2.0-disk1.vmdk"]) {
      const image = vmdks.find((i) => i.path.endsWith(name))!;
      const report = await checkDisk(await materialise(image));
      expect(report.findings, name).toEqual([]);
    }
  });
});
