import {
  closeSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { BLOCK, listTar, TarReader, TarWriter, tarHeader, USTAR_MAX_SIZE } from "../../src/ovf/tar.js";
import { tempDir } from "../helpers/tmp.js";
import { hasTool, run, skipReason } from "../helpers/tools.js";

const dir = tempDir("ovfkit-tar-");
const noTar = skipReason("tar");

/** Recomputes a header's checksum after a test mutated it (what a hostile tool would do). */
function fixChecksum(block: Buffer): Buffer {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "latin1");
  return block;
}

/** A header for `name` with its type flag / link name changed. */
function header(name: string, size: number, patch: { type?: string; link?: string } = {}): Buffer {
  const block = tarHeader({ name: "placeholder", size, mtime: 0 });
  block.fill(0, 0, 100);
  block.write(name, 0, 100, "utf8");
  if (patch.type) block.write(patch.type, 156, 1, "latin1");
  if (patch.link) block.write(patch.link, 157, 100, "utf8");
  return fixChecksum(block);
}

function archive(file: string, parts: Buffer[], endMarker = true): string {
  const path = join(dir, file);
  writeFileSync(path, Buffer.concat([...parts, endMarker ? Buffer.alloc(2 * BLOCK) : Buffer.alloc(0)]));
  return path;
}

function data(text: string): Buffer {
  const buf = Buffer.alloc(Math.ceil(text.length / BLOCK) * BLOCK);
  buf.write(text);
  return buf;
}

async function readAll(path: string): Promise<string[]> {
  const reader = await TarReader.open(path, { ova: true });
  try {
    const names: string[] = [];
    for await (const member of reader.members()) names.push(member.name);
    return names;
  } finally {
    await reader.close();
  }
}

describe("tar writer", () => {
  it("writes archives GNU tar lists and extracts byte for byte", { skip: Boolean(noTar) }, async () => {
    const path = join(dir, "ours.tar");
    const writer = await TarWriter.create(path);
    const content = Buffer.from("hello, appliance\n");
    await writer.add({ name: "a.ovf", size: content.length, mtime: 1_700_000_000 }, [content]);
    const big = Buffer.alloc(70_000, 7);
    await writer.add({ name: "disk.vmdk", size: big.length, mtime: 0 }, [
      big.subarray(0, 1000),
      big.subarray(1000),
    ]);
    await writer.finish();
    const listing = run("tar", ["tvf", path]);
    expect(listing.status).toBe(0);
    expect(listing.stdout).toMatch(/-rw-r--r-- root\/root\s+17 2023-11-14 \d\d:\d\d a\.ovf/);
    expect(listing.stdout).toMatch(/disk\.vmdk/);
    const out = join(dir, "extract");
    mkdirSync(out);
    expect(run("tar", ["xf", path, "-C", out]).status).toBe(0);
    expect(run("cmp", [join(out, "disk.vmdk"), "-"], { input: big.toString("latin1") }).status).toBe(0);
    expect((await listTar(path, { ova: true })).endMarker).toBe(true);
  });

  it("encodes sizes over 8 GiB in GNU base-256, which GNU tar and our reader read back", {
    skip: Boolean(noTar),
  }, async () => {
    const size = USTAR_MAX_SIZE + 1 + 4096; // 8 GiB + 4 KiB
    const block = tarHeader({ name: "huge.vmdk", size, mtime: 0 });
    expect(block[124]).toBe(0x80); // base-256 marker, never a PAX header
    const path = join(dir, "huge.tar");
    const fd = openSync(path, "w");
    writeSync(fd, block, 0, BLOCK, 0);
    closeSync(fd);
    // A sparse file: the data is holes, no disk space used.
    const fdTrunc = openSync(path, "r+");
    ftruncateSync(fdTrunc, BLOCK + size + 2 * BLOCK);
    closeSync(fdTrunc);
    const summary = await listTar(path, { ova: true });
    expect(summary.members[0]).toMatchObject({ name: "huge.vmdk", size });
    const listing = run("tar", ["tvf", path]);
    expect(listing.stdout).toContain(String(size));
    // Python's tarfile (what COT and oVirt's pack_ova use) reads the same size.
    if (hasTool("python3")) {
      const py = run("python3", [
        "-c",
        "import sys,tarfile; m=tarfile.open(sys.argv[1]).next(); print(m.name, m.size)",
        path,
      ]);
      expect(py.stdout.trim()).toBe(`huge.vmdk ${size}`);
    }
  });

  it("refuses names a plain header cannot hold rather than writing GNU/PAX long names", () => {
    expect(() => tarHeader({ name: `${"x".repeat(101)}.vmdk`, size: 1, mtime: 0 })).toThrow(
      expect.objectContaining({ code: "OVA_NAME_TOO_LONG" }),
    );
    expect(() => tarHeader({ name: "dir/a.vmdk", size: 1, mtime: 0 })).toThrow(
      expect.objectContaining({ code: "OVA_MEMBER_PATH" }),
    );
  });
});

