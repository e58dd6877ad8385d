import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import { constants, deflateRawSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { OvfkitError } from "../../src/errors.js";
import { checkDisk, convert, type DiskReader, openDisk } from "../../src/formats/index.js";
import { MAX_BAT_PROBLEMS } from "../../src/formats/vhd-reader.js";
import { verifyPackage } from "../../src/ovf/ova.js";
import { packOva } from "../../src/ovf/pack.js";
import { validateDescriptor } from "../../src/ovf/validate.js";
import { DirtySet, Rng, vhdLayout } from "../fuzz/mutators.js";
import { tempDir } from "../helpers/tmp.js";

/**
 * Hostile inputs the owners' tests do not already cover (docs/reliability.md
 * lists where every hostile case is tested). Each is refused with a typed
 * error, before any resource is committed to the claim.
 */

const MiB = 1024 * 1024;
const dir = tempDir("ovfkit-hostile-");

/** A small raw disk with data at the start, and its conversion to `format`. */
async function makeImage(
  name: string,
  format: string,
  options: Record<string, string> = {},
): Promise<string> {
  const raw = join(dir, `${name}.raw`);
  const data = Buffer.alloc(4 * MiB);
  const rng = new Rng(99);
  for (let i = 0; i < 64 * 1024; i++) data[i] = rng.int(256); // incompressible: the first stream grain fills its 64 KiB
  writeFileSync(raw, data);
  const source = await openDisk(raw, { format: "raw" });
  const path = join(dir, name);
  try {
    await convert(source, path, { format, options });
  } finally {
    await source.close();
  }
  return path;
}

function patch(path: string, edit: (buf: Buffer) => void): string {
  const buf = readFileSync(path);
  edit(buf);
  writeFileSync(path, buf);
  return path;
}

/** Opens, maps and reads the first sector; the error it ends with (or undefined when it all worked). */
async function firstError(path: string): Promise<unknown> {
  let reader: DiskReader | undefined;
  try {
    reader = await openDisk(path);
    for await (const _ of reader.map()) break;
    await reader.read(0, 512);
    return undefined;
  } catch (error) {
    return error;
  } finally {
    await reader?.close();
  }
}

/** VHD footer checksums recomputed after an edit (both copies) and the dynamic header's. */
function fixVhdChecksums(buf: Buffer): void {
  vhdLayout(buf).fixup?.(buf, new DirtySet());
}

/**
 * A dynamic VHD whose BAT (zeros: every entry points into the footer copy)
 * covers `virtualSize` in `blockSize` blocks, inside a sparse file of
 * `fileSize` bytes: the shape of a hostile image that costs nothing on disk.
 */
async function writeSparseVhd(
  path: string,
  shape: { blockSize: number; virtualSize: number; fileSize: number },
): Promise<void> {
  const buf = readFileSync(await makeImage(`${basename(path)}.seed.vhd`, "vpc"));
  const dynamicHeader = Number(buf.readBigUInt64BE(buf.length - 512 + 16));
  buf.writeUInt32BE(0xffffffff, dynamicHeader + 28); // max table entries
  buf.writeUInt32BE(shape.blockSize, dynamicHeader + 32);
  for (const footer of [0, buf.length - 512]) buf.writeBigUInt64BE(BigInt(shape.virtualSize), footer + 48);
  fixVhdChecksums(buf);
  const tableOffset = Number(buf.readBigUInt64BE(dynamicHeader + 16));
  buf.fill(0, tableOffset, buf.length - 512); // BAT and blocks: zeros, like the sparse rest
  writeFileSync(path, buf.subarray(0, buf.length - 512));
  truncateSync(path, shape.fileSize - 512);
  appendFileSync(path, buf.subarray(buf.length - 512));
}

function guidBytes(guid: string): Buffer {
  // mixed-endian: the first three groups are little-endian (MS-VHDX 2.2.1 GUID)
  const hex = guid.replaceAll("-", "");
  const b = Buffer.from(hex, "hex");
  return Buffer.concat([
    Buffer.from(b.subarray(0, 4)).reverse(),
    Buffer.from(b.subarray(4, 6)).reverse(),
    Buffer.from(b.subarray(6, 8)).reverse(),
    b.subarray(8),
  ]);
}

const VHDX_METADATA_REGION = guidBytes("8B7CA206-4790-4B9A-B8FE-575F050F886E");
const VHDX_BAT_REGION = guidBytes("2DC27766-F623-4200-9D64-115E9BFD4A08");
const VHDX_VIRTUAL_DISK_SIZE = guidBytes("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
const VHDX_REGION_TABLES = [192 * 1024, 256 * 1024];

/** The region table entry of `guid` in each region table (offset of the entry). */
function vhdxRegionEntries(buf: Buffer, guid: Buffer): number[] {
  return VHDX_REGION_TABLES.map((table) => {
    const count = buf.readUInt32LE(table + 8);
    for (let i = 0; i < count; i++) {
      const entry = table + 16 + i * 32;
      if (buf.subarray(entry, entry + 16).equals(guid)) return entry;
    }
    throw new Error("region not found");
  });
}

async function crc32cFix(buf: Buffer): Promise<void> {
  const { crc32c } = await import("../../src/formats/crc32c.js");
  for (const table of VHDX_REGION_TABLES) {
    buf.writeUInt32LE(0, table + 4);
    buf.writeUInt32LE(crc32c(buf.subarray(table, table + 64 * 1024)), table + 4);
  }
}

describe("resource bombs: claims far beyond the file are refused before allocation", () => {
  it("VHD: a dynamic disk claiming 1 EiB (checksums fixed) is refused", async () => {
    const path = patch(await makeImage("eib.vhd", "vpc"), (buf) => {
      for (const at of [0, buf.length - 512]) buf.writeBigUInt64BE(1n << 60n, at + 48);
      fixVhdChecksums(buf);
    });
    expect(await firstError(path)).toBeInstanceOf(OvfkitError);
  });

  it("VHD: a BAT claiming 2^32 entries (16 GiB) is refused", async () => {
    const path = patch(await makeImage("bat.vhd", "vpc"), (buf) => {
      const dyn = Number(buf.readBigUInt64BE(buf.length - 512 + 16));
      buf.writeUInt32BE(0xffffffff, dyn + 28);
      fixVhdChecksums(buf);
    });
    const error = await firstError(path);
    expect(error).toBeInstanceOf(OvfkitError);
    const report = await checkDisk(path).catch((e: unknown) => e);
    expect(report instanceof OvfkitError || Array.isArray((report as { findings?: unknown }).findings)).toBe(
      true,
    );
  });

  /**
   * Found by this suite (fixed in vhd-reader.ts): a dynamic VHD claiming 2040 GiB in 4 KiB
   * blocks needs a 2 GiB BAT; in a large sparse file (costs nothing on disk) `open` read it
   * all and decoded it into another 2 GiB array (4 GiB of memory, 28 s) before deciding
   * anything. Now refused up front: VHD_BAT_TOO_LARGE.
   */
  it("VHD: a 2 GiB BAT inside a 3 GiB sparse file is refused without loading it", async () => {
    const path = join(dir, "sparse-bat.vhd");
    await writeSparseVhd(path, { blockSize: 4096, virtualSize: 2040 * 1024 ** 3, fileSize: 3 * 1024 ** 3 });
    const before = process.memoryUsage().rss;
    expect(await firstError(path)).toMatchObject({ code: "VHD_BAT_TOO_LARGE" });
    const report = await checkDisk(path);
    expect(report.findings.map((f) => f.code)).toEqual(["VHD_BAT_TOO_LARGE"]);
    expect(process.memoryUsage().rss - before).toBeLessThan(256 * MiB);
  });

  /**
   * Found by this suite (fixed in vhd-reader.ts/vhd-check.ts): `check` of a 2040 GiB VHD in
   * 512 KiB blocks whose BAT is all zeros listed 4,177,920 findings (61 s, > 1 GiB of memory).
   * It now stops at MAX_BAT_PROBLEMS.
   */
  it("VHD check: millions of broken BAT entries are listed up to a bound", async () => {
    const path = join(dir, "sparse-bad-bat.vhd");
    await writeSparseVhd(path, {
      blockSize: 512 * 1024,
      virtualSize: 2040 * 1024 ** 3,
      fileSize: 20 * 1024 ** 3,
    });
    const report = await checkDisk(path);
    expect(report.findings.length).toBeGreaterThan(0);
    expect(report.findings.length).toBeLessThanOrEqual(MAX_BAT_PROBLEMS + 10);
    expect(report.findings[0]).toMatchObject({ code: "VHD_BAT_OUT_OF_RANGE", severity: "corruption" });
  });

  it("VHDX: a virtual size of 1 EiB in the metadata is refused", async () => {
    const path = patch(await makeImage("eib.vhdx", "vhdx"), (buf) => {
      const [entry] = vhdxRegionEntries(buf, VHDX_METADATA_REGION);
      const metadata = Number(buf.readBigUInt64LE(entry! + 16));
      const count = buf.readUInt16LE(metadata + 10);
      for (let i = 0; i < count; i++) {
        const item = metadata + 32 + i * 32;
        if (buf.subarray(item, item + 16).equals(VHDX_VIRTUAL_DISK_SIZE)) {
          buf.writeBigUInt64LE(1n << 60n, metadata + buf.readUInt32LE(item + 16));
        }
      }
    });
    expect(await firstError(path)).toBeInstanceOf(OvfkitError);
  });

  it("VHDX: a BAT region claiming 4 GiB (region table CRCs fixed) is refused", async () => {
    const source = await makeImage("bat.vhdx", "vhdx");
    const buf = readFileSync(source);
    for (const entry of vhdxRegionEntries(buf, VHDX_BAT_REGION)) buf.writeUInt32LE(0xfff00000, entry + 24);
    await crc32cFix(buf);
    writeFileSync(source, buf);
    expect(await firstError(source)).toBeInstanceOf(OvfkitError);
  });

  it("qcow2: a virtual size of 1 EiB is refused", async () => {
    const path = patch(await makeImage("eib.qcow2", "qcow2"), (buf) => buf.writeBigUInt64BE(1n << 60n, 24));
    expect(await firstError(path)).toBeInstanceOf(OvfkitError);
  });

  it("qcow2: a refcount table claiming 2^32 clusters gives a typed result from open and check", async () => {
    const path = patch(await makeImage("refcount.qcow2", "qcow2"), (buf) =>
      buf.writeUInt32BE(0xffffffff, 56),
    );
    const opened = await firstError(path);
    expect(opened === undefined || opened instanceof OvfkitError).toBe(true);
    const report = await checkDisk(path).catch((e: unknown) => e);
    expect(report instanceof OvfkitError || Array.isArray((report as { findings?: unknown }).findings)).toBe(
      true,
    );
  });

  it("VMDK stream: a grain that inflates to 16 MiB (grain size 64 KiB) is refused", async () => {
    const path = await makeImage("bomb.vmdk", "vmdk", { subformat: "streamOptimized" });
    const buf = readFileSync(path);
    const firstMarker = Number(buf.readBigUInt64LE(64)) * 512; // overHead: where the grains start
    expect(buf.readBigUInt64LE(firstMarker)).toBe(0n); // the grain of LBA 0
    const slot = Math.ceil((12 + buf.readUInt32LE(firstMarker + 8)) / 512) * 512 - 12;
    const bomb = zlibBomb(16 * MiB, slot);
    expect(bomb.length).toBeLessThanOrEqual(slot);
    bomb.copy(buf, firstMarker + 12);
    buf.writeUInt32LE(bomb.length, firstMarker + 8);
    writeFileSync(path, buf);
    const before = process.memoryUsage().rss;
    const error = await firstError(path);
    expect(error).toBeInstanceOf(OvfkitError);
    expect((error as OvfkitError).code).toMatch(/^VMDK_/);
    // not a hard memory bound (GC is lazy), but a 16 MiB inflation per grain would show
    expect(process.memoryUsage().rss - before).toBeLessThan(256 * MiB);
  });
});

/**
 * A zlib stream of `size` zero bytes padded to at most `room` bytes with
 * empty stored blocks (so it fills the original grain's sectors exactly and
 * the stream's markers stay where they were).
 */
function zlibBomb(size: number, room: number): Buffer {
  const body = deflateRawSync(Buffer.alloc(size), { level: 9, finishFlush: constants.Z_SYNC_FLUSH });
  const emptyStored = Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]);
  const finalStored = Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff]);
  const adler = Buffer.alloc(4);
  adler.writeUInt32BE((((size % 65521) << 16) | 1) >>> 0); // Adler-32 of zeros: a = 1, b = n mod 65521
  const fixed = 2 + body.length + finalStored.length + 4;
  const padding = Math.max(0, Math.floor((room - fixed) / emptyStored.length));
  return Buffer.concat([
    Buffer.from([0x78, 0xda]),
    body,
    ...Array.from({ length: padding }, () => emptyStored),
    finalStored,
    adler,
  ]);
}

