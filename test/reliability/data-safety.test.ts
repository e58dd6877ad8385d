import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Rng } from "../fuzz/mutators.js";
import { BIN, ovfkit } from "../helpers/cli.js";
import { CORPUS_DISKS, corpusSkipReason, expectedImages, materialise } from "../helpers/corpus.js";
import { tempDir } from "../helpers/tmp.js";

/**
 * Data safety of the real CLI (bin/ovfkit in a subprocess):
 * - SIGKILL at random moments of `convert` and `pack`: the destination is
 *   absent or complete and valid, never partial;
 * - no temporary file survives a normal error;
 * - no command modifies its inputs (checksums before and after);
 * - a full disk gives NO_SPACE and leaves nothing behind.
 */

const MiB = 1024 * 1024;
/** `.NAME.ovfkit-XXXXXXXX.tmp`: what OutputTransaction writes before the atomic rename. */
const TEMP_NAME = /^\..+\.ovfkit-[0-9a-f]{8}\.tmp$/;

/** A raw disk with non-zero data in every other MiB (so writers have real work and sparse gaps). */
function writeSource(path: string, size: number, seed: number): void {
  const rng = new Rng(seed);
  const buf = Buffer.alloc(size);
  for (let at = 0; at < size; at += 2 * MiB) {
    for (let i = 0; i < MiB; i += 4) buf.writeUInt32LE(rng.u32(), at + i);
  }
  writeFileSync(path, buf);
}

/** Runs bin/ovfkit and SIGKILLs it after `killAfterMs` (if still running); resolves when it is gone. */
function runAndKill(args: string[], killAfterMs: number): Promise<{ killed: boolean; code: number | null }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: "ignore" });
    let killed = false;
    const timer = setTimeout(() => {
      killed = child.kill("SIGKILL");
    }, killAfterMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ killed: killed && code === null, code });
    });
  });
}

function timeOf(args: string[]): number {
  const start = performance.now();
  const result = ovfkit(args);
  if (result.status !== 0) throw new Error(`ovfkit ${args.join(" ")} failed: ${result.stderr}`);
  return performance.now() - start;
}

/** Files in `dir` other than `keep`, split into stray temporaries and anything else. */
function leftovers(dir: string, keep: string[]): { temps: string[]; others: string[] } {
  const names = readdirSync(dir).filter((name) => !keep.includes(name));
  return { temps: names.filter((n) => TEMP_NAME.test(n)), others: names.filter((n) => !TEMP_NAME.test(n)) };
}

describe("SIGKILL at random moments: the destination is absent or complete", () => {
  const RUNS = Number(process.env.OVFKIT_KILL_RUNS ?? 8);

  it(`convert (${RUNS} kills per output format)`, async () => {
    const dir = tempDir("ovfkit-kill-convert-");
    const source = join(dir, "source.raw");
    writeSource(source, 24 * MiB, 7);
    const rng = new Rng(20261125);
    let strayTemps = 0;
    let complete = 0;
    for (const [format, options] of [
      ["qcow2", []],
      ["vpc", []],
      ["vmdk", ["-o", "subformat=streamOptimized"]],
    ] as const) {
      const outDir = join(dir, format);
      mkdirSync(outDir);
      const dest = join(outDir, `dest.${format}`);
      const args = ["convert", "-O", format, ...options, source, dest];
      const fullRun = timeOf(args);
      rmSync(dest);
      for (let run = 0; run < RUNS; run++) {
        // spread kills over start-up, streaming and the final rename; some land after the end
        await runAndKill(args, Math.floor(rng.next() * fullRun * 1.2));
        const { temps, others } = leftovers(outDir, [`dest.${format}`]);
        expect(others, `unexpected files after a kill: ${others}`).toEqual([]);
        strayTemps += temps.length;
        for (const temp of temps) rmSync(join(outDir, temp));
        if (existsSync(dest)) {
          complete++;
          expect(ovfkit(["check", dest]).status, `${dest} after a kill is not a clean image`).toBe(0);
          expect(
            ovfkit(["compare", source, dest]).status,
            `${dest} after a kill differs from the source`,
          ).toBe(0);
          rmSync(dest);
        }
      }
    }
    console.log(
      `[kill] convert: ${RUNS * 3} kills, ${complete} complete destinations, ${strayTemps} stray temp files (SIGKILL allows no clean-up)`,
    );
  }, 300_000);

  it(`pack (${RUNS} kills)`, async () => {
    const dir = tempDir("ovfkit-kill-pack-");
    const disk = join(dir, "disk.raw");
    writeSource(disk, 24 * MiB, 8);
    const ovf = join(dir, "app", "app.ovf");
    mkdirSync(join(dir, "app"));
    const made = ovfkit(["create-ovf", disk, "-o", ovf]);
    expect(made.status, made.stderr).toBe(0);
    const outDir = join(dir, "out");
    mkdirSync(outDir);
    const ova = join(outDir, "app.ova");
    const args = ["pack", ovf, "-o", ova];
    const fullRun = timeOf(args);
    rmSync(ova);
    const rng = new Rng(42);
    let strayTemps = 0;
    let complete = 0;
    for (let run = 0; run < RUNS; run++) {
      await runAndKill(args, Math.floor(rng.next() * fullRun * 1.2));
      const { temps, others } = leftovers(outDir, ["app.ova"]);
      expect(others).toEqual([]);
      strayTemps += temps.length;
      for (const temp of temps) rmSync(join(outDir, temp));
      if (existsSync(ova)) {
        complete++;
        const verified = ovfkit(["verify", ova]);
        expect(verified.status, verified.stdout + verified.stderr).toBe(0);
        rmSync(ova);
      }
    }
    console.log(`[kill] pack: ${RUNS} kills, ${complete} complete OVAs, ${strayTemps} stray temp files`);
  }, 300_000);
});

