import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { OvfkitError } from "../../src/errors.js";
import { checkDisk, collectMap, openDisk } from "../../src/formats/index.js";
import { corpusSkipReason, expectedImages, hasCorpus, materialise } from "../helpers/corpus.js";
import { tempDir } from "../helpers/tmp.js";

/**
 * Corrupted copies of real VMDKs (qemu-img's monolithicSparse, VMware's
 * streamOptimized iotest image): every kind of damage gives a typed
 * VMDK_* error with the offset, or a `check` finding — never a crash.
 */

const dir = tempDir("ovfkit-vmdk-corrupt-");
const images = expectedImages();
const corpusFile = async (suffix: string) => materialise(images.find((i) => i.path.endsWith(suffix))!);

/** Writes an edited copy of `source` and returns its path. */
function edited(source: string, name: string, edit: (f: Buffer) => void): string {
  const f = readFileSync(source);
  edit(f);
  const path = join(dir, name);
  writeFileSync(path, f);
  return path;
}

async function readAll(path: string): Promise<void> {
  const reader = await openDisk(path, { format: "vmdk" });
  try {
    for (const e of await collectMap(reader)) {
      for (let at = e.offset; at < e.offset + e.length; at += 1 << 20) {
        await reader.read(at, Math.min(1 << 20, e.offset + e.length - at));
      }
    }
  } finally {
    await reader.close();
  }
}

// qemu-made/vmdk-monolithicSparse.vmdk: gd at sector 26, GT 0 at sector 30 (qemu's layout), grains from 128.
const GD = 26 * 512;