describe("parent loops", () => {
  it("VMDK: a child whose parent is itself, and two children naming each other, are refused", async () => {
    const loopDir = join(dir, "vmdk-loop");
    mkdirSync(loopDir);
    const descriptor = (self: string, parent: string) =>
      [
        "# Disk DescriptorFile",
        "version=1",
        "CID=12345678",
        "parentCID=12345678",
        'createType="monolithicFlat"',
        `parentFileNameHint="${parent}"`,
        `RW 8192 FLAT "${self}-flat.vmdk" 0`,
        "",
      ].join("\n");
    for (const name of ["self", "a", "b"])
      writeFileSync(join(loopDir, `${name}-flat.vmdk`), Buffer.alloc(4 * MiB));
    writeFileSync(join(loopDir, "self.vmdk"), descriptor("self", "self.vmdk"));
    writeFileSync(join(loopDir, "a.vmdk"), descriptor("a", "b.vmdk"));
    writeFileSync(join(loopDir, "b.vmdk"), descriptor("b", "a.vmdk"));
    for (const name of ["self.vmdk", "a.vmdk"]) {
      const error = await firstError(join(loopDir, name));
      expect(error, name).toBeInstanceOf(OvfkitError);
    }
  });
});

describe("OVF hrefs that leave the package or name a URL", () => {
  const envelope = (href: string) => `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:id="file1" ovf:href="${href}" ovf:size="512"/></References>
  <DiskSection><Info>disks</Info><Disk ovf:diskId="d1" ovf:fileRef="file1" ovf:capacity="512" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/></DiskSection>
  <VirtualSystem ovf:id="vm"><Info>vm</Info></VirtualSystem>
</Envelope>
`;
  const hrefs: [string, RegExp][] = [
    ["file:///etc/passwd", /^OVF_HREF_REMOTE$/],
    ["http://127.0.0.1/disk.vmdk", /^OVF_HREF_REMOTE$/],
    ["https://example.com/disk.vmdk", /^OVF_HREF_REMOTE$/],
    ["../outside.vmdk", /^OVF_HREF_/],
    ["/etc/passwd", /^OVF_HREF_/],
    ["C:\\Windows\\disk.vmdk", /^OVF_HREF_/],
  ];

  for (const [href, code] of hrefs) {
    it(`pack refuses ovf:href="${href}"; verify of the folder flags it and never follows it`, async () => {
      const folder = join(dir, `href-${hrefs.findIndex(([h]) => h === href)}`);
      mkdirSync(folder, { recursive: true });
      const ovf = join(folder, "app.ovf");
      writeFileSync(ovf, envelope(href));
      await expect(packOva(ovf, join(folder, "app.ova"))).rejects.toMatchObject({
        code: expect.stringMatching(code),
      });
      // verify names the href (a URL is a warning: nothing is fetched; with --strict it fails)
      const verified = await verifyPackage(ovf, { strict: true }).catch((error: unknown) => error);
      if (verified instanceof OvfkitError) {
        expect(verified.code).toMatch(code);
      } else {
        const report = verified as Awaited<ReturnType<typeof verifyPackage>>;
        expect(report.ok).toBe(false);
        expect(
          report.findings.some((f) => code.test(f.code)),
          JSON.stringify(report.findings),
        ).toBe(true);
        expect(report.bytesHashed).toBe(0);
      }
    });
  }
});