describe("normal errors leave no temporary file", () => {
  it("convert of a corrupt image, pack of a descriptor whose disk is missing", () => {
    const dir = tempDir("ovfkit-errors-");
    // a dynamic VHD whose BAT entry points past the end: refused part-way through the conversion
    const source = join(dir, "good.raw");
    writeSource(source, 4 * MiB, 9);
    expect(ovfkit(["convert", "-O", "vpc", source, join(dir, "bad.vhd")]).status).toBe(0);
    const vhd = readFileSync(join(dir, "bad.vhd"));
    const footer = vhd.subarray(vhd.length - 512);
    const tableOffset = Number(vhd.readBigUInt64BE(512 + 16));
    vhd.writeUInt32BE(0x7fffffff, tableOffset); // block 0 "allocated" far beyond the file
    writeFileSync(join(dir, "bad.vhd"), vhd);
    expect(footer.subarray(0, 8).toString()).toBe("conectix");
    const out = join(dir, "out");
    mkdirSync(out);
    for (const format of ["raw", "qcow2", "vhdx", "vmdk"]) {
      const result = ovfkit(["convert", "-O", format, join(dir, "bad.vhd"), join(out, `x.${format}`)]);
      expect(result.status).not.toBe(0);
      expect(result.stderr).toMatch(/ovfkit: [A-Z0-9_]+: /);
      expect(readdirSync(out)).toEqual([]);
    }
    // pack: the descriptor names a disk that is gone
    const app = join(dir, "app");
    mkdirSync(app);
    expect(ovfkit(["create-ovf", source, "-o", join(app, "app.ovf")]).status).toBe(0);
    const diskFile = readdirSync(app).find((n) => /\.vmdk$/.test(n));
    expect(diskFile).toBeDefined();
    rmSync(join(app, diskFile!));
    const packed = ovfkit(["pack", join(app, "app.ovf"), "-o", join(out, "app.ova")]);
    expect(packed.status).not.toBe(0);
    expect(readdirSync(out)).toEqual([]);
  });
});

