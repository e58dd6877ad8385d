import { spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { crc32c, crc32cTable, nativeCrc32c } from "../src/formats/crc32c.js";
import {
  type BenchCase,
  type BenchContext,
  type BenchSuite,
  type CaseResult,
  MIXED_MIB,
  measureTool,
  mixedImage,
  type ToolResult,
} from "./harness.js";

/**
 * VHDX (and qcow2) conversion benchmarks: ovfkit against `qemu-img
 * convert` on the same 1 GiB mixed image (../shared/tools/make-bench-image.py
 * OUT 1024 1: 40% holes, 30% random, 30% text) in the same run, plus the
 * CRC-32C throughput of the TypeScript table and the native package.
 */

/** `ovfkit compare` must call the output equal to the input, else the timing is of a wrong result. */
function verify(ctx: BenchContext, a: string, b: string): string {
  const result = spawnSync(ctx.ovfkit[0]!, [...ctx.ovfkit.slice(1), "compare", a, b], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`output differs from input: ${result.stdout}${result.stderr}`);
  return `verified: ovfkit compare ${a.replace(`${ctx.work}/`, "")} ${b.replace(`${ctx.work}/`, "")} -> identical`;
}

const removing = (path: string) => () => rmSync(path, { force: true });

interface Conversion {
  input: string;
  inputFormat: string;
  outputFormat: string;
  ext: string;
  /** `-o` options given to both tools (same meaning in both). */
  options?: string;
}

/** Runs ovfkit and qemu-img on the same conversion; ovfkit's output is verified against the input. */
async function convertBoth(ctx: BenchContext, bench: BenchCase, c: Conversion): Promise<CaseResult> {
  const ours = join(ctx.work, `${bench.name}.ovfkit.${c.ext}`);
  const theirs = join(ctx.work, `${bench.name}.qemu.${c.ext}`);
  const opts = c.options ? ["-o", c.options] : [];
  try {
    const tools: ToolResult[] = [
      await measureTool(
        ctx,
        "ovfkit",
        [...ctx.ovfkit, "convert", "-O", c.outputFormat, ...opts, c.input, ours],
        removing(ours),
      ),
    ];
    const notes = [verify(ctx, c.input, ours)];
    if (ctx.hasTool("qemu-img")) {
      const args = [
        "qemu-img",
        "convert",
        "-f",
        c.inputFormat,
        "-O",
        c.outputFormat,
        ...opts,
        c.input,
        theirs,
      ];
      tools.push(await measureTool(ctx, "qemu-img", args, removing(theirs)));
      notes.push(`output sizes: ovfkit ${fileSize(ours)}, qemu-img ${fileSize(theirs)} (allocated on disk)`);
    } else notes.push("qemu-img not installed: no peer figures (apt-get install qemu-utils)");
    return { name: bench.name, description: bench.description, tools, notes };
  } finally {
    // 1 GiB outputs: never leave them behind, even when a run or the verification fails
    rmSync(ours, { force: true });
    rmSync(theirs, { force: true });
  }
}

function fileSize(path: string): string {
  const du = spawnSync("du", ["-k", path], { encoding: "utf8" }).stdout.split("\t")[0];
  return `${(Number(du) / 1024).toFixed(1)} MiB`;
}

/** An input image in `format` made once from the mixed raw (by qemu-img when present, so both tools read a peer's file). */
function inputImage(ctx: BenchContext, format: "vhdx" | "qcow2"): string {
  const path = join(ctx.work, `mixed-input.${format}`);
  if (existsSync(path)) return path;
  const made = ctx.hasTool("qemu-img")
    ? spawnSync("qemu-img", ["convert", "-f", "raw", "-O", format, mixedImage(ctx), path], {
        encoding: "utf8",
      })
    : spawnSync(ctx.ovfkit[0]!, [...ctx.ovfkit.slice(1), "convert", "-O", format, mixedImage(ctx), path], {
        encoding: "utf8",
      });
  if (made.status !== 0) throw new Error(`could not make the ${format} input: ${made.stderr}`);
  return path;
}

const rawToVhdx: BenchCase = {
  name: "raw-to-vhdx",
  description: `${MIXED_MIB} MiB mixed raw -> dynamic VHDX (32 MiB blocks)`,
  run: (ctx) =>
    convertBoth(ctx, rawToVhdx, {
      input: mixedImage(ctx),
      inputFormat: "raw",
      outputFormat: "vhdx",
      ext: "vhdx",
    }),
};

const rawToVhdxFixed: BenchCase = {
  name: "raw-to-vhdx-fixed",
  description: `${MIXED_MIB} MiB mixed raw -> fixed VHDX`,
  run: (ctx) =>
    convertBoth(ctx, rawToVhdxFixed, {
      input: mixedImage(ctx),
      inputFormat: "raw",
      outputFormat: "vhdx",
      ext: "vhdx",
      options: "subformat=fixed",
    }),
};

const vhdxToRaw: BenchCase = {
  name: "vhdx-to-raw",
  description: `${MIXED_MIB} MiB mixed dynamic VHDX (written by qemu-img) -> raw`,
  run: (ctx) =>
    convertBoth(ctx, vhdxToRaw, {
      input: inputImage(ctx, "vhdx"),
      inputFormat: "vhdx",
      outputFormat: "raw",
      ext: "raw",
    }),
};

const rawToQcow2: BenchCase = {
  name: "raw-to-qcow2",
  description: `${MIXED_MIB} MiB mixed raw -> qcow2 v3 (64 KiB clusters)`,
  run: (ctx) =>
    convertBoth(ctx, rawToQcow2, {
      input: mixedImage(ctx),
      inputFormat: "raw",
      outputFormat: "qcow2",
      ext: "qcow2",
    }),
};

const qcow2ToRaw: BenchCase = {
  name: "qcow2-to-raw",
  description: `${MIXED_MIB} MiB mixed qcow2 (written by qemu-img) -> raw`,
  run: (ctx) =>
    convertBoth(ctx, qcow2ToRaw, {
      input: inputImage(ctx, "qcow2"),
      inputFormat: "qcow2",
      outputFormat: "raw",
      ext: "raw",
    }),
};

/** MB/s of a CRC function over `data` (best of 3 passes). */
function throughput(fn: (data: Buffer) => number, data: Buffer): number {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 3; i++) {
    const start = process.hrtime.bigint();
    fn(data);
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
  }
  return data.length / 1e6 / best;
}