/**
 * Found by this suite (fixed in src/ovf/ova.ts + pack.ts): an OVF folder whose disk is a
 * symbolic link to a file elsewhere (`disk.vmdk -> ~/.ssh/id_rsa`) was packed into the OVA and
 * verified as OK — a downloaded folder could make `ovfkit pack` carry any readable file.
 */
describe("OVF folder hrefs that are symbolic links", () => {
  it("a link leaving the folder: pack refuses (OVF_HREF_UNSAFE), verify reports it; a link inside is fine", async () => {
    const root = join(dir, "symlinks");
    const app = join(root, "app");
    mkdirSync(app, { recursive: true });
    const secret = join(root, "secret.vmdk");
    writeFileSync(secret, "not part of the package");
    writeFileSync(join(app, "app.ovf"), envelopeWithHref("disk.vmdk", 23));
    symlinkSync(secret, join(app, "disk.vmdk"));
    await expect(packOva(join(app, "app.ovf"), join(root, "out.ova"))).rejects.toMatchObject({
      code: "OVF_HREF_UNSAFE",
    });
    expect(existsSync(join(root, "out.ova"))).toBe(false);
    const report = await verifyPackage(join(app, "app.ovf"));
    expect(report.ok).toBe(false);
    expect(report.findings.map((f) => f.code)).toContain("OVF_HREF_UNSAFE");
    expect(report.bytesHashed).toBe(0);

    const inside = join(root, "inside");
    mkdirSync(join(inside, "store"), { recursive: true });
    writeFileSync(join(inside, "store", "disk.vmdk"), "not part of the package");
    writeFileSync(join(inside, "app.ovf"), envelopeWithHref("disk.vmdk", 23));
    symlinkSync(join("store", "disk.vmdk"), join(inside, "disk.vmdk"));
    const packed = await packOva(join(inside, "app.ovf"), join(root, "inside.ova"));
    expect(packed).toBeDefined();
  });
});

