import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  collectMap,
  compareDisks,
  convert,
  createDisk,
  type DiskReader,
  type Extent,
  emptyDisk,
  openDisk,
  resizeDisk,
} from "../../src/formats/index.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";

const dir = tempDir("ovfkit-vmdk-write-");
const noQemu = skipReason("qemu-img");

describe("VMDK writer details", () => {
  it("create: empty disks of every subformat read back as holes", async () => {
    for (const subformat of ["monolithicSparse", "streamOptimized", "monolithicFlat"]) {
      const path = join(dir, `empty-${subformat}.vmdk`);
      await createDisk(path, 3 * 1024 * 1024, { format: "vmdk", options: { subformat } });
      const disk = await openDisk(path);
      expect(disk.virtualSize).toBe(3 * 1024 * 1024);
      const kinds = new Set((await collectMap(disk)).map((e) => e.kind));
      expect(kinds, subformat).toEqual(new Set([subformat === "monolithicFlat" ? "data" : "unallocated"]));
      await disk.close();
    }
  });

  it.skipIf(Boolean(noQemu))(
    `create: an empty 5 GiB split disk has all its extents, one at a time ${noQemu}`,
    async () => {
      for (const subformat of ["twoGbMaxExtentSparse", "twoGbMaxExtentFlat"]) {
        const sub = join(dir, subformat);
        mkdirSync(sub);
        const path = join(sub, "big.vmdk");
        await createDisk(path, 5 * 1024 ** 3, { format: "vmdk", options: { subformat } });
        expect(readdirSync(sub).length, subformat).toBe(4);
        const check = run("qemu-img", ["check", path]);
        expect(check.status, check.stdout + check.stderr).toBe(0);
        const info = JSON.parse(run("qemu-img", ["info", "--output=json", path]).stdout) as {
          "virtual-size": number;
        };
        expect(info["virtual-size"]).toBe(5 * 1024 ** 3);
      }
    },
  );

  it("refuses unknown options and nonsense values with BAD_OPTION", async () => {
    const bad: Record<string, string>[] = [
      { nope: "1" },
      { adapter_type: "floppy" },
      { compression_level: "10" },
      { zeroed_grain: "maybe" },
    ];
    for (const options of bad) {
      await expect(
        createDisk(join(dir, "x.vmdk"), 1 << 20, { format: "vmdk", options }),
      ).rejects.toMatchObject({
        code: "BAD_OPTION",
      });
    }
    await expect(
      createDisk(join(dir, "x.vmdk"), 1 << 20, {
        format: "vmdk",
        options: { subformat: "streamOptimized", zeroed_grain: "on" },
      }),
    ).rejects.toMatchObject({ code: "BAD_OPTION" });
  });

  it("resize grows monolithicFlat in place; sparse subformats and shrinking are refused", async () => {
    const path = join(dir, "grow.vmdk");
    const data = Buffer.alloc(1 << 20, 0x42);
    writeFileSync(join(dir, "grow.raw"), data);
    await convert(await openDisk(join(dir, "grow.raw")), path, {
      format: "vmdk",
      options: { subformat: "monolithicFlat" },
    });
    await resizeDisk(path, 4 << 20);
    const disk = await openDisk(path);
    expect(disk.virtualSize).toBe(4 << 20);
    expect((await disk.read(0, 1 << 20)).equals(data)).toBe(true);
    expect((await disk.read(3 << 20, 1 << 20)).every((b) => b === 0)).toBe(true);
    await disk.close();
    expect(readFileSync(path, "utf8")).toContain('RW 8192 FLAT "grow-flat.vmdk" 0');
    await expect(resizeDisk(path, 2 << 20)).rejects.toMatchObject({ code: "SHRINK_REFUSED" });
    const sparse = join(dir, "sparse.vmdk");
    await createDisk(sparse, 1 << 20, { format: "vmdk" });
    await expect(resizeDisk(sparse, 2 << 20)).rejects.toMatchObject({ code: "UNSUPPORTED_RESIZE" });
  });

  it.skipIf(Boolean(noQemu))(
    `zeroed_grain=on records a source's zero ranges as zeroed-grain entries ${noQemu}`,
    async () => {
      const size = 1 << 20;
      const extents: Extent[] = [
        { offset: 0, length: 65536, kind: "data" },
        { offset: 65536, length: 131072, kind: "zero" },
        { offset: 196608, length: size - 196608, kind: "unallocated" },
      ];
      const source: DiskReader = {
        ...emptyDisk(size),
        async *map(offset = 0) {
          yield* extents.filter((e) => e.offset + e.length > offset); // whole extents suffice here
        },
        async read(offset: number, length: number, into?: Buffer) {
          const out = into ? into.subarray(0, length) : Buffer.alloc(length);
          out.fill(0);
          if (offset < 65536) out.fill(0x77, 0, Math.min(length, 65536 - offset));
          return out;
        },
      };
      const out = join(dir, "zeroed.vmdk");
      await convert(source, out, { format: "vmdk", options: { zeroed_grain: "on" } });
      const copy = await openDisk(out);
      expect(copy.formatSpecific["sparse-version"]).toBe(2);
      expect(await collectMap(copy)).toEqual(extents);
      expect(await compareDisks(copy, source)).toMatchObject({ identical: true });
      await copy.close();
      const header = readFileSync(out).subarray(0, 512);
      expect(header.readUInt32LE(8)).toBe(0x7); // newline detection | redundant GT | zeroed-grain GTEs
      const check = run("qemu-img", ["check", out]);
      expect(check.status, check.stdout + check.stderr).toBe(0);
      const qemuMap = JSON.parse(run("qemu-img", ["map", "--output=json", out]).stdout) as {
        start: number;
        zero: boolean;
        data: boolean;
      }[];
      expect(qemuMap.find((e) => e.start === 65536)).toMatchObject({ zero: true, data: false });
    },
  );
});
