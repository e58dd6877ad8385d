import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { collectMap, compareDisks, convert, detectFormat, openDisk } from "../../src/formats/index.js";
import { ovfkit } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";

const dir = tempDir();

describe("raw", () => {
  it("reads, maps and converts raw to raw sparsely", async () => {
    const src = join(dir, "a.raw");
    const data = Buffer.alloc(3 * 1024 * 1024);
    data.write("hello", 5);
    data.fill(7, 2 * 1024 * 1024 + 10, 2 * 1024 * 1024 + 20);
    writeFileSync(src, data);
    expect(await detectFormat(src)).toBe("raw");
    const reader = await openDisk(src);
    expect(reader.virtualSize).toBe(data.length);
    expect(await collectMap(reader)).toEqual([{ offset: 0, length: data.length, kind: "data" }]);
    const dest = join(dir, "b.raw");
    await convert(reader, dest, { format: "raw" });
    const copy = await openDisk(dest);
    expect((await compareDisks(reader, copy)).identical).toBe(true);
    expect((await copy.read(0, 10)).toString("latin1", 5, 10)).toBe("hello");
    await copy.close();
    await expect(convert(reader, dest, { format: "raw" })).rejects.toMatchObject({ code: "OUTPUT_EXISTS" });
    await reader.close();
  });

  it("info runs through the CLI", () => {
    const src = join(dir, "c.raw");
    writeFileSync(src, Buffer.alloc(4096));
    const result = ovfkit(["info", "--output", "json", src]);
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ format: "raw", "virtual-size": 4096 });
  });
});
