import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  CID_NO_PARENT,
  extentPath,
  formatDescriptor,
  looksLikeDescriptor,
  parseDescriptor,
} from "../../src/formats/vmdk-descriptor.js";

const VIRTUALBOX = `# Disk DescriptorFile
version=1
CID=255a27cd
parentCID=ffffffff
createType="streamOptimized"

# Extent description
RDONLY 16777216 SPARSE "ubuntu.2.0-disk1.vmdk"

# The disk Data Base 
#DDB

ddb.virtualHWVersion = "4"
ddb.adapterType="ide"
ddb.geometry.cylinders="16383"
ddb.uuid.image="428fbafb-8694-4ee2-9ce8-333d77f90140"
`;

describe("VMDK descriptor", () => {
  it("parses VirtualBox's spacing, comments, ddb keys and extent lines", () => {
    const d = parseDescriptor(VIRTUALBOX, "x.vmdk");
    expect(d).toMatchObject({
      version: 1,
      cid: 0x255a27cd,
      parentCid: CID_NO_PARENT,
      createType: "streamOptimized",
    });
    expect(d.extents).toEqual([
      {
        access: "RDONLY",
        sectors: 16777216,
        type: "SPARSE",
        file: "ubuntu.2.0-disk1.vmdk",
        offset: 0,
        line: 8,
      },
    ]);
    expect(d.ddb).toEqual({
      "ddb.virtualHWVersion": "4",
      "ddb.adapterType": "ide",
      "ddb.geometry.cylinders": "16383",
      "ddb.uuid.image": "428fbafb-8694-4ee2-9ce8-333d77f90140",
    });
  });

  it("reads every extent type, offsets, ZERO extents and parent hints", () => {
    const d = parseDescriptor(
      [
        "version=1",
        "CID=1",
        "parentCID=60f9b30d",
        'createType="vmfs"',
        'parentFileNameHint="base.vmdk"',
        'RW 100 FLAT "a-flat.vmdk" 7',
        "RW 50 ZERO",
        'NOACCESS 10 VMFSSPARSE "b-delta.vmdk"',
        'RW 20 VMFS "c.vmdk"',
      ].join("\r\n"),
      "d.vmdk",
    );
    expect(d.parentCid).toBe(0x60f9b30d);
    expect(d.parentFileNameHint).toBe("base.vmdk");
    expect(d.extents.map((e) => [e.access, e.sectors, e.type, e.file, e.offset])).toEqual([
      ["RW", 100, "FLAT", "a-flat.vmdk", 7],
      ["RW", 50, "ZERO", undefined, 0],
      ["NOACCESS", 10, "VMFSSPARSE", "b-delta.vmdk", 0],
      ["RW", 20, "VMFS", "c.vmdk", 0],
    ]);
  });

  it("reports syntax errors with line and column", () => {
    const bad = (text: string) => {
      try {
        parseDescriptor(text, "bad.vmdk");
      } catch (error) {
        return error;
      }
      throw new Error("no error");
    };
    expect(bad('createType="x"\nRW 12x SPARSE "a.vmdk"')).toMatchObject({
      code: "VMDK_DESCRIPTOR_SYNTAX",
      file: "bad.vmdk",
      line: 2,
      column: 4,
    });
    expect(bad('createType="x"\nRW 12 SPARSY "a.vmdk"')).toMatchObject({ line: 2, column: 7 });
    expect(bad('createType="x"\n  CID=xyz\nRW 1 SPARSE "a"')).toMatchObject({ line: 2, column: 7 });
    expect(bad('createType="x"\nthis is not a line\nRW 1 SPARSE "a"')).toMatchObject({ line: 2, column: 1 });
    expect(bad('RW 1 SPARSE "a"')).toMatchObject({
      code: "VMDK_DESCRIPTOR_SYNTAX",
      message: "descriptor has no createType",
    });
    expect(bad('createType="x"')).toMatchObject({ message: "descriptor declares no extents" });
    expect(bad('createType="x"\nRW 1 FLAT')).toMatchObject({ line: 2 });
  });

  it("round-trips through formatDescriptor in qemu-img's layout", () => {
    const d = parseDescriptor(VIRTUALBOX, "x.vmdk");
    const text = formatDescriptor(d);
    expect(text).toContain('ddb.adapterType = "ide"');
    expect(text).toContain('RDONLY 16777216 SPARSE "ubuntu.2.0-disk1.vmdk"');
    const again = parseDescriptor(text, "y.vmdk");
    expect({ ...again, extents: again.extents.map(({ line, ...e }) => e) }).toEqual({
      ...d,
      extents: d.extents.map(({ line, ...e }) => e),
    });
    expect(
      formatDescriptor({ ...d, extents: [{ access: "RW", sectors: 8, type: "FLAT", file: "f", offset: 0 }] }),
    ).toContain('RW 8 FLAT "f" 0');
  });

  it("refuses extent paths that are absolute or leave the folder unless allowed", () => {
    const where = { file: "/d/x.vmdk", line: 3 };
    expect(extentPath("/d", "x-flat.vmdk", false, where)).toBe(join("/d", "x-flat.vmdk"));
    expect(extentPath("/d", "sub/x.vmdk", false, where)).toBe(join("/d", "sub/x.vmdk"));
    for (const name of ["/etc/passwd", "../x.vmdk", "a/../../x.vmdk", "..\\x.vmdk", "C:\\x.vmdk"]) {
      expect(() => extentPath("/d", name, false, where), name).toThrow(
        expect.objectContaining({ code: "VMDK_EXTENT_OUTSIDE", line: 3 }),
      );
    }
    expect(extentPath("/d", "../x.vmdk", true, where)).toBe(join("/", "x.vmdk"));
  });

  it("detection: a descriptor is text with the header or createType + extent lines", () => {
    expect(looksLikeDescriptor(Buffer.from(VIRTUALBOX))).toBe(true);
    expect(looksLikeDescriptor(Buffer.concat([Buffer.from(VIRTUALBOX), Buffer.alloc(100)]))).toBe(true);
    expect(looksLikeDescriptor(Buffer.from("hello world\n"))).toBe(false);
    expect(looksLikeDescriptor(Buffer.from([0, 1, 2, 3]))).toBe(false);
  });
});
