import { spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DRIVERS } from "../../src/formats/index.js";
import { BIN, ovfkit } from "../helpers/cli.js";
import { sha256File } from "../helpers/corpus.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";

const MIB = 1024 * 1024;
const dir = tempDir();

/** 3 MiB: text, a hole, a patterned MiB; what a small real disk looks like. */
const source = join(dir, "source.raw");
{
  const data = Buffer.alloc(3 * MIB);
  data.write("hello from ovfkit convert\n".repeat(1000), 0);
  for (let i = 2 * MIB; i < 3 * MIB; i++) data[i] = (i * 31) & 0xff;
  writeFileSync(source, data);
}

/** Temporary outputs (formats/output.ts names them `.NAME.ovfkit-XXXX.tmp`) left in a folder. */
function leftovers(folder: string): string[] {
  return readdirSync(folder).filter((name) => name.includes(".ovfkit-"));
}

const WRITABLE = DRIVERS.filter((d) => d.write && d.name !== "raw").map((d) => d.name);

describe("ovfkit convert", () => {
  it("raw -> raw keeps every byte", async () => {
    const dest = join(dir, "copy.raw");
    const result = ovfkit(["convert", "-O", "raw", source, dest]);
    expect(result.status).toBe(0);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe(""); // no progress bar when stderr is not a terminal
    expect(await sha256File(dest)).toBe(await sha256File(source));
  });

  it.each(WRITABLE)("raw -> %s -> raw keeps every byte", async (format) => {
    const middle = join(dir, `round.${format}`);
    const back = join(dir, `round-${format}.raw`);
    expect(ovfkit(["convert", "-O", format, source, middle]).status).toBe(0);
    expect(ovfkit(["compare", source, middle]).status).toBe(0);
    expect(ovfkit(["convert", "-O", "raw", middle, back]).status).toBe(0);
    expect(ovfkit(["compare", source, back]).status).toBe(0);
    expect(
      readFileSync(back)
        .subarray(0, 3 * MIB)
        .equals(readFileSync(source)),
    ).toBe(true);
  });

  it("refuses an existing destination without --force and leaves it untouched", () => {
    const dest = join(dir, "exists.raw");
    writeFileSync(dest, "precious");
    const result = ovfkit(["convert", "-O", "raw", source, dest]);
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      `ovfkit: OUTPUT_EXISTS: ${dest} exists (use --force to overwrite) (${dest})\n`,
    );
    expect(readFileSync(dest, "utf8")).toBe("precious");
    expect(leftovers(dir)).toEqual([]);
  });

  it("--force replaces an existing destination", async () => {
    const dest = join(dir, "replaced.raw");
    writeFileSync(dest, "old");
    expect(ovfkit(["convert", "-O", "raw", "--force", source, dest]).status).toBe(0);
    expect(await sha256File(dest)).toBe(await sha256File(source));
  });

  it("a bad -o option fails with BAD_OPTION and leaves no file behind", () => {
    const dest = join(dir, "bad-option.raw");
    const result = ovfkit(["convert", "-O", "raw", "-o", "cluster_size=64K", source, dest]);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^ovfkit: BAD_OPTION: /);
    expect(existsSync(dest)).toBe(false);
    expect(leftovers(dir)).toEqual([]);
  });

  it("-o help lists the writer's options and converts nothing", () => {
    const result = ovfkit(["convert", "-O", "raw", "-o", "help", source, join(dir, "never.raw")]);
    expect(result.status).toBe(0);
    expect(result.stdout).toBe("raw takes no -o options\n");
    expect(existsSync(join(dir, "never.raw"))).toBe(false);
  });

  it("an unknown output format and a missing source are typed errors", () => {
    const unknown = ovfkit(["convert", "-O", "floppy", source, join(dir, "x.img")]);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/^ovfkit: UNSUPPORTED_FORMAT: unknown format "floppy"/);
    const missing = ovfkit(["convert", "-O", "raw", join(dir, "absent.raw"), join(dir, "y.raw")]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^ovfkit: FILE_NOT_FOUND: /);
    expect(leftovers(dir)).toEqual([]);
    const noFolder = ovfkit(["convert", "-O", "raw", source, join(dir, "no-such-folder", "z.raw")]);
    expect(noFolder.status).toBe(1);
    expect(noFolder.stderr).toMatch(/^ovfkit: FILE_NOT_FOUND: no such folder: .*no-such-folder/);
  });

  it("--threads must be a positive whole number", () => {
    const result = ovfkit(["convert", "-O", "raw", "--threads", "0", source, join(dir, "threads.raw")]);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^ovfkit: BAD_ARGUMENT: --threads must be/);
    expect(existsSync(join(dir, "threads.raw"))).toBe(false);
  });

  // `script` runs the command on a pseudo-terminal, as when a person types it.
  it.skipIf(skipReason("script"))("draws the progress bar by itself when stderr is a terminal", () => {
    const dest = join(dir, "tty.raw");
    const line = [process.execPath, BIN, "convert", "-O", "raw", source, dest].map((a) => `'${a}'`).join(" ");
    const result = run("script", ["-qec", line, "/dev/null"]);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("convert [");
    expect(result.stdout).toContain("100%");
    expect(existsSync(dest)).toBe(true);
  });

  it("-p draws the progress bar on stderr even when it is not a terminal; stdout stays clean", () => {
    const result = ovfkit(["convert", "-p", "-O", "raw", source, join(dir, "progress.raw")]);
    expect(result.status).toBe(0);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("convert [");
    expect(result.stderr).toContain("100%");
  });
});

describe("ovfkit convert interrupted", () => {
  /** A 16 GiB sparse raw: reading its holes keeps convert busy for seconds, long enough to interrupt it. */
  const big = join(dir, "big-sparse.raw");
  const fd = openSync(big, "w");
  writeSync(fd, Buffer.from("data at the start"), 0, 17, 0);
  writeSync(fd, Buffer.from("data at the end"), 0, 15, 16 * 1024 * MIB - 15);
  closeSync(fd);

  async function interruptConvert(
    signal: NodeJS.Signals,
    format: string,
  ): Promise<{ code: number | null; signal: string | null }> {
    const outDir = join(dir, `out-${signal}-${format}`);
    mkdirSync(outDir);
    const dest = join(outDir, `big.${format}`);
    const child = spawn(process.execPath, [BIN, "convert", "-O", format, big, dest], { stdio: "ignore" });
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      child.on("exit", (code, sig) => resolve({ code, signal: sig })),
    );
    // Interrupt once the temporary output exists, i.e. mid-convert.
    const deadline = Date.now() + 30_000;
    while (leftovers(outDir).length === 0 && child.exitCode === null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(leftovers(outDir).length).toBeGreaterThan(0);
    child.kill(signal);
    const result = await exited;
    expect(readdirSync(outDir)).toEqual([]);
    return result;
  }

  const cases: [NodeJS.Signals, string][] = [
    ["SIGINT", "raw"],
    ["SIGTERM", "raw"],
    ...WRITABLE.map((format): [NodeJS.Signals, string] => ["SIGTERM", format]),
  ];
  it.each(cases)("%s mid-convert to %s leaves no temporary or partial file", async (signal, format) => {
    const result = await interruptConvert(signal, format);
    expect(result.signal).toBe(signal);
  });
});
