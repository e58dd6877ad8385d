import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "./helpers/tmp.js";

/**
 * The library as users import it: the built package entry (dist/index.js,
 * what `import ... from "ovfkit"` resolves to through package.json
 * "exports"), with the functions the README documents.
 */
const dir = tempDir();

describe("the ovfkit package entry", () => {
  it("exports what the README documents, and they work together", async () => {
    const ovfkit = await import(resolve(import.meta.dirname, "../dist/index.js"));
    for (const name of [
      "openDisk",
      "detectFormat",
      "convert",
      "createDisk",
      "checkDisk",
      "resizeDisk",
      "compareDisks",
      "dataChunks",
      "withOutputs",
      "driverFor",
      "parseSize",
      "validateOvf",
      "parseOvf",
      "serializeOvf",
      "verifyPackage",
      "packOva",
      "convertAppliance",
      "createOvf",
      "bootTest",
      "formatSarif",
      "formatJunit",
    ]) {
      expect(typeof ovfkit[name], name).toBe("function");
    }
    const raw = join(dir, "a.raw");
    const data = Buffer.alloc(1024 * 1024);
    data.write("library", 4096);
    writeFileSync(raw, data);
    const source = await ovfkit.openDisk(raw);
    await ovfkit.convert(source, join(dir, "a.vhd"), { format: "vpc" });
    const vhd = await ovfkit.openDisk(join(dir, "a.vhd"));
    expect(vhd.format).toBe("vpc");
    expect((await ovfkit.compareDisks(source, vhd)).identical).toBe(true);
    await Promise.all([source.close(), vhd.close()]);
    await expect(ovfkit.openDisk(join(dir, "missing.vhd"))).rejects.toBeInstanceOf(ovfkit.OvfkitError);
  });
});