/**
 * Found by this suite (fixed in src/formats/vmdk-descriptor.ts): an extent named plainly but
 * being a symbolic link to a file elsewhere was read — `convert` copied the linked file.
 */
describe("VMDK extents that are symbolic links", () => {
  it("a link leaving the folder is VMDK_EXTENT_OUTSIDE; allowed with allowExtentOutside; a link inside is fine", async () => {
    const root = join(dir, "vmdk-symlink");
    const img = join(root, "img");
    mkdirSync(join(img, "store"), { recursive: true });
    writeFileSync(join(root, "secret.bin"), Buffer.alloc(4096, 0x5a));
    const descriptor = [
      "# Disk DescriptorFile",
      "version=1",
      "CID=fffffffe",
      "parentCID=ffffffff",
      'createType="monolithicFlat"',
      'RW 8 FLAT "disk-flat.vmdk" 0',
      "",
    ].join("\n");
    writeFileSync(join(img, "disk.vmdk"), descriptor);
    symlinkSync(join("..", "secret.bin"), join(img, "disk-flat.vmdk"));
    expect(await firstError(join(img, "disk.vmdk"))).toMatchObject({ code: "VMDK_EXTENT_OUTSIDE" });
    const allowed = await openDisk(join(img, "disk.vmdk"), { allowExtentOutside: true });
    expect((await allowed.read(0, 512))[0]).toBe(0x5a);
    await allowed.close();

    const inside = join(root, "inside");
    mkdirSync(join(inside, "store"), { recursive: true });
    writeFileSync(join(inside, "store", "data.bin"), Buffer.alloc(4096, 0x33));
    writeFileSync(join(inside, "disk.vmdk"), descriptor);
    symlinkSync(join("store", "data.bin"), join(inside, "disk-flat.vmdk"));
    const reader = await openDisk(join(inside, "disk.vmdk"));
    expect((await reader.read(0, 512))[0]).toBe(0x33);
    await reader.close();
  });
});

function envelopeWithHref(href: string, size: number): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:id="file1" ovf:href="${href}" ovf:size="${size}"/></References>
  <VirtualSystem ovf:id="vm"><Info>vm</Info></VirtualSystem>
</Envelope>
`;
}

describe("XML bombs not covered by the OVF owner's tests", () => {
  it("a 40 MiB attribute value is refused by size, not parsed", async () => {
    const text = `<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" a="${"x".repeat(40 * MiB)}"/>`;
    const result = await validateDescriptor(Buffer.from(text)).catch((error: unknown) => error);
    if (result instanceof OvfkitError) {
      expect(result.code).toBe("OVF_XML_TOO_LARGE");
    } else {
      // a finding of the size rule (OVF-XML-004), and nothing parsed behind it
      const findings = (result as Awaited<ReturnType<typeof validateDescriptor>>).findings;
      expect(findings).toHaveLength(1);
      expect(findings[0]).toMatchObject({ ruleId: "OVF-XML-004", severity: "error" });
    }
  });
});