describe.skipIf(!hasCorpus)(`corrupted VMDKs ${corpusSkipReason}`, () => {
  it("a GD entry past the end: VMDK_TABLE_PAST_EOF on read and in check", async () => {
    const path = edited(await corpusFile("qemu-made/vmdk-monolithicSparse.vmdk"), "gd-eof.vmdk", (f) =>
      f.writeUInt32LE(0x00ffffff, GD),
    );
    await expect(readAll(path)).rejects.toMatchObject({ code: "VMDK_TABLE_PAST_EOF", offset: GD });
    const report = await checkDisk(path);
    expect(report.findings).toContainEqual(
      expect.objectContaining({ code: "VMDK_TABLE_PAST_EOF", offset: GD }),
    );
  });

  it("a GT entry past the end: VMDK_GRAIN_PAST_EOF; two entries on one grain: VMDK_GRAIN_OVERLAP", async () => {
    const source = await corpusFile("qemu-made/vmdk-monolithicSparse.vmdk");
    const gt = readFileSync(source).readUInt32LE(GD) * 512;
    const firstGrain = readFileSync(source).readUInt32LE(gt);
    expect(firstGrain).toBeGreaterThanOrEqual(128);
    const past = edited(source, "gt-eof.vmdk", (f) => f.writeUInt32LE(0x00ffffff, gt));
    await expect(readAll(past)).rejects.toMatchObject({
      code: "VMDK_GRAIN_PAST_EOF",
      offset: 0x00ffffff * 512,
    });
    expect((await checkDisk(past)).findings).toContainEqual(
      expect.objectContaining({ code: "VMDK_GRAIN_PAST_EOF", severity: "corruption", offset: gt }),
    );
    const twice = edited(source, "gt-dup.vmdk", (f) => f.writeUInt32LE(firstGrain, gt + 4 * 100));
    expect((await checkDisk(twice)).findings).toContainEqual(
      expect.objectContaining({ code: "VMDK_GRAIN_OVERLAP", offset: firstGrain * 512 }),
    );
  });

  it("a capacity that would need a gigantic grain directory is refused before allocating", async () => {
    const path = edited(await corpusFile("qemu-made/vmdk-monolithicSparse.vmdk"), "huge.vmdk", (f) =>
      f.writeBigUInt64LE(1n << 42n, 12),
    );
    await expect(openDisk(path)).rejects.toMatchObject({ code: "VMDK_TABLE_TOO_LARGE" });
  });

  it("bad header fields: VMDK_BAD_HEADER with the field's offset", async () => {
    const source = await corpusFile("qemu-made/vmdk-monolithicSparse.vmdk");
    await expect(openDisk(edited(source, "v9.vmdk", (f) => f.writeUInt32LE(9, 4)))).rejects.toMatchObject({
      code: "VMDK_BAD_HEADER",
      offset: 4,
    });
    await expect(
      openDisk(edited(source, "g3.vmdk", (f) => f.writeBigUInt64LE(3n, 20))),
    ).rejects.toMatchObject({
      code: "VMDK_BAD_HEADER",
      offset: 20,
    });
  });

  it("stream grains: overrunning size, LBA mismatch, zlib damage, duplicate LBA", async () => {
    const source = await corpusFile("iotest-version3.vmdk");
    const grain0 = 128 * 512; // first grain marker (LBA 0)
    const overrun = edited(source, "overrun.vmdk", (f) => f.writeUInt32LE(0x7fffffff, grain0 + 8));
    await expect(readAll(overrun)).rejects.toMatchObject({ code: "VMDK_GRAIN_OVERRUN", offset: grain0 + 8 });
    expect((await checkDisk(overrun)).findings.map((x) => x.code)).toContain("VMDK_GRAIN_OVERRUN");

    const zlib = edited(source, "zlib.vmdk", (f) => f.fill(0xff, grain0 + 14, grain0 + 40));
    await expect(readAll(zlib)).rejects.toMatchObject({ code: "VMDK_ZLIB_ERROR", offset: grain0 });
    expect((await checkDisk(zlib)).findings).toContainEqual(
      expect.objectContaining({ code: "VMDK_ZLIB_ERROR", offset: grain0 }),
    );

    // the second grain (LBA 1280) claims LBA 0: the GT says otherwise, and the stream repeats an LBA
    const size0 = readFileSync(source).readUInt32LE(grain0 + 8);
    const grain1 = grain0 + Math.ceil((12 + size0) / 512) * 512;
    const dup = edited(source, "dup.vmdk", (f) => f.writeBigUInt64LE(0n, grain1));
    await expect(readAll(dup)).rejects.toMatchObject({ code: "VMDK_GRAIN_LBA_MISMATCH", offset: grain1 });
    const findings = (await checkDisk(dup)).findings;
    expect(findings).toContainEqual(
      expect.objectContaining({ code: "VMDK_DUPLICATE_LBA", severity: "corruption", offset: grain1 }),
    );
    expect(findings.map((x) => x.code)).toContain("VMDK_GRAIN_LBA_MISMATCH");
  });

  it("a stream cut anywhere gives typed errors, never a crash", async () => {
    const source = readFileSync(await corpusFile("iotest-version3.vmdk"));
    for (const length of [0, 100, 512, 4096, 65536, source.length - 1024, source.length - 1]) {
      const path = join(dir, `cut-${length}.vmdk`);
      writeFileSync(path, source.subarray(0, length));
      const error = await readAll(path).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, `cut at ${length}`).toBeInstanceOf(OvfkitError);
    }
  });

  it("random damage to headers and tables never escapes as anything but OvfkitError", async () => {
    const sources = [
      readFileSync(await corpusFile("qemu-made/vmdk-monolithicSparse.vmdk")),
      readFileSync(await corpusFile("iotest-version3.vmdk")),
    ];
    let seed = 42;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    for (let round = 0; round < 60; round++) {
      const copy = Buffer.from(sources[round % 2]!);
      // header, descriptor and (for the stream) the metadata at the end
      for (let k = 0; k < 4; k++) {
        const region = random(2) === 0 ? random(1024) : copy.length - 1 - random(4096);
        copy[region] = random(256);
      }
      const path = join(dir, `fuzz-${round}.vmdk`);
      writeFileSync(path, copy);
      for (const action of [() => readAll(path), () => checkDisk(path)]) {
        const error = await action().then(
          () => undefined,
          (e: unknown) => e,
        );
        if (error !== undefined)
          expect(error, `round ${round}: ${String(error)}`).toBeInstanceOf(OvfkitError);
      }
    }
  });

  it("descriptors: extents outside the folder, missing extents, missing parents", async () => {
    const flat = await corpusFile("qemu-made/vmdk-monolithicFlat.vmdk");
    const text = readFileSync(flat, "latin1").replace(/\0+$/, "");
    const outside = join(dir, "outside.vmdk");
    writeFileSync(outside, text.replace('"vmdk-monolithicFlat-flat.vmdk"', '"../elsewhere-flat.vmdk"'));
    await expect(openDisk(outside)).rejects.toMatchObject({ code: "VMDK_EXTENT_OUTSIDE", line: 8 });
    const absolute = join(dir, "absolute.vmdk");
    writeFileSync(
      absolute,
      text.replace('"vmdk-monolithicFlat-flat.vmdk"', `"${flat.replace(/\.vmdk$/, "-flat.vmdk")}"`),
    );
    await expect(openDisk(absolute)).rejects.toMatchObject({ code: "VMDK_EXTENT_OUTSIDE" });
    const allowed = await openDisk(absolute, { allowExtentOutside: true });
    expect(allowed.virtualSize).toBe(8 * 1024 * 1024);
    await allowed.close();
    const missing = join(dir, "missing.vmdk");
    writeFileSync(missing, text.replace('"vmdk-monolithicFlat-flat.vmdk"', '"nothing-here.vmdk"'));
    await expect(openDisk(missing)).rejects.toMatchObject({ code: "FILE_NOT_FOUND" });

    const child = await corpusFile("qemu-made/vmdk-child.vmdk");
    copyFileSync(child, join(dir, "orphan.vmdk"));
    await expect(openDisk(join(dir, "orphan.vmdk"))).rejects.toMatchObject({ code: "VMDK_PARENT_MISSING" });
    const climbing = edited(child, "climbing.vmdk", (f) => {
      const hint = 'parentFileNameHint="vmdk-monolithicSparse.vmdk"';
      f.write('parentFileNameHint="../vmdk-monolithicSpa.vmdk"', f.indexOf(hint), "latin1"); // same length
    });
    await expect(openDisk(climbing)).rejects.toMatchObject({ code: "PARENT_OUTSIDE" });
  });
});