describe.skipIf(corpusSkipReason !== "")("inputs are never modified", () => {
  it("every command leaves its inputs byte-identical (sha256 and mtime)", async () => {
    const dir = tempDir("ovfkit-inputs-");
    // real third-party inputs, copied (the corpus itself is never a target)
    const pick = (suffix: string) => expectedImages().find((image) => image.path.endsWith(suffix))!;
    const inputs: Record<string, string> = {};
    for (const [key, suffix] of [
      ["vhd", "qemu-made/vpc-dynamic.vhd"],
      ["vmdk", "qemu-made/vmdk-streamOptimized.vmdk"],
      ["qcow2", "qemu-made/qcow2-v3.qcow2"],
      ["vhdx", "qemu-made/vhdx-dynamic.vhdx"],
      ["mbr", "qemu-sample-images/grub_mbr.raw"],
    ] as const) {
      const path = await materialise(pick(suffix));
      inputs[key] = join(dir, `input-${key}`);
      writeFileSync(inputs[key]!, readFileSync(path));
    }
    const appDir = join(dir, "app");
    mkdirSync(appDir);
    expect(ovfkit(["create-ovf", inputs.vmdk!, "-o", join(appDir, "app.ovf")]).status).toBe(0);
    const ova = join(dir, "app.ova");
    expect(ovfkit(["create-ovf", inputs.vmdk!, "-o", ova]).status).toBe(0);

    const fingerprint = () => {
      const files = [...Object.values(inputs), ova, ...readdirSync(appDir).map((n) => join(appDir, n))];
      return Object.fromEntries(
        files.map((f) => [
          f,
          `${createHash("sha256").update(readFileSync(f)).digest("hex")} ${statSync(f).mtimeMs} ${statSync(f).mode}`,
        ]),
      );
    };
    const before = fingerprint();
    const out = join(dir, "out");
    mkdirSync(out);
    const commands: string[][] = [
      ...["vhd", "vmdk", "qcow2", "vhdx"].flatMap((k) => [
        ["info", inputs[k]!],
        ["info", "--output", "json", inputs[k]!],
        ["check", inputs[k]!],
        ["map", inputs[k]!],
        ["convert", "-O", "raw", inputs[k]!, join(out, `${k}.raw`)],
      ]),
      ["compare", inputs.vhd!, inputs.vmdk!],
      ["compare", inputs.qcow2!, inputs.vhdx!],
      ["validate", join(appDir, "app.ovf")],
      ["validate", ova],
      ["verify", ova],
      ["verify", join(appDir, "app.ovf")],
      ["pack", join(appDir, "app.ovf"), "-o", join(out, "packed.ova")],
      ["unpack", ova, "-d", join(out, "unpacked")],
      ["edit", ova, "-o", join(out, "edited.ova"), "--name", "renamed", "--cpus", "2"],
      ["env", ova, "-o", join(out, "env.iso")],
      ["create-ovf", inputs.qcow2!, inputs.vhd!, "-o", join(out, "made.ova")],
      ["boot", inputs.mbr!, "-f", "raw", "--timeout", "1", "--wall-timeout", "60"],
    ];
    const ran: string[] = [];
    for (const args of commands) {
      const result = ovfkit(args);
      // exit status is each command's business (boot of an MBR times out, compare differs); inputs are ours
      expect(result.stderr, `ovfkit ${args.join(" ")}`).not.toMatch(/internal error/);
      ran.push(`${args[0]}:${result.status}`);
    }
    expect(fingerprint()).toEqual(before);
    console.log(`[inputs] unchanged after: ${ran.join(" ")}`);
  }, 300_000);
});

/** Mounts a 4 MiB tmpfs (needs root); returns a reason when it cannot. */
function mountSmallTmpfs(dir: string): string {
  if (process.platform !== "linux") return "tmpfs mounts need Linux";
  const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", dir], { encoding: "utf8" });
  return mounted.status === 0 ? "" : `cannot mount a tmpfs (${mounted.stderr.trim() || "not root?"})`;
}

describe("disk full", () => {
  const root = tempDir("ovfkit-full-");
  const full = join(root, "full");
  mkdirSync(full);
  const reason = mountSmallTmpfs(full);
  if (reason) console.warn(`[skip] disk-full tests: ${reason}`);

  it.skipIf(reason !== "")(
    "convert and pack onto a 4 MiB file system: NO_SPACE, nothing left behind",
    () => {
      try {
        const source = join(root, "source.raw");
        writeSource(source, 16 * MiB, 11); // 8 MiB of incompressible data: cannot fit in 4 MiB
        for (const format of ["raw", "qcow2", "vpc", "vmdk", "vhdx"]) {
          const result = ovfkit(["convert", "-O", format, source, join(full, `out.${format}`)]);
          expect(result.status, `convert -O ${format}`).not.toBe(0);
          expect(result.stderr).toMatch(/ovfkit: NO_SPACE: /);
          expect(readdirSync(full), `after convert -O ${format}`).toEqual([]);
        }
        const app = join(root, "app");
        mkdirSync(app);
        expect(ovfkit(["create-ovf", source, "-o", join(app, "app.ovf")]).status).toBe(0);
        const packed = ovfkit(["pack", join(app, "app.ovf"), "-o", join(full, "app.ova")]);
        expect(packed.status).not.toBe(0);
        expect(packed.stderr).toMatch(/ovfkit: NO_SPACE: /);
        expect(readdirSync(full)).toEqual([]);
      } finally {
        spawnSync("umount", [full]);
      }
    },
    120_000,
  );
});

// keep the corpus reference visible to readers: inputs above come from it
void CORPUS_DISKS;
