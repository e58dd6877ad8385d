import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DRIVERS } from "../../src/formats/index.js";
import { ovfkit } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";

const dir = tempDir();
const MIB = 1024 * 1024;
function image(name: string, size: number, patch?: (b: Buffer) => void): string {
  const data = Buffer.alloc(size);
  data.write("ovfkit compare test", 4096);
  patch?.(data);
  const path = join(dir, name);
  writeFileSync(path, data);
  return path;
}
const a = image("a.raw", 2 * MIB);
const same = image("same.raw", 2 * MIB);
const differs = image("differs.raw", 2 * MIB, (b) => {
  b[MIB + 123] = 1;
});
const longerZeros = image("longer-zeros.raw", 3 * MIB);
const longerData = image("longer-data.raw", 3 * MIB, (b) => {
  b[2 * MIB + 7] = 9;
});
const noQemu = skipReason("qemu-img");

describe("ovfkit compare", () => {
  it("identical images: exit 0", () => {
    const result = ovfkit(["compare", a, same]);
    expect(result.status).toBe(0);
    expect(result.stdout).toBe("Images are identical.\n");
  });

  it("different images: exit 1 and the first differing offset, as qemu-img prints it", () => {
    const result = ovfkit(["compare", a, differs]);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe(`Content mismatch at offset ${MIB + 123}!\n`);
  });

  it("a longer image with only zeros past the end is identical, unless --strict", () => {
    const loose = ovfkit(["compare", a, longerZeros]);
    expect(loose.status).toBe(0);
    expect(loose.stdout).toBe("Warning: Image size mismatch!\nImages are identical.\n");
    const strict = ovfkit(["compare", "--strict", a, longerZeros]);
    expect(strict.status).toBe(1);
    expect(strict.stdout).toBe("Image size mismatch!\n");
  });

  it("data past the end of the shorter image is a difference", () => {
    const result = ovfkit(["compare", longerData, a]);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe(`Warning: Image size mismatch!\nContent mismatch at offset ${2 * MIB + 7}!\n`);
  });

  it("an unreadable image: exit 2 with a typed error", () => {
    const result = ovfkit(["compare", a, join(dir, "missing.raw")]);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/^ovfkit: FILE_NOT_FOUND: /);
  });

  it("an unknown format: exit 2", () => {
    const result = ovfkit(["compare", "-f", "floppy", a, same]);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/^ovfkit: UNSUPPORTED_FORMAT: unknown format "floppy"/);
  });

  // qemu-img names the start of the first differing 512-byte sector; ovfkit names the byte itself.
  it.skipIf(noQemu)("agrees with qemu-img compare on exit status and the differing sector", () => {
    for (const [x, y] of [
      [a, same],
      [a, differs],
      [a, longerZeros],
      [longerData, a],
    ] as const) {
      const ours = ovfkit(["compare", "-f", "raw", "-F", "raw", x, y]);
      const theirs = run("qemu-img", ["compare", "-f", "raw", "-F", "raw", x, y]);
      expect(ours.status).toBe(theirs.status);
      const offsetOf = (text: string) => Number(/mismatch at offset (\d+)!/.exec(text)?.[1] ?? Number.NaN);
      if (ours.status === 1) {
        expect(theirs.stdout.startsWith("Warning")).toBe(ours.stdout.startsWith("Warning"));
        expect(offsetOf(theirs.stdout)).toBe(Math.floor(offsetOf(ours.stdout) / 512) * 512);
      } else {
        expect(ours.stdout.trim()).toBe(theirs.stdout.trim());
      }
    }
  });

  const WRITABLE = DRIVERS.filter((d) => d.write && d.name !== "raw").map((d) => d.name);
  it.skipIf(noQemu).each(WRITABLE)(
    "agrees with qemu-img compare across formats (raw against %s)",
    (format) => {
      const image = join(dir, `differs.${format}`);
      expect(ovfkit(["convert", "-O", format, differs, image]).status).toBe(0);
      for (const other of [differs, a]) {
        const ours = ovfkit(["compare", "-f", "raw", "-F", format, other, image]);
        const theirs = run("qemu-img", ["compare", "-f", "raw", "-F", format, other, image]);
        expect(ours.status).toBe(theirs.status);
        const offsetOf = (text: string) => Number(/mismatch at offset (\d+)!/.exec(text)?.[1] ?? Number.NaN);
        if (ours.status === 1) {
          expect(offsetOf(theirs.stdout)).toBe(Math.floor(offsetOf(ours.stdout) / 512) * 512);
        }
      }
    },
  );
});