/** In-process (no peer): how fast each CRC-32C implementation is, and what `crc32c` picked. */
const crc32cSpeed: BenchCase = {
  name: "crc32c",
  description: "CRC-32C over 256 MiB: slice-by-8 TypeScript table vs @node-rs/crc32 native (in process)",
  async run() {
    const data = Buffer.alloc(256 * 1024 * 1024);
    for (let i = 0; i < data.length; i += 4096) data[i] = i & 0xff;
    const notes = [`slice-by-8 table: ${throughput((d) => crc32cTable(d), data).toFixed(0)} MB/s`];
    if (nativeCrc32c) {
      const native = nativeCrc32c;
      notes.push(`@node-rs/crc32 native: ${throughput((d) => native(d), data).toFixed(0)} MB/s`);
    } else notes.push("@node-rs/crc32 native: not available on this platform");
    notes.push(`crc32c() uses: ${throughput((d) => crc32c(d), data).toFixed(0)} MB/s`);
    return { name: "crc32c", description: crc32cSpeed.description, tools: [], notes };
  },
};

export const vhdxSuite: BenchSuite = {
  name: "vhdx",
  cases: [rawToVhdx, rawToVhdxFixed, vhdxToRaw, rawToQcow2, qcow2ToRaw, crc32cSpeed],
};