describe("tar reader refuses hostile OVAs with typed errors, member name and offset", () => {
  const cases: { name: string; parts: () => Buffer[]; code: string; offset: number; end?: boolean }[] = [
    {
      name: "traversal",
      parts: () => [header("../evil.ovf", 3), data("abc")],
      code: "OVA_PATH_TRAVERSAL",
      offset: 0,
    },
    {
      name: "absolute",
      parts: () => [header("/etc/passwd", 3), data("abc")],
      code: "OVA_ABSOLUTE_PATH",
      offset: 0,
    },
    {
      name: "drive letter",
      parts: () => [header("C:evil.ovf", 3), data("abc")],
      code: "OVA_ABSOLUTE_PATH",
      offset: 0,
    },
    {
      name: "folder",
      parts: () => [header("sub/a.ovf", 3), data("abc")],
      code: "OVA_MEMBER_PATH",
      offset: 0,
    },
    {
      name: "symlink",
      parts: () => [header("a.vmdk", 0, { type: "2", link: "/etc/shadow" })],
      code: "OVA_LINK",
      offset: 0,
    },
    {
      name: "hardlink",
      parts: () => [header("a.vmdk", 0, { type: "1", link: "b" })],
      code: "OVA_LINK",
      offset: 0,
    },
    { name: "char device", parts: () => [header("tty", 0, { type: "3" })], code: "OVA_DEVICE", offset: 0 },
    { name: "directory", parts: () => [header("d", 0, { type: "5" })], code: "OVA_MEMBER_TYPE", offset: 0 },
    {
      name: "duplicate",
      parts: () => [header("a.ovf", 3), data("abc"), header("a.ovf", 3), data("xyz")],
      code: "OVA_DUPLICATE_MEMBER",
      offset: 1024,
    },
    {
      name: "declared size larger than the file",
      parts: () => [header("a.vmdk", 2 ** 40), data("abc")],
      code: "OVA_MEMBER_SIZE",
      offset: 512,
    },
    {
      name: "truncated data",
      parts: () => [header("a.ovf", 1600), data("abc")],
      code: "OVA_TRUNCATED",
      offset: 512,
    },
    {
      name: "truncated header",
      parts: () => [header("a.ovf", 3), data("abc"), Buffer.alloc(100, 1)],
      code: "OVA_TRUNCATED",
      offset: 1024,
      end: false,
    },
    {
      name: "bad checksum",
      parts: () => [
        header("a.ovf", 3),
        data("abc"),
        (() => {
          const h = header("b.vmdk", 0);
          h[0] = 0x63;
          return h;
        })(),
      ],
      code: "OVA_BAD_HEADER",
      offset: 1024,
    },
    {
      name: "gzip-compressed",
      parts: () => [gzipSync(Buffer.concat([header("a.ovf", 3), data("abc"), Buffer.alloc(1024)]))],
      code: "OVA_COMPRESSED",
      offset: 0,
    },
    {
      name: "not a tar",
      parts: () => [Buffer.from("<?xml version='1.0'?><Envelope/>".padEnd(600))],
      code: "OVA_NOT_TAR",
      offset: 0,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const path = archive(`${c.name.replace(/\W+/g, "-")}.ova`, c.parts(), c.end ?? true);
      await expect(readAll(path)).rejects.toMatchObject({ code: c.code, offset: c.offset, file: path });
    });
  }

  it("lists links in tolerant mode (diagnostics) but refuses them in OVA mode", async () => {
    const path = archive("links-tolerant.tar", [header("l", 0, { type: "2", link: "target" })]);
    const summary = await listTar(path);
    expect(summary.members[0]).toMatchObject({ name: "l", type: "symlink", linkName: "target" });
  });

  it("reads GNU tar's own symlinks, hardlinks and ../ names as refusals", {
    skip: Boolean(noTar),
  }, async () => {
    const src = join(dir, "gnu-src");
    mkdirSync(src);
    writeFileSync(join(src, "a.ovf"), "x");
    symlinkSync("/etc/passwd", join(src, "link.vmdk"));
    const symlinkTar = join(dir, "gnu-symlink.ova");
    expect(run("tar", ["cf", symlinkTar, "-C", src, "a.ovf", "link.vmdk"]).status).toBe(0);
    await expect(readAll(symlinkTar)).rejects.toMatchObject({ code: "OVA_LINK", offset: 1024 });
    const hardTar = join(dir, "gnu-hard.ova");
    expect(run("tar", ["cf", hardTar, "-C", src, "a.ovf", "a.ovf", "--hard-dereference"]).status).toBe(0);
    await expect(readAll(hardTar)).rejects.toMatchObject({
      code: expect.stringMatching(/OVA_LINK|OVA_DUPLICATE_MEMBER/),
    });
    const parentTar = join(dir, "gnu-parent.ova");
    expect(run("tar", ["cf", parentTar, "-P", "-C", src, "../gnu-src/a.ovf"]).status).toBe(0);
    await expect(readAll(parentTar)).rejects.toMatchObject({ code: "OVA_PATH_TRAVERSAL" });
    expect(hasTool("tar")).toBe(true);
  });

  it("reads PAX and GNU long names (for diagnostics) and flags them", { skip: Boolean(noTar) }, async () => {
    const src = join(dir, "long-src");
    mkdirSync(src);
    const long = `${"n".repeat(120)}.ovf`;
    writeFileSync(join(src, long), "x");
    for (const format of ["gnu", "pax"]) {
      const path = join(dir, `long-${format}.tar`);
      expect(run("tar", ["cf", path, `--format=${format}`, "-C", src, long]).status).toBe(0);
      const summary = await listTar(path, { ova: true });
      expect(summary.members).toHaveLength(1);
      expect(summary.members[0]).toMatchObject({ name: long, size: 1, extendedHeader: true });
    }
  });
});
